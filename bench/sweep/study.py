"""The Optuna side of `bench tune`, the one module that imports Optuna: the study database, the
study itself, the sampler, the searched distributions and the best trials. No Ray here, so
`bench tune --dry-run` needs none.

The study lives in an Optuna RDB database (default `sqlite:///<storage>/<name>.db`, beside the
results) created with the study name from the YAML. `--resume` reloads it and runs the trials
still missing to reach `num_samples`; trials a dead driver left RUNNING are marked FAIL first.
The sampler (seeded TPE for one objective, NSGA-II for several) is seeded with
`sampler_seed + trials already in the study`, so a resumed study does not replay its first
suggestions. `optuna-dashboard <URL>` opens the database.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial as FrozenTrial  # re-exported: the search's trial type
from optuna.trial import TrialState

from bench.space.params import Param
from bench.space.search import TunePlan, best_yaml

Storage = optuna.storages.BaseStorage


class StudyError(ValueError):
    """The study database cannot be used as asked (the CLI exits 2, nothing is changed)."""

    user_error = True


# --- the database ------------------------------------------------------------------------------


def default_study_db(storage: str, study: str) -> str:
    """`sqlite:///<storage>/<study>.db` (absolute) for a local results root."""
    if "://" in storage:
        raise StudyError(
            f"the results storage {storage!r} is not a local folder, so the study "
            "database cannot default to an SQLite file beside it; pass --study-db "
            "with an Optuna RDB URL (e.g. postgresql://user@host/optuna)."
        )
    return "sqlite:///" + os.path.abspath(os.path.join(storage, f"{study}.db"))


def is_database_url(text: str) -> bool:
    """Whether `text` names a database (what `--study-db` takes), not a results root."""
    scheme = text.partition("://")[0].split("+")[0].lower() if "://" in text else ""
    return scheme in ("sqlite", "postgresql", "postgres", "mysql", "mariadb", "oracle", "mssql")


def shown_url(url: str) -> str:
    """The URL with any password masked, for messages, YAML headers and sweep.json."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url


def sqlite_file(url: str) -> Path | None:
    """The database file of an SQLite URL (None for other databases)."""
    if not url.startswith("sqlite:"):
        return None
    try:
        from sqlalchemy.engine import make_url

        database = make_url(url).database
    except Exception as exc:
        raise StudyError(
            f"study database {shown_url(url)!r} cannot be parsed ({_first_line(exc)}); "
            "write sqlite:////abs/path/study.db."
        ) from None
    if not database or database == ":memory:":
        raise StudyError(
            f"study database {shown_url(url)!r} names no database file; an in-memory "
            "study cannot be resumed, so write sqlite:////abs/path/study.db."
        )
    return Path(database)


def open_storage(url: str, *, must_exist: bool = False) -> optuna.storages.RDBStorage:
    """Open (creating if needed) an Optuna RDB storage; every failure is one StudyError."""
    if not isinstance(url, str) or "://" not in url:
        raise StudyError(
            f"study database {shown_url(url)!r} is not a database URL; give an Optuna "
            "RDB URL such as sqlite:////abs/path/study.db or "
            "postgresql://user@host/db."
        )
    path = sqlite_file(url)
    if path is not None:
        if must_exist and not path.exists():
            raise StudyError(
                f"--resume was given but the study database {path} does not exist; "
                "run without --resume to start the study."
            )
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StudyError(
                f"study database {shown_url(url)!r} cannot be opened: the folder "
                f"{path.parent} cannot be created ({exc.strerror})."
            ) from None
    try:
        return optuna.storages.RDBStorage(url)
    except Exception as exc:
        raise StudyError(
            f"study database {shown_url(url)!r} cannot be opened as an Optuna database "
            f"({type(exc).__name__}: {_first_line(exc)}); check the URL, the "
            "database driver and that the server is reachable."
        ) from None


def _first_line(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return lines[0].rstrip(".") if lines else type(exc).__name__


# --- the study ---------------------------------------------------------------------------------


def quiet() -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)


