"""Results on object storage, against a real S3-compatible server on localhost (moto's server
mode, a test dependency: `moto[server]`), reached the way a user reaches MinIO or S3 itself:
`AWS_ENDPOINT_URL` plus credentials in the environment; `s3://bucket/prefix` on the command line.

A sweep to `s3://bench-results/sweeps`, its driver killed with SIGKILL mid-way, `--resume`d to
exactly one row per key; then `bench results` and `bench report` read it from the bucket. Every
byte goes through pyarrow's S3 filesystem and Ray Tune's own storage layer over HTTP: the
fragments, trial states, Ray's experiment state, compaction, the report's reads. The server
listens on 127.0.0.1 on a free port and is stopped by process id.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pyarrow.fs as pafs
import pytest
import yaml
from local_ray import free_port
from tiny_trial import TINY_BASE

from bench.store import read_results

pytestmark = pytest.mark.ray

BUCKET = "bench-results"


@pytest.fixture
def s3_env(tmp_path, monkeypatch):
    """A moto S3 server on 127.0.0.1 with one bucket; yields the environment that reaches it."""
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    log = open(tmp_path / "moto.log", "w")  # noqa: SIM115
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=2).close()
                break
            except (urllib.error.URLError, OSError):
                assert server.poll() is None, (tmp_path / "moto.log").read_text()
                assert time.monotonic() < deadline, "moto did not start within 60 s"
                time.sleep(0.2)
        env = {
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_EC2_METADATA_DISABLED": "true",
        }
        for name, value in env.items():
            monkeypatch.setenv(name, value)  # for this process's own reads
        s3 = pafs.S3FileSystem(
            endpoint_override=endpoint,
            access_key="testing",
            secret_key="testing",
            region="us-east-1",
            allow_bucket_creation=True,
        )
        s3.create_dir(BUCKET)
        yield env
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGKILL)
        server.wait(timeout=30)
        log.close()


def s3_files(prefix: str) -> list[str]:
    fs, path = pafs.FileSystem.from_uri(prefix)  # via AWS_ENDPOINT_URL, as the store does
    infos = fs.get_file_info(pafs.FileSelector(path, recursive=True, allow_not_found=True))
    return [i.path for i in infos if i.type == pafs.FileType.File]


def test_sweep_to_s3_killed_resumed_then_results_and_report(tmp_path, s3_env):
    space_file = tmp_path / "s3.yaml"
    space_file.write_text(
        yaml.safe_dump(
            {
                "name": "s3",
                "base": TINY_BASE,
                "resources": {"cpu": 1},
                "retries": 1,
                "grid": {"loss": ["infonce", "supcon"], "lr": [0.01, 0.1]},
            }
        )
    )
    storage = f"s3://{BUCKET}/sweeps"
    env = {**os.environ, **s3_env}
    cli = [sys.executable, "-m", "bench"]
    sweep = [*cli, "sweep", str(space_file), "--storage", storage, "--progress-every", "0"]
    driver = subprocess.Popen(
        sweep,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 240
        while not [p for p in s3_files(storage) if "/fragments/" in p]:
            assert driver.poll() is None, (
                f"the sweep ended before any result: {driver.stdout.read()}"
            )
            assert time.monotonic() < deadline, "no result fragment in the bucket within 240 s"
            time.sleep(0.2)
        driver.send_signal(signal.SIGKILL)  # the driver only: its Ray processes die with it
        driver.wait()
        assert driver.returncode == -signal.SIGKILL
    finally:  # whatever is left of the killed driver's process group
        with contextlib.suppress(ProcessLookupError):
            os.killpg(driver.pid, signal.SIGKILL)
        driver.wait()

    resumed = subprocess.run(
        [*sweep, "--resume"], env=env, capture_output=True, text=True, timeout=600
    )
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "4 trials (4 done)" in resumed.stdout

    df = read_results(storage)
    assert not df.duplicated(["sweep_id", "trial_id", "epoch", "label_fraction"]).any()
    assert len(df) == 4 * TINY_BASE["epochs"] and df["trial_id"].nunique() == 4
    last = df.sort_values("epoch").groupby("trial_id").tail(1)
    assert set(last["status"]) == {"done"}
    sweep_id = df["sweep_id"].iloc[0]
    files = s3_files(storage)  # every row compacted in the bucket (per trial, or merged)
    assert any(f"{sweep_id}/trials/" in p or f"{sweep_id}/merged/" in p for p in files)
    assert not [p for p in files if "/fragments/" in p]

    results = subprocess.run(
        [*cli, "results", storage], env=env, capture_output=True, text=True, timeout=300
    )
    assert results.returncode == 0, results.stderr
    assert f"sweep {sweep_id}" in results.stdout and "supcon" in results.stdout

    out = tmp_path / "report"
    report = subprocess.run(
        [*cli, "report", storage, "--sweep-id", sweep_id, "--out", str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert report.returncode == 0, report.stdout[-3000:] + report.stderr[-3000:]
    assert (out / "index.html").is_file() and (out / "README.md").is_file()
