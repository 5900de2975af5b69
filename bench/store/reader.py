"""`read_results(path) -> DataFrame`: the only reader of the results store.

Reads every sweep's compacted trial files and not-yet-compacted fragments with the explicit
`SCHEMA` (columns a file lacks read as nulls: schema evolution), skips an unreadable file with a `StoreWarning` naming it, and dedups (`dedup.py`).
Files are read one by one (on a thread pool) rather than as one `pyarrow.dataset` scan: equally
fast on small files here, and one bad file then costs a warning instead of failing the scan.
Reading thousands of tiny files is still ~50x slower than one big file (benchmarks/store.py),
which is why trials are compacted when they end and a sweep's trials merged when it ends.
"""

from __future__ import annotations

import contextlib
import json
import os
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from bench.store.dedup import dedup, disjoint, span, with_span
from bench.store.errors import StoreError, StoreWarning, Vanished
from bench.store.layout import (
    FRAGMENT_SUFFIX,
    FRAGMENTS,
    MERGED,
    SWEEP_META,
    TRIALS,
    is_visible,
    join,
    list_files,
    resolve_storage,
)
from bench.store.schema import DEDUP_KEYS, SCHEMA, SORT_KEYS, cast_to

_READ_ERRORS = (pa.ArrowException, OSError, ValueError)
_NEEDED = (*DEDUP_KEYS, *SORT_KEYS, "attempt", "written_at")
# Decoding releases the GIL, so files are read on a pool: one thread per core locally
# (measured 1.7x faster on 2 cores, benchmarks/store.py), more on object stores to overlap latency.
_LOCAL_THREADS = min(8, max(2, os.cpu_count() or 2))
_REMOTE_THREADS = 16
_BIG_FILE_ROWS = 100_000  # a file at least this long is decoded on several threads
_UNIQUE_STRINGS = frozenset({"m_extra"})  # string columns whose values rarely repeat


def _read_raw(fs: pafs.FileSystem, path: str, names: Sequence[str]) -> pa.Table | Exception:
    """The file's columns among `names`, as stored (not yet cast); an error is returned."""
    try:
        with fs.open_input_file(path) as source:
            if path.endswith(FRAGMENT_SUFFIX):  # an Arrow IPC fragment
                table = pa.ipc.open_file(source).read_all()
                present = set(table.column_names)
                return table.select([n for n in names if n in present])
            parquet = pq.ParquetFile(source)
            present = set(parquet.schema_arrow.names)
            columns = [n for n in names if n in present]
            if parquet.metadata.num_rows < _BIG_FILE_ROWS:
                return parquet.read(columns=columns, use_threads=False)
            return _read_big(parquet, source, columns)
    except _READ_ERRORS as err:
        return err


def _read_big(parquet: pq.ParquetFile, source: pa.NativeFile, columns: list[str]) -> pa.Table:
    """A big file (a merged sweep): columns decoded in parallel, and its string columns (ids,
    names, JSON parameters: few distinct values each) read as dictionaries and expanded after,
    which is ~2x faster than pyarrow's own string decoding (benchmarks/store.py)."""
    schema = parquet.schema_arrow
    strings = [
        n for n in columns if n not in _UNIQUE_STRINGS and pa.types.is_string(schema.field(n).type)
    ]
    parquet = pq.ParquetFile(source, metadata=parquet.metadata, read_dictionary=strings)
    table = parquet.read(columns=columns, use_threads=True)
    encoded = [i for i, f in enumerate(table.schema) if pa.types.is_dictionary(f.type)]

    def expand(i: int) -> pa.ChunkedArray:
        return table.column(i).cast(table.schema.field(i).type.value_type)

    with ThreadPoolExecutor(max_workers=_LOCAL_THREADS) as pool:
        for i, column in zip(encoded, pool.map(expand, encoded)):
            table = table.set_column(i, table.schema.field(i).name, column)
    return table


