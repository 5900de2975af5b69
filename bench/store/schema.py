"""The one Parquet schema of the results store, and conforming tables to it.

One long table, one row per (trial, epoch, label_fraction), with column groups after
benchopt's result schema: identity, `p_*` parameters (one per `TrialConfig` field), curve,
`m_*` metrics (the record's, `bench.record.metric_columns`: the training measurements, the
built-in losses' terms and every metric family `bench.metrics` declares), provenance. The
schema is declared here once and passed explicitly to every reader, because pyarrow otherwise
infers a dataset schema from its first file and silently drops columns that only later files
have. New columns must be added as nullable columns so that files written by older versions
still read (as nulls): a new metric family's columns are exactly that.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from types import UnionType
from typing import Any

import pyarrow as pa

from bench.config import TrialConfig
from bench.record import metric_columns
from bench.store.errors import StoreError

# Version 2 (issue 9): validation-split accuracies `m_val_*` beside the test-split `m_*` ones,
# `m_num_classes`, `m_eval_epoch` (the epoch whose model a record's metrics describe: earlier
# than `epoch` for a diverged trial), geometry `m_{h,z}_nvar` and `m_{h,z}_dead`, and the
# `p_val_fraction`/`p_probe_*` parameters. All nullable: version-1 files read with them null.
SCHEMA_VERSION = "2"

IDENTITY_FIELDS: tuple[pa.Field, ...] = (
    pa.field("sweep_id", pa.string()),
    pa.field("trial_id", pa.string()),
    pa.field("attempt", pa.int32()),  # Ray's trial.num_failures: a retry re-reports epochs
    pa.field("loss", pa.string()),  # full name, e.g. "cloa+infonce"
    pa.field("base_loss", pa.string()),  # "infonce"
    pa.field("addon", pa.string()),  # "cloa" | "clop" | null
    pa.field("seed", pa.int64()),
    pa.field("status", pa.string()),  # running | done | diverged | error | timeout
    pa.field("final", pa.bool_()),
    pa.field("study", pa.string()),  # Optuna study name for `bench tune`, else null
)

CURVE_FIELDS: tuple[pa.Field, ...] = (
    pa.field("epoch", pa.int32()),
    pa.field("step", pa.int64()),
    pa.field("time_s", pa.float64()),
    pa.field("label_fraction", pa.float64()),
)

METRIC_COLUMNS: tuple[str, ...] = metric_columns()

PROVENANCE_FIELDS: tuple[pa.Field, ...] = (
    pa.field("git_sha", pa.string()),
    pa.field("bench_version", pa.string()),
    pa.field("torch_version", pa.string()),
    pa.field("ray_version", pa.string()),
    pa.field("device_name", pa.string()),
    pa.field("hostname", pa.string()),
    pa.field("started_at", pa.timestamp("us", tz="UTC")),
    pa.field("written_at", pa.timestamp("us", tz="UTC")),
)


def _param_type(annotation: Any) -> tuple[pa.DataType, bool]:
    """Arrow type of a TrialConfig field and whether values are stored as canonical JSON.

    Optional[X] maps like X (every column is nullable); tuples, lists and mappings (and any type
    this function does not know) become JSON strings so that a new config field never breaks
    the store.
    """
    args = typing.get_args(annotation)
    if isinstance(annotation, UnionType) or typing.get_origin(annotation) is typing.Union:
        rest = [a for a in args if a is not type(None)]
        if len(rest) == 1:
            return _param_type(rest[0])
        return pa.string(), True
    scalar = {bool: pa.bool_(), int: pa.int64(), float: pa.float64(), str: pa.string()}
    if annotation in scalar:
        return scalar[annotation], False
    return pa.string(), True


def _param_fields() -> tuple[tuple[pa.Field, ...], frozenset[str]]:
    hints = typing.get_type_hints(TrialConfig, {"Mapping": Mapping, "Any": Any})
    fields, json_names = [], set()
    for f in dataclasses.fields(TrialConfig):
        arrow_type, as_json = _param_type(hints[f.name])
        fields.append(pa.field(f"p_{f.name}", arrow_type))
        if as_json:
            json_names.add(f.name)
    return tuple(fields), frozenset(json_names)


PARAM_FIELDS, JSON_PARAMS = _param_fields()
PARAM_COLUMNS: tuple[str, ...] = tuple(f.name for f in PARAM_FIELDS)

SCHEMA: pa.Schema = pa.schema(
    [
        *IDENTITY_FIELDS,
        *PARAM_FIELDS,
        *CURVE_FIELDS,
        *(pa.field(name, pa.float64()) for name in METRIC_COLUMNS),
        pa.field("m_extra", pa.string()),  # JSON object of m_ keys not in METRIC_COLUMNS
        *PROVENANCE_FIELDS,
    ],
    metadata={"bench.store.schema_version": SCHEMA_VERSION},
)

# Rows with equal keys are versions of the same result; the reader keeps one of them.
DEDUP_KEYS = ("sweep_id", "trial_id", "epoch", "label_fraction")
SORT_KEYS = ("sweep_id", "loss", "trial_id", "label_fraction", "epoch")


def conform(data: pa.Table | list[dict[str, Any]]) -> pa.Table:
    """Return rows to be written as a table with exactly SCHEMA's columns, in order and types.

    Missing columns become nulls; a column not in SCHEMA is an error (it would be lost).
    """
    if isinstance(data, pa.Table) and data.schema.equals(SCHEMA, check_metadata=False):
        return data  # what make_rows returns: nothing to check
    if isinstance(data, list):
        names = {key for row in data for key in row}
    elif isinstance(data, pa.Table):
        names = set(data.column_names)
    else:
        raise TypeError(f"expected a pyarrow.Table or a list of row dicts, got {type(data)!r}")
    unknown = sorted(name for name in names if SCHEMA.get_field_index(name) < 0)
    if unknown:
        raise StoreError(
            f"results rows have column {unknown[0]!r}, which is not in the store schema."
        )
    if isinstance(data, list):
        return pa.Table.from_pylist(data, schema=SCHEMA)
    return cast_to(data, SCHEMA)


def cast_to(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """`table` with exactly `schema`'s columns: others dropped, missing ones null, types cast.

    How files written under an older (or newer) schema are read. Raises pyarrow's error if a
    column cannot be cast.
    """
    if table.schema.equals(schema, check_metadata=False):
        return table.replace_schema_metadata(schema.metadata)
    names = set(table.column_names)
    columns = [
        table.column(f.name).cast(f.type) if f.name in names else pa.nulls(table.num_rows, f.type)
        for f in schema
    ]
    return pa.Table.from_arrays(columns, schema=schema)
