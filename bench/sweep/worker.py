"""What runs in a Ray worker: one trainable for grid and search trials, and its saved state.

A Tune trial runs one or more `run_trial` runs (a grid trial one; a search trial one per lr its
objectives need, `bench.space.objective.plan_runs`), reports once per finished epoch with that
epoch's records (all label fractions), then saves its state (`TrialStates`). A retry
(`FailureConfig(max_failures=retries)`) or a sweep resumed after its driver died continues from
the saved state: finished runs are not rerun and the running one resumes at its last finished
epoch. `tune.report` returns only once the driver has processed the result (function trainables
report synchronously), so a saved state implies that its epoch's rows are in the store:
resuming never skips a row. Divergence and timeouts are results, not failures: the trainable
returns normally; an exception fails the attempt. A `ConfigError` while building a run (bad
config, caught on the driver by `bench.preflight` unless its data lives only on the workers) ends
the trial as "error" at once, with its sentence in the result's `config_error`: no retries. Any
other error (data missing on this node, a failed download, no CUDA) fails the attempt: retried.

Test hook: `BENCH_FAIL_ONCE=<dir>` (read by the grid driver) makes the trial whose key names a
file in `<dir>` raise once, right after saving the epoch written in that file; the file is
deleted first, so the retry must resume from the saved state.
"""

from __future__ import annotations

import contextlib
import io
import os
import socket
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ray import tune

from bench.config import ConfigError, TrialConfig
from bench.record import FINISHED
from bench.space import Resources
from bench.space.objective import (
    Objective,
    objective_values,
    plan_runs,
    record_value,
    run_suffix,
)
from bench.sweep.session import current_node_id

CHECKPOINTS = "_checkpoints"  # under the sweep dir: one resumable state per unfinished trial
FAIL_ONCE_ENV = "BENCH_FAIL_ONCE"


