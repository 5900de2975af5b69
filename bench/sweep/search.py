"""`bench tune`: a persisted Optuna search over one loss's settings, run by Ray Tune.

How the pieces fit (the YAML: `bench.space.search`; the objective and its scores:
`bench.space.objective`; the study: `bench.sweep.study`):
- Ray Tune's OptunaSearch, wrapped so that each suggestion becomes a whole trial config (`key`
  `<study>-tNNNN` from the Optuna trial number, its runs' epochs), with the study's sampler;
  metric and mode lists go to the searcher, not to TuneConfig, for several objectives.
  `max_concurrent_trials` is always set (else one trial is pending at a time): as many as fit
  on the cluster, or the YAML's `max_concurrent`.
- ASHA (`time_attr="epoch"`) stops weak trials early for a single final-metric objective. A
  scheduler takes one metric, so multi-objective searches run FIFO; so do stability searches,
  whose score exists only once every lr has run (early stopping on a partial mean would compare
  unlike quantities). Trials stopped by ASHA are told to Optuna as PRUNED (their last reported
  value kept as intermediate), never as complete trials scored at an early epoch.
- The trainable, the callbacks and the Ray session are the grid's (`bench.sweep.worker`,
  `callbacks`, `session`): every epoch of every run streams to the Parquet store
  `<storage>/<name>/`, rows tagged with the study (`study` column), one store trial id per run
  (`<study>-t0007`, or `<study>-t0007-lr0.1` for each lr of a stability objective).
- At the end the best trial (or the Pareto front) is printed and written as a sweep YAML
  (`<out>/<name>-best.yaml`) that benchmarks the winner over `search.sweep`'s grid.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ray.tune.schedulers import ASHAScheduler
from ray.tune.search.optuna import OptunaSearch

from bench.config import TrialConfig, show_value
from bench.space.objective import Objective, plan_runs
from bench.space.params import apply_params
from bench.space.search import TunePlan
from bench.sweep import session, study
from bench.sweep.callbacks import ProgressCallback, StoreCallback
from bench.sweep.session import format_clock, sweep_paths
from bench.sweep.study import FrozenTrial, Storage, StudyError
from bench.sweep.worker import Runtime, TrialStates, bench_trial


@dataclass(frozen=True)
class TuneOutcome:
    study: str
    study_db: str
    results_dir: str
    new_trials: int
    counts: dict[str, int]
    best: tuple[FrozenTrial, ...]
    written: tuple[str, ...]
    objectives: tuple[Objective, ...]
    study_counts: dict[str, int]
    wall_s: float
    plugins: tuple[str, ...] = ()

    @property
    def exit_code(self) -> int:
        """0 when the study has a best trial and no trial of this run errored."""
        return 1 if not self.best or self.counts.get("error") else 0

    def report(self) -> str:
        run = ", ".join(f"{n} {s}" for s, n in self.counts.items() if n) or "nothing to run"
        trials = ", ".join(f"{n} {s}" for s, n in self.study_counts.items() if n)
        lines = [
            f"study {self.study}: {sum(self.study_counts.values())} trials ({trials}); this "
            f"run: {self.new_trials} trials ({run}) in {format_clock(self.wall_s)}"
        ]
        if not self.best:
            lines.append("no trial has completed yet, so there is no best configuration.")
        elif len(self.objectives) > 1:
            lines.append(f"Pareto front: {len(self.best)} trial(s)")
        for t in self.best:
            values = ", ".join(
                f"{o.describe()} = {v:.4g}" for o, v in zip(self.objectives, t.values)
            )
            lines.append(
                f"{'  ' if len(self.objectives) > 1 else ''}best trial {t.number}: {values}"
            )
            lines.append(f"    {', '.join(f'{k}={show_value(v)}' for k, v in t.params.items())}")
        plug = "".join(f" --plugin {p}" for p in self.plugins)
        for path in self.written:
            lines.append(f"wrote {path}; benchmark it with: bench sweep {path}{plug}")
        lines.append(f"results: {self.results_dir} (bench results {self.results_dir})")
        lines.append(f"study database: {self.study_db} (optuna-dashboard {self.study_db})")
        return "\n".join(lines)


def run_tune(
    plan: TunePlan,
    *,
    storage: str,
    study_db: str,
    resume: bool = False,
    address: str | None = None,
    num_cpus: int | None = None,
    num_samples: int | None = None,
    out: str | Path | None = None,
    progress_every: float = 5.0,
    verbose: bool = False,
    plugins: Sequence[str] = (),
) -> TuneOutcome:
    """Run (or with `resume`, continue) the study of `plan` until it has `num_samples` finished
    trials; print nothing but progress; write the winner's sweep YAML into the folder `out`
    (default: `storage` when it is local, else the current folder). `storage` is the results
    root (an absolute local path or a pyarrow filesystem URI), `study_db` the Optuna database
    URL; raises StudyError on a study/storage mismatch."""
    from bench.store import write_sweep_meta

    t0 = time.monotonic()
    if not verbose:
        study.quiet()
    sweep_dir = sweep_paths(storage, plan.name)[0]
    exists = session.has_results(storage, plan.name)
    clash = StudyError(
        f"results of an earlier study {plan.name!r} are already in {sweep_dir}; "
        "remove them, or use another --storage or another 'name'."
    )
    db_file = study.sqlite_file(study_db)
    if exists and not resume and db_file is not None and not db_file.exists():
        raise clash  # checked before a new database file is created
    db = study.open_storage(study_db, must_exist=resume)
    before = study.prepare(plan, db, resume=resume, results_error=clash if exists else None)
    shown = study.shown_url(study_db)
    if not exists:
        write_sweep_meta(
            storage,
            plan.name,
            session.sweep_meta(
                plan.space,
                kind="tune",
                study=plan.name,
                study_storage=shown,
                objectives=[o.as_dict() for o in plan.objectives],
            ),
        )
    target = plan.num_samples if num_samples is None else num_samples
    todo = max(0, target - study.finished(study.load(plan, db)))
    counts: dict[str, int] = {}
    if todo:
        counts = _search(
            plan,
            db,
            before,
            todo,
            storage=storage,
            address=address,
            num_cpus=num_cpus,
            progress_every=progress_every,
            verbose=verbose,
            plugins=plugins,
        )
    elif progress_every > 0:
        print(
            f"study {plan.name} already has {study.finished(study.load(plan, db))} finished "
            f"trials (num_samples {target}); pass --num-samples to run more",
            flush=True,
        )
    trials = study.load(plan, db)
    best = study.best_trials(trials)
    folder = out if out is not None else (storage if "://" not in storage else Path.cwd())
    written = study.write_best(plan, trials, best, out=folder, study_db=shown) if best else ()
    return TuneOutcome(
        plan.name,
        shown,
        sweep_dir,
        todo,
        counts,
        tuple(best),
        tuple(written),
        plan.objectives,
        study.state_counts(trials),
        time.monotonic() - t0,
        tuple(plugins),
    )


def _search(
    plan: TunePlan,
    db: Storage,
    before: int,
    todo: int,
    *,
    storage: str,
    address: str | None,
    num_cpus: int | None,
    progress_every: float,
    verbose: bool,
    plugins: Sequence[str],
) -> dict[str, int]:
    """One Ray Tune experiment of `todo` trials on the study; returns the trials' end states."""
    sweep_dir = sweep_paths(storage, plan.name)[0]
    with session.ray_session(address, num_cpus, verbose):
        space = plan.space
        concurrency = min(todo, space.max_concurrent or session.slots(space.resources, plan.base))
        if progress_every > 0:
            print(
                f"{'resuming' if before else 'starting'} study {plan.name}: {todo} trials, "
                f"{concurrency} at a time, on {session.where(address)} -> {sweep_dir}",
                flush=True,
            )
        runtime = Runtime(
            sweep_dir, space.resources, space.checkpoint_every, tuple(plugins), plan.objectives
        )
        resources = space.resources
        if resources.gpu_from_batch_size and any(p.name == "batch_size" for p in plan.params):
            res: Any = session.PerTrialResources(resources)
        else:
            res = session.ray_resources(resources.for_trial(plan.base))
        tuner = session.make_tuner(
            session.bind(bench_trial, runtime, res),
            name=f"run-{time.strftime('%Y%m%d-%H%M%S')}-{before}", storage=storage,
            sweep_id=plan.name, space=space, max_concurrent=concurrency,
            callbacks=[StoreCallback(storage, plan.name, plan.objectives, study=plan.name),
                       ProgressCallback(progress_every)],
            search_alg=_searcher(plan, db, before), scheduler=_scheduler(plan), num_samples=todo,
        )  # fmt: skip
        grid: Any = tuner.fit()  # a ResultGrid: iterable, though not typed so
        # No trial runs any more: drop every resumable state (a trial stopped by ASHA, or left
        # by a driver that died, never deletes its own).
        TrialStates(sweep_dir).clear()
    session.compact(storage, plan.name)
    return session.counts(session.end_state(r, stopped="stopped early") for r in grid)


