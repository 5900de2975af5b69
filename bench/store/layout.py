"""Where results live and how files are published without ever being seen half-written.

Layout under `<storage>/<sweep_id>/` (README.md, "The results store"):

    sweep.json                                          sweep metadata, replaced atomically
    fragments/trial=<trial_id>/<epoch:05d>-<attempt>-<uuid8>.arrow     one per reported result
    trials/<trial_id>.parquet                           a trial's compacted rows
    merged/<uuid8>.parquet                              many trials' rows (end-of-sweep merge)

Fragments are Arrow IPC files (`.arrow`): they live only until their trial is compacted, and an
IPC file of one result is written ~10x faster than a Parquet file of the same ~85 columns, whose
per-column encoding and footer dominate at two rows (benchmarks/store.py). Readers take both, so
stores written with Parquet fragments still read. Everything that stays is Parquet.

Publishing: on a local disk, NFS or HDFS a file is written
under a temporary name starting with "." in the same directory and then renamed; a rename within
one filesystem is atomic, so a crash leaves either nothing or the whole file, and readers skip
names starting with "." or "_". Object stores (S3, GCS, Azure) have no atomic rename (`move` is
copy + delete) but make an object visible only once its upload completes, so there the final key
is written directly.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import uuid
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import PurePosixPath
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from bench.store.errors import StoreError

_OBJECT_STORES = frozenset({"s3", "gcs", "abfs"})
_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.=+-]*$")
FRAGMENTS, TRIALS, MERGED, SWEEP_META = "fragments", "trials", "merged", "sweep.json"
FRAGMENT_SUFFIX = ".arrow"  # Arrow IPC file format
RESULT_SUFFIXES = (".parquet", FRAGMENT_SUFFIX)


def resolve_storage(
    storage: str | os.PathLike[str], filesystem: pafs.FileSystem | None = None
) -> tuple[pafs.FileSystem, str]:
    """Split `storage` into a pyarrow filesystem and a path inside it.

    A URI (`s3://bucket/x`, `gs://...`, `file:///abs`, `mock://`) goes through
    `pyarrow.fs.FileSystem.from_uri`; a plain path is made absolute on the local disk. With an
    explicit `filesystem`, `storage` is a path inside it.
    """
    text = os.fspath(storage)
    if filesystem is not None:
        return filesystem, text.rstrip("/")
    if "://" in text:
        try:
            fs, path = pafs.FileSystem.from_uri(text)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError) as err:
            raise StoreError(f"storage URI {text!r} is not usable by pyarrow.fs ({err}).") from err
        return fs, path.rstrip("/")
    return pafs.LocalFileSystem(), os.path.abspath(text)


def join(*parts: str) -> str:
    return str(PurePosixPath(*[p for p in parts if p]))


def check_id(kind: str, value: str) -> str:
    """Ids become directory and file names: refuse what would escape or be hidden from readers."""
    if not isinstance(value, str) or not _SAFE_ID.match(value):
        raise StoreError(
            f"{kind} {value!r} cannot name a results directory; use letters, digits and _.=+- "
            "and start with a letter or digit."
        )
    return value


def fragment_dir(sweep_dir: str, trial_id: str) -> str:
    return join(sweep_dir, FRAGMENTS, f"trial={trial_id}")


def compacted_path(sweep_dir: str, trial_id: str) -> str:
    return join(sweep_dir, TRIALS, f"{trial_id}.parquet")


def is_visible(path: str) -> bool:
    """Readers see `*.parquet` and `*.arrow` files whose names do not start with "." or "_"
    (temporaries)."""
    name = path.rpartition("/")[2]
    return name.endswith(RESULT_SUFFIXES) and not name.startswith((".", "_"))


def list_files(fs: pafs.FileSystem, directory: str, recursive: bool = False) -> list[str]:
    """Paths of the plain files under `directory` (none if it does not exist), sorted."""
    selector = pafs.FileSelector(directory, allow_not_found=True, recursive=recursive)
    infos = fs.get_file_info(selector)
    return sorted(i.path for i in infos if i.type == pafs.FileType.File)


def publish(fs: pafs.FileSystem, path: str, write: Callable[[str], None]) -> None:
    """Make `path` appear complete or not at all: `write(p)` writes a file at `p`."""
    if fs.type_name in _OBJECT_STORES:
        write(path)  # the object becomes visible only when its upload completes
        return
    tmp = join(
        str(PurePosixPath(path).parent), f".tmp-{uuid.uuid4().hex[:8]}-{PurePosixPath(path).name}"
    )
    try:
        write(tmp)
        fs.move(tmp, path)  # rename: atomic within one filesystem, replaces an existing file
    except BaseException:
        # Never written, or the failure was the disk itself: readers skip ".tmp-" names anyway.
        with contextlib.suppress(OSError):
            fs.delete_file(tmp)
        raise


def publish_bytes(fs: pafs.FileSystem, path: str, data: pa.Buffer | bytes) -> None:
    """`publish` of a file's whole content; on a local disk straight through the OS (a fragment
    per reported result: the pyarrow filesystem layer costs more than the write itself)."""
    if fs.type_name != "local":

        def write(p: str) -> None:
            with fs.open_output_stream(p) as out:
                out.write(data)

        publish(fs, path, write)
        return
    head, _, name = path.rpartition("/")
    tmp = f"{head}/.tmp-{uuid.uuid4().hex[:8]}-{name}"
    try:
        with open(tmp, "wb") as out:
            out.write(data)
        os.replace(tmp, path)  # atomic within one filesystem, replaces an existing file
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def ipc_bytes(table: pa.Table) -> pa.Buffer:
    """`table` as an Arrow IPC file (uncompressed: fragments are small and short-lived)."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_file(sink, table.schema) as out:
        out.write_table(table)
    return sink.getvalue()


