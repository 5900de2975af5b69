"""Search-space YAML -> trials (bench/space/): counts, grouping, per-loss grids, validation, and
`bench sweep --dry-run`. No Ray, no training: fast."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from bench.cli import main
from bench.config import ConfigError
from bench.space import (
    describe,
    expand,
    expansion_stats,
    grid_points,
    load_space,
    parse_space,
    sweep_id,
)

SPACES = Path(__file__).resolve().parents[1] / "search_spaces"
# Trial counts of the shipped search spaces: a changed grid must change this table on purpose.
EXPECTED = {
    "demo.yaml": (1344, 672),
    "cloa_cifar10.yaml": (1260, 420),
    "cloa_cifar10_projector.yaml": (378, 126),
    "cloa_cifar100.yaml": (252, 84),
    "cloa_collapse_synthetic.yaml": (700, 350),
    "cloa_collapse_digits.yaml": (700, 350),
    "cloa_collapse_ablations.yaml": (288, 144),
    "cloa_collapse_temperature.yaml": (108, 54),
    "cloa_collapse_weight.yaml": (120, 60),
    "clop_collapse.yaml": (560, 280),
    "clop_stability.yaml": (588, 588),
    "simo_cifar10.yaml": (54, 54),
    "synthetic_collapse.yaml": (800, 400),
    "tune_example.yaml": (1, 1),  # a `bench tune` space: no grid; needs examples/my_loss.py
}
PLUGINS = {"tune_example.yaml": SPACES.parent / "examples" / "my_loss.py"}


def write(tmp_path: Path, text: str, name: str = "space.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def space(**sections):
    return parse_space({"name": "t", **sections}, source="t.yaml")


# --- expansion ----------------------------------------------------------------------------------


def test_full_factorial_counts_and_order():
    s = space(
        base={"epochs": 2},
        grid={
            "loss": ["supcon", "simo"],
            "lr": [0.1, 1.0],
            "batch_size": [64, 128],
            "seed": [0, 1],
        },
    )
    points = grid_points(s)
    assert len(points) == 16
    # the first grid key varies slowest, as in the YAML
    assert [p.loss for p in points[:8]] == ["supcon"] * 8
    assert {(p.lr, p.batch_size, p.seed) for p in points} == {
        (lr, bs, seed) for lr in (0.1, 1.0) for bs in (64, 128) for seed in (0, 1)
    }
    assert all(p.epochs == 2 for p in points)
    assert len(expand(s)) == 16  # label-using losses, one fraction: nothing to group


def test_label_free_losses_evaluate_all_fractions_in_one_trial():
    s = space(
        grid={"loss": ["infonce", "supcon"], "label_fraction": [1.0, 0.1, 0.5], "seed": [0, 1]}
    )
    trials = expand(s)
    infonce = [t for t in trials if t.loss == "infonce"]
    supcon = [t for t in trials if t.loss == "supcon"]
    assert len(infonce) == 2 and all(t.label_fractions == (0.1, 0.5, 1.0) for t in infonce)
    assert sorted(t.seed for t in infonce) == [0, 1]  # seeds never merge
    assert len(supcon) == 6 and all(len(t.label_fractions) == 1 for t in supcon)
    stats = expansion_stats(s, trials)
    assert (stats.grid_points, stats.trials, stats.merged_label_free, stats.merged_capped) == (
        12,
        8,
        4,
        0,
    )


def test_capped_label_losses_group_by_effective_pretraining_fraction():
    s = space(
        base={"pretrain_label_fraction": 0.1},
        grid={"loss": ["cloa+infonce"], "label_fraction": [0.05, 0.1, 0.5, 1.0]},
    )
    trials = expand(s)
    assert sorted(t.label_fractions for t in trials) == [(0.05,), (0.1, 0.5, 1.0)]
    assert {t.pretrain_fraction for t in trials} == {0.05, 0.1}
    assert expansion_stats(s, trials).merged_capped == 2


def test_loss_param_grid_multiplies_only_that_loss():
    s = space(
        grid={"loss": ["infonce", "vicreg", "cloa+infonce"], "lr": [0.1, 1.0]},
        loss_params={
            "infonce": {"temperature": [0.1, 0.2, 0.5]},
            "cloa+infonce": {"addon_weight": 0.5},
        },
    )
    trials = expand(s)
    by_loss = {
        name: [t for t in trials if t.loss == name]
        for name in ("infonce", "vicreg", "cloa+infonce")
    }
    assert len(by_loss["infonce"]) == 6
    assert {t.loss_params["temperature"] for t in by_loss["infonce"]} == {0.1, 0.2, 0.5}
    assert len(by_loss["vicreg"]) == 2 and all(t.loss_params == {} for t in by_loss["vicreg"])
    assert all(t.loss_params == {"addon_weight": 0.5} for t in by_loss["cloa+infonce"])


def test_per_dataset_settings_and_grid_over_any_key():
    s = space(
        base={"backbone": "mlp", "epochs": 3},
        grid={"dataset": ["digits", "synthetic_subspaces"], "mlp_hidden": [[32], [64, 64]]},
        per_dataset={"synthetic_subspaces": {"dataset_params": {"k": 4}, "epochs": 7}},
    )
    trials = expand(s)
    assert len(trials) == 4
    synth = [t for t in trials if t.dataset == "synthetic_subspaces"]
    assert all(t.dataset_params == {"k": 4} and t.epochs == 7 for t in synth)
    assert all(t.epochs == 3 and t.dataset_params == {} for t in trials if t.dataset == "digits")
    assert {t.mlp_hidden for t in trials} == {(32,), (64, 64)}


def test_time_budget_and_run_settings():
    s = space(
        grid={"lr": [0.1]},
        time_budget_s=60,
        retries=0,
        max_concurrent=3,
        checkpoint_every=2,
        resources={"cpu": 2, "gpu": 0.5, "gpu_from_batch_size": {1024: 1.0}},
    )
    (t,) = expand(s)
    assert t.time_budget_s == 60
    assert (s.retries, s.max_concurrent, s.checkpoint_every) == (0, 3, 2)
    assert s.resources.for_trial(t) == {"cpu": 2.0, "gpu": 0.5}
    assert s.resources.for_trial(t.replace(batch_size=2048)) == {"cpu": 2.0, "gpu": 1.0}


def test_sweep_id_is_stable_and_follows_the_trial_list():
    a = space(grid={"loss": ["infonce", "dcl"], "lr": [0.1, 1.0]})
    b = space(grid={"lr": [1.0, 0.1], "loss": ["dcl", "infonce"]}, description="same trials")
    c = space(grid={"loss": ["infonce", "dcl"], "lr": [0.1, 2.0]})
    assert sweep_id(a, expand(a)) == sweep_id(b, expand(b)) == a.sweep_id
    assert sweep_id(a, expand(a)) != sweep_id(c, expand(c))
    assert a.sweep_id.startswith("t-") and len(a.sweep_id) == len("t-") + 8


def test_yaml_reads_exponents_without_a_dot_as_floats(tmp_path):
    path = write(
        tmp_path,
        """
        name: exp
        grid:
          loss: [infonce]
          lr: [1e-3, 3E-1, 1, 2.5]
        """,
    )
    s = load_space(path)
    assert dict(s.grid)["lr"] == (0.001, 0.3, 1, 2.5)
    assert [t.lr for t in expand(s)] == [0.001, 0.3, 1, 2.5]


def test_describe_reports_grid_and_grouping():
    s = space(grid={"loss": ["infonce", "supcon"], "label_fraction": [0.1, 1.0]})
    text = describe(s)
    assert (
        "4 grid points -> 3 trials (1 saved: 1 by evaluating label fractions of label-free "
        "losses in one trial)" in text
    )
    assert "label_fraction  0.1, 1" in text and s.sweep_id in text


# --- validation: one sentence naming the file, the key and the value ----------------------------

BAD = [
    ("name: x\ngrdi: {lr: [0.1]}\n", ["unknown top-level key 'grdi'", "did you mean 'grid'"]),
    ("name: x\nbase: {epoch: 3}\n", ["'base.epoch'", "did you mean 'epochs'"]),
    ("name: x\ngrid: {learning_rate: [0.1]}\n", ["'grid.learning_rate'"]),
    ("name: x\ngrid: {loss: [infonse]}\n", ["'grid.loss'", "'infonse'", "did you mean 'infonce'"]),
    ("name: x\ngrid: {lr: [0.1, -0.5]}\n", ["'grid.lr'", "-0.5", "positive"]),
    ("name: x\ngrid: {lr: [0]}\n", ["'grid.lr'", "value 0;"]),
    ("name: x\ngrid: {label_fraction: [0.5, 1.5]}\n", ["'grid.label_fraction'", "1.5", "(0, 1]"]),
    ("name: x\ngrid: {label_fraction: [0]}\n", ["'grid.label_fraction'", "value 0;"]),
    ("name: x\nresources: {gpu: 2}\n", ["'resources.gpu'", "value 2;"]),
    ("name: x\ngrid: {lr: []}\n", ["grid key 'lr'", "[]"]),
    ("name: x\ngrid: {}\n", ["'grid'", "non-empty"]),
    (
        "name: x\ngrid: {loss: [infonce]}\nloss_params: {infonce: {temprature: [0.1]}}\n",
        ["'loss_params.infonce.temprature'", "did you mean 'temperature'"],
    ),
    (
        "name: x\ngrid: {loss: [infonce]}\nloss_params: {vicreg: {eps: 1.0e-4}}\n",
        ["'loss_params.vicreg'", "not in the sweep"],
    ),
    (
        "name: x\ngrid: {loss: [cloa+infonce]}\nloss_params: {cloa+infonce: {reduction: mean}}\n",
        ["'loss_params.cloa+infonce.reduction'", "value 'mean'", "'batch', 'labelled' or 'sum'"],
    ),
    (
        "name: x\ngrid: {loss: [infonce]}\nloss_params: {infonce: {temperature: [0.1, -1]}}\n",
        ["'loss_params.infonce.temperature'", "value -1", "> 0"],
    ),
    (
        "name: x\nbase: {batch_sampler: class, classes_per_batch: 8}\n"
        "grid: {loss: [simo, infonce]}\n",
        ["'base.batch_sampler'", "value 'class'", "'infonce' uses no labels"],
    ),
    (
        "name: x\nbase: {batch_sampler: class, classes_per_batch: 5, batch_size: 64}\n",
        ["'base.classes_per_batch'", "value 5", "divisor of batch_size (64)"],
    ),
    ("name: x\ngrid: {dataset: [digit]}\n", ["'grid.dataset'", "'digit'", "did you mean 'digits'"]),
    ("name: x\nbase: {label_fractions: [0.1]}\n", ["'base.label_fractions'", "'label_fraction'"]),
    ("name: x\nbase: {batch_size: 1}\n", ["'base.batch_size'", "value 1;"]),
    ("name: x\ngrid: {batch_size: [64, 1]}\n", ["'grid.batch_size'", "value 1;"]),
    ("name: x\nbase: {optimizer: adam}\n", ["'base.optimizer'", "'adam'"]),
    ("name: x\nbase: {lr: 0.1}\ngrid: {lr: [0.2]}\n", ["'lr'", "both"]),
    ("name: x\nretries: -1\n", ["'retries'", "-1"]),
    ("name: x\nbase: {dataset_params: {kk: 3}}\n", ["'base.dataset_params.kk'", "'digits'"]),
    ("name: 'a b'\n", ["'name'", "'a b'"]),
    ("name: x\ngrid: {loss: [cloa]}\n", ["'grid.loss'", "'cloa'", "add-on term"]),
    ("name: x\ngrid: {loss: [infonce+cloa]}\n", ["'grid.loss'", "'cloa+infonce'"]),
    ("name: x\nbase: {backbone: resnet19}\n", ["'base.backbone'", "'resnet19'"]),
    (
        "name: x\nbase: {dataset: synthetic_subspaces, augment: simclr}\n",
        ["'base.augment'", "'simclr'", "vectors"],
    ),
    ("name: x\nbase: {val_fraction: 0.5}\n", ["'base.val_fraction'", "0.5", "[0, 0.5)"]),
    ("name: x\ngrid: {val_fraction: [0.1, -0.2]}\n", ["'grid.val_fraction'", "-0.2"]),
    ("name: x\nbase: {probe_features: whitened}\n", ["'base.probe_features'", "'whitened'"]),
    ("name: x\nbase: {probe_optimizer: lbfgs}\n", ["'base.probe_optimizer'", "'lbfgs'"]),
    ("name: x\nbase: {probe_lr: -1}\n", ["'base.probe_lr'", "-1"]),
    ("name: x\nbase: {probe_batch_size: 0}\n", ["'base.probe_batch_size'", "value 0;"]),
    (
        "name: x\nper_dataset: {cifar10: {epochs: 3}}\n",
        ["'per_dataset.cifar10'", "not in the sweep"],
    ),
]


@pytest.mark.parametrize(("text", "needles"), BAD, ids=[b[1][0] for b in BAD])
def test_bad_input_is_one_sentence_naming_file_key_and_value(tmp_path, text, needles):
    path = write(tmp_path, text, "bad.yaml")
    with pytest.raises(ConfigError) as info:
        load_space(path)
    msg = str(info.value)
    assert msg.startswith(str(path)), msg
    assert "\n" not in msg, msg
    for needle in needles:
        assert needle in msg, msg


def test_unparsable_yaml_names_the_file_and_line(tmp_path):
    path = write(tmp_path, "name: x\ngrid:\n  lr: [0.1, 0.2\n  loss: [infonce]\n", "broken.yaml")
    with pytest.raises(ConfigError, match=r"broken\.yaml line \d+: cannot parse the YAML"):
        load_space(path)


def test_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="no such search-space file"):
        load_space(tmp_path / "nope.yaml")


def test_gpu_share_that_does_not_divide_one_gpu_warns():
    s = space(resources={"cpu": 1, "gpu": 0.3})
    assert len(s.warnings) == 1 and "resources.gpu is 0.3" in s.warnings[0]
    assert space(resources={"gpu": 0.25}).warnings == ()


# --- the shipped search spaces ------------------------------------------------------------------


def test_every_search_space_expands_to_its_expected_trial_count():
    files = sorted(p.name for p in SPACES.glob("*.yaml"))
    assert files == sorted(EXPECTED), "a search space was added or removed: update EXPECTED"
    from bench.losses import load_plugin

    for name, (points, trials) in EXPECTED.items():
        if name in PLUGINS:
            load_plugin(PLUGINS[name])  # idempotent; plugins stay registered, as in a CLI run
        stats = expansion_stats(load_space(SPACES / name))
        assert (stats.grid_points, stats.trials) == (points, trials), name


def test_demo_space_covers_every_loss_dataset_and_axis():
    from bench.losses import list_losses, loss_info

    s = load_space(SPACES / "demo.yaml")
    trials = expand(s)
    losses = {t.loss for t in trials}
    built_in = {n for n in list_losses() if loss_info(n).source == "built-in"}
    assert built_in <= losses
    assert {"cloa+infonce", "clop+infonce", "cloa+vicreg", "clop+vicreg"} <= losses
    assert {t.dataset for t in trials} == {"digits", "synthetic_subspaces"}
    lrs = {t.lr for t in trials}
    assert min(lrs) == pytest.approx(1e-3) and max(lrs) == pytest.approx(3)
    assert len({t.batch_size for t in trials}) == 2
    assert len({f for t in trials for f in t.label_fractions}) == 2
    assert all(t.backbone == "mlp" for t in trials)


# --- `bench sweep --dry-run` and bad input through the CLI --------------------------------------


def test_dry_run_prints_counts_and_writes_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = write(
        tmp_path,
        """
        name: dry
        grid: {loss: [infonce, supcon], label_fraction: [0.1, 1.0]}
        """,
    )
    assert main(["sweep", str(path), "--dry-run", "--storage", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "4 grid points -> 3 trials" in out and "sweep id dry-" in out
    assert not (tmp_path / "out").exists() and not (tmp_path / "results").exists()


@pytest.mark.parametrize("dry_run", [True, False])
def test_bad_addon_reduction_exits_2_before_ray(tmp_path, capsys, dry_run):
    path = write(
        tmp_path,
        "name: bad\ngrid: {loss: [clop+infonce]}\n"
        "loss_params: {clop+infonce: {reduction: [labelled, per_sample]}}\n",
        "bad.yaml",
    )
    out = tmp_path / "out"
    argv = ["sweep", str(path), "--storage", str(out)] + (["--dry-run"] if dry_run else [])
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "'loss_params.clop+infonce.reduction'" in err and "'per_sample'" in err
    assert err.count("\n") == 1 and not out.exists()


def test_bad_space_exits_2_and_writes_nothing(tmp_path, capsys):
    path = write(tmp_path, "name: bad\ngrid: {lr: [-1]}\n", "bad.yaml")
    out = tmp_path / "out"
    assert main(["sweep", str(path), "--storage", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("bench: error: ") and "bad.yaml" in err and "'grid.lr'" in err
    assert err.count("\n") == 1
    assert not out.exists()
