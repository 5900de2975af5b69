"""Sweeps on Ray Tune end to end (bench/sweep/, `bench sweep`, `bench results`).

Tiny `synthetic_subspaces` trials (an MLP of width 32, 3 epochs) so that Ray's own start-up
dominates. One local Ray instance serves the in-process sweep tests; the two-node test starts a
`ray.cluster_utils.Cluster`; the crash test runs `bench sweep` in subprocesses.

Test hook: `BENCH_FAIL_ONCE=<dir>` (read by the sweep driver, bench/sweep/worker.py) makes the
trial whose id names a file in `<dir>` raise once, right after reporting the epoch written in
that file; the file is deleted first, so the retry must resume from the checkpoint.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from tiny_trial import TINY_BASE

from bench.cli import main
from bench.space import expand, parse_space
from bench.store import read_results, read_sweep_meta

pytestmark = pytest.mark.ray



def tiny_space(name: str, grid: dict, base: dict | None = None, **extra):
    return parse_space(
        {
            "name": name,
            "base": {**TINY_BASE, **(base or {})},
            "grid": grid,
            "resources": {"cpu": 1},
            "retries": 1,
            **extra,
        },
        source=f"{name}.yaml",
    )


def one_row_per_key(df) -> bool:
    return not df.duplicated(["sweep_id", "trial_id", "epoch", "label_fraction"]).any()


def shutdown_ray() -> None:
    import ray

    if ray.is_initialized():
        ray.shutdown()


# --- one sweep on an embedded local Ray: retries, divergence, compaction -------------------------


@pytest.fixture(scope="module")
def local_sweep(tmp_path_factory):
    """A 4-trial sweep: two learning rates (1e30 diverges at once) x two losses, both label
    fractions in one trial (CLOA's term capped at 10% of the labels); the first trial fails once
    after epoch 2."""
    import ray

    from bench.sweep.grid import run_sweep
    from bench.sweep.worker import FAIL_ONCE_ENV

    tmp = tmp_path_factory.mktemp("local")
    space = tiny_space(
        "local",
        {"loss": ["infonce", "cloa+infonce"], "lr": [0.05, 1e30], "label_fraction": [0.1, 1.0]},
        base={"pretrain_label_fraction": 0.1},
    )
    trials = expand(space)
    flaky = next(t for t in trials if t.loss == "infonce" and t.lr == 0.05)
    fail_dir = tmp / "fail_once"
    fail_dir.mkdir()
    (fail_dir / flaky.trial_id()).write_text("2")
    shutdown_ray()
    ray.init(
        address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
        logging_level=logging.WARNING,
    )
    os.environ[FAIL_ONCE_ENV] = str(fail_dir)
    try:
        outcome = run_sweep(space, storage=str(tmp / "results"), progress_every=0)
    finally:
        del os.environ[FAIL_ONCE_ENV]
        ray.shutdown()
    return {
        "space": space,
        "trials": trials,
        "flaky": flaky,
        "fail_dir": fail_dir,
        "storage": tmp / "results",
        "outcome": outcome,
    }


def test_local_sweep_succeeds_with_diverged_trials_recorded(local_sweep):
    outcome = local_sweep["outcome"]
    assert outcome.exit_code == 0, outcome.report()
    states = {t.trial_id: t.state for t in outcome.trials}
    assert len(states) == 4
    for t in local_sweep["trials"]:
        assert states[t.trial_id()] == ("diverged" if t.lr == 1e30 else "done")
    df = read_results(local_sweep["storage"])
    assert one_row_per_key(df)
    assert set(df["trial_id"]) == set(states)
    diverged = df[df["p_lr"] == 1e30]
    last = diverged.sort_values("epoch").groupby(["trial_id", "label_fraction"]).tail(1)
    assert (last["status"] == "diverged").all() and last["final"].all()
    done = df[df["p_lr"] == 0.05]
    # label fractions grouped: each finished trial has 3 epochs x 2 fractions
    assert sorted(done.groupby("trial_id").size()) == [6, 6]
    assert set(done["label_fraction"]) == {0.1, 1.0}


def test_failed_attempt_is_retried_from_its_checkpoint_without_duplicates(local_sweep):
    flaky = local_sweep["flaky"]
    assert not any(local_sweep["fail_dir"].iterdir()), "the injected failure never fired"
    df = read_results(local_sweep["storage"])
    rows = df[df["trial_id"] == flaky.trial_id()].sort_values(["epoch", "label_fraction"])
    assert list(rows["epoch"]) == [1, 1, 2, 2, 3, 3]  # one row per (epoch, label fraction)
    # Epochs 1-2 come from the first attempt, epoch 3 from the retry: it resumed at the
    # checkpoint of epoch 2 instead of starting over (which would rewrite epochs 1-2 as attempt 1).
    assert list(rows["attempt"]) == [0, 0, 0, 0, 1, 1]
    assert rows["status"].iloc[-1] == "done"


def test_a_config_error_on_a_worker_ends_its_trial_at_once_without_retries(tmp_path, capfd):
    """A trial that cannot be built (here a batch larger than its training set, which only the
    preflight of `bench sweep` would have caught) is "error" with its sentence after one attempt,
    while the sweep's other trials run; retries are for faults."""
    import ray

    from bench.sweep.grid import run_sweep

    base = {k: v for k, v in TINY_BASE.items() if k != "batch_size"}
    space = parse_space({"name": "cfgerr", "base": {**base, "epochs": 1}, "retries": 2,
                         "grid": {"loss": ["infonce"], "batch_size": [64, 4096]},
                         "resources": {"cpu": 1}}, source="cfgerr.yaml")  # fmt: skip
    shutdown_ray()
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
             logging_level=logging.WARNING)  # fmt: skip
    try:
        outcome = run_sweep(space, storage=str(tmp_path / "results"), progress_every=0)
    finally:
        ray.shutdown()
    out = capfd.readouterr().out
    states = {t.config.batch_size: t for t in outcome.trials}
    assert states[64].state == "done" and outcome.exit_code == 1
    bad = states[4096]
    assert bad.state == "error" and "'batch_size' is 4096" in (bad.error or ""), bad
    assert "config error, not retried" in out and "retry" not in out.replace("not retried", "")
    assert "'batch_size' is 4096" in outcome.report()
    df = read_results(tmp_path / "results")
    assert set(df["p_batch_size"]) == {64}  # the bad trial wrote nothing