def prepare(
    plan: TunePlan,
    storage: optuna.storages.RDBStorage,
    *,
    resume: bool,
    results_error: StudyError | None,
) -> int:
    """Check the study against `resume` and the objectives (raising before any change), then
    create it or fail its stale trials. `results_error`: raised when a new study would mix with
    results already in the store. Returns how many trials the study had."""
    exists = plan.name in [s.study_name for s in storage.get_all_studies()]
    objectives = [o.as_dict() for o in plan.objectives]
    if exists and not resume:
        raise StudyError(
            f"study {plan.name!r} already exists in {shown_url(storage.url)}; pass "
            "--resume to continue it, or rename the YAML's 'name' (or use another "
            "--study-db)."
        )
    if resume and not exists:
        raise StudyError(
            f"--resume was given but {shown_url(storage.url)} holds no study "
            f"{plan.name!r}; run without --resume to start it."
        )
    if not exists and results_error is not None:
        raise results_error
    if exists:
        study = load(plan, storage)
        before = study.user_attrs.get("bench_objectives")
        if before is not None and before != objectives:
            raise StudyError(
                f"the objective in {plan.space.source} differs from the one study "
                f"{plan.name!r} was created with ({before}); resume with that "
                "objective or start a new study under another name."
            )
        stale = [t for t in study.trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
        for t in stale:  # one driver per study: RUNNING means an earlier driver died
            study.tell(t.number, state=TrialState.FAIL)
        if stale:
            print(
                f"marked {len(stale)} trial(s) left running by an earlier driver as failed",
                flush=True,
            )
        return len(study.trials)
    directions: list[Any] = ["maximize" if o.mode == "max" else "minimize" for o in plan.objectives]
    study = optuna.create_study(storage=storage, study_name=plan.name, directions=directions)
    study.set_user_attr("bench_objectives", objectives)
    study.set_user_attr("bench_space", os.path.abspath(plan.space.source))
    return 0


def load(plan: TunePlan, storage: optuna.storages.BaseStorage) -> optuna.Study:
    return optuna.load_study(study_name=plan.name, storage=storage)


def finished(study: optuna.Study) -> int:
    """Trials that count towards `num_samples`: complete or pruned."""
    return sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in study.trials)


def state_counts(study: optuna.Study) -> dict[str, int]:
    return dict(Counter(t.state.name.lower() for t in study.trials))


def sampler(plan: TunePlan, seed: int) -> optuna.samplers.BaseSampler:
    """The search algorithm: seeded TPE for one objective, NSGA-II for several."""
    if plan.multi:
        return optuna.samplers.NSGAIISampler(population_size=plan.population_size, seed=seed)
    return optuna.samplers.TPESampler(n_startup_trials=plan.startup_trials, seed=seed)


def distribution(param: Param) -> optuna.distributions.BaseDistribution:
    d = optuna.distributions
    if param.dist == "choice":
        return d.CategoricalDistribution(param.values)
    assert param.low is not None and param.high is not None  # a range (bench.space.search)
    if param.dist == "int":
        return d.IntDistribution(
            int(param.low), int(param.high), log=param.log, step=int(param.step or 1)
        )
    return d.FloatDistribution(
        float(param.low), float(param.high), log=param.dist == "loguniform", step=param.step
    )


def prune(study: optuna.Study, trial: optuna.Trial) -> None:
    """Tell the study that `trial` was stopped early (by ASHA): PRUNED, not complete."""
    study.tell(trial, state=TrialState.PRUNED)


# --- the best configuration(s) ----------------------------------------------------------------


def best_trials(study: optuna.Study) -> list[FrozenTrial]:
    """The best complete trial, or the Pareto front (sorted by trial number) of several
    objectives; [] when no trial has completed."""
    if not any(t.state == TrialState.COMPLETE for t in study.trials):
        return []
    if len(study.directions) > 1:
        return sorted(study.best_trials, key=lambda t: t.number)
    return [study.best_trial]


def write_best(
    plan: TunePlan,
    study: optuna.Study,
    best: Sequence[FrozenTrial],
    *,
    out: str | Path,
    study_db: str,
) -> list[str]:
    """Write `<out>/<study>-best.yaml`: the best trial, or for several objectives the front
    member best on the first one, plus `<study>-best-pareto-tNNNN.yaml` per front member."""
    path = Path(out) / f"{plan.name}-best.yaml"
    first = plan.objectives[0]
    pick = (max if first.mode == "max" else min)(best, key=lambda t: t.values[0])
    targets = [(path, pick)]
    if plan.multi:
        targets += [(path.with_name(f"{path.stem}-pareto-t{t.number:04d}.yaml"), t) for t in best]
    written = []
    for target, trial in targets:
        text = best_yaml(
            plan, trial.number, trial.params, trial.values, target, len(study.trials), study_db
        )
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        written.append(str(target))
    return written
