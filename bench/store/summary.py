"""The per-loss summary of what a store holds (finished or still running): `bench results`."""

from __future__ import annotations

import math

import pandas as pd

SUMMARY_COLUMNS = (
    "sweep_id", "loss", "trials", "done", "diverged", "timeout", "error", "running",
    "best_knn_top1", "best_linear_top1", "last_epoch",
)  # fmt: skip
_COUNTED = ("done", "diverged", "timeout", "error", "running")
# What `summarize` reads besides the dedup and sort keys (`read_results` adds those).
COLUMNS = ("status", "final", "m_knn_top1", "m_linear_top1")


def summarize(df: pd.DataFrame) -> pd.DataFrame:
    """One row per (sweep_id, loss): trial counts by last status, best final top-1, last epoch.

    A trial's status is that of its latest epoch (its final rows, once it has ended). Best
    accuracies are over final rows (probes run at the end only), as fractions in [0, 1].
    """
    if df.empty:
        return pd.DataFrame(columns=list(SUMMARY_COLUMNS))
    keys = ["sweep_id", "loss"]
    latest = df.loc[df.groupby(["sweep_id", "trial_id"], sort=False)["epoch"].idxmax()]
    counts = (
        pd.crosstab([latest["sweep_id"], latest["loss"]], latest["status"])
        .reindex(columns=list(_COUNTED), fill_value=0)
        .rename_axis(columns=None)
    )
    final = df[df["final"].fillna(False).astype(bool)]
    grouped = df.groupby(keys)
    out = pd.DataFrame(
        {"trials": grouped["trial_id"].nunique(), "last_epoch": grouped["epoch"].max()}
    )
    out = out.join(counts)
    best = final.groupby(keys)[["m_knn_top1", "m_linear_top1"]].max()
    best.columns = ["best_knn_top1", "best_linear_top1"]
    out = out.join(best).reset_index()
    for name in _COUNTED:
        out[name] = out[name].fillna(0).astype("int64")
    return out.reindex(columns=list(SUMMARY_COLUMNS)).sort_values(keys, ignore_index=True)


def _cell(value: object) -> str:
    if isinstance(value, float):
        return "-" if math.isnan(value) else f"{100 * value:.1f}"
    return str(value)


def _align(cells: list[str], widths: list[int]) -> str:
    # First column (loss) left-aligned, numbers right-aligned.
    return "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths)))


def format_summary(summary: pd.DataFrame) -> str:
    """Plain-text table, one block per sweep; accuracies in percent, "-" where none is final."""
    headers = ["loss", "trials", "done", "diverged", "timeout", "error", "running",
               "best kNN top-1 %", "best linear top-1 %", "last epoch"]  # fmt: skip
    if summary.empty:
        return "no results"
    blocks = []
    for sweep_id, part in summary.groupby("sweep_id", sort=True):
        table = part[list(SUMMARY_COLUMNS[1:])].itertuples(index=False)
        rows = [[_cell(v) for v in rec] for rec in table]
        widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
        lines = [f"sweep {sweep_id}", _align(headers, widths)]
        blocks.append("\n".join(lines + [_align(r, widths) for r in rows]))
    note = (
        "best: the largest final test value of any trial, to watch a sweep; chosen on test and "
        "pooled over datasets, so no result: `bench report` selects on validation."
    )
    return "\n\n".join(blocks) + "\n" + note
