"""Trainer records -> store rows, and the provenance of the process that writes them.

A record is what `bench.train.run_trial` passes to `on_epoch` (`bench.record`): `epoch`, `step`,
`time_s`, `label_fraction`, `status`, `final` and `m_*` metric floats. `make_rows` adds the
trial's identity, its `p_*` parameters and provenance. Metric keys the schema does not name (a
plugin loss's own terms) are kept as a JSON object in `m_extra`, so nothing a trial reports is
lost and the schema never has to change for a new loss.
"""

from __future__ import annotations

import json
import math
import numbers
import socket
import subprocess
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import pyarrow as pa

import bench
from bench.config import TrialConfig
from bench.record import CURVE_KEYS, REQUIRED_KEYS, STATUSES
from bench.store.errors import StoreError
from bench.store.schema import JSON_PARAMS, METRIC_COLUMNS, PROVENANCE_FIELDS, SCHEMA

_METRICS = frozenset(METRIC_COLUMNS)
_PROVENANCE = frozenset(f.name for f in PROVENANCE_FIELDS)


def split_loss(name: str) -> tuple[str, str | None]:
    """`"cloa+infonce"` -> `("infonce", "cloa")`; `"vicreg"` -> `("vicreg", None)`."""
    addon, sep, base = name.partition("+")
    return (base, addon) if sep else (name, None)


def make_rows(
    records: Sequence[Mapping[str, Any]],
    *,
    sweep_id: str,
    cfg: TrialConfig,
    attempt: int,
    provenance: Mapping[str, Any],
    study: str | None = None,
    trial_id: str | None = None,
) -> pa.Table:
    """Turn one trial's trainer records into a table with exactly `SCHEMA`'s columns.

    `attempt` is the retry number (Ray's `trial.num_failures`): a retried trial re-reports the
    epochs after its last checkpoint, and readers keep the highest attempt. `trial_id` defaults to
    `cfg.trial_id()` (content hash, stable across `Tuner.restore`); `bench tune` passes Ray's id
    because a search can suggest the same config twice. `provenance` holds provenance columns
    (see `provenance()`); `written_at` defaults to now. Record keys that are neither record fields
    nor `m_*` (Ray adds its own bookkeeping keys) are ignored.
    """
    n, columns = row_columns(
        records, sweep_id=sweep_id, cfg=cfg, attempt=attempt, provenance=provenance,
        study=study, trial_id=trial_id,
    )  # fmt: skip
    return schema_table(n, columns)


def schema_table(n: int, columns: Mapping[str, pa.Array]) -> pa.Table:
    """`columns` (n rows each) as a table with exactly `SCHEMA`'s columns, nulls elsewhere."""
    arrays = [columns[f.name] if f.name in columns else _nulls(n, f.type) for f in SCHEMA]
    return pa.Table.from_arrays(arrays, schema=SCHEMA)


