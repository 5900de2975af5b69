"""`bench sweep`: run a search space's grid on Ray Tune, every epoch streamed to the Parquet store.

Shape of a sweep:
- one trial per `TrialConfig` of the grid (`bench.space.expand`), given as
  `param_space={"trial": grid_search([flat configs])}`; FIFO (early stopping would truncate
  stability curves); the trainable, its saved state and its retries: `bench.sweep.worker`;
- per-trial resources from the YAML via `tune.with_resources`; a fractional GPU share also caps
  the trial's CUDA memory;
- `--resume` restores a sweep whose driver died (`Tuner.restore`), continuing unfinished and
  errored trials from their saved state;
- a driver-side callback writes each result as one fragment and compacts a trial when it ends
  (`bench.sweep.callbacks`); when the sweep ends, all its trials' files are merged into one;
- a progress line every few seconds.

Layout under `<storage>/<sweep_id>/`: the store's `sweep.json`, `fragments/`, `trials/`,
`merged/`; `_checkpoints/<trial_id>.pt` (resumable state of unfinished trials) and Ray's
experiment directory `_ray/<sweep_id>/` ("_" keeps both out of the store's readers). On a
multi-node cluster `storage` must be shared (S3, GCS, NFS): workers save trial states there, and
the driver writes the results there.

An exception in a trial (CUDA OOM, a lost node, a bug) fails the attempt; after `retries`
attempts the trial is "error" and the sweep exits 1, listing each such trial and its error's
last line. A config error found while building a trial (a `ConfigError`) is "error" at once,
without retries (bench.sweep.worker).
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ray import tune

from bench.config import TrialConfig
from bench.record import FINISHED
from bench.space import Space, expand
from bench.space import sweep_id as make_sweep_id
from bench.sweep import session
from bench.sweep.callbacks import ProgressCallback, StoreCallback
from bench.sweep.session import format_clock, sweep_paths
from bench.sweep.worker import FAIL_ONCE_ENV, Runtime, bench_trial, trial_plan


class SweepExistsError(ValueError):
    """The sweep already has results and --resume was not given (the CLI exits 2)."""

    user_error = True


@dataclass(frozen=True)
class TrialOutcome:
    trial_id: str
    config: TrialConfig
    state: str  # done | diverged | timeout | error | unfinished | pending
    epochs: int
    error: str | None = None  # last line of the error, for "error"
    node_id: str | None = None  # Ray node of the last result


@dataclass(frozen=True)
class SweepOutcome:
    sweep_id: str
    sweep_dir: str
    trials: tuple[TrialOutcome, ...]
    wall_s: float
    resumed: bool = False
    counts: dict[str, int] = field(default_factory=dict)
    merged: str | None = None  # the one file holding the sweep's rows once it ended

    @property
    def failed(self) -> list[TrialOutcome]:
        return [t for t in self.trials if t.state not in FINISHED]

    @property
    def exit_code(self) -> int:
        """0 when every trial ended done, diverged or timeout; 1 otherwise."""
        return 1 if self.failed else 0

    def report(self) -> str:
        counts = ", ".join(f"{n} {s}" for s, n in self.counts.items() if n)
        lines = [
            f"sweep {self.sweep_id}: {len(self.trials)} trials ({counts}) in "
            f"{format_clock(self.wall_s)}; results in {self.sweep_dir}"
        ]
        errored = [t for t in self.trials if t.state == "error"]
        if errored:
            lines.append(
                f"{len(errored)} trial(s) failed (a config error at once, a fault after "
                "its retries):"
            )
            for t in errored:
                c = t.config
                lines.append(
                    f"  {t.trial_id} ({c.loss}, lr={c.lr:g}, batch_size={c.batch_size}, "
                    f"seed={c.seed}, dataset={c.dataset}): {t.error}"
                )
        other = [t for t in self.trials if t.state not in FINISHED and t.state != "error"]
        if other:
            lines.append(f"{len(other)} trial(s) did not finish; continue with --resume.")
        if not self.failed:
            lines.append(f"summary: bench results {self.sweep_dir}")
        return "\n".join(lines)


def run_sweep(
    space: Space,
    *,
    storage: str,
    address: str | None = None,
    resume: bool = False,
    num_cpus: int | None = None,
    progress_every: float = 5.0,
    verbose: bool = False,
    plugins: Sequence[str] = (),
    trials: Sequence[TrialConfig] | None = None,
) -> SweepOutcome:
    """Run (or with `resume`, continue) the sweep of `space`; results go to `<storage>/<sweep_id>`.

    `storage` is an absolute local path or a pyarrow filesystem URI. Starts an embedded local
    Ray unless Ray is already initialised or `address` names a cluster. Raises
    `SweepExistsError` if the sweep already has results and `resume` is False. When the sweep
    ends, its trials' files are merged into one (`SweepOutcome.merged`).
    """
    from bench.store import write_sweep_meta

    t0 = time.monotonic()
    trials = list(expand(space) if trials is None else trials)
    sid = make_sweep_id(space, trials)
    sweep_dir, _, experiment = sweep_paths(storage, sid)
    exists = session.has_results(storage, sid)
    if exists and not resume:
        raise SweepExistsError(
            f"sweep {sid} already has results in {sweep_dir}; pass --resume to continue it "
            "(finished trials are kept), or choose another --storage."
        )
    with session.ray_session(address, num_cpus, verbose):
        restore = resume and tune.Tuner.can_restore(experiment)
        if not exists:
            write_sweep_meta(storage, sid, _meta(space, trials, storage))
        if progress_every > 0:
            verb = "resuming" if restore else "starting"
            print(
                f"{verb} sweep {sid}: {len(trials)} trials on {session.where(address)} -> "
                f"{sweep_dir}",
                flush=True,
            )
        runtime = Runtime(
            sweep_dir=sweep_dir, resources=space.resources,
            checkpoint_every=space.checkpoint_every, plugins=tuple(plugins),
            fail_once_dir=os.environ.get(FAIL_ONCE_ENV) or None,
        )  # fmt: skip
        tuner = _tuner(
            space, trials, sid, storage, runtime, progress_every, experiment if restore else None
        )
        outcomes = _outcomes(tuner.fit())
    merged = session.compact(storage, sid)
    counts = session.counts(o.state for o in outcomes)
    return SweepOutcome(
        sid, sweep_dir, tuple(outcomes), time.monotonic() - t0, restore, counts, merged
    )


def _tuner(
    space: Space,
    trials: Sequence[TrialConfig],
    sid: str,
    storage: str,
    runtime: Runtime,
    progress_every: float,
    restore_from: str | None,
) -> tune.Tuner:
    """A fresh Tuner for the sweep, or the one restored from `restore_from` (its experiment dir).

    A restored Tuner keeps the original run config and callbacks (unpickled from the
    experiment); the trainable, and with it `runtime`, is always the current one. The param
    space is passed again: Tune does not store it, and a driver killed before its first
    experiment snapshot leaves nothing else to rebuild the trials from.
    """
    trainable = session.bind(bench_trial, runtime, session.trial_resources(space.resources, trials))
    param_space = {"trial": tune.grid_search([t.to_flat() for t in trials])}
    if restore_from is not None:
        return tune.Tuner.restore(
            restore_from,
            trainable,
            param_space=param_space,
            resume_unfinished=True,
            resume_errored=True,
        )
    callbacks: list[tune.Callback] = [
        StoreCallback(storage, sid),
        ProgressCallback(progress_every, [t.epochs for t in trials]),
    ]
    return session.make_tuner(
        trainable,
        name=sid,
        storage=storage,
        sweep_id=sid,
        space=space,
        callbacks=callbacks,
        param_space=param_space,
        max_concurrent=space.max_concurrent,
    )


def _outcomes(result_grid: Any) -> list[TrialOutcome]:
    out = []
    for r in result_grid:
        plan = trial_plan(r.config)
        metrics = r.metrics or {}
        error = metrics.get("config_error")
        if r.error is not None:
            lines = [ln.strip() for ln in str(r.error).strip().splitlines() if ln.strip()]
            error = lines[-1] if lines else type(r.error).__name__
        out.append(
            TrialOutcome(
                plan.key,
                plan.cfg,
                session.end_state(r),
                int(metrics.get("epoch") or 0),
                error,
                metrics.get("node_id"),
            )
        )
    return out


def _meta(space: Space, trials: Sequence[TrialConfig], storage: str) -> dict[str, Any]:
    return session.sweep_meta(
        space, n_trials=len(trials), storage=storage, ray_experiment=f"{session.RAY_DIR}/",
        trials=[{"trial_id": t.trial_id(), **t.to_flat()} for t in trials],
        total_epochs=sum(t.epochs for t in trials), retries=space.retries,
        resources={"cpu": space.resources.cpu, "gpu": space.resources.gpu},
    )  # fmt: skip
