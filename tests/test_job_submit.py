"""`ray job submit` of a sweep to a two-node Ray cluster started with `ray start`, as the README's
walkthrough does it: token auth (RAY_AUTH_MODE=token and one token for every process), a head
with the dashboard and job server (`ray[default]`), a second node, then

    ray job submit --address http://127.0.0.1:<port> --working-dir . -- \\
        bench sweep SPACE --address auto --storage ABSOLUTE_PATH

The job must end SUCCEEDED with every trial in the store. The cluster is stopped by process id
(tests/local_ray.py), also when the test fails.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from local_ray import LocalRay
from tiny_trial import TINY_BASE

from bench.store import read_results, read_sweep_meta

pytestmark = pytest.mark.ray

ROOT = Path(__file__).resolve().parents[1]


def test_ray_job_submit_runs_a_sweep_on_a_two_node_cluster(tmp_path):
    space = tmp_path / "jobs.yaml"
    space.write_text(yaml.safe_dump({
        "name": "jobs", "base": TINY_BASE, "resources": {"cpu": 1}, "retries": 1,
        "grid": {"loss": ["infonce", "vicreg"], "seed": [0, 1]},
    }))  # fmt: skip
    storage = tmp_path / "results"  # absolute: the job runs in a copy of the working dir
    with LocalRay(tmp_path, cpus_per_node=1) as cluster:
        cluster.start_head()
        cluster.add_node()
        assert cluster.alive_nodes() == 2
        submitted = cluster.ray(
            "job", "submit", "--address", cluster.dashboard, "--submission-id", "bench-jobs",
            "--working-dir", ".", "--",
            "bench", "sweep", str(space), "--address", "auto", "--storage", str(storage),
            "--progress-every", "0",
            cwd=ROOT, timeout=420,
        )  # fmt: skip
        logs = submitted.stdout[-4000:] + submitted.stderr[-4000:]
        assert submitted.returncode == 0, logs
        assert cluster.job_status("bench-jobs") == "SUCCEEDED", logs
        assert "4 trials (4 done)" in submitted.stdout, logs
    sweep_id = next(p.name for p in storage.iterdir() if p.is_dir())
    assert read_sweep_meta(storage, sweep_id)["n_trials"] == 4
    df = read_results(storage)
    assert not df.duplicated(["trial_id", "epoch", "label_fraction"]).any()
    assert len(df) == 4 * TINY_BASE["epochs"] and df["trial_id"].nunique() == 4
    last = df.sort_values("epoch").groupby("trial_id").tail(1)
    assert set(last["status"]) == {"done"} and last["final"].all()
    # Every row compacted (per trial when it ended, or merged at the end): no fragment left.
    sweep_dir = storage / sweep_id
    assert list(sweep_dir.glob("trials/*.parquet")) or list(sweep_dir.glob("merged/*.parquet"))
    assert not [p for p in (sweep_dir / "fragments").rglob("*") if p.is_file()]
