"""Driver-side Tune callbacks, the same for grid and search trials: the store callback and the
progress line.

`StoreCallback` turns each result into one immutable fragment, an Arrow IPC file (`bench.store
.FragmentWriter`: no buffer, so a crash of the driver loses nothing already reported) and
compacts a trial's fragments into Parquet when it ends. It runs in Tune's event loop, so it must
stay cheap: one small file per result. A retry or a restore may re-report an epoch; readers dedup on
(trial, epoch, label fraction) keeping the latest attempt, so the store ends with one row per
key. `ProgressCallback` prints one line every few seconds (done / running / pending / diverged /
error, ETA) and one line per failed attempt.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ray import tune

from bench.record import FINISHED
from bench.space.objective import Objective
from bench.sweep.session import format_clock, state_of
from bench.sweep.worker import TrialPlan, TrialStates, trial_key, trial_plan

_SHOWN = ("done", "diverged", "timeout", "error", "stopped early", "running", "pending")
_ENDED = (*FINISHED, "error", "stopped early")  # the progress line's


class _Stateless:
    """Ray pickles the callbacks into the experiment and reuses them on `Tuner.restore`
    ("only stateless callbacks are supported for resumed runs"): keep only configuration in the
    pickle and rebuild everything else in `setup()`, which runs at the start of every run."""

    _transient: tuple[str, ...] = ()

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k not in self._transient}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)


class _Plans:
    """Each Tune trial's `TrialPlan`, parsed once per trial rather than once per result."""

    def __init__(self, objectives: Sequence[Objective]) -> None:
        self.objectives = tuple(objectives)
        self.plans: dict[str, TrialPlan] = {}

    def __call__(self, trial: Any) -> TrialPlan:
        if trial.trial_id not in self.plans:
            self.plans[trial.trial_id] = trial_plan(trial.config, self.objectives)
        plan: TrialPlan = self.plans[trial.trial_id]
        return plan


class StoreCallback(_Stateless, tune.Callback):
    """Writes every reported result as one fragment (each run under its own store trial id,
    tagged with the `study` in a search); compacts a trial's runs when it ends."""

    _transient = ("_writer", "_states", "_provenance", "_plans")
    # Defaults for instances unpickled from an experiment started before they existed.
    objectives: tuple[Objective, ...] = ()
    study: str | None = None

    def __init__(
        self,
        storage: str,
        sweep_id: str,
        objectives: Sequence[Objective] = (),
        study: str | None = None,
    ) -> None:
        self.storage, self.sweep_id = storage, sweep_id
        self.objectives, self.study = tuple(objectives), study

    def setup(self, **info: Any) -> None:  # type: ignore[override]
        from bench.store import FragmentWriter, provenance

        self._writer = FragmentWriter(self.storage, self.sweep_id)
        self._states = TrialStates(f"{self.storage.rstrip('/')}/{self.sweep_id}")
        # Driver-side provenance (code version); host, device and start come from the worker.
        self._provenance = {
            k: v for k, v in provenance().items() if k not in ("hostname", "device_name")
        }
        self._plans = _Plans(self.objectives)

    def on_trial_result(
        self, iteration: int, trials: list[Any], trial: Any, result: dict[str, Any], **info: Any
    ) -> None:
        records = result.get("records")
        if not records:
            return
        plan, run = self._plans(trial), int(result.get("run", 0))
        prov = {**self._provenance, **(result.get("provenance") or {})}
        self._writer.write_records(
            records,
            cfg=plan.runs[run],
            attempt=trial.num_failures,
            provenance=prov,
            study=self.study,
            trial_id=plan.run_ids[run],
        )

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        plan = self._plans(trial)
        for run_id in plan.run_ids:
            self._writer.compact(run_id)
        # A finished trial needs no resumable state (a ResNet-50's is ~200 MB). Should the driver
        # die before Tune records the completion, the trial reruns from scratch: same rows.
        self._states.delete(plan.key)

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        for run_id in self._plans(trial).run_ids:
            self._writer.compact(run_id)  # its state stays: --resume continues it


