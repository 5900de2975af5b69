"""`FragmentWriter`: every reported result becomes one small immutable file at once.

A result is published as soon as it is reported (no buffer), so a crash of the driver loses
nothing already reported (a buffering callback would lose its buffer). Files are published
atomically (`layout.publish`). A fragment is an Arrow IPC file (`layout.py` says why); compaction
merges one trial's fragments into `trials/<trial_id>.parquet` because reading thousands of tiny
files is ~50-100x slower than one (benchmarks/store.py), and `compact_sweep` merges a finished
sweep's trials into one Parquet file (`bench sweep` and `bench tune` call it when they end), which
readers take without deduplicating again (`dedup.mark_sorted`).
"""

from __future__ import annotations

import functools
import os
import time
import uuid
import warnings
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs

from bench.config import TrialConfig
from bench.store.dedup import dedup, mark_sorted
from bench.store.errors import StoreError, StoreWarning, Vanished
from bench.store.layout import (
    FRAGMENTS,
    MERGED,
    TRIALS,
    check_id,
    compacted_path,
    fragment_dir,
    ipc_bytes,
    is_visible,
    join,
    list_files,
    new_fragment_name,
    publish_bytes,
    sweep_dir_of,
    write_parquet,
)
from bench.store.reader import read_tables
from bench.store.rows import row_columns, schema_table
from bench.store.schema import SCHEMA, conform

STALE_TMP_S = 600.0  # a ".tmp-" file this old belongs to a write that died


