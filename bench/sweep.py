"""Run a search space on Ray Tune, every epoch streamed to the Parquet store. The ONLY module that
imports Ray (with `bench.tune`); the CLI imports it only when a sweep really runs.

Shape of a sweep (DESIGN.md "Sweeps"; reference/ray-and-storage.md B.2-B.11):
- one function trainable per `TrialConfig`, given as `param_space={"trial": grid_search([flat
  configs])}`; FIFO (early stopping would truncate stability curves), `reuse_actors=True`;
- per-trial resources from the YAML via `tune.with_resources`; a fractional GPU share also caps
  the trial's CUDA memory (Ray does not isolate GPU memory, B.3);
- one `tune.report` per finished epoch with that epoch's records (all label fractions), then the
  trial's state saved (`TrialStates`), so a retry (`FailureConfig(max_failures=retries)`)
  resumes from the last finished epoch, and `--resume` restores a sweep whose driver died
  (`Tuner.restore`, B.6);
- a driver-side callback turns each result into one immutable Parquet fragment
  (`bench.store.FragmentWriter`) and compacts a trial's fragments when it ends. A retry or a
  restore may re-report an epoch; readers dedup on (trial, epoch, label fraction) keeping the
  latest attempt (D.4), so the store ends with one row per key;
- a progress line every few seconds (done / running / pending / diverged / error, ETA).

Layout under `<storage>/<sweep_id>/`: the store's `sweep.json`, `fragments/`, `trials/`;
`_checkpoints/<trial_id>.pt` (resumable state of unfinished trials) and Ray's experiment
directory `_ray/<sweep_id>/` ("_" keeps both out of the store's readers). On a multi-node
cluster `storage` must be shared (S3, GCS, NFS): workers save trial states there, and the driver
writes the results there.

Divergence and timeouts are results, not failures: the trainable returns normally. An exception
(bad data root, CUDA OOM, a bug) fails the attempt; after `retries` attempts the trial is
"error" and the sweep exits 1, listing each such trial and its error's last line.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import socket
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ray
from ray import tune

from bench.config import TrialConfig
from bench.space import Resources, Space, expand
from bench.space import sweep_id as make_sweep_id

RAY_DIR = "_ray"  # under the sweep dir; "_" hides it from the store's readers
CHECKPOINTS = "_checkpoints"  # under the sweep dir: one resumable state per unfinished trial
FINISHED = ("done", "diverged", "timeout")
# Test hook (documented in tests/test_sweep.py): a directory of marker files `<trial_id>` whose
# content is an epoch number; the trial raises once right after reporting that epoch (the
# marker is deleted first), so the retry must resume from the checkpoint.
FAIL_ONCE_ENV = "BENCH_FAIL_ONCE"


class SweepExistsError(ValueError):
    """The sweep already has results and --resume was not given (the CLI exits 2)."""

    user_error = True


# --- per-trial state that survives anything ----------------------------------------------------


class TrialStates:
    """The latest resumable state of each trial: `<sweep_dir>/_checkpoints/<trial_id>.pt`.

    Why not Tune's own checkpoints: Tune deletes a trial's older checkpoint as soon as it
    registers a newer one but records that in the experiment state only at its next snapshot, so
    a driver killed in between leaves a state pointing at a deleted checkpoint and `--resume`
    fails with "Could not recover from checkpoint as it does not exist on storage anymore"
    (reproduced with SIGKILL on ray 2.60). Here the worker itself replaces one file per trial
    atomically (`bench.store.layout.publish`: rename locally, single PUT on object stores), after
    the epoch's result was reported. `tune.report` returns only once the driver has processed the
    result (function trainables report synchronously), so a saved state implies that its epoch's
    rows are in the store: resuming never skips a row.
    """

    def __init__(self, sweep_dir: str) -> None:
        from bench.store import resolve_storage

        self.fs, self.root = resolve_storage(f"{sweep_dir}/{CHECKPOINTS}")

    def path(self, trial_id: str) -> str:
        return f"{self.root}/{trial_id}.pt"

    def load(self, trial_id: str) -> dict[str, Any] | None:
        import torch

        try:
            with self.fs.open_input_stream(self.path(trial_id)) as src:
                data = src.read()
        except FileNotFoundError:
            return None
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)

    def save(self, trial_id: str, payload: dict[str, Any]) -> None:
        import torch

        from bench.store.layout import publish

        buffer = io.BytesIO()
        torch.save(payload, buffer)

        def write(p: str) -> None:
            with self.fs.open_output_stream(p) as out:
                out.write(buffer.getvalue())

        self.fs.create_dir(self.root, recursive=True)
        publish(self.fs, self.path(trial_id), write)

    def delete(self, trial_id: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.fs.delete_file(self.path(trial_id))


# --- what runs in the Ray worker --------------------------------------------------------------


@dataclass(frozen=True)
class _Runtime:
    """Driver-side settings every trial needs; passed with `tune.with_parameters`, so they are
    read fresh on every run (also a resumed one) rather than frozen in the experiment state."""

    sweep_dir: str
    resources: Resources
    checkpoint_every: int = 1
    plugins: tuple[str, ...] = ()
    fail_once_dir: str | None = None


def bench_trial(config: dict[str, Any], runtime: _Runtime) -> None:
    """One trial: `run_trial`, one `tune.report` per finished epoch, then the epoch's state saved.

    A trial that finds a saved state (a retry, or a sweep resumed after its driver died) continues
    from it; one whose saved state is final (done, diverged, timeout) only reports that status.
    """
    import torch

    from bench.train import run_trial

    # Ray chdirs into the trial directory; go back so relative data roots ($BENCH_DATA, ./data)
    # mean what they mean for the driver (locally) or the job's working dir (on a cluster).
    os.chdir(os.environ.get("TUNE_ORIG_WORKING_DIR", os.getcwd()))
    if runtime.plugins:
        from bench.losses import load_plugin

        for path in runtime.plugins:
            load_plugin(path)
    cfg = TrialConfig.from_flat(config["trial"], source="sweep trial")
    trial_id = cfg.trial_id()
    share = runtime.resources.for_trial(cfg)
    torch.set_num_threads(max(1, int(share["cpu"])))  # no oversubscription of shared cores
    cuda = torch.cuda.is_available() and cfg.device != "cpu"
    if cuda and 0 < share["gpu"] < 1:
        torch.cuda.set_per_process_memory_fraction(share["gpu"])
    prov = {
        "hostname": socket.gethostname(),
        "device_name": torch.cuda.get_device_name() if cuda else "cpu",
        "started_at": time.time(),
    }
    node_id = current_node_id()
    states = TrialStates(runtime.sweep_dir)
    saved = states.load(trial_id)
    pending: list[dict[str, Any]] = []

    def report(epoch: int, trial_status: str) -> None:
        tune.report(
            {
                "epoch": epoch,
                "records": list(pending),
                "trial_status": trial_status,
                "provenance": prov,
                "node_id": node_id,
            }
        )
        pending.clear()

    if saved is not None and saved["trial_status"] in FINISHED:
        report(int(saved["state"]["epoch"]), saved["trial_status"])  # it ended before a crash
        return

    def on_checkpoint(state: dict[str, Any]) -> None:
        epoch = int(state["epoch"])
        status = pending[-1]["status"] if pending else "running"
        report(epoch, status)  # returns once the driver has stored the rows
        if status != "running" or epoch % runtime.checkpoint_every == 0:
            states.save(trial_id, {"state": state, "trial_status": status})
        _maybe_fail_once(runtime.fail_once_dir, trial_id, epoch)

    summary = run_trial(
        cfg,
        on_epoch=pending.append,
        resume_state=None if saved is None else saved["state"],
        on_checkpoint=on_checkpoint,
    )
    if pending or summary.epochs_done == 0:
        report(summary.epochs_done, summary.status)  # records no checkpoint call covered


def _maybe_fail_once(directory: str | None, trial_id: str, epoch: int) -> None:
    if directory is None:
        return
    marker = Path(directory, trial_id)
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
    raise RuntimeError(f"{FAIL_ONCE_ENV}: injected failure of trial {trial_id} after epoch {epoch}")


def current_node_id() -> str | None:
    try:
        return ray.get_runtime_context().get_node_id()
    except Exception:
        return None


def trial_dirname(trial: Any) -> str:
    return f"trial_{trial.trial_id}"  # short: Ray's default embeds the whole (long) config


# --- driver-side callbacks --------------------------------------------------------------------


class _Stateless:
    """Ray pickles the callbacks into the experiment and reuses them on `Tuner.restore`
    ("only stateless callbacks are supported for resumed runs"): keep only configuration in the
    pickle and rebuild everything else in `setup()`, which runs at the start of every run."""

    _transient: tuple[str, ...] = ()

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k not in self._transient}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)


def _make_callbacks(storage: str, sweep_id: str, progress_every: float,
                    trials: Sequence[TrialConfig] = ()) -> list[tune.Callback]:
    planned = [t.epochs for t in trials]
    return [StoreCallback(storage, sweep_id), ProgressCallback(progress_every, planned)]


class StoreCallback(_Stateless, tune.Callback):
    """Writes every reported result as one fragment; compacts a trial when it ends. Cheap: it
    runs in Tune's event loop (B.7), one small Parquet file per result."""

    _transient = ("_writer", "_states", "_provenance", "_trials")

    def __init__(self, storage: str, sweep_id: str) -> None:
        self.storage, self.sweep_id = storage, sweep_id

    def setup(self, **info: Any) -> None:
        from bench.store import FragmentWriter, provenance

        self._writer = FragmentWriter(self.storage, self.sweep_id)
        self._states = TrialStates(sweep_paths(self.storage, self.sweep_id)[0])
        # Driver-side provenance (code version); host, device and start come from the worker.
        self._provenance = {
            k: v for k, v in provenance().items() if k not in ("hostname", "device_name")
        }
        self._trials: dict[str, tuple[TrialConfig, str]] = {}  # Ray's id -> (config, our id)

    def _trial(self, trial: Any) -> tuple[TrialConfig, str]:
        if trial.trial_id not in self._trials:  # parse and hash once per trial, not per result
            cfg = _config_of(trial)
            self._trials[trial.trial_id] = (cfg, cfg.trial_id())
        return self._trials[trial.trial_id]

    def on_trial_result(
        self, iteration: int, trials: list, trial: Any, result: dict, **info: Any
    ) -> None:
        records = result.get("records")
        if not records:
            return
        cfg, trial_id = self._trial(trial)
        prov = {**self._provenance, **(result.get("provenance") or {})}
        self._writer.write_records(
            records, cfg=cfg, attempt=trial.num_failures, provenance=prov, trial_id=trial_id
        )

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        trial_id = self._trial(trial)[1]
        self._writer.compact(trial_id)
        # A finished trial needs no resumable state (a ResNet-50's is ~200 MB). Should the driver
        # die before Tune records the completion, the trial reruns from scratch: same rows.
        self._states.delete(trial_id)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._writer.compact(self._trial(trial)[1])