def test_a_finished_sweep_is_compacted_into_one_file_and_its_metadata_written(local_sweep):
    outcome = local_sweep["outcome"]
    sweep_dir = Path(outcome.sweep_dir)
    merged = sorted((sweep_dir / "merged").glob("*.parquet"))
    assert [str(p) for p in merged] == [outcome.merged]  # every trial's rows in one file
    assert not list((sweep_dir / "trials").glob("*.parquet"))
    assert not [p for p in (sweep_dir / "fragments").rglob("*") if p.is_file()]  # .arrow too
    df = read_results(local_sweep["storage"])
    assert set(df["trial_id"]) == {t.trial_id() for t in local_sweep["trials"]}
    meta = read_sweep_meta(local_sweep["storage"], local_sweep["outcome"].sweep_id)
    assert meta["n_trials"] == 4 and len(meta["trials"]) == 4
    assert (sweep_dir / "_ray").is_dir()  # Ray's experiment state lives beside the results
    # finished trials keep no resumable state
    assert not list((sweep_dir / "_checkpoints").glob("*.pt"))


def test_rerun_without_resume_refuses_to_mix_results(local_sweep):
    from bench.sweep.grid import SweepExistsError, run_sweep

    with pytest.raises(SweepExistsError, match="--resume"):
        run_sweep(local_sweep["space"], storage=str(local_sweep["storage"]), progress_every=0)


