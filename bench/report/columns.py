"""What a report reads from the store: only the columns something asks for, since reading every
metric column of a 10^6-row store costs several times more than reading these.

The cells' identity and settings (`cells.KEEP`), the default metrics and the reported one, each
with its top-5 companion and its validation column, what the cells compute from
(`cells.METRIC_INPUTS`) and what the figures declare (`figures.columns`). A column the store's
schema does not have is left out; `m_extra` is read instead when one of them is a metric (a
plugin's metric, or a column newer than the store's schema).
"""

from __future__ import annotations

from bench.report import figures
from bench.report.cells import DEFAULT_METRICS, KEEP, METRIC_INPUTS


def _with_companions(metric: str) -> list[str]:
    """`metric`, its validation column and, for a top-1 accuracy, both top-5 columns."""
    col = metric if metric.startswith("m_") else f"m_{metric}"
    val = "m_val_" + col.removeprefix("m_")
    out = [col, val]
    if col.endswith("top1"):
        out += [col[:-4] + "top5", val[:-4] + "top5"]
    return out


def report_columns(metric: str | None) -> list[str]:
    """The store columns a report on `metric` (None: the default metric) needs."""
    from bench.store import METRIC_COLUMNS, SCHEMA

    wanted = [
        *KEEP,
        "attempt",
        "step",
        *(c for m in DEFAULT_METRICS for c in _with_companions(m)),
        *METRIC_INPUTS,
        *figures.columns(),
    ]
    if metric is not None:
        pair = _with_companions(metric)
        if pair[0] not in METRIC_COLUMNS and pair[0] not in wanted:
            pair = [*METRIC_COLUMNS, *pair]  # a plugin's metric lives in m_extra
        wanted += pair
    names = set(SCHEMA.names)
    cols = list(dict.fromkeys(c for c in wanted if c in names))
    if any(c.startswith("m_") and c not in names for c in wanted):
        cols.append("m_extra")
    return cols
