"""cluster/rayjob.yaml (a KubeRay RayJob) against the RayJob CRD's fields, offline.

No cluster and no network: the YAML is checked against `RAYJOB`, a field schema written by hand
from KubeRay's CRD (ray-project/kuberay, ray-operator/config/crd/bases/ray.io_rayjobs.yaml,
`openAPIV3Schema` of version v1, at commit feeaf72f = v1.7.0-rc.0+5, 2026-08-19): every field
name, type, enum and required list below is the CRD's. The RayJob-level objects (`spec`,
`rayClusterSpec`, head and worker groups, `authOptions`, `autoscalerOptions`) list all of the
CRD's fields; the Kubernetes pod template lists only the fields this project uses (the CRD's
PodSpec has 42), so a new one must be added here from the CRD. Then the rules KubeRay's
webhook/controller enforces (ray-operator/controllers/ray/utils/validation.go: ValidateRayJobSpec,
ValidateRayClusterSpec; token auth needs Ray >= 2.52) and the properties the sweep relies on
(the same as cluster/aws.yaml's: no trial on the head, pinned image, token auth, shared storage).
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
RAYJOB = ROOT / "cluster" / "rayjob.yaml"

# --- the field schema (from the CRD) ------------------------------------------------------------

STR, INT, NUM, BOOL = ({"type": t} for t in ("string", "integer", "number", "boolean"))
# resource.Quantity: `anyOf: [integer, string]` with the CRD's pattern.
QUANTITY_RE = re.compile(
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?"
    r"(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)
QUANTITY = {"type": "quantity"}
STR_MAP = {"type": "object", "values": STR}  # additionalProperties: {type: string}
ANY_OBJECT = {"type": "object", "values": None}  # fields not described further here


def obj(props: dict[str, Any], required: tuple[str, ...] = ()) -> dict[str, Any]:
    return {"type": "object", "props": props, "required": required}


def arr(items: dict[str, Any]) -> dict[str, Any]:
    return {"type": "array", "items": items}


def enum(*values: str) -> dict[str, Any]:
    return {"type": "string", "enum": values}


RESOURCES = obj({
    "claims": arr(obj({"name": STR}, ("name",))),
    "limits": {"type": "object", "values": QUANTITY},
    "requests": {"type": "object", "values": QUANTITY},
})  # fmt: skip
ENV = arr(obj({"name": STR, "value": STR, "valueFrom": ANY_OBJECT}, ("name",)))
CONTAINER = obj({  # the CRD's core/v1 Container fields this project uses (of 25)
    "name": STR, "image": STR, "imagePullPolicy": STR, "command": arr(STR), "args": arr(STR),
    "env": ENV, "resources": RESOURCES,
    "ports": arr(obj({"containerPort": INT, "name": STR, "protocol": STR, "hostPort": INT,
                      "hostIP": STR}, ("containerPort",))),
    "volumeMounts": arr(obj({"mountPath": STR, "name": STR, "readOnly": BOOL, "subPath": STR,
                             "subPathExpr": STR, "mountPropagation": STR,
                             "recursiveReadOnly": STR}, ("mountPath", "name"))),
}, ("name",))  # fmt: skip
POD_TEMPLATE = obj({
    "metadata": obj({"annotations": STR_MAP, "labels": STR_MAP, "name": STR, "namespace": STR,
                     "finalizers": arr(STR)}),
    "spec": obj({  # the CRD's core/v1 PodSpec fields this project uses (of 42)
        "containers": arr(CONTAINER), "initContainers": arr(CONTAINER),
        "tolerations": arr(obj({"effect": STR, "key": STR, "operator": STR,
                                "tolerationSeconds": INT, "value": STR})),
        "volumes": arr(obj({"name": STR, "emptyDir": obj({"medium": STR, "sizeLimit": QUANTITY}),
                            "persistentVolumeClaim": obj({"claimName": STR, "readOnly": BOOL},
                                                         ("claimName",)),
                            "secret": ANY_OBJECT, "configMap": ANY_OBJECT}, ("name",))),
        "nodeSelector": STR_MAP, "serviceAccountName": STR, "restartPolicy": STR,
        "priorityClassName": STR,
    }, ("containers",)),
})  # fmt: skip
HEAD_GROUP = obj({
    "enableIngress": BOOL, "headService": ANY_OBJECT, "ingressOptions": ANY_OBJECT,
    "labels": STR_MAP, "rayStartParams": STR_MAP, "resources": STR_MAP, "serviceType": STR,
    "template": POD_TEMPLATE,
}, ("template",))  # fmt: skip
WORKER_GROUP = obj({
    "groupName": STR, "idleTimeoutSeconds": INT, "labels": STR_MAP, "maxReplicas": INT,
    "minReplicas": INT, "numOfHosts": INT, "priority": INT, "rayStartParams": STR_MAP,
    "replicas": INT, "resources": STR_MAP, "scaleStrategy": ANY_OBJECT, "suspend": BOOL,
    "template": POD_TEMPLATE,
}, ("groupName", "maxReplicas", "minReplicas", "template"))  # fmt: skip
AUTOSCALER = obj({
    "args": arr(STR), "command": arr(STR),
    "env": ENV, "envFrom": arr(ANY_OBJECT), "idleTimeoutSeconds": INT, "image": STR,
    "imagePullPolicy": STR, "resources": RESOURCES, "securityContext": ANY_OBJECT,
    "upscalingMode": enum("Default", "Aggressive", "Conservative"),
    "version": enum("v1", "v2"), "volumeMounts": arr(ANY_OBJECT),
})  # fmt: skip
RAY_CLUSTER_SPEC = obj({
    "authOptions": obj({"enableK8sTokenAuth": BOOL, "mode": enum("disabled", "token"),
                        "secretName": STR}),
    "autoscalerOptions": AUTOSCALER, "enableInTreeAutoscaling": BOOL,
    "gcsFaultToleranceOptions": ANY_OBJECT, "headGroupSpec": HEAD_GROUP,
    "headServiceAnnotations": STR_MAP, "historyServerOptions": ANY_OBJECT, "managedBy": STR,
    "networkPolicy": ANY_OBJECT, "rayVersion": STR, "suspend": BOOL, "tlsOptions": ANY_OBJECT,
    "upgradeStrategy": ANY_OBJECT, "workerGroupSpecs": arr(WORKER_GROUP),
}, ("headGroupSpec",))  # fmt: skip
RAYJOB_SPEC = obj({
    "activeDeadlineSeconds": INT, "backoffLimit": INT, "clusterSelector": STR_MAP,
    "deletionStrategy": ANY_OBJECT, "entrypoint": STR, "entrypointNumCpus": NUM,
    "entrypointNumGpus": NUM, "entrypointResources": STR, "jobId": STR, "managedBy": STR,
    "metadata": STR_MAP, "preRunningDeadlineSeconds": INT, "rayClusterSpec": RAY_CLUSTER_SPEC,
    "runtimeEnvYAML": STR, "shutdownAfterJobFinishes": BOOL, "submissionMode": STR,
    "submitterConfig": ANY_OBJECT, "submitterPodTemplate": ANY_OBJECT, "suspend": BOOL,
    "ttlSecondsAfterFinished": INT,
})  # fmt: skip
# `metadata` is Kubernetes' ObjectMeta (the CRD leaves it to the API server: the fields used
# here); `status` is written by the operator, never by a user.
RAYJOB_SCHEMA = obj({
    "apiVersion": STR, "kind": STR, "metadata": obj({"name": STR, "namespace": STR,
                                                      "labels": STR_MAP, "annotations": STR_MAP}),
    "spec": RAYJOB_SPEC,
})  # fmt: skip
# Go enum of rayv1.JobSubmissionMode (the CRD's field is a plain string).
SUBMISSION_MODES = ("K8sJobMode", "HTTPMode", "InteractiveMode", "SidecarMode")


def schema_errors(value: Any, schema: dict[str, Any] | None, path: str = "") -> list[str]:
    """Every place where `value` breaks `schema` (unknown field, wrong type, missing, enum)."""
    if schema is None:
        return []
    kind, where = schema["type"], path or "<root>"
    checks = {
        "string": lambda v: isinstance(v, str),
        "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
        "boolean": lambda v: isinstance(v, bool),
        "quantity": lambda v: (
            (isinstance(v, int) and not isinstance(v, bool))
            or (isinstance(v, str) and QUANTITY_RE.match(v) is not None)
        ),
        "array": lambda v: isinstance(v, list),
        "object": lambda v: isinstance(v, dict),
    }
    if not checks[kind](value):
        return [f"{where}: {value!r} is not a valid {kind}"]
    errors = []
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{where}: {value!r} is not one of {schema['enum']}")
    if kind == "array":
        for i, item in enumerate(value):
            errors += schema_errors(item, schema["items"], f"{path}[{i}]")
    elif kind == "object" and "props" in schema:
        for key in schema["required"]:
            if key not in value:
                errors.append(f"{where}: required field {key!r} is missing")
        for key, item in value.items():
            if key not in schema["props"]:
                errors.append(f"{where}: unknown field {key!r}")
            else:
                errors += schema_errors(item, schema["props"][key], f"{path}.{key}".lstrip("."))
    elif kind == "object":
        for key, item in value.items():
            errors += schema_errors(item, schema["values"], f"{path}.{key}".lstrip("."))
    return errors


@pytest.fixture(scope="module")
def job() -> dict:
    return yaml.safe_load(RAYJOB.read_text())


def containers(job: dict) -> list[dict]:
    cluster = job["spec"]["rayClusterSpec"]
    pods = [cluster["headGroupSpec"]["template"]] + [
        g["template"] for g in cluster["workerGroupSpecs"]
    ]
    return [c for pod in pods for c in pod["spec"]["containers"]]


# --- the CRD's fields ---------------------------------------------------------------------------


def test_rayjob_matches_the_crd_fields(job):
    assert job["apiVersion"] == "ray.io/v1" and job["kind"] == "RayJob"
    assert schema_errors(job, RAYJOB_SCHEMA) == []


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda j: j["spec"].update(shutdownAfterJobFinish=True),
            "unknown field 'shutdownAfterJobFinish'",
        ),
        (lambda j: j["spec"]["rayClusterSpec"]["authOptions"].update(mode="tokens"), "not one of"),
        (
            lambda j: j["spec"]["rayClusterSpec"]["workerGroupSpecs"][0].pop("maxReplicas"),
            "required field 'maxReplicas'",
        ),
        (
            lambda j: j["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["template"]["spec"][
                "containers"
            ][0]["resources"]["limits"].update(memory="48 GB"),
            "not a valid quantity",
        ),
        (lambda j: j["spec"].update(backoffLimit="2"), "not a valid integer"),
    ],
)
def test_the_field_check_can_fail(job, edit, message):
    broken = yaml.safe_load(yaml.safe_dump(job))
    edit(broken)
    errors = schema_errors(broken, RAYJOB_SCHEMA)
    assert len(errors) == 1 and message in errors[0]


# --- KubeRay's own rules (validation.go) --------------------------------------------------------


def test_kuberay_validation_rules(job):
    spec, cluster = job["spec"], job["spec"]["rayClusterSpec"]
    assert spec.get("submissionMode", "K8sJobMode") in SUBMISSION_MODES
    assert spec.get("ttlSecondsAfterFinished", 0) >= 0 and spec.get("backoffLimit", 0) >= 0
    assert not spec.get("suspend") or spec["shutdownAfterJobFinishes"]
    assert "clusterSelector" not in spec  # RayClusterSpec mode: the job brings its cluster
    assert cluster["headGroupSpec"]["template"]["spec"]["containers"]
    autoscaling = cluster.get("enableInTreeAutoscaling", False)
    for group in cluster["workerGroupSpecs"]:
        assert group["template"]["spec"]["containers"]
        low, high = group.get("minReplicas"), group.get("maxReplicas")
        assert autoscaling or (low is not None and high is not None)
        assert 0 <= low <= high and low <= group.get("replicas", low) <= high
    auth = cluster.get("authOptions", {})
    if auth.get("mode") == "token":  # KubeRay: token auth needs Ray >= 2.52.0
        major, minor, _ = (int(x) for x in cluster["rayVersion"].split("."))
        assert (major, minor) >= (2, 52)
        assert not auth.get("enableK8sTokenAuth")  # not supported for a RayJob
    assert len({g["groupName"] for g in cluster["workerGroupSpecs"]}) == len(
        cluster["workerGroupSpecs"]
    )


# --- what the sweep relies on -------------------------------------------------------------------


def test_pinned_ray_version_and_image_match_the_project_and_cluster_aws_yaml(job):
    cluster = job["spec"]["rayClusterSpec"]
    version = cluster["rayVersion"]
    assert re.fullmatch(r"2\.60\.\d+", version)
    pin = re.search(r'"ray\[[a-z,]+\]>=([\d.]+),<([\d.]+)"', (ROOT / "pyproject.toml").read_text())
    assert pin and version.startswith(pin.group(1)) and pin.group(1) == "2.60"
    images = {c["image"] for c in containers(job)}
    assert len(images) == 1 and f"ray{version}-" in images.pop()  # one image, its Ray named
    base = re.search(r"^FROM (\S+)$", (ROOT / "cluster" / "Dockerfile").read_text(), re.M)
    aws = yaml.safe_load((ROOT / "cluster" / "aws.yaml").read_text())
    assert base and base.group(1) == aws["docker"]["image"]  # the same pinned CUDA build
    assert base.group(1).startswith(f"rayproject/ray:{version}-py3")


def test_head_runs_only_the_driver_and_gpu_workers_scale_from_zero(job):
    cluster = job["spec"]["rayClusterSpec"]
    assert cluster["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
    assert cluster["enableInTreeAutoscaling"] is True
    (gpu,) = cluster["workerGroupSpecs"]
    assert gpu["minReplicas"] == 0 and gpu["maxReplicas"] >= 1
    pod = gpu["template"]["spec"]
    assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert any(t["key"] == "nvidia.com/gpu" for t in pod["tolerations"])


def test_requests_equal_limits_everywhere(job):
    cluster = job["spec"]["rayClusterSpec"]
    resources = [c["resources"] for c in containers(job)] + [
        cluster["autoscalerOptions"]["resources"]
    ]
    for r in resources:
        assert r["requests"] == r["limits"] and {"cpu", "memory"} <= set(r["limits"])


def test_token_auth_data_root_and_shutdown(job):
    spec = job["spec"]
    assert spec["rayClusterSpec"]["authOptions"] == {"mode": "token"}
    assert spec["shutdownAfterJobFinishes"] is True
    for container in containers(job):
        env = {e["name"]: e.get("value") for e in container.get("env", [])}
        assert env["BENCH_DATA"].startswith("/")  # absolute: trials chdir


def test_entrypoint_is_a_sweep_the_cli_accepts(job, capsys):
    from bench.cli import main

    argv = shlex.split(job["spec"]["entrypoint"])
    assert argv[:2] == ["bench", "sweep"]
    assert argv[argv.index("--address") + 1] == "auto"
    assert argv[argv.index("--storage") + 1].startswith("s3://")
    assert "--resume" in argv  # a retried job continues the sweep
    space = Path(argv[2])
    assert space.is_absolute() and space.parts[:4] == ("/", "home", "ray", "contrastive-bench")
    local = ROOT.joinpath(*space.parts[4:])
    assert local.is_file()  # the image copies search_spaces/ there (cluster/Dockerfile)
    assert main(["sweep", str(local), *argv[3:], "--dry-run"]) == 0
    assert "trials" in capsys.readouterr().out