def _scheduler(plan: TunePlan) -> ASHAScheduler | None:
    if plan.asha is None:
        return None
    a, objective = plan.asha, plan.objectives[0]
    return ASHAScheduler(
        time_attr="epoch",
        metric=objective.key,
        mode=objective.mode,
        max_t=a.max_t,
        grace_period=a.grace_period,
        reduction_factor=a.reduction_factor,
    )


def _searcher(plan: TunePlan, db: Storage, before: int) -> StudySearch:
    objectives = plan.objectives
    return StudySearch(
        plan=plan,
        space={p.name: study.distribution(p) for p in plan.params},
        metric=[o.key for o in objectives] if plan.multi else objectives[0].key,
        mode=[o.mode for o in objectives] if plan.multi else objectives[0].mode,
        # Seeded past the trials already in the study: a resumed study must not replay them.
        sampler=study.sampler(plan, plan.sampler_seed + before),
        study_name=plan.name, storage=db,
    )  # fmt: skip


class StudySearch(OptunaSearch):
    """OptunaSearch whose suggestions are whole trial configs, and which tells Optuna that a
    trial stopped early by ASHA was PRUNED rather than complete at an early epoch, and that a
    trial ended by a config error FAILED."""

    def __init__(self, *, plan: TunePlan, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._plan_name, self._plan_base = plan.name, plan.base
        self._objectives = tuple(plan.objectives)

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        params = super().suggest(trial_id)
        if params is None:
            return None
        cfg: TrialConfig = apply_params(self._plan_base, params)
        number = self._ot_trials[trial_id].number
        return {
            "trial": cfg.to_flat(),
            "params": dict(params),
            "number": number,
            "key": f"{self._plan_name}-t{number:04d}",
            "total_epochs": sum(r.epochs for r in plan_runs(cfg, self._objectives)),
        }

    def on_trial_complete(
        self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False
    ) -> None:
        status = (result or {}).get("trial_status")
        if status == "error":
            # A config error (bench.sweep.worker) FAILED, never COMPLETE with the worst score:
            # it must not become the best trial. OptunaSearch records FAIL only without values.
            super().on_trial_complete(trial_id, None, error=True)
            return
        stopped = not error and result is not None and status == "running"
        if stopped and trial_id in self._ot_trials and trial_id not in self._completed_trials:
            assert self._ot_study is not None  # set up before any trial is suggested
            study.prune(self._ot_study, self._ot_trials[trial_id])
            self._completed_trials.add(trial_id)
            return
        super().on_trial_complete(trial_id, result, error)