class TrialStates:
    """The latest resumable state of each trial: `<sweep_dir>/_checkpoints/<key>.pt`.

    Why not Tune's own checkpoints: Tune deletes a trial's older checkpoint as soon as it
    registers a newer one but records that in the experiment state only at its next snapshot, so
    a driver killed in between leaves a state pointing at a deleted checkpoint and `--resume`
    fails with "Could not recover from checkpoint as it does not exist on storage anymore"
    (reproduced with SIGKILL on ray 2.60). Here the worker itself replaces one file per trial
    atomically (`bench.store.layout.publish`: rename locally, single PUT on object stores), after
    the epoch's result was reported; and no experiment snapshot is forced per epoch.
    """

    def __init__(self, sweep_dir: str) -> None:
        from bench.store import resolve_storage

        self.fs, self.root = resolve_storage(f"{sweep_dir}/{CHECKPOINTS}")

    def path(self, key: str) -> str:
        return f"{self.root}/{key}.pt"

    def load(self, key: str) -> dict[str, Any] | None:
        import torch

        try:
            with self.fs.open_input_stream(self.path(key)) as src:
                data = src.read()
        except FileNotFoundError:
            return None
        state: dict[str, Any] = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        return state

    def save(self, key: str, payload: dict[str, Any]) -> None:
        import torch

        from bench.store.layout import publish

        buffer = io.BytesIO()
        torch.save(payload, buffer)

        def write(p: str) -> None:
            with self.fs.open_output_stream(p) as out:
                out.write(buffer.getvalue())

        self.fs.create_dir(self.root, recursive=True)
        publish(self.fs, self.path(key), write)

    def delete(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.fs.delete_file(self.path(key))

    def clear(self) -> None:
        """Drop every saved state (when no trial of the experiment can run again)."""
        self.fs.delete_dir_contents(self.root, missing_dir_ok=True)


@dataclass(frozen=True)
class Runtime:
    """Driver-side settings every trial needs; passed with `tune.with_parameters`, so they are
    read fresh on every run (also a resumed one) rather than frozen in the experiment state."""

    sweep_dir: str
    resources: Resources
    checkpoint_every: int = 1
    plugins: tuple[str, ...] = ()
    objectives: tuple[Objective, ...] = ()  # a search trial's; a grid trial has none
    fail_once_dir: str | None = None


@dataclass(frozen=True)
class TrialPlan:
    """What one Tune trial runs: its key (its saved state's name: the config's content hash, or
    `<study>-tNNNN` in a search), its runs and each run's trial id in the store."""

    cfg: TrialConfig
    key: str
    runs: tuple[TrialConfig, ...]
    run_ids: tuple[str, ...]


def trial_key(config: Mapping[str, Any], cfg: TrialConfig | None = None) -> str:
    """A Tune trial's key (its saved state's name): the search's `<study>-tNNNN`, else the
    config's content hash."""
    if config.get("key"):
        return str(config["key"])
    return (cfg or TrialConfig.from_flat(config["trial"], source="sweep trial")).trial_id()


def trial_plan(config: Mapping[str, Any], objectives: Sequence[Objective] = ()) -> TrialPlan:
    """The plan of the Tune trial whose config is `config` ({"trial": flat config, "key"?})."""
    cfg = TrialConfig.from_flat(config["trial"], source="sweep trial")
    key = trial_key(config, cfg)
    runs = tuple(plan_runs(cfg, objectives))
    return TrialPlan(cfg, key, runs, tuple(key + run_suffix(cfg, r, objectives) for r in runs))


def bench_trial(config: dict[str, Any], runtime: Runtime) -> None:
    """The trainable: each run of the trial's plan with `run_trial`, one `tune.report` per
    finished epoch, then the trial's state saved; a saved state found at the start is continued.
    """
    from bench.train import prepare_trial

    plan = trial_plan(config, runtime.objectives)
    provenance = _setup(plan.cfg, runtime)
    states = TrialStates(runtime.sweep_dir)
    reporter = _Reporter(runtime, plan, provenance, states, states.load(plan.key))
    for index in range(len(reporter.finished), len(plan.runs)):
        resume = reporter.start(index)
        try:
            trial = prepare_trial(plan.runs[index], resume)
        except ConfigError as exc:
            # Building failed on the config itself (a loss parameter out of range, a batch the
            # data cannot fill): every retry would fail the same way, so this is a result
            # ("error", with the sentence), not a failed attempt. Anything else (data missing on
            # this node, a failed download, no CUDA here) stays a fault: retried, resumable.
            reporter.config_error(exc)
            return
        trial.run(on_epoch=reporter.pending.append, on_checkpoint=reporter.on_checkpoint)
        if reporter.pending:  # records after the last checkpoint: none with the current trainer
            reporter.absorb()
            reporter.report()
    if not reporter.reported:  # it had ended before a crash: report its end once more
        reporter.report()


def _setup(cfg: TrialConfig, runtime: Runtime) -> dict[str, Any]:
    """Prepare this worker process for the trial; returns the worker's provenance."""
    import torch

    # Ray chdirs into the trial directory; go back so relative data roots ($BENCH_DATA, ./data)
    # mean what they mean for the driver (locally) or the job's working dir (on a cluster).
    os.chdir(os.environ.get("TUNE_ORIG_WORKING_DIR", os.getcwd()))
    if runtime.plugins:
        from bench.losses import load_plugin

        for path in runtime.plugins:
            load_plugin(path)
    share = runtime.resources.for_trial(cfg)
    torch.set_num_threads(max(1, int(share["cpu"])))  # no oversubscription of shared cores
    cuda = torch.cuda.is_available() and cfg.device != "cpu"
    if cuda and 0 < share["gpu"] < 1:
        # Ray does not isolate GPU memory: a fractional share also caps this process's CUDA use.
        torch.cuda.set_per_process_memory_fraction(share["gpu"])
    return {
        "hostname": socket.gethostname(),
        "started_at": time.time(),
        "device_name": torch.cuda.get_device_name() if cuda else "cpu",
    }


class _Reporter:
    """Turns one trial's runs into Tune reports and saved states; see `bench_trial`.

    A saved state holds the running run's index and `run_trial` state, the scores of the runs
    already finished (objective key -> final value) and the trial's status in its last report.
    """

    def __init__(
        self,
        runtime: Runtime,
        plan: TrialPlan,
        provenance: dict[str, Any],
        states: TrialStates,
        saved: dict[str, Any] | None,
    ) -> None:
        self.runtime, self.plan, self.provenance, self.states = runtime, plan, provenance, states
        self.node_id = current_node_id()
        self.saved = saved
        self.status = str(saved.get("trial_status", "done")) if saved else "running"
        finished = saved.get("finished") if saved else None
        if saved is not None and finished is None:
            # A grid trial's state saved by an earlier version holds no runs: its one run has
            # finished when its status is final.
            finished = [{}] if self.status in FINISHED else []
        self.finished: list[dict[str, float | None]] = [dict(s) for s in finished or []]
        self.pending: list[dict[str, Any]] = []
        # A retry after the last epoch of the last run reports the end of that run.
        self.index = min(len(self.finished), len(plan.runs) - 1)
        self.latest: dict[str, float | None] = {}
        self.epoch = int(saved["state"]["epoch"]) if saved and self.done else 0
        self.reported = False

    @property
    def done(self) -> bool:
        return len(self.finished) == len(self.plan.runs)

    def start(self, index: int) -> dict[str, Any] | None:
        """Begin run `index`; returns the `run_trial` state to resume it from, if any."""
        self.index, self.latest, self.epoch = index, {}, 0
        saved = self.saved
        if saved is not None and saved.get("run", 0) == index:
            self.saved = None  # only the first run started resumes
            return dict(saved["state"])
        return None

    def absorb(self) -> None:
        """Update the running run's latest scores from the pending records."""
        for o in self.runtime.objectives:
            self.latest[o.key] = record_value(self.pending, o, self.latest.get(o.key))

    def on_checkpoint(self, state: dict[str, Any]) -> None:
        self.epoch = int(state["epoch"])
        self.absorb()
        final = any(r.get("final") for r in self.pending)
        if final:
            self.finished.append(dict(self.latest))
        self.report()  # returns once the driver has stored the rows
        if final or self.epoch % self.runtime.checkpoint_every == 0:
            self.states.save(
                self.plan.key,
                {
                    "run": self.index,
                    "state": state,
                    "finished": self.finished,
                    "trial_status": self.status,
                },
            )
        _maybe_fail_once(self.runtime.fail_once_dir, self.plan.key, self.epoch)

    def config_error(self, exc: ConfigError) -> None:
        """End the trial as "error" with `exc`'s sentence, scoring every objective its worst (the
        store callback drops its saved state when the trial completes, as for any trial)."""
        tune.report({
            "epoch": 0, "run": self.index, "records": [], "trial_status": "error",
            "config_error": f"{type(exc).__name__}: {exc}", "progress_epochs": 0,
            "provenance": self.provenance, "node_id": self.node_id,
            **objective_values(self.runtime.objectives, [], [], self.plan.cfg.lr),
        })  # fmt: skip

    def report(self) -> None:
        runs, done = self.plan.runs, len(self.finished)
        scores = self.finished + ([self.latest] if done <= self.index else [])
        status = self.pending[-1].get("status", "running") if self.pending else self.status
        if len(runs) > 1 and self.done:
            status = "done"  # each run's own status is in its rows
        self.status = status if (self.done or status == "running") else "running"
        tune.report({
            "epoch": self.epoch, "run": self.index, "records": list(self.pending),
            "run_id": self.plan.run_ids[self.index], "trial_status": self.status,
            "progress_epochs": sum(r.epochs for r in runs[: self.index]) + self.epoch,
            "provenance": self.provenance, "node_id": self.node_id,
            **objective_values(self.runtime.objectives, [r.lr for r in runs[: len(scores)]],
                               scores, self.plan.cfg.lr),
        })  # fmt: skip
        self.pending.clear()
        self.reported = True


def _maybe_fail_once(directory: str | None, key: str, epoch: int) -> None:
    if directory is None:
        return
    marker = Path(directory, key)
    try:
        wanted = int(marker.read_text().strip() or 0)
    except (FileNotFoundError, ValueError):
        return
    if wanted != epoch:
        return
    try:
        marker.unlink()  # consume first: only one attempt may fail
    except FileNotFoundError:
        return
    raise RuntimeError(f"{FAIL_ONCE_ENV}: injected failure of trial {key} after epoch {epoch}")