def write_parquet(fs: pafs.FileSystem, path: str, table: pa.Table, **options: Any) -> None:
    publish(fs, path, lambda p: pq.write_table(table, p, filesystem=fs, **options))


def new_fragment_name(epoch: int, attempt: int) -> str:
    # The uuid makes a re-reported epoch (retry, restored driver) a new file, never an overwrite.
    return f"{epoch:05d}-{attempt}-{uuid.uuid4().hex[:8]}{FRAGMENT_SUFFIX}"


def sweep_dir_of(
    storage: str | os.PathLike[str], sweep_id: str, filesystem: pafs.FileSystem | None = None
) -> tuple[pafs.FileSystem, str]:
    fs, root = resolve_storage(storage, filesystem)
    return fs, join(root, check_id("sweep id", sweep_id))


def write_sweep_meta(
    storage: str | os.PathLike[str],
    sweep_id: str,
    meta: dict[str, Any],
    *,
    filesystem: pafs.FileSystem | None = None,
) -> str:
    """Atomically write `<storage>/<sweep_id>/sweep.json`; returns its path.

    `meta` is any JSON-able dict (space file content and hash, trial count, ...); `sweep_id` and,
    if absent, `created_at` (UTC, ISO 8601) are added.
    """
    fs, sweep_dir = sweep_dir_of(storage, sweep_id, filesystem)
    body = {"created_at": datetime.now(timezone.utc).isoformat(), **meta, "sweep_id": sweep_id}
    data = json.dumps(body, indent=2, sort_keys=True, default=str).encode()
    fs.create_dir(sweep_dir, recursive=True)

    def write(p: str) -> None:
        with fs.open_output_stream(p) as out:
            out.write(data)

    path = join(sweep_dir, SWEEP_META)
    publish(fs, path, write)
    return path


def read_sweep_meta(
    storage: str | os.PathLike[str], sweep_id: str, *, filesystem: pafs.FileSystem | None = None
) -> dict[str, Any]:
    """Read `<storage>/<sweep_id>/sweep.json`; StoreError if it is missing or not JSON."""
    fs, sweep_dir = sweep_dir_of(storage, sweep_id, filesystem)
    path = join(sweep_dir, SWEEP_META)
    try:
        with fs.open_input_stream(path) as src:
            return json.loads(src.read())
    except FileNotFoundError:
        raise StoreError(
            f"no sweep metadata at {path}: the sweep {sweep_id!r} was never started there."
        ) from None
    except (OSError, ValueError) as err:
        raise StoreError(f"sweep metadata {path} is unreadable ({err}).") from err