def read_tables(
    fs: pafs.FileSystem, paths: Sequence[str], columns: Sequence[str] | None = None
) -> tuple[pa.Table, list[str]]:
    """Concatenate `paths` read with SCHEMA (or its `columns`); returns (table, paths read).

    Each file is read on its own, so an unreadable one (or one whose columns cannot be cast to
    the schema) is skipped with a StoreWarning without failing the others. A file that vanished
    since listing raises `Vanished`.
    """
    schema = SCHEMA if columns is None else pa.schema([SCHEMA.field(c) for c in columns])
    threads = _LOCAL_THREADS if fs.type_name in ("local", "mock") else _REMOTE_THREADS
    if len(paths) < 2:
        results = [_read_raw(fs, p, schema.names) for p in paths]
    else:
        with ThreadPoolExecutor(max_workers=min(threads, len(paths))) as pool:
            results = list(pool.map(lambda p: _read_raw(fs, p, schema.names), paths))
    tables, good = [], []
    for path, result in zip(paths, results):
        if isinstance(result, FileNotFoundError):
            raise Vanished(path) from result
        if isinstance(result, Exception):
            _skip(path, result)
        else:
            tables.append(result)
            good.append(path)
    if not tables:
        return schema.empty_table(), good
    # Concatenate in the readers' sort order of each file's first row: a compacted file is one
    # sorted trial, so a compacted sweep comes out already sorted and dedup need not reorder it.
    spans = [span(t) for t in tables]
    ordered = False
    with contextlib.suppress(TypeError):  # first rows of incomparable types: order is cosmetic
        order = sorted(range(len(tables)), key=lambda i: _first_row_key(tables[i]))
        tables, good = [tables[i] for i in order], [good[i] for i in order]
        spans, ordered = [spans[i] for i in order], True
    # Files marked sorted (compacted) that cannot hold two versions of one result, concatenated
    # in order, are sorted and deduplicated as a whole: keep the mark, so dedup is skipped.
    sorted_whole = ordered and None not in spans and disjoint(spans)  # type: ignore[arg-type]
    try:
        # One unification for all files (missing columns -> null, int32/int64 -> int64), then
        # one cast: ~4x cheaper than casting each small fragment.
        unified = pa.concat_tables([*tables, schema.empty_table()], promote_options="permissive")
        table = cast_to(unified, schema)
        if sorted_whole:
            sweeps, trials = {s for s, _ in spans}, {t for _, t in spans}  # type: ignore[misc]
            table = with_span(table, _only(sweeps), _only(trials))
        return table, good
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        pass  # some file holds a column that cannot be cast: find it, skip it
    kept, kept_paths = [], []
    for path, table in zip(good, tables):
        try:
            kept.append(cast_to(table, schema))
            kept_paths.append(path)
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as err:
            _skip(path, err)
    return (pa.concat_tables(kept) if kept else schema.empty_table()), kept_paths


def _only(ids: set[str | None]) -> str | None:
    return next(iter(ids)) if len(ids) == 1 else None


def _skip(path: str, err: Exception) -> None:
    warnings.warn(f"skipping unreadable results file {path}: {err}", StoreWarning, stacklevel=4)


def _first_row_key(table: pa.Table) -> tuple[tuple[bool, Any], ...]:
    names = set(table.column_names)
    values = [
        table.column(k)[0].as_py() if table.num_rows and k in names else None for k in SORT_KEYS
    ]
    return tuple((v is not None, v if v is not None else 0) for v in values)


def _is_sweep_dir(fs: pafs.FileSystem, path: str) -> bool:
    names = (FRAGMENTS, TRIALS, MERGED, SWEEP_META)
    infos = fs.get_file_info([join(path, name) for name in names])
    return any(i.type != pafs.FileType.NotFound for i in infos)


