"""Which stored rows a report reads, and how a metric becomes a score.

A *cell* is one (sweep, trial, label fraction): its final row when the trial finished, else its
latest row (the trial is still running, or died without a final record). Every table, curve and
leaderboard column is computed from cells; only the per-epoch curves read the raw rows.

Scoring rule: a finished cell scores its metric value; a diverged cell whose accuracy is missing
scores chance (it learned nothing usable: it must pull the loss down to what guessing gives,
rather than vanish from the average); an unfinished cell scores NaN and is counted as "running".
Above chance, a cell's score is `(acc - chance) / (1 - chance)`: 0 = guessing, 1 = perfect.

Chance of a top-k metric is k / classes, with the class count from `m_num_classes` (stores
written since the validation protocol) or else from the dataset name (`CLASSES`; for
`synthetic_subspaces`, the `k` of `p_dataset_params`, default 3).

Selection: every selected setting is chosen on the validation version of the reported metric
(`m_val_<metric>`); a sweep without validation values falls back to the test metric itself, and
the report says so in a banner (`selection_columns`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

DEFAULT_METRICS = ("m_linear_top1", "m_knn_top1")
# The store columns the cells read besides the reported metric: the collapse rule's geometry and
# the class count of the chance level (bench.report.columns asks the store for these).
METRIC_INPUTS = ("m_h_nvar", "m_h_dead", "m_h_rankme", "m_num_classes")
# Probe settings (p_* columns) that say which probe produced a linear/FFN number.
PROBE_PARAMS = (
    "p_probe_features",
    "p_probe_optimizer",
    "p_probe_lr",
    "p_probe_batch_size",
    "p_probe_epochs",
    "p_ffn_hidden",
)
# Class counts of the built-in datasets, for stores without m_num_classes.
CLASSES = {"digits": 10, "cifar10": 10, "cifar100": 100, "tiny_imagenet": 200}
SUBSPACES = "synthetic_subspaces"  # classes = dataset_params["k"], default 3
UNKNOWN_DATASET = "unknown"
# Columns a cell keeps besides the m_* metrics.
KEEP = (
    "sweep_id",
    "trial_id",
    "loss",
    "base_loss",
    "addon",
    "seed",
    "status",
    "final",
    "epoch",
    "label_fraction",
    "p_lr",
    "p_batch_size",
    "p_loss_params",
    "p_dataset",
    "written_at",
    "p_dataset_params",
    "p_val_fraction",
    *PROBE_PARAMS,
)


class MetricError(ValueError):
    """An unknown or empty metric; the message lists the metrics that have values."""

    user_error = True


def select_cells(df: pd.DataFrame) -> pd.DataFrame:
    """One row per (sweep_id, trial_id, label_fraction): the final row if present, else the latest.

    "Latest" orders by (final, epoch, step, attempt). Vectorised with factorize + lexsort: a
    string sort of 10^6 rows is the slowest step of a report otherwise (benchmarks/report.py).
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
    keep = [c for c in df.columns if c in KEEP or c.startswith(("m_", "p_"))]
    cells = df[keep].iloc[order[last]].reset_index(drop=True)
    cells["finished"] = cells["final"].fillna(False).astype(bool)
    cells["diverged"] = cells["finished"] & (cells["status"].astype(str) == "diverged")
    cells["lr"] = cells["p_lr"].astype(float)
    cells["batch_size"] = cells["p_batch_size"].astype(np.int64)
    cells["label_fraction"] = cells["label_fraction"].astype(float)
    cells["dataset"] = (
        cells["p_dataset"].fillna(UNKNOWN_DATASET).astype(str)
        if "p_dataset" in cells.columns
        else UNKNOWN_DATASET
    )
    cells = distinguish_datasets(cells)
    cells["entry"] = entry_names(cells)
    # A variant pairs with the base loss of its own settings and dataset (tables.entry_info).
    in_dataset = dataset_suffix(cells)
    cells["setting"] = setting_suffix(cells)
    cells["entry_suffix"] = cells["setting"] + in_dataset
    # The display name within a dataset's tables and figures: the entry without its dataset.
    cells["name"] = [e[: len(e) - len(x)] if x else e for e, x in zip(cells["entry"], in_dataset)]
    order_cols = ["sweep_id", "entry", "batch_size", "lr", "label_fraction", "seed", "trial_id"]
    return cells.sort_values(order_cols, kind="mergesort").reset_index(drop=True)