def row_columns(
    records: Sequence[Mapping[str, Any]],
    *,
    sweep_id: str,
    cfg: TrialConfig,
    attempt: int,
    provenance: Mapping[str, Any],
    study: str | None = None,
    trial_id: str | None = None,
) -> tuple[int, dict[str, pa.Array]]:
    """`make_rows` without its all-null columns: (row count, {column: array}) in SCHEMA order.

    What the fragment writer stores (a fragment leaves out columns without a value). Fast, because
    it runs once per reported result in the sweep driver's event loop: the columns that are the
    same for every row of a trial attempt (identity, `p_*`, provenance but `written_at`) are
    built once per (trial, attempt, row count) and cached; only the records' own columns are
    converted per call (benchmarks/store.py).
    """
    n = len(records)
    trial_id, constant = _constant_columns(
        n, sweep_id=sweep_id, cfg=cfg, attempt=attempt, provenance=provenance,
        study=study, trial_id=trial_id,
    )  # fmt: skip
    keys: set[str] = set()
    for i, record in enumerate(records):
        for key in REQUIRED_KEYS:
            if key not in record:
                raise StoreError(f"result record {i} of trial {trial_id} has no {key!r} key.")
        if record["status"] not in STATUSES:
            raise StoreError(
                f"result record {i} of trial {trial_id} has status {record['status']!r}; "
                f"it must be one of {', '.join(STATUSES)}."
            )
        keys.update(record)
    values: dict[str, list[Any]] = {
        "status": [r["status"] for r in records],
        "final": [bool(r.get("final", r["status"] != "running")) for r in records],
    }
    for name in _RECORD_COLUMNS:
        if name in keys:
            values[name] = [r.get(name) for r in records]
    extra = sorted(k for k in keys if k.startswith("m_") and k not in _METRICS and k != "m_extra")
    if extra:
        values["m_extra"] = [_extra_metrics(r, extra, trial_id) for r in records]
    written = _timestamp(provenance.get("written_at"), "written_at")
    values["written_at"] = [written or datetime.now(timezone.utc)] * n
    columns: dict[str, pa.Array] = {}
    for name in _SCHEMA_NAMES:
        if name in constant:
            columns[name] = constant[name]
        elif name in values:
            data = values[name]
            if any(v is not None for v in data):
                columns[name] = _array(data, name, trial_id)
    return n, columns


_TYPES = {f.name: f.type for f in SCHEMA}
_SCHEMA_NAMES = tuple(SCHEMA.names)
_RECORD_COLUMNS = (*CURVE_KEYS, *METRIC_COLUMNS)
# (id(cfg), sweep, trial, attempt, study, provenance items, n) -> (cfg, trial id, columns). The
# cfg is kept so that its id cannot be reused by another object while the entry lives.
_Cached = tuple[TrialConfig, str, dict[str, pa.Array]]
_CONSTANTS: OrderedDict[tuple[Any, ...], _Cached] = OrderedDict()
_CONSTANTS_SIZE = 256  # trial attempts whose columns stay cached (a sweep's running trials)
_CONSTANTS_LOCK = threading.Lock()  # writers may run on several threads
_NULLS: dict[tuple[int, pa.DataType], pa.Array] = {}


def _nulls(n: int, type_: pa.DataType) -> pa.Array:
    key = (n, type_)
    if key not in _NULLS:
        if len(_NULLS) > 4096:
            _NULLS.clear()
        _NULLS[key] = pa.nulls(n, type_)
    return _NULLS[key]


def _array(data: list[Any], name: str, trial_id: str) -> pa.Array:
    try:
        return pa.array(data, type=_TYPES[name])
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError) as err:
        bad = next((v for v in data if v is not None), None)
        raise StoreError(
            f"trial {trial_id}: value {bad!r} for column {name!r} cannot be stored as "
            f"{_TYPES[name]} ({err})."
        ) from err


def _constant_columns(
    n: int,
    *,
    sweep_id: str,
    cfg: TrialConfig,
    attempt: int,
    provenance: Mapping[str, Any],
    study: str | None,
    trial_id: str | None,
) -> tuple[str, dict[str, pa.Array]]:
    """(trial id, the non-null columns every row of this trial attempt shares), cached."""
    try:
        prov_key = tuple(sorted((k, v) for k, v in provenance.items() if k != "written_at"))
        key: tuple[Any, ...] | None = (id(cfg), sweep_id, trial_id, attempt, study, prov_key, n)
        with _CONSTANTS_LOCK:
            hit = _CONSTANTS.get(key)  # type: ignore[arg-type]
            if hit is not None and hit[0] is cfg:
                _CONSTANTS.move_to_end(key)  # type: ignore[arg-type]
                return hit[1], hit[2]
    except TypeError:  # an unhashable provenance value: build without the cache
        key = None
    trial_id = trial_id or cfg.trial_id()
    base, addon = split_loss(cfg.loss)
    values: dict[str, Any] = {
        "sweep_id": sweep_id, "trial_id": trial_id, "attempt": attempt, "loss": cfg.loss,
        "base_loss": base, "addon": addon, "seed": cfg.seed, "study": study,
    }  # fmt: skip
    for name, value in cfg.to_flat().items():
        if name in JSON_PARAMS and value is not None:
            value = json.dumps(value, sort_keys=True, default=str)
        values[f"p_{name}"] = value
    prov = _provenance_values(provenance)
    prov.pop("written_at")
    values.update(prov)
    columns = {
        name: _array([value] * n, name, trial_id)
        for name, value in values.items()
        if value is not None
    }
    if key is not None:
        with _CONSTANTS_LOCK:
            _CONSTANTS[key] = (cfg, trial_id, columns)
            if len(_CONSTANTS) > _CONSTANTS_SIZE:
                _CONSTANTS.popitem(last=False)
    return trial_id, columns