def _sweep_dirs(fs: pafs.FileSystem, path: str, sweep_id: str | None, shown: str) -> list[str]:
    if fs.get_file_info(path).type == pafs.FileType.NotFound:
        raise StoreError(f"no results under {shown}: the path does not exist.")
    if _is_sweep_dir(fs, path):
        return [path]
    if sweep_id is not None:
        candidates = [join(path, sweep_id)]
    else:
        infos = fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))
        candidates = sorted(
            i.path for i in infos
            if i.type == pafs.FileType.Directory and not i.base_name.startswith((".", "_"))
        )  # fmt: skip
    return [d for d in candidates if _is_sweep_dir(fs, d)]


def _result_files(fs: pafs.FileSystem, sweep_dirs: list[str]) -> list[str]:
    # Listed in the order compaction moves rows (fragments -> trials -> merged): each step
    # publishes its output before deleting its inputs, so a file that vanishes after listing has
    # its rows in a file listed later.
    files = [p for d in sweep_dirs for p in list_files(fs, join(d, FRAGMENTS), recursive=True)]
    files += [p for d in sweep_dirs for p in list_files(fs, join(d, TRIALS))]
    files += [p for d in sweep_dirs for p in list_files(fs, join(d, MERGED))]
    return [p for p in files if is_visible(p)]


def read_results(
    path: str | os.PathLike[str],
    sweep_id: str | None = None,
    *,
    columns: Sequence[str] | None = None,
    filesystem: pafs.FileSystem | None = None,
) -> pd.DataFrame:
    """All results under `path` (a storage root holding sweep dirs, or one sweep dir).

    One row per (sweep_id, trial_id, epoch, label_fraction): the highest attempt, then the latest
    write; sorted by (sweep_id, loss, trial_id, label_fraction, epoch). `columns` limits the
    columns read (the dedup keys are always included). `path` may be a pyarrow filesystem URI.
    Raises StoreError if there is nothing to read.
    """
    fs, root = resolve_storage(path, filesystem)
    shown = os.fspath(path)
    if columns is not None:
        unknown = [c for c in columns if SCHEMA.get_field_index(c) < 0]
        if unknown:
            raise StoreError(f"column {unknown[0]!r} is not in the results schema.")
        columns = [f.name for f in SCHEMA if f.name in set(columns) | set(_NEEDED)]
    dirs = _sweep_dirs(fs, root, sweep_id, shown)
    if not dirs:
        what = f"no sweep {sweep_id!r}" if sweep_id else "no sweep directories"
        raise StoreError(f"no results under {shown}: {what} (with fragments/ or trials/) found.")
    for _retry in range(3):
        files = _result_files(fs, dirs)
        if not files:
            raise StoreError(
                f"no results under {shown}: the sweep directories hold no Parquet files."
            )
        try:
            table, _ = read_tables(fs, files, columns)
            break
        except Vanished:
            continue  # a compaction moved rows meanwhile: list again
    else:
        raise StoreError(f"results under {shown} kept changing while being read; try again.")
    if sweep_id is not None:
        table = table.filter(pc.equal(table.column("sweep_id"), sweep_id))
        if table.num_rows == 0:
            raise StoreError(f"no results under {shown}: no rows of sweep {sweep_id!r}.")
    if table.num_rows == 0:
        raise StoreError(f"no results under {shown}: the Parquet files hold no rows.")
    # One block per column, Arrow's memory released column by column as it is converted: ~30%
    # less peak memory, and for a big first read (a new process, every page faulted in) 2-3x less
    # time than consolidating same-typed columns into new 2-D blocks (benchmarks/store.py). The
    # table is not used after this.
    return dedup(table).to_pandas(split_blocks=True, self_destruct=True)


def expand_extra(df: pd.DataFrame) -> pd.DataFrame:
    """Return `df` with each key of the JSON column `m_extra` (plugin losses' terms) as a column."""
    if "m_extra" not in df or df["m_extra"].isna().all():
        return df
    parsed = [json.loads(s) if isinstance(s, str) else {} for s in df["m_extra"]]
    extra = pd.DataFrame.from_records(parsed, index=df.index).astype("float64")
    return pd.concat([df, extra[[c for c in extra.columns if c not in df]]], axis=1)