def distinguish_datasets(cells: pd.DataFrame) -> pd.DataFrame:
    """Name a dataset by its parameters too where the cells hold one dataset name with several
    parameter sets (a sweep `--against` another with other `dataset_params`, or a grid over
    them): "synthetic_subspaces (n_train=1024)" and "synthetic_subspaces (n_train=3000)" are two
    datasets, ranked, tabled and given chance levels apart. Only the differing keys are named."""
    if "p_dataset_params" not in cells.columns:
        return cells
    params = cells["p_dataset_params"].fillna("{}").astype(str)
    out = cells.copy()
    for name, group in params.groupby(cells["dataset"], sort=True):
        sets = {p: json_dict(p) for p in group.unique()}
        if len(sets) < 2:
            continue
        keys = sorted({k for d in sets.values() for k in d})
        differ = [k for k in keys if len({repr(d.get(k)) for d in sets.values()}) > 1]
        for p, d in sets.items():
            label = ", ".join(f"{k}={d.get(k, '-')}" for k in differ)
            out.loc[(cells["dataset"] == name) & (params == p), "dataset"] = f"{name} ({label})"
    return out


def json_dict(value: object) -> dict[str, Any]:
    """A `p_*` JSON column's value (loss or dataset parameters) as a dict; {} if it is none."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return {}
    return value if isinstance(value, dict) else {}


def _int_column(df: pd.DataFrame, col: str) -> np.ndarray:
    if col not in df.columns:
        return np.zeros(len(df), dtype=np.int64)
    return df[col].fillna(-1).to_numpy(np.int64)


def dataset_suffix(cells: pd.DataFrame) -> pd.Series:
    """ " · <dataset>" for the rows of a sweep that ran several datasets, else "".

    A sweep over two datasets (the demo's digits and synthetic subspaces) must never average or
    take the best over cells of different datasets, so each (loss, dataset) is its own entry.
    """
    empty = pd.Series("", index=cells.index, dtype=object)
    datasets = cells["dataset"].astype(str)
    many = datasets.groupby(cells["sweep_id"].astype(str)).transform("nunique").to_numpy() > 1
    return empty.where(~many, " · " + datasets)


# Grid axes the report lays out itself, and keys that differ between the trials of one method
# only because of how a sweep groups label fractions: never part of an entry's settings.
_AXES = frozenset(
    {
        "p_lr",
        "p_batch_size",
        "p_seed",
        "p_label_fractions",
        "p_loss",
        "p_loss_params",
        "p_dataset",
        "p_dataset_params",
        "p_pretrain_label_fraction",
    }
)


def setting_suffix(cells: pd.DataFrame) -> pd.Series:
    """ " [key=value, ...]" of the trial settings a sweep varies besides the report's axes.

    An ablation grid (optimizer x schedule x projector) would otherwise pool its settings into
    one entry per loss: each combination is its own method, paired with the base loss of the
    same combination.
    """
    out = pd.Series("", index=cells.index, dtype=object)
    # Within one dataset of one sweep: per-dataset settings (the demo's widths) are not ablations.
    groups = cells["sweep_id"].astype(str) + "\x1f" + cells["dataset"].astype(str)
    for col in sorted(c for c in cells.columns if c.startswith("p_") and c not in _AXES):
        values = cells[col].astype(str)
        many = values.groupby(groups).transform("nunique").to_numpy() > 1
        if many.any():
            out[many] = out[many] + [f", {col[2:]}={v}" for v in values[many]]
    return out.where(out == "", " [" + out.str[2:] + "]")


def entry_names(cells: pd.DataFrame) -> pd.Series:
    """The row label of a loss: its name, plus its parameters when one sweep ran several, plus
    the settings an ablation grid varies, plus its dataset when one sweep ran several.

    A per-loss parameter grid (e.g. two InfoNCE temperatures) would otherwise be averaged over
    seeds as if it were one method.
    """
    suffix = setting_suffix(cells) + dataset_suffix(cells)
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
    return sorted(
        c
        for c in cells.columns
        if c.startswith("m_") and pd.api.types.is_numeric_dtype(cells[c]) and rows[c].notna().any()
    )


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
        raise MetricError(
            "the results have no m_linear_top1 or m_knn_top1 values; choose a "
            f"metric with --metric from: {_listing(available)}."
        )
    col = name if name.startswith("m_") else f"m_{name}"
    if col not in available:
        raise MetricError(
            f"unknown metric {name!r}: the metrics with values in these results are "
            f"{_listing(available)}."
        )
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


def class_counts(cells: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """Per cell: the dataset's class count (NaN if unknown) and where it came from."""
    n = pd.Series(np.nan, index=cells.index)
    source = pd.Series("unknown", index=cells.index, dtype=object)
    if "m_num_classes" in cells.columns:
        stored = cells["m_num_classes"].astype(float)
        n = n.mask(stored.notna() & (stored > 0), stored)
        # A trial that diverged before its first evaluation stored no count: it has its
        # dataset's, from the cells of the same sweep and dataset (parameters included).
        n = n.fillna(n.groupby(_dataset_key(cells)).transform("max"))
        source = source.mask(n.notna(), "m_num_classes")
    # The registry name (the `dataset` column may carry parameters: distinguish_datasets).
    names = cells["p_dataset"] if "p_dataset" in cells.columns else cells["dataset"]
    named = names.map(CLASSES).astype(float)
    if "p_dataset_params" in cells.columns:
        subspaces = names == SUBSPACES
        named = named.mask(subspaces, [_subspace_k(p) for p in cells["p_dataset_params"]])
    else:
        named = named.mask(names == SUBSPACES, 3.0)
    fill = n.isna() & named.notna()
    n = n.mask(fill, named)
    source = source.mask(fill, "dataset name")
    return n, source


def _dataset_key(cells: pd.DataFrame) -> pd.Series:
    """Per cell: its sweep, dataset and dataset parameters (one dataset as the data go)."""
    key = cells["sweep_id"].astype(str) + "\x1f" + cells["dataset"].astype(str)
    if "p_dataset_params" in cells.columns:
        key = key + "\x1f" + cells["p_dataset_params"].astype(str)
    return key


def _subspace_k(params: object) -> float:
    k = json_dict(params).get("k", 3)
    try:
        return float(k)
    except (TypeError, ValueError):
        return 3.0


def top_k(metric: str) -> int | None:
    """5 for "m_linear_top5", 1 for "m_knn_top1"; None for a metric that is no accuracy."""
    head, sep, k = metric.rpartition("_top")
    return int(k) if sep and head and k.isdigit() and int(k) > 0 else None


def chance(cells: pd.DataFrame, metric: str) -> pd.Series:
    """Per cell: the value of `metric` that guessing gives (k / classes for a top-k accuracy).

    0 for a metric that is no accuracy or a dataset whose class count is unknown (the report
    notes the latter).
    """
    k = top_k(metric)
    if k is None:
        return pd.Series(0.0, index=cells.index)
    n, _ = class_counts(cells)
    return (k / n).clip(upper=1.0).fillna(0.0)


def score(cells: pd.DataFrame, col: str, floor: pd.Series | float = 0.0) -> pd.Series:
    """Metric values under the scoring rule in the module docstring (diverged -> `floor`, the
    chance level, when the value is missing; unfinished -> NaN)."""
    values = (
        cells[col].astype(float) if col in cells.columns else pd.Series(np.nan, index=cells.index)
    )
    floor = pd.Series(floor, index=cells.index) if np.isscalar(floor) else floor
    values = values.mask(cells["diverged"] & values.isna(), floor)
    return values.where(cells["finished"])


def above_chance(values: pd.Series, floor: pd.Series) -> pd.Series:
    """`(value - chance) / (1 - chance)`: 0 = guessing, 1 = perfect (may dip below 0 by noise)."""
    return (values - floor) / (1.0 - floor).where(floor < 1.0)


def validation_column(metric: str) -> str:
    """m_val_<metric>: the validation-split version of a test metric (m_knn_top1 -> m_val_knn_top1)."""
    return metric if metric.startswith("m_val_") else "m_val_" + metric.removeprefix("m_")


def selection_columns(cells: pd.DataFrame, metric: str) -> dict[str, str]:
    """Per sweep: the column its settings are selected on, `m_val_<metric>` when that sweep has
    any value of it, else `metric` itself (selection on test, which the report flags)."""
    val = validation_column(metric)
    out = {}
    for sweep, group in cells.groupby("sweep_id", sort=True):
        has_val = val in group.columns and group[val].notna().any()
        out[str(sweep)] = val if has_val else metric
    return out


def collapse_flags(
    cells: pd.DataFrame, nvar_threshold: float, dead_threshold: float, rankme_threshold: float
) -> tuple[pd.Series, pd.Series]:
    """Per cell: collapsed (1.0/0.0, NaN when unknown or unfinished) and the rule that decided.

    A finished cell that did not diverge collapsed when its backbone features' normalised
    variance `m_h_nvar` is below `nvar_threshold` or their dead-unit share `m_h_dead` is at least
    `dead_threshold`; a cell without these (stores written before them) falls back to RankMe
    `m_h_rankme` < `rankme_threshold`. A diverged cell counts as diverged, not collapsed.
    """

    def col(name: str) -> pd.Series:
        return (
            cells[name].astype(float)
            if name in cells.columns
            else pd.Series(np.nan, index=cells.index)
        )

    nvar, dead, rankme = col("m_h_nvar"), col("m_h_dead"), col("m_h_rankme")
    has_new = nvar.notna() | dead.notna()
    with np.errstate(invalid="ignore"):
        new = (nvar < nvar_threshold) | (dead >= dead_threshold)
        old = rankme < rankme_threshold
    flag = pd.Series(np.nan, index=cells.index)
    flag = flag.mask(has_new, new.astype(float)).mask(~has_new & rankme.notna(), old.astype(float))
    rule = pd.Series("none", index=cells.index, dtype=object)
    rule = rule.mask(has_new, "nvar").mask(~has_new & rankme.notna(), "rankme")
    flag = flag.mask(cells["diverged"], 0.0).where(cells["finished"])
    return flag, rule.where(cells["finished"] & ~cells["diverged"], "none")


def add_scores(
    cells: pd.DataFrame,
    metric: str,
    top5: str | None,
    selection: dict[str, str],
    *,
    nvar_threshold: float,
    dead_threshold: float,
    rankme_threshold: float,
) -> pd.DataFrame:
    """`cells` plus the columns every table, figure and leaderboard reads:

    chance, acc (the reported metric under the scoring rule), acc5 (its top-5 companion), sel
    (the selection metric of the cell's sweep, same rule), score / sel_score (acc / sel above
    chance), collapsed (1/0/NaN) and collapse_rule ("nvar", "rankme" or "none").
    """
    out = cells.copy()
    out["chance"] = chance(cells, metric).to_numpy()
    out["acc"] = score(cells, metric, out["chance"]).to_numpy()
    out["acc5"] = (
        score(cells, top5, chance(cells, top5)).to_numpy() if top5 else np.full(len(cells), np.nan)
    )
    sel = np.full(len(cells), np.nan)
    sweeps = cells["sweep_id"].astype(str).to_numpy()
    for sweep, col in selection.items():
        mask = sweeps == sweep
        sel[mask] = score(cells.loc[mask], col, out.loc[mask, "chance"]).to_numpy()
    out["sel"] = sel
    out["score"] = above_chance(out["acc"], out["chance"]).to_numpy()
    out["sel_score"] = above_chance(out["sel"], out["chance"]).to_numpy()
    flag, rule = collapse_flags(cells, nvar_threshold, dead_threshold, rankme_threshold)
    out["collapsed"] = flag.to_numpy()
    out["collapse_rule"] = rule.to_numpy()
    return out


def focus_label_fraction(cells: pd.DataFrame) -> float:
    """The smallest label fraction: the label-scarce regime CLOA's Figure 2 shows (10%)."""
    return float(cells["label_fraction"].min())


def completeness(cells: pd.DataFrame) -> pd.DataFrame:
    """Per (sweep_id, loss): trials and cells seen, finished, diverged and running.

    A trial is finished when every label fraction it is evaluated at has its final row.
    """
    per_trial = cells.groupby(["sweep_id", "entry", "trial_id"], sort=True).agg(
        done=("finished", "all"), diverged=("diverged", "any")
    )
    trials = per_trial.groupby(["sweep_id", "entry"], sort=True).agg(
        trials_seen=("done", "size"),
        trials_done=("done", "sum"),
        trials_diverged=("diverged", "sum"),
    )
    cell_counts = cells.groupby(["sweep_id", "entry"], sort=True).agg(
        cells_seen=("finished", "size"), cells_done=("finished", "sum")
    )
    out = trials.join(cell_counts).reset_index().rename(columns={"entry": "loss"})
    out["trials_running"] = out["trials_seen"] - out["trials_done"]
    for col in out.columns[2:]:
        out[col] = out[col].astype(int)
    return out[
        [
            "sweep_id",
            "loss",
            "trials_seen",
            "trials_done",
            "trials_running",
            "trials_diverged",
            "cells_seen",
            "cells_done",
        ]
    ]
