"""What the grid driver and the search driver share: the Ray session (environment, start or
join, quiet logs, shutdown), what a trial asks Ray for, the Tuner, the sweep's metadata and
existence check, the end state of each trial, and the final compaction of the store.

Ray's own loggers are off (`TUNE_DISABLE_AUTO_CALLBACK_LOGGERS`): the Parquet store is the
record, and Ray's CSV/JSON/TensorBoard files only cost driver time and memory. Tune's console
output (experiment table, per-failure tracebacks) is replaced by our progress lines and one
line per failed attempt; tracebacks stay in the trials' error files. Trials are FIFO with
`reuse_actors=True` (a new trial reuses a finished trial's worker process), retried with
`FailureConfig(max_failures=retries)`, and named `trial_<id>` (Ray's default name embeds the
whole config).
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray
from ray import tune

from bench.config import TrialConfig
from bench.record import FINISHED
from bench.space import Resources, Space

RAY_DIR = "_ray"  # under the sweep dir; "_" hides it from the store's readers


# --- the Ray session ----------------------------------------------------------------------------


@contextmanager
def ray_session(address: str | None, num_cpus: int | None, verbose: bool) -> Iterator[None]:
    """Ray for one experiment: joined at `address`, else the running one, else an embedded
    local Ray with `num_cpus` (shut down at the end); Tune's loggers quiet unless `verbose`."""
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if not verbose:
        os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    started = init_ray(address, num_cpus, verbose)
    try:
        with QuietTune(enabled=not verbose):
            yield
    finally:
        if started:
            ray.shutdown()


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
        # "local": a new embedded Ray even when another one runs on this machine (address None
        # would join the latest `ray start` cluster, and then refuse num_cpus).
        address = "local"
        kwargs["num_cpus"] = num_cpus or os.cpu_count() or 1
    ray.init(address=address, **kwargs)
    return True


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


def where(address: str | None) -> str:
    return f"Ray at {address}" if address else "local Ray"


# --- what a trial asks Ray for --------------------------------------------------------------


def ray_resources(share: Mapping[str, float]) -> dict[str, float]:
    return {k: v for k, v in share.items() if v or k == "cpu"}


@dataclass(frozen=True)
class PerTrialResources:
    """`config -> PlacementGroupFactory` for `tune.with_resources` (picklable, unlike a lambda)."""

    resources: Resources

    def __call__(self, config: Mapping[str, Any]) -> tune.PlacementGroupFactory:
        share = self.resources.for_trial(TrialConfig.from_flat(config["trial"], "sweep trial"))
        return tune.PlacementGroupFactory([{k.upper(): v for k, v in ray_resources(share).items()}])


def trial_resources(resources: Resources, trials: Sequence[TrialConfig]) -> Any:
    """A dict when every trial asks for the same; else the callable form (GPU share by batch)."""
    shares = {tuple(sorted(resources.for_trial(t).items())) for t in trials}
    if len(shares) <= 1:
        return ray_resources(resources.for_trial(trials[0]) if trials else {"cpu": 1.0, "gpu": 0.0})
    return PerTrialResources(resources)


def slots(resources: Resources, cfg: TrialConfig) -> int:
    """Trials of `cfg`'s size that fit on the Ray cluster at once."""
    have = ray.cluster_resources()
    share = resources.for_trial(cfg)
    if share["gpu"] > 0:
        return max(1, int(have.get("GPU", 0) / share["gpu"] + 1e-9))
    return max(1, int(have.get("CPU", 1) / max(share["cpu"], 1e-9) + 1e-9))


def current_node_id() -> str | None:
    try:
        return ray.get_runtime_context().get_node_id()
    except Exception:
        return None


def trial_dirname(trial: Any) -> str:
    return f"trial_{trial.trial_id}"  # short: Ray's default embeds the whole (long) config


# --- the experiment ---------------------------------------------------------------------------


