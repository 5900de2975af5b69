"""Every trial that cannot be built fails before Ray starts: exit 2, one sentence, nothing written."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from bench.cli import main

TINY = """
base: {dataset: digits, backbone: mlp, mlp_hidden: [16], projector: [8], epochs: 1,
       batch_size: 64, probe_epochs: 1, device: cpu}
"""

CASES = {
    "class batches the labels cannot fill": (
        TINY + "grid: {loss: [simo], label_fraction: [0.1], batch_sampler: [class],"
        " classes_per_batch: [2]}\n",
        ["'classes_per_batch' has value 2", "32 samples of each class", "labelled samples"]),
    "more classes than embedding dimensions": (
        TINY + "grid: {loss: [cloa+infonce], label_fraction: [0.1]}\n",
        ["'cloa+infonce'", "num_classes (10) must be <= dim (8)"]),
    "a batch larger than the training set": (
        TINY.replace("batch_size: 64", "batch_size: 4096") + "grid: {loss: [infonce]}\n",
        ["'batch_size' is 4096", "training samples"]),
}


def _write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "bad.yaml"
    path.write_text("name: bad\n" + body)
    return path


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("dry_run", [True, False], ids=["dry-run", "launch"])
def test_unbuildable_trials_exit_2_before_ray(case, dry_run, tmp_path, capsys, monkeypatch):
    body, needles = CASES[case]
    path = _write(tmp_path, body)
    out = tmp_path / "results"
    # Ray must not even be imported: block it, so a launch that got past the check would crash.
    monkeypatch.setitem(sys.modules, "ray", None)
    args = ["sweep", str(path), "--storage", str(out)] + (["--dry-run"] if dry_run else [])
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("bench: error: ") and err.count("\n") == 1, err
    assert str(path) in err
    for needle in needles:
        assert needle in err, (needle, err)
    assert not out.exists()


def test_dry_run_says_what_it_built(tmp_path, capsys):
    path = _write(tmp_path, TINY + "grid: {loss: [infonce, supcon], lr: [0.1, 1], seed: [0, 1]}\n")
    assert main(["sweep", str(path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "preflight: 2 distinct trial build(s) checked for 8 trials." in out


def test_data_only_the_cluster_holds_is_skipped_at_dry_run(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("BENCH_DATA", str(tmp_path / "no-data-here"))
    path = _write(tmp_path, TINY.replace("digits", "cifar10") + "grid: {loss: [infonce]}\n")
    assert main(["sweep", str(path), "--dry-run"]) == 0
    assert "data-dependent checks skipped for cifar10" in capsys.readouterr().out
    # ... but a local launch needs the data here: it stops before Ray with the data error.
    assert main(["sweep", str(path), "--storage", str(tmp_path / "r")]) == 2
    assert "cifar10" in capsys.readouterr().err


TUNE = """name: badtune
base: {loss: infonce, dataset: digits, backbone: mlp, mlp_hidden: [16], projector: [8],
       epochs: 1, probe_epochs: 1, device: cpu, label_fraction: [0.1]}
search:
  params:
    lr: {dist: loguniform, low: 1.0e-3, high: 1}
    batch_size: {dist: int, low: 32, high: 4096, log: true}
  objective: {metric: knn_top1, label_fraction: 0.1}
  num_samples: 2
"""


@pytest.mark.parametrize("dry_run", [True, False], ids=["dry-run", "launch"])
def test_a_search_whose_range_reaches_an_unbuildable_trial_exits_2_before_ray(
    dry_run, tmp_path, capsys, monkeypatch
):
    path = tmp_path / "badtune.yaml"
    path.write_text(TUNE)
    out = tmp_path / "results"
    monkeypatch.setitem(sys.modules, "ray", None)
    args = ["tune", str(path), "--storage", str(out)] + (["--dry-run"] if dry_run else [])
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("bench: error: ") and err.count("\n") == 1, err
    assert str(path) in err and "'batch_size' is 4096" in err and "training samples" in err
    assert not out.exists()


def test_tune_dry_run_says_what_it_built(tmp_path, capsys):
    path = tmp_path / "tune.yaml"
    path.write_text(TUNE.replace("high: 4096", "high: 256"))
    assert main(["tune", str(path), "--dry-run"]) == 0
    assert "preflight: 2 distinct trial build(s) checked for 2 search corners." in (
        capsys.readouterr().out)


def test_search_corners_combine_the_ends_of_every_build_parameter_and_reach_only_stepped_ends():
    from bench.config import TrialConfig
    from bench.space.params import Param, corners

    base = TrialConfig(loss="infonce", dataset="digits")
    params = [Param("batch_size", "int", 32, 100, step=32),  # Optuna stops at 96, not 100
              Param("val_fraction", "uniform", 0.0, 0.2)]  # fmt: skip
    got = sorted((c.batch_size, c.val_fraction) for c in corners(base, params))
    assert got == [(32, 0.0), (32, 0.2), (96, 0.0), (96, 0.2)]


def test_a_searched_batch_size_must_stay_a_multiple_of_classes_per_batch(tmp_path, capsys):
    path = tmp_path / "classes.yaml"
    path.write_text(TUNE.replace("loss: infonce", "loss: supcon, batch_sampler: class, "
                                 "classes_per_batch: 4").replace("high: 4096, log: true",
                                                                 "high: 256"))  # fmt: skip
    assert main(["tune", str(path), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "'search.params.batch_size'" in err and "step: 4" in err, err


@pytest.mark.parametrize("dry_run", [True, False])
def test_preflight_downloads_only_where_a_launch_would(dry_run, monkeypatch):
    import bench.data
    from bench.config import TrialConfig
    from bench.preflight import check_trials

    seen = []
    real = bench.data.load_dataset

    def spy(name, **kwargs):
        seen.append(kwargs["download"])
        return real(name, **{**kwargs, "download": False})

    monkeypatch.setattr(bench.data, "load_dataset", spy)
    cfg = TrialConfig(loss="infonce", dataset="digits", download=True, device="cpu")
    check_trials([cfg], "x.yaml", skip_missing_data=dry_run)
    assert seen == [not dry_run]  # a dry run (or a cluster's driver) never downloads