def _config_of(trial: Any) -> TrialConfig:
    return TrialConfig.from_flat(trial.config["trial"], source="sweep trial")


def _error_line(trial: Any) -> str:
    """Last line of the trial's error file (the exception), else a generic word."""
    path = getattr(trial, "error_file", None)
    try:
        text = Path(path).read_text() if path else ""
    except OSError:
        text = ""
    return _last_line(text) or "error"


def trial_state(tune_status: str, last_result: Mapping[str, Any] | None) -> str:
    """One word per trial: pending | running | done | diverged | timeout | error | unfinished."""
    status = (last_result or {}).get("trial_status")
    if tune_status == "ERROR":
        return "error"
    if tune_status == "TERMINATED":
        return status if status in FINISHED else "done"
    if tune_status == "RUNNING":
        return "running"
    return "pending" if not last_result else "unfinished"


class ProgressCallback(_Stateless, tune.Callback):
    """One line every `every` seconds: counts by state and an ETA from epochs done per second."""

    _transient = ("_t0", "_last", "_base")

    def __init__(self, every: float, planned_epochs: Sequence[int] = ()) -> None:
        self.every = every
        # Tune creates trial objects lazily (200 pending at a time), so the sweep's own trial
        # list is what the totals count; trials Tune has not created yet are pending.
        self.planned_epochs = list(planned_epochs)

    def setup(self, **info: Any) -> None:
        self._t0 = self._last = time.monotonic()
        self._base: float | None = None  # epochs already done when this run started

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        now = time.monotonic()
        if self.every > 0 and now - self._last >= self.every:
            self._last = now
            print(self.line(trials, now), flush=True)

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        epoch = (trial.last_result or {}).get("epoch", 0)
        print(
            f"trial {_config_of(trial).trial_id()} failed after epoch {epoch} "
            f"({_error_line(trial)}); retry {trial.num_failures} resumes from its last "
            "checkpoint",
            flush=True,
        )

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        print(
            f"trial {_config_of(trial).trial_id()} failed for good ({_error_line(trial)})",
            flush=True,
        )

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        if self.every > 0:
            print(self.line(trials, time.monotonic()), flush=True)

    def line(self, trials: list, now: float) -> str:
        counts = dict.fromkeys(("done", "diverged", "timeout", "error", "running", "pending"), 0)
        done_epochs = 0.0
        total = 0.0
        for t in trials:
            state = trial_state(str(t.status), t.last_result)
            counts[state if state in counts else "pending"] += 1
            n = int(t.config["trial"].get("epochs", 1))  # the flat config: no parsing per line
            total += n
            ended = state in ("done", "diverged", "timeout", "error")
            done_epochs += n if ended else min(n, (t.last_result or {}).get("epoch", 0) or 0)
        unseen = self.planned_epochs[len(trials):]
        counts["pending"] += len(unseen)
        total += sum(unseen)
        if self._base is None:
            self._base = done_epochs
        elapsed = now - self._t0
        rate = (done_epochs - self._base) / elapsed if elapsed > 0 else 0.0
        eta = format_clock((total - done_epochs) / rate) if rate > 0 else "--:--"
        finished = counts["done"] + counts["diverged"] + counts["timeout"] + counts["error"]
        return (
            f"[{format_clock(elapsed)}] {finished}/{max(len(trials), len(self.planned_epochs))} "
            "trials finished: "
            f"{counts['done']} done, {counts['diverged']} diverged, {counts['timeout']} timeout, "
            f"{counts['error']} error | {counts['running']} running, {counts['pending']} pending"
            f" | ETA {eta}"
        )


