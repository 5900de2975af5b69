"""The results store: the only Parquet writer and reader (no torch, no Ray).

One long table, one row per (trial, epoch, label_fraction), declared once as `SCHEMA`
(README.md, "The results store"). Writing: `FragmentWriter`
publishes each reported result as a small immutable fragment, compacts a trial's fragments
when it ends (`compact`), and merges all trials into one file when the sweep ends
(`compact_sweep`). Reading: `read_results(path) -> DataFrame`, deduplicated. Modules: `schema` (the
columns), `rows` (trainer records -> rows, provenance), `layout` (paths, atomic publishing, sweep
metadata), `writer`, `reader`, `dedup`, `summary` (`bench results`).
"""

from bench.record import STATUSES
from bench.store.errors import StoreError, StoreWarning
from bench.store.layout import read_sweep_meta, resolve_storage, write_sweep_meta
from bench.store.reader import expand_extra, read_results
from bench.store.rows import make_rows, provenance, split_loss
from bench.store.schema import (
    DEDUP_KEYS,
    METRIC_COLUMNS,
    PARAM_COLUMNS,
    SCHEMA,
    SCHEMA_VERSION,
    SORT_KEYS,
    conform,
)
from bench.store.summary import format_summary, summarize
from bench.store.writer import FragmentWriter

__all__ = [
    "DEDUP_KEYS",
    "METRIC_COLUMNS",
    "PARAM_COLUMNS",
    "SCHEMA",
    "SCHEMA_VERSION",
    "SORT_KEYS",
    "STATUSES",
    "FragmentWriter",
    "StoreError",
    "StoreWarning",
    "conform",
    "expand_extra",
    "format_summary",
    "make_rows",
    "provenance",
    "read_results",
    "read_sweep_meta",
    "resolve_storage",
    "split_loss",
    "summarize",
    "write_sweep_meta",
]