def _extra_metrics(record: Mapping[str, Any], keys: Sequence[str], trial_id: str) -> str | None:
    extra = {}
    for key in keys:
        if key not in record:
            continue
        value = record[key]
        if value is not None and not isinstance(value, numbers.Real):
            raise StoreError(f"trial {trial_id}: metric {key!r} has non-numeric value {value!r}.")
        # JSON has no NaN: a metric not computed at this epoch is stored as null.
        extra[key] = None if value is None or math.isnan(value) else float(value)
    return json.dumps(extra) if extra else None


def _timestamp(value: Any, key: str) -> datetime | None:
    """Accept an aware/naive (taken as UTC) datetime, epoch seconds, or an ISO 8601 string."""
    if value is None or isinstance(value, datetime):
        stamp = value
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        stamp = datetime.fromtimestamp(value, tz=timezone.utc)
    elif isinstance(value, str):
        try:
            stamp = datetime.fromisoformat(value)
        except ValueError:
            raise StoreError(
                f"provenance {key!r} value {value!r} is not an ISO 8601 time."
            ) from None
    else:
        raise StoreError(f"provenance {key!r} value {value!r} is not a time.")
    if stamp is not None and stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=timezone.utc)
    return stamp


def _provenance_values(provenance: Mapping[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(provenance) - _PROVENANCE)
    if unknown:
        raise StoreError(
            f"provenance key {unknown[0]!r} is not a store column; "
            f"known keys are {', '.join(sorted(_PROVENANCE))}."
        )
    out = dict(provenance)
    for key in ("started_at", "written_at"):
        out[key] = _timestamp(out.get(key), key)
    if out["written_at"] is None:
        out["written_at"] = datetime.now(timezone.utc)
    return out


def _dist_version(name: str) -> str | None:
    # importlib.metadata reads the installed version without importing torch/ray (seconds saved).
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _git_sha() -> str:
    """HEAD of the checkout `bench` was imported from (+ "-dirty"), else "unknown".

    The checkout must be the one holding this package: an installed copy inside some other
    repository (a venv in a project) must not report that repository's commit.
    """
    package_dir = Path(bench.__file__).resolve().parent

    def git(*args: str) -> str:
        out = subprocess.run(
            ["git", *args], cwd=package_dir, capture_output=True, text=True, timeout=10, check=True
        )
        return out.stdout.strip()

    try:
        top = Path(git("rev-parse", "--show-toplevel")).resolve()
        if top / "bench" != package_dir:
            return "unknown"
        sha = git("rev-parse", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{sha}-dirty" if dirty else sha


def provenance() -> dict[str, Any]:
    """Provenance columns of this process; the caller adds `device_name` and `started_at`."""
    return {
        "git_sha": _git_sha(),
        "bench_version": bench.__version__,
        "torch_version": _dist_version("torch"),
        "ray_version": _dist_version("ray"),
        "device_name": None,
        "hostname": socket.gethostname(),
    }