def sweep_paths(storage: str, sweep_id: str) -> tuple[str, str, str]:
    """(sweep dir, Ray storage_path, Ray experiment dir) for a local path or a URI."""
    sweep_dir = f"{storage.rstrip('/')}/{sweep_id}"
    ray_storage = f"{sweep_dir}/{RAY_DIR}"
    return sweep_dir, ray_storage, f"{ray_storage}/{sweep_id}"


def bind(fn: Callable[..., None], runtime: Any, resources: Any) -> Any:
    """`fn(config, runtime)` with its runtime bound and its resources declared."""
    return tune.with_resources(tune.with_parameters(fn, runtime=runtime), resources)


def make_tuner(
    trainable: Any,
    *,
    name: str,
    storage: str,
    sweep_id: str,
    space: Space,
    callbacks: Sequence[tune.Callback],
    param_space: Mapping[str, Any] | None = None,
    max_concurrent: int | None = None,
    **tune_config: Any,
) -> tune.Tuner:
    """A fresh Tuner writing Ray's experiment `name` under `<storage>/<sweep_id>/_ray/`;
    `tune_config` adds a searcher, a scheduler or a sample count (none: FIFO over the param
    space, every curve runs to its end)."""
    return tune.Tuner(
        trainable,
        param_space=dict(param_space or {}),
        tune_config=tune.TuneConfig(
            reuse_actors=True, max_concurrent_trials=max_concurrent,
            trial_dirname_creator=trial_dirname, **tune_config,
        ),
        run_config=tune.RunConfig(
            name=name, storage_path=sweep_paths(storage, sweep_id)[1], verbose=0,
            failure_config=tune.FailureConfig(max_failures=space.retries),
            callbacks=list(callbacks),
        ),
    )  # fmt: skip


def has_results(storage: str, sweep_id: str) -> bool:
    """Whether the store already holds a sweep of this id (its sweep.json exists)."""
    from bench.store import StoreError, read_sweep_meta

    try:
        read_sweep_meta(storage, sweep_id)
    except StoreError:
        return False
    return True


def sweep_meta(space: Space, **extra: Any) -> dict[str, Any]:
    """sweep.json's content: where the space came from and its text, plus `extra`."""
    try:
        text: str | None = Path(space.source).read_text()
    except OSError:
        text = None
    return {
        "name": space.name,
        "source": os.path.abspath(space.source) if text else space.source,
        "space_yaml": text,
        **extra,
    }


def end_state(result: Any, stopped: str = "unfinished") -> str:
    """One word for a finished Tune trial (an item of a ResultGrid); see `state_of`."""
    return state_of(result.error is not None, True, result.metrics, stopped)


def state_of(
    errored: bool, ended: bool, metrics: Mapping[str, Any] | None, stopped: str = "unfinished"
) -> str:
    """One word per trial, for the progress line and the final counts alike: error | done |
    diverged | timeout | running, `stopped` for one that ended without finishing (a scheduler
    stopped it, or a driver left it running), pending for one that never reported."""
    metrics = metrics or {}
    status = metrics.get("trial_status")
    if errored or status == "error":
        return "error"
    if status in FINISHED:
        return str(status)
    if not ended:
        return "running"
    if metrics.get("done"):
        return "done"
    return stopped if metrics else "pending"


def counts(states: Iterable[str]) -> dict[str, int]:
    return dict(Counter(states))


def compact(storage: str, sweep_id: str) -> str | None:
    """Merge every trial's files of the sweep into one Parquet file (`FragmentWriter
    .compact_sweep`: reading one file is ~10-40x faster than one per trial); returns its path."""
    from bench.store import FragmentWriter

    return FragmentWriter(storage, sweep_id).compact_sweep()


def format_clock(seconds: float) -> str:
    s = int(max(seconds, 0))
    return (
        f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"
        if s >= 3600
        else f"{s // 60:02d}:{s % 60:02d}"
    )
