"""Which stored rows a report reads, and how a metric becomes a score.

A *cell* is one (sweep, trial, label fraction): its final row when the trial finished, else its
latest row (the trial is still running, or died without a final record). Every table, curve and
leaderboard column is computed from cells; only the per-epoch curves read the raw rows.

Scoring rule: a finished cell scores its metric value; a diverged cell whose accuracy is missing
scores 0 (it learned nothing usable, so it must pull the loss down rather than vanish from the
average); an unfinished cell scores NaN and is counted as "running" instead.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

import numpy as np
import pandas as pd

DEFAULT_METRICS = ("m_linear_top1", "m_knn_top1")
# Columns a cell keeps besides the m_* metrics.
_KEEP = ("sweep_id", "trial_id", "loss", "base_loss", "addon", "seed", "status", "final", "epoch",
         "label_fraction", "p_lr", "p_batch_size", "p_loss_params", "p_dataset", "written_at")


class MetricError(ValueError):
    """An unknown or empty metric; the message lists the metrics that have values."""

    user_error = True


def select_cells(df: pd.DataFrame) -> pd.DataFrame:
    """One row per (sweep_id, trial_id, label_fraction): the final row if present, else the latest.

    "Latest" orders by (final, epoch, step, attempt). Vectorised with factorize + lexsort: a
    string sort of 10^6 rows is the slowest step of a report otherwise (reference/performance.md).
    The result carries `entry` (display name), `lr`, `batch_size`, `finished` and `diverged`.
    """
    if df.empty:
        raise ValueError("the results hold no rows, so there is nothing to report.")
    key = np.zeros(len(df), dtype=np.int64)
    for col in ("sweep_id", "trial_id", "label_fraction"):
        codes, uniques = pd.factorize(df[col], use_na_sentinel=False)
        key = key * (len(uniques) + 1) + codes
    sort_cols = [_int_column(df, c) for c in ("attempt", "step", "epoch")]
    order = np.lexsort((*sort_cols, df["final"].fillna(False).to_numpy(bool), key))
    ks = key[order]
    last = np.ones(len(ks), dtype=bool)
    last[:-1] = ks[1:] != ks[:-1]
    keep = [c for c in df.columns if c in _KEEP or c.startswith("m_")]
    cells = df[keep].iloc[order[last]].reset_index(drop=True)
    cells["finished"] = cells["final"].fillna(False).astype(bool)
    cells["diverged"] = cells["finished"] & (cells["status"].astype(str) == "diverged")
    cells["lr"] = cells["p_lr"].astype(float)
    cells["batch_size"] = cells["p_batch_size"].astype(np.int64)
    cells["label_fraction"] = cells["label_fraction"].astype(float)
    cells["entry"] = entry_names(cells)
    cells["entry_suffix"] = dataset_suffix(cells)
    order_cols = ["sweep_id", "entry", "batch_size", "lr", "label_fraction", "seed", "trial_id"]
    return cells.sort_values(order_cols, kind="mergesort").reset_index(drop=True)


def _int_column(df: pd.DataFrame, col: str) -> np.ndarray:
    if col not in df.columns:
        return np.zeros(len(df), dtype=np.int64)
    return df[col].fillna(-1).to_numpy(np.int64)


def dataset_suffix(cells: pd.DataFrame) -> pd.Series:
    """" · <dataset>" for the rows of a sweep that ran several datasets, else "".

    A sweep over two datasets (the demo's digits and synthetic subspaces) must never average or
    take the best over cells of different datasets, so each (loss, dataset) is its own entry.
    """
    empty = pd.Series("", index=cells.index, dtype=object)
    if "p_dataset" not in cells.columns:
        return empty
    datasets = cells["p_dataset"].fillna("").astype(str)
    many = datasets.groupby(cells["sweep_id"].astype(str)).transform("nunique").to_numpy() > 1
    return empty.where(~many, " · " + datasets)


def entry_names(cells: pd.DataFrame) -> pd.Series:
    """The row label of a loss: its name, plus its parameters when one sweep ran several, plus
    its dataset when one sweep ran several.

    A per-loss parameter grid (e.g. two InfoNCE temperatures) would otherwise be averaged over
    seeds as if it were one method.
    """
    suffix = dataset_suffix(cells)
    names = cells["loss"].astype(str)
    if "p_loss_params" not in cells.columns:
        return names + suffix
    params = cells["p_loss_params"].fillna("{}").astype(str)
    n_params = params.groupby([cells["sweep_id"].astype(str), names]).transform("nunique")
    many = n_params.to_numpy() > 1
    out = names.copy()
    out[many] = [f"{n} {_compact(p)}" for n, p in zip(names[many], params[many])]
    return out + suffix


def _compact(params_json: str) -> str:
    try:
        params = json.loads(params_json)
    except ValueError:
        return params_json
    if not isinstance(params, dict):
        return params_json
    return "(" + ", ".join(f"{k}={params[k]}" for k in sorted(params)) + ")"


def available_metrics(cells: pd.DataFrame, finished_only: bool = False) -> list[str]:
    """Numeric m_* columns with at least one value (in a finished cell if asked), sorted."""
    rows = cells[cells["finished"]] if finished_only else cells
    return sorted(c for c in cells.columns
                  if c.startswith("m_") and pd.api.types.is_numeric_dtype(cells[c])
                  and rows[c].notna().any())


def resolve_metric(cells: pd.DataFrame, name: str | None = None) -> str:
    """`name` (with or without the `m_` prefix) or the default; MetricError if it has no values.

    Default: `m_linear_top1` when finished cells have it (the paper-style linear probe), else
    `m_knn_top1` (evaluated every epoch, so a sweep with no finished trial yet still gets a
    report of what is running).
    """
    available = available_metrics(cells)
    if name is None:
        if "m_linear_top1" in available_metrics(cells, finished_only=True):
            return "m_linear_top1"
        if "m_knn_top1" in available:
            return "m_knn_top1"
        raise MetricError("the results have no m_linear_top1 or m_knn_top1 values; choose a "
                          f"metric with --metric from: {_listing(available)}.")
    col = name if name.startswith("m_") else f"m_{name}"
    if col not in available:
        raise MetricError(f"unknown metric {name!r}: the metrics with values in these results are "
                          f"{_listing(available)}.")
    return col


def _listing(names: Iterable[str]) -> str:
    names = list(names)
    return ", ".join(n.removeprefix("m_") for n in names) if names else "(none)"


def top5_of(metric: str, cells: pd.DataFrame) -> str | None:
    """The top-5 companion of a top-1 metric, when the store has values for it."""
    if not metric.endswith("top1"):
        return None
    col = metric[: -len("top1")] + "top5"
    return col if col in available_metrics(cells) else None


def score(cells: pd.DataFrame, col: str) -> pd.Series:
    """Metric values under the scoring rule in the module docstring (diverged -> 0 if missing)."""
    values = cells[col].astype(float)
    values = values.mask(cells["diverged"] & values.isna(), 0.0)
    return values.where(cells["finished"])


def focus_label_fraction(cells: pd.DataFrame) -> float:
    """The smallest label fraction: the label-scarce regime CLOA's Figure 2 shows (10%)."""
    return float(cells["label_fraction"].min())


def completeness(cells: pd.DataFrame) -> pd.DataFrame:
    """Per (sweep_id, loss): trials and cells seen, finished, diverged and running.

    A trial is finished when every label fraction it is evaluated at has its final row.
    """
    per_trial = cells.groupby(["sweep_id", "entry", "trial_id"], sort=True).agg(
        done=("finished", "all"), diverged=("diverged", "any"))
    trials = per_trial.groupby(["sweep_id", "entry"], sort=True).agg(
        trials_seen=("done", "size"), trials_done=("done", "sum"),
        trials_diverged=("diverged", "sum"))
    cell_counts = cells.groupby(["sweep_id", "entry"], sort=True).agg(
        cells_seen=("finished", "size"), cells_done=("finished", "sum"))
    out = trials.join(cell_counts).reset_index().rename(columns={"entry": "loss"})
    out["trials_running"] = out["trials_seen"] - out["trials_done"]
    for col in out.columns[2:]:
        out[col] = out[col].astype(int)
    return out[["sweep_id", "loss", "trials_seen", "trials_done", "trials_running",
                "trials_diverged", "cells_seen", "cells_done"]]