def format_clock(seconds: float) -> str:
    s = int(max(seconds, 0))
    return (
        f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"
        if s >= 3600
        else f"{s // 60:02d}:{s % 60:02d}"
    )


# --- outcome --------------------------------------------------------------------------------


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
            lines.append(f"{len(errored)} trial(s) failed after their retries:")
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


def _last_line(error: BaseException | str | None) -> str | None:
    if error is None:
        return None
    lines = [ln.strip() for ln in str(error).strip().splitlines() if ln.strip()]
    return lines[-1] if lines else type(error).__name__


def _outcomes(result_grid: Any) -> list[TrialOutcome]:
    out = []
    for r in result_grid:
        cfg = TrialConfig.from_flat(r.config["trial"], source="sweep trial")
        metrics = r.metrics or {}
        if r.error is not None:
            state = "error"
        elif metrics.get("done"):
            status = metrics.get("trial_status")
            state = status if status in FINISHED else "done"
        else:
            state = "unfinished" if metrics else "pending"
        out.append(
            TrialOutcome(
                cfg.trial_id(),
                cfg,
                state,
                int(metrics.get("epoch") or 0),
                _last_line(r.error),
                metrics.get("node_id"),
            )
        )
    return out


# --- the driver -----------------------------------------------------------------------------


def sweep_paths(storage: str, sweep_id: str) -> tuple[str, str, str]:
    """(sweep dir, Ray storage_path, Ray experiment dir) for a local path or a URI."""
    sweep_dir = f"{storage.rstrip('/')}/{sweep_id}"
    ray_storage = f"{sweep_dir}/{RAY_DIR}"
    return sweep_dir, ray_storage, f"{ray_storage}/{sweep_id}"


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
    `SweepExistsError` if the sweep already has results and `resume` is False.
    """
    from bench.store import StoreError, read_sweep_meta, write_sweep_meta

    t0 = time.monotonic()
    trials = list(expand(space) if trials is None else trials)
    sid = make_sweep_id(space, trials)
    sweep_dir, _, experiment = sweep_paths(storage, sid)
    try:
        read_sweep_meta(storage, sid)
        exists = True
    except StoreError:
        exists = False
    if exists and not resume:
        raise SweepExistsError(
            f"sweep {sid} already has results in {sweep_dir}; pass --resume to continue it "
            "(finished trials are kept), or choose another --storage."
        )
    # Our Parquet store is the source of truth: Ray's CSV/JSON/TensorBoard loggers only cost
    # driver time and memory (B.10).
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if not verbose:
        # Tune's own console output (experiment table, per-failure tracebacks) is replaced by our
        # progress lines and one line per failed attempt; tracebacks stay in the error files.
        os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    started = init_ray(address, num_cpus, verbose)
    try:
        with QuietTune(enabled=not verbose):
            restore = resume and tune.Tuner.can_restore(experiment)
            if not exists:
                write_sweep_meta(storage, sid, _meta(space, trials, storage))
            if progress_every > 0:
                where = f"Ray at {address}" if address else "local Ray"
                verb = "resuming" if restore else "starting"
                print(
                    f"{verb} sweep {sid}: {len(trials)} trials on {where} -> {sweep_dir}",
                    flush=True,
                )
            runtime = _Runtime(
                sweep_dir=sweep_dir,
                resources=space.resources,
                checkpoint_every=space.checkpoint_every,
                plugins=tuple(plugins),
                fail_once_dir=os.environ.get(FAIL_ONCE_ENV) or None,
            )
            tuner = _tuner(
                space,
                trials,
                sid,
                storage,
                runtime,
                progress_every,
                experiment if restore else None,
            )
            outcomes = _outcomes(tuner.fit())
    finally:
        if started:
            ray.shutdown()
    counts: dict[str, int] = {}
    for o in outcomes:
        counts[o.state] = counts.get(o.state, 0) + 1
    return SweepOutcome(sid, sweep_dir, tuple(outcomes), time.monotonic() - t0, restore, counts)


def _tuner(
    space: Space,
    trials: Sequence[TrialConfig],
    sid: str,
    storage: str,
    runtime: _Runtime,
    progress_every: float,
    restore_from: str | None,
) -> tune.Tuner:
    """A fresh Tuner for the sweep, or the one restored from `restore_from` (its experiment dir).

    A restored Tuner keeps the original run config and callbacks (unpickled from the
    experiment); the trainable, and with it `runtime`, is always the current one. The param
    space is passed again: Tune does not store it, and a driver killed before its first
    experiment snapshot leaves nothing else to rebuild the trials from.
    """
    trainable = tune.with_resources(
        tune.with_parameters(bench_trial, runtime=runtime), _resources_arg(space.resources, trials)
    )
    param_space = {"trial": tune.grid_search([t.to_flat() for t in trials])}
    if restore_from is not None:
        return tune.Tuner.restore(
            restore_from,
            trainable,
            param_space=param_space,
            resume_unfinished=True,
            resume_errored=True,
        )
    _, ray_storage, _ = sweep_paths(storage, sid)
    return tune.Tuner(
        trainable,
        param_space=param_space,
        tune_config=tune.TuneConfig(
            reuse_actors=True,  # a new trial reuses a finished trial's worker process
            max_concurrent_trials=space.max_concurrent,
            trial_dirname_creator=trial_dirname,
        ),  # FIFO: no scheduler, every curve runs to its end
        run_config=tune.RunConfig(
            name=sid, storage_path=ray_storage, verbose=0,
            failure_config=tune.FailureConfig(max_failures=space.retries),
            callbacks=_make_callbacks(storage, sid, progress_every, trials),
        ),
    )  # fmt: skip


def _resources_arg(resources: Resources, trials: Sequence[TrialConfig]) -> Any:
    """A dict when every trial asks for the same; else the callable form (GPU share by batch)."""
    shares = {tuple(sorted(resources.for_trial(t).items())) for t in trials}
    if len(shares) <= 1:
        return ray_resources(
            resources.for_trial(trials[0]) if trials else {"cpu": 1.0, "gpu": 0.0}
        )
    return PerTrialResources(resources)


def ray_resources(share: Mapping[str, float]) -> dict[str, float]:
    return {k: v for k, v in share.items() if v or k == "cpu"}


@dataclass(frozen=True)
class PerTrialResources:
    """`config -> PlacementGroupFactory` for `tune.with_resources` (picklable, unlike a lambda)."""

    resources: Resources

    def __call__(self, config: Mapping[str, Any]) -> tune.PlacementGroupFactory:
        share = self.resources.for_trial(TrialConfig.from_flat(config["trial"], "sweep trial"))
        return tune.PlacementGroupFactory(
            [{k.upper(): v for k, v in ray_resources(share).items()}]
        )


class QuietTune:
    """Raise Tune's driver loggers to CRITICAL for the duration of a sweep (restored after)."""

    NAMES = ("ray.tune", "ray.air", "ray.train")

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.saved: dict[str, int] = {}

    def __enter__(self) -> QuietTune:
        if self.enabled:
            for name in self.NAMES:
                log = logging.getLogger(name)
                self.saved[name] = log.level
                log.setLevel(logging.CRITICAL)
        return self

    def __exit__(self, *exc: object) -> None:
        for name, level in self.saved.items():
            logging.getLogger(name).setLevel(level)
        self.saved.clear()


