"""`bench tune`: the search section, the objective, the persisted study, and searches on Ray
(bench/space/search.py, bench/space/objective.py, bench/sweep/search.py, bench/sweep/study.py).

The Ray tests run tiny `synthetic_subspaces` trials (an MLP of width 32, 3 epochs, 256 training
points) of the example plugin loss (examples/my_loss.py) on one local Ray instance for the whole
module; Ray's and the workers' start-up dominate. The bad-input tests need no Ray: validation
happens before the study database is opened.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import optuna
import pytest
import yaml
from tiny_trial import TINY_BASE as TINY

from bench.cli import main
from bench.config import ConfigError
from bench.losses import load_plugin
from bench.space import expand, load_space
from bench.space.objective import Objective, objective_values, plan_runs, record_value
from bench.space.search import load_plan
from bench.store import read_results
from bench.sweep.search import run_tune
from bench.sweep.study import best_trials

PLUGIN = Path(__file__).resolve().parents[1] / "examples" / "my_loss.py"


@pytest.fixture(scope="module", autouse=True)
def plugin_loss():
    """infonce_ortho registered for this module only: registry-wide tests elsewhere (contract
    tests parametrized over `list_losses()`) must not see it, whatever the test order."""
    from bench.losses import _registry, plugins

    names = load_plugin(PLUGIN)
    yield
    for name in names:
        _registry.unregister(name)
    plugins._LOADED.pop(str(PLUGIN.resolve()), None)

TINY_BASE = {"loss": "infonce_ortho", **TINY}
TINY_SEARCH = {
    "params": {"lr": {"dist": "loguniform", "low": 0.01, "high": 1.0},
               "loss_params.temperature": {"dist": "uniform", "low": 0.1, "high": 1.0}},
    "objective": {"metric": "knn_top1"},
    "num_samples": 4,
    "startup_trials": 2,  # trials 2 and 3 come from the TPE model, not the random start-up
    "asha": {"grace_period": 1, "reduction_factor": 2},
    "sweep": {"grid": {"lr": [0.01, 0.1], "seed": [0]}},
}


def write_yaml(folder: Path, name: str, search: dict | None = None, base: dict | None = None,
               **top) -> Path:
    merged = {k: v for k, v in {**TINY_BASE, **(base or {})}.items() if v is not None}
    data = {"name": name, "base": merged, "resources": {"cpu": 1},
            "retries": 1, **top, "search": search if search is not None else TINY_SEARCH}
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def with_search(**changes) -> dict:
    search = {**TINY_SEARCH, **changes}
    return {k: v for k, v in search.items() if v is not None}


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


def trial_rows_unique(df) -> bool:
    return not df.duplicated(["sweep_id", "trial_id", "epoch", "label_fraction"]).any()


# --- the objective (pure) ---------------------------------------------------------------------


def test_runs_cover_the_trial_lr_and_the_stability_lrs_once():
    from bench.config import TrialConfig

    cfg = TrialConfig(lr=0.1)
    metric = Objective("metric", "m_knn_top1", "max", 1.0)
    stable = Objective("stability", "m_knn_top1", "max", 1.0, lrs=(0.01, 0.1, 1.0))
    assert [r.lr for r in plan_runs(cfg, [metric])] == [0.1]
    assert [r.lr for r in plan_runs(cfg, [stable])] == [0.01, 0.1, 1.0]
    assert [r.lr for r in plan_runs(cfg.replace(lr=0.5), [metric, stable])] == [0.5, 0.01, 0.1, 1.0]


def test_divergence_scores_the_sentinel_and_missing_values_carry_forward():
    acc = Objective("metric", "m_knn_top1", "max", 0.1)
    rec = {"label_fraction": 0.1, "status": "running", "m_knn_top1": 0.7}
    other = {"label_fraction": 1.0, "status": "running", "m_knn_top1": 0.9}
    assert record_value([other, rec], acc) == 0.7
    assert record_value([{**rec, "m_knn_top1": math.nan}], acc, last=0.6) == 0.6  # not evaluated
    assert record_value([{**rec, "status": "diverged", "m_knn_top1": math.nan}], acc, 0.6) == 0.0
    assert Objective("metric", "m_knn_top1", "min", 0.1).worst == 1.0
    assert Objective("metric", "m_loss", "min", 0.1).worst > 1e3
    stable = Objective("stability", "m_knn_top1", "max", 0.1, lrs=(0.01, 1.0))
    scores = [{acc.key: 0.8, stable.key: 0.8}, {acc.key: None, stable.key: None}]
    values = objective_values([acc, stable], [0.01, 1.0], scores, trial_lr=0.01)
    assert values == {acc.key: 0.8, stable.key: 0.4}  # a run without a value scores 0


# --- bad input: one sentence, exit 2, the study untouched -------------------------------------


@pytest.fixture()
def existing_study(tmp_path):
    """A study database holding study 'bad' with two finished trials (made with Optuna only)."""
    db = tmp_path / "results" / "bad.db"
    db.parent.mkdir()
    study = optuna.create_study(study_name="bad", storage=sqlite_url(db), direction="maximize")
    study.set_user_attr("bench_objectives", [])
    for value in (0.5, 0.6):
        trial = study.ask()
        trial.suggest_float("lr", 0.01, 1.0, log=True)
        study.tell(trial, value)
    return db


BAD_SEARCHES = {
    "unknown distribution": (
        with_search(params={"lr": {"dist": "logunifrom", "low": 0.01, "high": 1}}),
        ["'search.params.lr.dist'", "'logunifrom'", "did you mean 'loguniform'"]),
    "low >= high": (
        with_search(params={"lr": {"dist": "uniform", "low": 1.0, "high": 0.1}}),
        ["'search.params.lr'", "low 1 >= high 0.1"]),
    "log range touching 0": (
        with_search(params={"lr": {"dist": "loguniform", "low": 0.0, "high": 1}}),
        ["'search.params.lr.low'", "value 0", "above 0"]),
    "log int range touching 0": (
        with_search(params={"warmup_epochs": {"dist": "int", "low": 0, "high": 3, "log": True}}),
        ["'search.params.warmup_epochs.low'", "value 0"]),
    "metric trials do not report": (
        with_search(objective={"metric": "knn_top3"}),
        ["'search.objective.metric'", "'knn_top3'", "do not report", "m_knn_top1"]),
    "probe metric without probes": (
        with_search(objective={"metric": "linear_top1"}, asha=None),
        ["'search.objective.metric'", "'linear_top1'", "probe_epochs is 0"]),
    "unknown loss parameter": (
        with_search(params={"loss_params.temprature": {"dist": "uniform", "low": 0.1,
                                                        "high": 1}}),
        ["'search.params.loss_params.temprature'", "did you mean 'loss_params.temperature'"]),
    "a range reaching an invalid value": (
        with_search(params={"momentum": {"dist": "uniform", "low": 0.5, "high": 1.5}}),
        ["'search.params.momentum'", "value 1.5", "in [0, 1)"]),
    "asha with two objectives": (
        with_search(objective=[{"metric": "knn_top1"}, {"metric": "z_rankme", "mode": "max"}]),
        ["'search.asha'", "multi-objective"]),
    "an accuracy objective without a validation split": (
        with_search(objective={"metric": "knn_top1"}),
        ["'search.objective.metric'", "'knn_top1'", "validation", "val_fraction"]),
    "missing mode of a non-accuracy metric": (
        with_search(objective={"metric": "h_rankme"}, asha=None),
        ["'search.objective.mode'", "None"]),
}


@pytest.mark.parametrize("case", sorted(BAD_SEARCHES))
def test_bad_search_exits_2_with_one_sentence_and_leaves_the_study(case, existing_study, tmp_path,
                                                                   capsys):
    search, needles = BAD_SEARCHES[case]
    base = {"probe metric without probes": {"probe_epochs": 0},
            "an accuracy objective without a validation split": {"val_fraction": 0.0}}.get(case)
    space = write_yaml(tmp_path / "spaces", "bad", search, base=base)
    before = existing_study.read_bytes()
    code = main(["tune", str(space), "--plugin", str(PLUGIN), "--resume",
                 "--storage", str(existing_study.parent), "--progress-every", "0"])
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert err.startswith("bench: error: ") and "\n" not in err
    assert str(space) in err
    for needle in needles:
        assert needle in err, (needle, err)
    assert existing_study.read_bytes() == before
    assert len(optuna.load_study(study_name="bad", storage=sqlite_url(existing_study)).trials) == 2


def test_an_existing_study_needs_resume_and_a_missing_one_cannot_be_resumed(existing_study,
                                                                            tmp_path, capsys):
    space = write_yaml(tmp_path / "spaces", "bad")
    before = existing_study.read_bytes()
    results = str(existing_study.parent)
    assert main(["tune", str(space), "--storage", results, "--progress-every", "0"]) == 2
    err = capsys.readouterr().err
    assert "study 'bad' already exists" in err and "pass --resume" in err
    assert existing_study.read_bytes() == before
    other = write_yaml(tmp_path / "spaces", "never_started")
    assert main(["tune", str(other), "--storage", results, "--study-db",
                 sqlite_url(existing_study), "--resume", "--progress-every", "0"]) == 2
    assert "holds no study 'never_started'" in capsys.readouterr().err
    assert existing_study.read_bytes() == before


@pytest.mark.parametrize("url, needle", [
    ("not a url", "is not a database URL"),
    ("notadb://host/x", "cannot be opened as an Optuna database"),
    ("sqlite:////proc/bench-tune-test/x.db", "cannot be created"),
    ("sqlite://", "names no database file"),
    ("TEXT", "cannot be opened as an Optuna database"),
])
def test_a_study_db_that_cannot_be_opened_exits_2(url, needle, tmp_path, capsys):
    if url == "TEXT":  # a file that is not a database
        text = tmp_path / "notes.db"
        text.write_text("not sqlite\n" * 100)
        url = sqlite_url(text)
    space = write_yaml(tmp_path / "spaces", "tiny")
    results = tmp_path / "results"
    code = main(["tune", str(space), "--study-db", url, "--storage", str(results),
                 "--progress-every", "0"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and needle in err and "\n" not in err, err
    assert f"study database {url!r}" in err
    assert not results.exists()  # nothing written: not the store, not a database


@pytest.mark.parametrize("source, needle", [
    ("def broken(:\n", "syntax error"),
    ("import torch\nX = 1\n", "registers no loss"),
    ("from torch import nn\nfrom bench.losses import register_loss\n\n"
     "@register_loss('infonce')\nclass Mine(nn.Module):\n    def forward(self, z1, z2, labels=None):\n"
     "        return (z1 - z2).pow(2).mean()\n", "clashes with the built-in loss"),
])
def test_plugin_files_with_errors_exit_2(source, needle, tmp_path, capsys):
    plugin = tmp_path / f"plugin_{abs(hash(source))}.py"
    plugin.write_text(source)
    space = write_yaml(tmp_path / "spaces", "tiny")
    code = main(["tune", str(space), "--plugin", str(plugin), "--dry-run"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and needle in err and str(plugin) in err, err
    from bench.losses import loss_info

    assert loss_info("infonce").source == "built-in"  # the clash did not replace it


def test_dry_run_prints_the_plan_and_opens_no_database(tmp_path, capsys):
    space = write_yaml(tmp_path / "spaces", "tiny")
    assert main(["tune", str(space), "--storage", str(tmp_path / "r"), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "loguniform [0.01, 1]" in out and "ASHA on epoch" in out
    assert f"sqlite:///{tmp_path / 'r' / 'tiny.db'}" in out
    assert not (tmp_path / "r").exists()


def test_example_space_and_plugin_validate():
    root = Path(__file__).resolve().parents[1]
    plan = load_plan(root / "search_spaces" / "tune_example.yaml")
    assert plan.base.loss == "infonce_ortho" and plan.asha is not None
    assert {p.name for p in plan.params} >= {"lr", "loss_params.ortho_weight"}


def test_grid_in_a_tune_yaml_is_refused(tmp_path):
    path = write_yaml(tmp_path, "g", grid={"lr": [0.1, 1]})
    with pytest.raises(ConfigError, match="key 'grid' is not used by bench tune"):
        load_plan(path)


# --- searches on Ray ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def local_ray():
    import ray

    if ray.is_initialized():
        ray.shutdown()
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
             logging_level=logging.WARNING)
    yield
    ray.shutdown()


def search(folder: Path, name: str, search_section: dict, **kwargs):
    space = write_yaml(folder / "spaces", name, search_section, max_concurrent=kwargs.pop(
        "max_concurrent", 1))
    plan = load_plan(space)
    results = str(folder / "results")
    outcome = run_tune(plan, storage=results,
                       study_db=sqlite_url(folder / "results" / f"{name}.db"),
                       progress_every=0, plugins=[str(PLUGIN)], **kwargs)
    return space, plan, results, outcome


@pytest.fixture(scope="module")
def twin_studies(local_ray, tmp_path_factory):
    """The same TPE + ASHA search, run as two fresh studies in two folders."""
    return [search(tmp_path_factory.mktemp(f"twin{i}"), "tiny", TINY_SEARCH) for i in range(2)]


def suggestions(results: str, name: str) -> list[tuple[int, dict]]:
    study = optuna.load_study(study_name=name, storage=sqlite_url(Path(results) / f"{name}.db"))
    return [(t.number, t.params) for t in study.trials]


@pytest.mark.ray
def test_a_search_completes_and_repeats_its_suggestions_with_the_same_seed(twin_studies):
    (_, _, res_a, out_a), (_, _, res_b, out_b) = twin_studies
    assert out_a.exit_code == 0 and out_b.exit_code == 0, out_a.report()
    assert len(suggestions(res_a, "tiny")) == 4
    assert suggestions(res_a, "tiny") == suggestions(res_b, "tiny")
    study = optuna.load_study(study_name="tiny", storage=sqlite_url(Path(res_a) / "tiny.db"))
    states = {t.number: t.state for t in study.trials}
    assert set(states.values()) <= {optuna.trial.TrialState.COMPLETE,
                                    optuna.trial.TrialState.PRUNED}
    df = read_results(f"{res_a}/tiny")
    assert trial_rows_unique(df) and set(df["study"]) == {"tiny"}
    assert set(df["trial_id"]) == {f"tiny-t{n:04d}" for n in states}
    for t in study.trials:  # Optuna holds what the store holds
        rows = df[df["trial_id"] == f"tiny-t{t.number:04d}"].sort_values("epoch")
        assert rows["p_lr"].iloc[0] == pytest.approx(t.params["lr"])
        if t.state == optuna.trial.TrialState.COMPLETE:
            assert rows["final"].iloc[-1] and rows["epoch"].iloc[-1] == 3
            # Scored on the validation hold-out, never on test.
            assert t.value == pytest.approx(rows["m_val_knn_top1"].iloc[-1])
        else:  # stopped by ASHA before its last epoch
            assert rows["epoch"].max() < 3 and not rows["final"].any()


@pytest.mark.ray
def test_resume_continues_the_study_and_the_written_yaml_runs(twin_studies, capsys):
    space, _, results, _ = twin_studies[0]
    before = suggestions(results, "tiny")
    common = ["tune", str(space), "--storage", results, "--plugin", str(PLUGIN),
              "--progress-every", "0"]
    assert main([*common, "--resume", "--num-samples", "6"]) == 0, capsys.readouterr()
    after = suggestions(results, "tiny")
    assert len(after) == 6 and after[:4] == before
    assert all(p not in [q for _, q in before] for _, p in after[4:])  # no replayed suggestion
    df = read_results(f"{results}/tiny")
    assert trial_rows_unique(df) and df["trial_id"].nunique() == 6
    out = capsys.readouterr().out
    best = Path(results) / "tiny-best.yaml"
    assert f"wrote {best}" in out and "best trial" in out
    # Nothing left to run: --resume only reports the best again (here into the folder --out).
    winners = Path(results) / "winners"
    assert main([*common, "--resume", "--out", str(winners)]) == 0
    assert len(suggestions(results, "tiny")) == 6
    assert f"bench sweep {winners / 'tiny-best.yaml'}" in (winners / "tiny-best.yaml").read_text()
    capsys.readouterr()
    # The written sweep expands (the winner's temperature fixed, the grid from search.sweep).
    trials = expand(load_space(best))
    study = optuna.load_study(study_name="tiny", storage=sqlite_url(Path(results) / "tiny.db"))
    temperature = study.best_trial.params["loss_params.temperature"]
    assert sorted(t.lr for t in trials) == [0.01, 0.1]
    assert all(t.loss_params == {"temperature": temperature} for t in trials)
    assert main(["sweep", str(best), "--plugin", str(PLUGIN), "--dry-run"]) == 0


@pytest.mark.ray
def test_multi_objective_stability_search_returns_a_pareto_front(local_ray, tmp_path):
    # Stability over lr {0.05, 1e30}: the huge lr diverges at once and must score 0.
    section = {
        "params": {"loss_params.temperature": {"dist": "uniform", "low": 0.1, "high": 1.0},
                   "batch_size": {"dist": "choice", "values": [32, 64]}},
        "objective": [{"metric": "knn_top1"},
                      {"stability": {"metric": "knn_top1", "lrs": [0.05, 1.0e30]}}],
        "num_samples": 3,
        "sweep": {"grid": {"lr": [0.05, 0.5], "seed": [0]}},
    }
    space = write_yaml(tmp_path / "spaces", "multi", section, base={"lr": 0.05, "batch_size": None},
                       max_concurrent=2)
    plan = load_plan(space)
    results = str(tmp_path / "results")
    outcome = run_tune(plan, storage=results, study_db=sqlite_url(tmp_path / "m.db"),
                       progress_every=0, plugins=[str(PLUGIN)])
    assert outcome.exit_code == 0, outcome.report()
    study = optuna.load_study(study_name="multi", storage=sqlite_url(tmp_path / "m.db"))
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) == 3
    front = best_trials(study)
    assert front and outcome.best == tuple(front)

    def dominates(a, b):
        return all(x >= y for x, y in zip(a.values, b.values)) and a.values != b.values

    assert not any(dominates(t, f) for t in complete for f in front)
    df = read_results(f"{results}/multi")
    assert trial_rows_unique(df) and set(df["study"]) == {"multi"}
    for t in complete:
        ok = df[df["trial_id"] == f"multi-t{t.number:04d}-lr0.05"]
        bad = df[df["trial_id"] == f"multi-t{t.number:04d}-lr1e+30"]
        assert bad["status"].iloc[-1] == "diverged" and bad["final"].iloc[-1]
        # Objectives are scored on the validation hold-out (m_val_*), never on test.
        final = ok[ok["final"]]["m_val_knn_top1"].iloc[0]
        assert t.values[0] == pytest.approx(final)  # the metric at the trial's own lr
        assert t.values[1] == pytest.approx(final / 2)  # mean with the diverged lr's 0
    written = [Path(p) for p in outcome.written]
    assert written[0].name == "multi-best.yaml"
    assert len(written) == 1 + len(front)  # one file per Pareto trial
    for path in written:
        assert len(expand(load_space(path))) == 2


@pytest.mark.ray
def test_a_config_error_in_a_search_trial_is_failed_in_the_study_and_never_the_best(
        local_ray, tmp_path):
    """Every trial asks for a batch larger than the training set (the launch path's preflight
    would refuse this YAML; run_tune is called directly, as a worker-only error would reach it):
    each ends "error" without retries, Optuna records FAIL, no winner is written."""
    params = {"lr": {"dist": "loguniform", "low": 0.01, "high": 1.0},
              "batch_size": {"dist": "choice", "values": [4096]}}
    space = write_yaml(tmp_path / "spaces", "cfgerr", with_search(params=params, num_samples=2),
                       base={"batch_size": None}, max_concurrent=1)
    results = str(tmp_path / "results")
    outcome = run_tune(load_plan(space), storage=results,
                       study_db=sqlite_url(tmp_path / "results" / "cfgerr.db"),
                       progress_every=0, plugins=[str(PLUGIN)])
    study = optuna.load_study(study_name="cfgerr", storage=sqlite_url(Path(results) / "cfgerr.db"))
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.FAIL] * 2
    assert outcome.counts == {"error": 2} and not outcome.best and outcome.exit_code == 1
    assert not outcome.written
