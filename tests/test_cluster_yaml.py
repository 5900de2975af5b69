"""cluster/aws.yaml passes Ray's own cluster-launcher validation and keeps the properties the sweep
relies on. No cloud access: `prepare_config` only merges the provider defaults and
`validate_config` checks Ray's JSON schema. ./cluster.yaml, the documented entry (`ray up
cluster.yaml`), is an identical copy. The KubeRay RayJob: tests/test_kuberay.py."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CLUSTER = ROOT / "cluster" / "aws.yaml"


def test_top_level_cluster_yaml_is_a_copy_of_cluster_aws_yaml():
    assert (ROOT / "cluster.yaml").read_bytes() == CLUSTER.read_bytes(), (
        "cluster.yaml and cluster/aws.yaml differ: edit cluster/aws.yaml, then "
        "cp cluster/aws.yaml cluster.yaml"
    )


@pytest.fixture(scope="module")
def config() -> dict:
    return yaml.safe_load(CLUSTER.read_text())


def validated(config: dict) -> dict:
    from ray.autoscaler._private.util import prepare_config, validate_config

    prepared = prepare_config(copy.deepcopy(config))
    validate_config(prepared)
    return prepared


def test_ray_validates_cluster_yaml(config):
    prepared = validated(config)
    assert prepared["provider"]["type"] == "aws"


def test_validation_rejects_a_broken_config(config):
    # The check above must be able to fail: an unknown key is a schema error.
    import jsonschema

    broken = {**config, "head_node_typo": "head"}
    with pytest.raises(jsonschema.ValidationError):
        validated(broken)


def test_no_trial_lands_on_the_head(config):
    head = config["available_node_types"][config["head_node_type"]]
    assert head["resources"] == {"CPU": 0}
    assert any("--num-cpus=0" in cmd for cmd in config["head_start_ray_commands"])


def test_gpu_worker_types_with_explicit_images(config):
    workers = {
        k: v for k, v in config["available_node_types"].items() if k != config["head_node_type"]
    }
    types = {v["node_config"]["InstanceType"] for v in workers.values()}
    assert "g5.xlarge" in types and any(t.startswith(("p4d", "p5")) for t in types)
    assert all(v["min_workers"] == 0 for v in workers.values())  # scale from zero, pay per use
    # A pinned Ray version with an explicit CUDA build, not the moving "-gpu" alias.
    assert re.fullmatch(r"rayproject/ray:2\.60\.\d+-py3\d+-cu\d+", config["docker"]["image"])
    for node in config["available_node_types"].values():
        assert node["node_config"]["ImageId"].startswith(("ami-", "resolve:ssm:"))


def test_setup_installs_this_project_and_auth_is_explicit(config):
    assert config["idle_timeout_minutes"] > 0
    assert "." in config["file_mounts"].values()
    assert any(re.search(r"pip install .*contrastive-bench", c) for c in config["setup_commands"])
    run_options = " ".join(config["docker"]["run_options"])
    assert "RAY_AUTH_MODE=token" in run_options  # set on every node, never implied
    assert "/home/ray/.ray/auth_token" in config["file_mounts"]
    assert "BENCH_DATA=/" in run_options  # absolute data root: trials chdir