def init_ray(address: str | None, num_cpus: int | None, verbose: bool) -> bool:
    """Start (or join) Ray unless it already runs in this process; True if we started it."""
    if ray.is_initialized():
        return False
    kwargs: dict[str, Any] = dict(
        include_dashboard=False,  # seconds of startup and a port nobody asked for
        log_to_driver=verbose,  # trial output stays in the trial's log files
        logging_level=logging.INFO if verbose else logging.WARNING,
    )
    if address is None:
        kwargs["num_cpus"] = num_cpus or os.cpu_count() or 1
    ray.init(address=address, **kwargs)
    return True


def _meta(space: Space, trials: Sequence[TrialConfig], storage: str) -> dict[str, Any]:
    try:
        text = Path(space.source).read_text()
    except OSError:
        text = None
    return {
        "name": space.name, "source": os.path.abspath(space.source) if text else space.source,
        "space_yaml": text, "n_trials": len(trials), "storage": storage,
        "ray_experiment": f"{RAY_DIR}/",
        "trials": [{"trial_id": t.trial_id(), **t.to_flat()} for t in trials],
        "total_epochs": sum(t.epochs for t in trials),
        "retries": space.retries, "resources": {"cpu": space.resources.cpu, "gpu": space.resources.gpu},
    }  # fmt: skip