def test_bench_results_skips_a_truncated_fragment_with_a_warning(local_sweep, capsys):
    sweep_dir = Path(local_sweep["outcome"].sweep_dir)
    good = Path(local_sweep["outcome"].merged)
    bad_dir = sweep_dir / "fragments" / f"trial={local_sweep['flaky'].trial_id()}"
    bad_dir.mkdir(parents=True)
    bad = bad_dir / "00009-0-deadbeef.parquet"
    data = good.read_bytes()
    bad.write_bytes(data[: len(data) // 2])  # a torn write: no footer
    try:
        assert main(["results", str(local_sweep["storage"])]) == 0
        out, err = capsys.readouterr()
        assert "warning" in err and bad.name in err
        assert "cloa+infonce" in out and "infonce" in out
    finally:
        bad.unlink()


# --- two Ray nodes on this machine ------------------------------------------------------------


def test_trials_land_on_both_nodes_of_a_two_node_cluster(tmp_path):
    import ray
    from ray.cluster_utils import Cluster

    from bench.sweep.grid import run_sweep

    shutdown_ray()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    try:
        cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, log_to_driver=False, logging_level=logging.WARNING)
        space = tiny_space("nodes", {"loss": ["infonce", "vicreg"], "seed": [0, 1]})
        outcome = run_sweep(space, storage=str(tmp_path), progress_every=0)
        node_ids = {n["NodeID"] for n in ray.nodes() if n["Alive"]}
    finally:
        ray.shutdown()
        cluster.shutdown()
    assert outcome.exit_code == 0, outcome.report()
    used = {t.node_id for t in outcome.trials}
    assert len(node_ids) == 2 and used == node_ids  # every trial ran, on both nodes
    df = read_results(tmp_path)
    assert one_row_per_key(df) and len(df) == 4 * 3  # 4 trials x 3 epochs x 1 fraction


# --- the driver killed with SIGKILL, then --resume ---------------------------------------------


def test_sweep_killed_mid_way_resumes_to_exactly_one_row_per_key(tmp_path):
    shutdown_ray()
    space_file = tmp_path / "killed.yaml"
    space_file.write_text(
        yaml.safe_dump(
            {
                "name": "killed",
                "base": TINY_BASE,
                "resources": {"cpu": 1},
                "retries": 1,
                "grid": {
                    "loss": ["infonce", "supcon"],
                    "lr": [0.01, 0.1],
                    "label_fraction": [0.1, 1.0],
                },
            }
        )
    )
    storage = tmp_path / "results"
    cmd = [
        sys.executable,
        "-m",
        "bench",
        "sweep",
        str(space_file),
        "--storage",
        str(storage),
        "--progress-every",
        "0",
    ]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    deadline = time.monotonic() + 180
    while not list(storage.glob("*/fragments/*/*.arrow")):
        assert proc.poll() is None, f"the sweep ended before any result: {proc.stdout.read()}"
        assert time.monotonic() < deadline, "no result fragment within 180 s"
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)  # the driver only: its Ray processes die with it
    proc.wait()
    assert proc.returncode == -signal.SIGKILL

    again = subprocess.run(cmd, capture_output=True, text=True)
    assert again.returncode == 2 and "--resume" in again.stderr  # never mixes silently

    resumed = subprocess.run([*cmd, "--resume"], capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "6 trials (6 done)" in resumed.stdout
    df = read_results(storage)
    assert one_row_per_key(df)
    last = df.sort_values("epoch").groupby("trial_id").tail(1)
    assert len(last) == 6 and set(last["status"]) == {"done"}
    # infonce: 2 trials x 3 epochs x 2 fractions; supcon: 4 trials x 3 epochs x 1 fraction
    assert len(df) == 2 * 3 * 2 + 4 * 3


# --- a fractional GPU share (skipped without CUDA) ----------------------------------------------


@pytest.mark.gpu
def test_two_trials_share_one_gpu(tmp_path):
    import ray
    import torch

    from bench.sweep.grid import run_sweep

    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    shutdown_ray()
    ray.init(
        address="local",
        num_cpus=2,
        num_gpus=1,
        include_dashboard=False,
        log_to_driver=False,
        logging_level=logging.WARNING,
    )
    try:
        space = tiny_space(
            "gpu", {"seed": [0, 1]}, base={"device": "cuda"}, resources={"cpu": 1, "gpu": 0.5}
        )
        outcome = run_sweep(space, storage=str(tmp_path), progress_every=0)
    finally:
        ray.shutdown()
    assert outcome.exit_code == 0, outcome.report()
    df = read_results(tmp_path)
    assert one_row_per_key(df) and len(df) == 2 * 3
    assert (df["device_name"] == torch.cuda.get_device_name()).all()


# --- experiments started before bench/sweep.py became a package ------------------------------


def test_objects_pickled_under_the_old_module_names_still_load(tmp_path):
    """A sweep started before the split pickled its callbacks and helpers as `bench.sweep.X`;
    `--resume` unpickles them (protocol 0 keeps the module path as plain text to rewrite)."""
    import pickle

    from bench.sweep.callbacks import ProgressCallback, StoreCallback
    from bench.sweep.session import trial_dirname

    store = StoreCallback(str(tmp_path), "s")
    del store.objectives, store.study  # attributes an old instance does not have
    for obj in (store, ProgressCallback(5, [3]), trial_dirname):
        old = pickle.dumps(obj, protocol=0)
        for module in (b"bench.sweep.callbacks", b"bench.sweep.session"):
            old = old.replace(module, b"bench.sweep")
        assert b"bench.sweep\n" in old
        again = pickle.loads(old)
        assert type(again) is type(obj) or again is obj
    restored = pickle.loads(pickle.dumps(store, protocol=0).replace(b"bench.sweep.callbacks",
                                                                     b"bench.sweep"))
    restored.setup()
    assert restored.objectives == () and restored.study is None


@pytest.mark.parametrize(
    "tune_status, last, word",
    [("TERMINATED", {"trial_status": "running", "epoch": 2}, "stopped early"),  # ASHA stopped it
     ("TERMINATED", {"trial_status": "diverged"}, "diverged"),
     ("TERMINATED", {"trial_status": "error", "config_error": "x"}, "error"),
     ("ERROR", {"trial_status": "running"}, "error"),
     ("RUNNING", None, "running"),
     ("PENDING", None, "pending")],
)  # fmt: skip
def test_the_progress_line_and_the_final_counts_name_a_trial_alike(tune_status, last, word):
    from types import SimpleNamespace

    from bench.sweep.callbacks import trial_state
    from bench.sweep.session import end_state

    assert trial_state(tune_status, last) == word
    if tune_status in ("TERMINATED", "ERROR"):
        result = SimpleNamespace(error=RuntimeError() if tune_status == "ERROR" else None,
                                 metrics=last)
        assert end_state(result, stopped="stopped early") == word