class FragmentWriter:
    """Writes results of one sweep under `<storage>/<sweep_id>/` (local path or fs URI)."""

    def __init__(
        self,
        storage: str | os.PathLike[str],
        sweep_id: str,
        *,
        filesystem: pafs.FileSystem | None = None,
    ) -> None:
        self.fs, self.sweep_dir = sweep_dir_of(storage, sweep_id, filesystem)
        self.sweep_id = sweep_id
        self._made_dirs: set[str] = set()  # create_dir once per directory, not per result
        self._closed = False

    def write(self, data: pa.Table | list[dict[str, Any]]) -> list[str]:
        """Publish rows (a `make_rows` table or schema-row dicts); returns the fragment paths.

        Rows are split into one fragment per (trial_id, epoch, attempt); a trainer result (all
        label fractions of one epoch) is one fragment.
        """
        if self._closed:
            raise StoreError(f"the results writer for {self.sweep_dir} is closed.")
        table = conform(data)
        if table.num_rows == 0:
            return []
        for key in ("trial_id", "epoch", "attempt", "label_fraction"):
            if table.column(key).null_count:
                raise StoreError(f"results rows for sweep {self.sweep_id} have no {key!r} value.")
        wrong = pc.unique(table.column("sweep_id")).to_pylist()
        if wrong != [self.sweep_id]:
            raise StoreError(
                f"rows for sweep {wrong[0]!r} given to the writer of sweep {self.sweep_id!r}."
            )
        return [self._write_fragment(part) for part in _split(table)]

    def write_records(
        self,
        records: Sequence[Mapping[str, Any]],
        *,
        cfg: TrialConfig,
        attempt: int,
        provenance: Mapping[str, Any],
        study: str | None = None,
        trial_id: str | None = None,
    ) -> list[str]:
        """`make_rows` + `write`: what the sweep's result callback calls per trainer result.

        The common case (one epoch's records) goes straight from the records to one fragment of
        their non-null columns, without the checks `write` needs for arbitrary tables.
        """
        if self._closed:
            raise StoreError(f"the results writer for {self.sweep_dir} is closed.")
        n, columns = row_columns(
            records, sweep_id=self.sweep_id, cfg=cfg, attempt=attempt,
            provenance=provenance, study=study, trial_id=trial_id,
        )  # fmt: skip
        if n == 0:
            return []
        epochs = {r["epoch"] for r in records}
        simple = (
            len(epochs) == 1
            and attempt is not None
            and "label_fraction" in columns
            and columns["label_fraction"].null_count == 0
        )
        if not simple or None in epochs:  # several epochs, or rows write() must refuse
            return self.write(schema_table(n, columns))
        trial = check_id("trial id", columns["trial_id"][0].as_py())
        table = pa.Table.from_arrays(list(columns.values()), schema=_sub_schema(tuple(columns)))
        return [self._publish_fragment(trial, int(next(iter(epochs))), attempt, table)]

    def _write_fragment(self, part: pa.Table) -> str:
        trial_id = check_id("trial id", part.column("trial_id")[0].as_py())
        epoch = part.column("epoch")[0].as_py()
        attempt = part.column("attempt")[0].as_py()
        # Columns without a value (probes before the last epoch, other losses' terms) are left
        # out: ~20% faster to write and read, and readers fill missing columns with nulls anyway.
        present = [c for c in part.column_names if part.column(c).null_count < part.num_rows]
        return self._publish_fragment(trial_id, epoch, attempt, part.select(present))

    def _publish_fragment(self, trial_id: str, epoch: int, attempt: int, table: pa.Table) -> str:
        directory = fragment_dir(self.sweep_dir, trial_id)
        if directory not in self._made_dirs:
            self.fs.create_dir(directory, recursive=True)
            self._made_dirs.add(directory)
        path = f"{directory}/{new_fragment_name(epoch, attempt)}"
        data = ipc_bytes(table)
        try:
            publish_bytes(self.fs, path, data)
        except FileNotFoundError:  # another writer's compaction removed the emptied directory
            self.fs.create_dir(directory, recursive=True)
            publish_bytes(self.fs, path, data)
        return path

    def compact(self, trial_id: str) -> str | None:
        """Merge a trial's fragments into `trials/<trial_id>.parquet`; returns its path.

        Crash-safe at every step: the merged file is published atomically before any fragment is
        deleted, and only fragments that went into it are deleted, so a crash leaves at worst
        duplicates, which readers drop. Idempotent. Unreadable fragments are left in place
        (readers keep warning about them). Returns None if the trial has no rows at all.
        """
        check_id("trial id", trial_id)
        frag_dir = fragment_dir(self.sweep_dir, trial_id)
        target = compacted_path(self.sweep_dir, trial_id)
        listed = list_files(self.fs, frag_dir)
        fragments = [p for p in listed if is_visible(p)]
        leftovers = [p for p in listed if os.path.basename(p).startswith(".tmp-")]
        exists = self.fs.get_file_info(target).type == pafs.FileType.File
        if fragments:
            try:
                table, read = read_tables(self.fs, fragments + ([target] if exists else []))
            except Vanished as err:  # only a concurrent compaction deletes fragments
                raise StoreError(
                    f"trial {trial_id} is being compacted by another process."
                ) from err
            if exists and target not in read:
                self._set_aside(target)
            if table.num_rows:
                self.fs.create_dir(join(self.sweep_dir, "trials"), recursive=True)
                write_parquet(self.fs, target, mark_sorted(dedup(table)))
                exists = True
            for path in (p for p in read if p != target):
                self.fs.delete_file(path)
        for info in self.fs.get_file_info(leftovers):
            # Temporaries of writes that crashed before their rename; a young one may be another
            # process's write in flight (a compaction run by hand during a sweep): leave it.
            if info.mtime is not None and time.time() - info.mtime.timestamp() > STALE_TMP_S:
                self.fs.delete_file(info.path)
        self._remove_if_empty(frag_dir)
        return target if exists else None

    def compact_all(self) -> list[str]:
        """Compact every trial that has fragments (at the end of a sweep, or after a crash)."""
        infos = self.fs.get_file_info(
            pafs.FileSelector(join(self.sweep_dir, FRAGMENTS), allow_not_found=True)
        )
        ids = sorted(
            i.base_name.removeprefix("trial=")
            for i in infos
            if i.type == pafs.FileType.Directory and i.base_name.startswith("trial=")
        )
        return [path for trial_id in ids if (path := self.compact(trial_id))]

    def compact_sweep(self) -> str | None:
        """Compact every trial, then merge all compacted trials into one `merged/<uuid8>.parquet`.

        Run by `bench sweep` and `bench tune` when they end: one file of many trials reads
        ~10-40x faster than one file per trial (benchmarks/store.py). Crash-safe like `compact`: the
        merged file is published before its inputs are deleted, and an input is deleted only if
        it is unchanged since it was read (a trial re-compacted meanwhile keeps its newer file).
        Fragments of trials still running are merged as well. Returns the merged file's path.
        """
        self.compact_all()
        inputs = [
            p
            for p in list_files(self.fs, join(self.sweep_dir, TRIALS))
            + list_files(self.fs, join(self.sweep_dir, MERGED))
            if is_visible(p)
        ]
        merged_dir = join(self.sweep_dir, MERGED)
        if not inputs:
            return None
        if len(inputs) == 1 and os.path.dirname(inputs[0]) == merged_dir:
            return inputs[0]  # already one merged file
        seen = {i.path: (i.mtime, i.size) for i in self.fs.get_file_info(inputs)}
        try:
            table, read = read_tables(self.fs, inputs)
        except Vanished as err:
            raise StoreError(
                f"sweep {self.sweep_id} is being compacted by another process."
            ) from err
        if table.num_rows == 0:
            return None
        self.fs.create_dir(merged_dir, recursive=True)
        target = join(merged_dir, f"{uuid.uuid4().hex[:8]}.parquet")
        # Trial files are sorted, deduplicated and hold disjoint trials: their concatenation
        # (read_tables orders them) needs no dedup, so merging is a read and a write.
        write_parquet(self.fs, target, mark_sorted(dedup(table)))
        for info in self.fs.get_file_info(read):
            if info.type == pafs.FileType.File and (info.mtime, info.size) == seen[info.path]:
                self.fs.delete_file(info.path)
        return target

    def _set_aside(self, path: str) -> None:
        """Rename an unreadable compacted file to a hidden name instead of overwriting it."""
        aside = join(
            os.path.dirname(path), f"_corrupt-{uuid.uuid4().hex[:8]}-{os.path.basename(path)}"
        )
        self.fs.move(path, aside)
        warnings.warn(
            f"unreadable compacted file {path} was moved to {aside}", StoreWarning, stacklevel=3
        )

    def _remove_if_empty(self, directory: str) -> None:
        if self.fs.get_file_info(directory).type != pafs.FileType.Directory:
            return
        if not self.fs.get_file_info(pafs.FileSelector(directory)):
            self.fs.delete_dir(directory)
            self._made_dirs.discard(directory)

    def close(self) -> None:
        """Nothing is buffered, so nothing is lost; later writes are refused."""
        self._closed = True

    def __enter__(self) -> FragmentWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


@functools.lru_cache(maxsize=64)
def _sub_schema(names: tuple[str, ...]) -> pa.Schema:
    """SCHEMA restricted to `names` (a fragment's non-null columns), in SCHEMA's order."""
    return pa.schema([SCHEMA.field(name) for name in names])


def _split(table: pa.Table) -> list[pa.Table]:
    """One table per (trial_id, epoch, attempt); the common case (one trainer result) is one."""
    keys = ["trial_id", "epoch", "attempt"]
    if all(pc.count_distinct(table.column(k), mode="all").as_py() == 1 for k in keys):
        return [table]
    groups = table.select(keys).group_by(keys, use_threads=False).aggregate([]).to_pylist()
    parts = []
    for group in groups:
        mask = pc.and_kleene(
            pc.and_kleene(
                pc.equal(table["trial_id"], group["trial_id"]),
                pc.equal(table["epoch"], group["epoch"]),
            ),
            pc.equal(table["attempt"], group["attempt"]),
        )
        parts.append(table.filter(mask))
    return parts
