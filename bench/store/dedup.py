"""Which version of a result wins: vectorized over integer codes, never a Python loop.

Duplicates are normal: a retried trial resumes from its last
checkpoint and re-reports the epochs after it with `attempt + 1`; a restored driver can write the
same result twice; a crash between writing a trial's compacted file and deleting its fragments
leaves both. Rule, per key (sweep_id, trial_id, epoch, label_fraction): keep the highest
`attempt`, then the latest `written_at`. And per trial: rows of an older attempt for epochs the
newest attempt has not reached are dropped, because they belong to a superseded run (a retry that
ended earlier, e.g. diverged, must not keep the old attempt's later epochs as if they followed it).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


def sorted_codes(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """Dense codes 0..k-1 whose order is the values' order: hash-encode, rank the few uniques.

    Nulls sort first (code 0). Cheaper than sorting a million strings (string sorts are the
    slowest step of "last row per trial", benchmarks/store.py).
    """
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()  # one dictionary for all rows
    encoded = pc.dictionary_encode(column)
    rank = pc.rank(encoded.dictionary, sort_keys="ascending", tiebreaker="dense").to_numpy()
    indices = pc.fill_null(encoded.indices, -1).to_numpy()
    return np.append(rank, 0)[indices].astype(np.int64)  # index -1 (null) -> 0


def _numbers(table: pa.Table, name: str, fill: float) -> np.ndarray:
    column = table.column(name)
    if pa.types.is_timestamp(column.type):
        column = column.cast(pa.int64())
    return pc.fill_null(column, fill).to_numpy().astype(np.float64)


def _combine(*codes: np.ndarray) -> np.ndarray | None:
    """One int64 ordered like the tuple of non-negative `codes`, or None if it would overflow."""
    sizes = [int(c.max(initial=0)) + 1 for c in codes]
    if math.prod(sizes) >= 2**62:
        return None
    key = np.zeros(len(codes[0]), np.int64)
    for c, size in zip(codes, sizes):
        key = key * size + c
    return key


def dedup_indices(table: pa.Table) -> np.ndarray:
    """Row indices of `table` to keep, ordered by SORT_KEYS (loss, trial, fraction, epoch)."""
    n = table.num_rows
    if n == 0:
        return np.zeros(0, np.int64)
    sweep = sorted_codes(table.column("sweep_id"))
    trial = sorted_codes(table.column("trial_id"))
    fraction = sorted_codes(table.column("label_fraction"))
    epoch = sorted_codes(table.column("epoch"))
    attempt = _numbers(table, "attempt", 0)
    written = _numbers(table, "written_at", 0)
    # Best version first within each key, then keep the first row of each key.
    key = _combine(sweep, trial, fraction, epoch)
    if key is None:  # astronomically many distinct values: sort on the columns themselves
        order = np.lexsort((-written, -attempt, epoch, fraction, trial, sweep))
        keys = np.stack([sweep[order], trial[order], fraction[order], epoch[order]])
        first = np.r_[True, (keys[:, 1:] != keys[:, :-1]).any(axis=0)]
    else:
        order = np.lexsort((-written, -attempt, key))
        first = np.r_[True, key[order][1:] != key[order][:-1]]
    keep = order[first]  # sorted by (sweep, trial, fraction, epoch)
    keep = keep[_current_attempt_mask(sweep[keep], trial[keep], epoch[keep], attempt[keep])]
    loss = sorted_codes(table.column("loss").take(pa.array(keep)))
    # Stable sorts: within (sweep, loss) rows keep their (trial, fraction, epoch) order.
    by_loss = _combine(sweep[keep], loss)
    if by_loss is None:
        return keep[np.lexsort((loss, sweep[keep]))]
    return keep[np.argsort(by_loss, kind="stable")]


def _current_attempt_mask(
    sweep: np.ndarray, trial: np.ndarray, epoch: np.ndarray, attempt: np.ndarray
) -> np.ndarray:
    """False for rows of an older attempt beyond the last epoch of their trial's newest attempt.

    Rows arrive grouped by (sweep, trial), so per-trial maxima are `reduceat` over runs.
    """
    starts = np.flatnonzero(np.r_[True, (sweep[1:] != sweep[:-1]) | (trial[1:] != trial[:-1])])
    sizes = np.diff(np.r_[starts, len(sweep)])
    newest = np.repeat(np.maximum.reduceat(attempt, starts), sizes)
    is_newest = attempt == newest
    reach = np.maximum.reduceat(np.where(is_newest, epoch, -1), starts)
    return is_newest | (epoch <= np.repeat(reach, sizes))


# Schema metadata of a table (and of the Parquet file it was written to) whose rows are already
# deduplicated and sorted by SORT_KEYS: compaction writes it, `read_tables` keeps it for a set of
# such files that cannot hold versions of the same result, and `dedup` then has nothing to do.
# Its value names what the rows span: {"sweep_id": id or null, "trial_id": id or null} (null:
# several).
SORTED = b"bench.store.sorted"


def span(table: pa.Table) -> tuple[str | None, str | None] | None:
    """The (sweep_id, trial_id) span of a table marked sorted, else None."""
    value = (table.schema.metadata or {}).get(SORTED)
    if value is None:
        return None
    try:
        parsed = json.loads(value)
        return parsed.get("sweep_id"), parsed.get("trial_id")
    except (ValueError, AttributeError):
        return None


def with_span(table: pa.Table, sweep_id: str | None, trial_id: str | None) -> pa.Table:
    """`table` marked deduplicated and sorted, spanning (sweep_id, trial_id) (None: several)."""
    value = json.dumps({"sweep_id": sweep_id, "trial_id": trial_id}).encode()
    return table.replace_schema_metadata({**(table.schema.metadata or {}), SORTED: value})


def mark_sorted(table: pa.Table) -> pa.Table:
    """Mark a `dedup` result as such, with the sweep and trial it holds if it holds one."""

    def only(name: str) -> str | None:
        values = pc.unique(table.column(name))
        return values[0].as_py() if len(values) == 1 else None

    return with_span(table, only("sweep_id"), only("trial_id") if table.num_rows else None)


def disjoint(spans: list[tuple[str | None, str | None]]) -> bool:
    """True if no two spans can hold versions of the same result (same sweep, same trial)."""
    trials: dict[str, set[str | None]] = {}
    for sweep_id, trial_id in spans:
        if sweep_id is None:
            return len(spans) == 1
        seen = trials.setdefault(sweep_id, set())
        if seen and (trial_id is None or None in seen or trial_id in seen):
            return False
        seen.add(trial_id)
    return True


def dedup(table: pa.Table) -> pa.Table:
    """`table` without superseded versions, sorted by `schema.SORT_KEYS`."""
    if span(table) is not None:
        return table  # marked: deduplicated and sorted already (a compacted file)
    keep = dedup_indices(table)
    if len(keep) == table.num_rows and (keep == np.arange(len(keep))).all():
        return table  # already deduplicated and sorted (a compacted sweep): skip a costly take
    return table.take(pa.array(keep))