def trial_state(tune_status: str, last_result: Mapping[str, Any] | None) -> str:
    """One word per trial (`session.state_of`, as the final counts say it); a trial Tune has
    not started, or restored but not yet rerun, is pending or unfinished."""
    if tune_status in ("RUNNING", "TERMINATED", "ERROR"):
        ended = tune_status != "RUNNING"
        return state_of(tune_status == "ERROR", ended, last_result, stopped="stopped early")
    return "pending" if not last_result else "unfinished"


def _key(trial: Any) -> str:
    """The trial's name in messages: its key (see `TrialPlan`)."""
    return trial_key(trial.config or {})


def _epochs(trial: Any) -> tuple[int, float]:
    """(epochs the trial plans, epochs it has done) over all its runs, from its flat config."""
    config = trial.config or {}
    planned = int(config.get("total_epochs") or (config.get("trial") or {}).get("epochs", 1))
    result = trial.last_result or {}
    done = result.get("progress_epochs", result.get("epoch", 0)) or 0
    return planned, min(planned, done)


def _error_line(trial: Any) -> str:
    """Last line of the trial's error file (the exception), else a generic word."""
    path = getattr(trial, "error_file", None)
    try:
        text = Path(path).read_text() if path else ""
    except OSError:
        text = ""
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else "error"


class ProgressCallback(_Stateless, tune.Callback):
    """One line every `every` seconds: counts by state and an ETA from epochs done per second."""

    _transient = ("_t0", "_last", "_base")

    def __init__(self, every: float, planned_epochs: Sequence[int] = ()) -> None:
        self.every = every
        # Tune creates trial objects lazily (200 pending at a time), so the sweep's own trial
        # list is what the totals count; trials Tune has not created yet are pending.
        self.planned_epochs = list(planned_epochs)

    def setup(self, **info: Any) -> None:  # type: ignore[override]
        self._t0 = self._last = time.monotonic()
        self._base: float | None = None  # epochs already done when this run started

    def on_step_end(self, iteration: int, trials: list[Any], **info: Any) -> None:
        now = time.monotonic()
        if self.every > 0 and now - self._last >= self.every:
            self._last = now
            print(self.line(trials, now), flush=True)

    def on_trial_recover(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        epoch = (trial.last_result or {}).get("epoch", 0)
        print(
            f"trial {_key(trial)} failed after epoch {epoch} ({_error_line(trial)}); retry "
            f"{trial.num_failures} resumes from its last checkpoint",
            flush=True,
        )

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        print(f"trial {_key(trial)} failed for good ({_error_line(trial)})", flush=True)

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        error = (trial.last_result or {}).get("config_error")
        if error:
            print(f"trial {_key(trial)}: config error, not retried ({error})", flush=True)

    def on_experiment_end(self, trials: list[Any], **info: Any) -> None:
        if self.every > 0:
            print(self.line(trials, time.monotonic()), flush=True)

    def line(self, trials: list[Any], now: float) -> str:
        counts: Counter[str] = Counter()
        done_epochs = 0.0
        total = 0.0
        for t in trials:
            state = trial_state(str(t.status), t.last_result)
            counts[state if state in _SHOWN else "pending"] += 1
            planned, done = _epochs(t)
            total += planned
            ended = state in _ENDED
            done_epochs += planned if ended else done
        unseen = self.planned_epochs[len(trials) :]
        counts["pending"] += len(unseen)
        total += sum(unseen)
        if self._base is None:
            self._base = done_epochs
        elapsed = now - self._t0
        rate = (done_epochs - self._base) / elapsed if elapsed > 0 else 0.0
        eta = format_clock((total - done_epochs) / rate) if rate > 0 else "--:--"
        finished = sum(counts[s] for s in _ENDED)
        stopped = f", {counts['stopped early']} stopped early" if counts["stopped early"] else ""
        return (
            f"[{format_clock(elapsed)}] {finished}/{max(len(trials), len(self.planned_epochs))} "
            "trials finished: "
            f"{counts['done']} done, {counts['diverged']} diverged, {counts['timeout']} timeout, "
            f"{counts['error']} error{stopped} | {counts['running']} running, "
            f"{counts['pending']} pending"
            f" | ETA {eta}"
        )
