"""Paper-style comparison tables: loss x label fraction, test metric at the lr chosen on validation.

Modelled on CLOA's Tables 3-4 (arXiv:2403.18699 companion, "CIFAR10/100 Classification Accuracy
with Different Loss Functions"): each base loss is followed by its `cloa+`/`clop+` variants. Unlike
the paper, and following the scientific protocol (README.md, "Reports"):
- the lr of each (loss, batch size, label fraction) is chosen on the seed mean of the validation
  metric (ties: the smaller lr); the cell shows the test metric at that lr, mean ± std over seeds
  with n, read once (a store without validation metrics falls back to choosing on test, and the
  report says so);
- variant - base is paired by seed (each at its own chosen lr; seeds only one side has are left
  out), with a 95% t-interval (df = n - 1); the comparisons of one table (one dataset and batch
  size) are Holm-corrected together and `*` marks Holm-adjusted p < 0.05; with fewer than 3
  paired seeds only the estimate is shown, marked "too few seeds".
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from bench.report.cells import json_dict
from bench.report.stats import MIN_SEEDS, holm, paired_t, significant

PANEL = ["sweep_id", "entry", "batch_size", "label_fraction"]
TABLE = ["sweep_id", "dataset", "batch_size"]  # one comparison table = one Holm family
LONG_COLUMNS = [
    "sweep_id",
    "dataset",
    "loss",
    "base",
    "addon",
    "batch_size",
    "label_fraction",
    "selected_on",
    "best_lr",
    "selection_mean",
    "top1_mean",
    "top1_std",
    "top5_mean",
    "top5_std",
    "n_seeds",
    "n_cells",
    "n_running",
    "n_diverged",
    "n_collapsed",
    "base_lr",
    "diff",
    "diff_low",
    "diff_high",
    "diff_n",
    "diff_p",
    "diff_p_holm",
    "diff_significant",
    "diff_note",
]
COMPARISON_COLUMNS = [
    "sweep_id",
    "dataset",
    "batch_size",
    "label_fraction",
    "variant",
    "base",
    "metric",
    "selected_on",
    "n_seeds",
    "variant_lr",
    "base_lr",
    "delta",
    "ci_low",
    "ci_high",
    "p_value",
    "p_holm",
    "significant",
    "note",
]
TOO_FEW = "too few seeds"


def entry_info(cells: pd.DataFrame) -> pd.DataFrame:
    """Per (sweep_id, entry): its base loss, family, add-on and position in table order.

    Order: base losses alphabetically, each followed directly by its add-on variants (by add-on
    name), as the paper tables place CLOA-InfoNCE under InfoNCE.
    """
    cols = [
        "sweep_id",
        "entry",
        "loss",
        "base_loss",
        "addon",
        *(["name"] if "name" in cells.columns else []),
        *(["setting"] if "setting" in cells.columns else []),
    ]
    suffixed = "entry_suffix" in cells.columns
    pairing = [c for c in ("entry_suffix", "p_loss_params") if c in cells.columns]
    first = cells.drop_duplicates(["sweep_id", "entry"])[[*cols, *pairing]].copy()
    first["base"] = first["base_loss"].where(first["base_loss"].notna(), first["loss"]).astype(str)
    # The base loss and its add-on variants, any dataset; one family per ablation setting.
    first["family"] = first["base"] + (first["setting"].astype(str) if "setting" in first else "")
    if suffixed:  # a variant pairs with the base loss of its own dataset
        first["base"] = first["base"] + first["entry_suffix"].astype(str)
    addon = [a if isinstance(a, str) and a else None for a in first["addon"]]
    first["addon"] = pd.Series(addon, index=first.index, dtype=object)
    first["is_variant"] = first["addon"].notna()
    first = first.sort_values(
        ["sweep_id", "base", "is_variant", "addon", "entry"], kind="mergesort", na_position="first"
    )
    first["base_entry"] = _base_entries(first)
    # What a table and comparisons.csv name as a variant's base: the entry it is paired with.
    first["base"] = first["base_entry"].where(first["base_entry"].notna(), first["base"])
    first["order"] = np.arange(len(first))
    keep = [
        "base",
        "family",
        "addon",
        "base_entry",
        "order",
        *(["name"] if "name" in first.columns else []),
    ]
    return first.set_index(["sweep_id", "entry"])[keep]


def _base_entries(first: pd.DataFrame) -> list[Any]:
    """Per entry: the entry of its base loss it is compared with, None for a base loss.

    A variant (cloa+infonce) pairs with the base loss (infonce) of the same sweep, settings and
    dataset (`base`: the base loss plus `entry_suffix`) whose loss parameters it shares: with a
    temperature grid, cloa+infonce at temperature 0.1 pairs with infonce at 0.1. Of several such
    base entries, the one sharing the most parameters.
    """
    params = [json_dict(p) for p in first.get("p_loss_params", pd.Series(None, index=first.index))]
    bases: dict[tuple[Any, str], list[tuple[str, dict[str, Any]]]] = {}
    for sweep, base, entry, variant, own in zip(
        first["sweep_id"], first["base"], first["entry"], first["is_variant"], params
    ):
        if not variant:
            bases.setdefault((sweep, base), []).append((entry, own))
    out: list[Any] = []
    for sweep, base, variant, own in zip(
        first["sweep_id"], first["base"], first["is_variant"], params
    ):
        shared = [(len(p), e) for e, p in bases.get((sweep, base), []) if p.items() <= own.items()]
        out.append(max(shared)[1] if variant and shared else None)
    return out


def best_over_lr(cells: pd.DataFrame, selection: dict[str, str]) -> pd.DataFrame:
    """Long table: one row per (sweep, loss, batch size, label fraction) at its selected lr.

    `cells` are scored (`cells.add_scores`: columns acc, acc5, sel, collapsed); `selection`
    maps a sweep to the column its lrs were chosen on (shown as `selected_on`).
    """
    c = cells[
        [*PANEL, "dataset", "lr", "seed", "finished", "diverged", "collapsed", "acc", "acc5", "sel"]
    ]
    means = (
        c.groupby([*PANEL, "lr"], sort=True)["sel"]
        .mean()
        .dropna()
        .reset_index()
        .sort_values([*PANEL, "sel", "lr"], ascending=[True] * 4 + [False, True], kind="mergesort")
    )
    best = means.drop_duplicates(PANEL).rename(columns={"lr": "best_lr", "sel": "selection_mean"})
    counts = (
        c.groupby(PANEL, sort=True)
        .agg(
            dataset=("dataset", "first"),
            n_cells=("finished", "size"),
            n_running=("finished", lambda s: int((~s).sum())),
            n_diverged=("diverged", "sum"),
            n_collapsed=("collapsed", lambda s: int((s == 1).sum())),
        )
        .reset_index()
    )
    at = c.merge(best[[*PANEL, "best_lr"]], on=PANEL).query("lr == best_lr")
    stats = (
        at.groupby(PANEL, sort=True)
        .agg(
            top1_mean=("acc", "mean"),
            top1_std=("acc", "std"),
            n_seeds=("acc", "count"),
            top5_mean=("acc5", "mean"),
            top5_std=("acc5", "std"),
        )
        .reset_index()
    )
    out = counts.merge(best, on=PANEL, how="left").merge(stats, on=PANEL, how="left")
    out["n_seeds"] = out["n_seeds"].fillna(0).astype(int)
    out["n_diverged"] = out["n_diverged"].astype(int)
    out["selected_on"] = [selection.get(str(s), "") for s in out["sweep_id"]]
    info = entry_info(cells)
    joined = _add_diffs(out.join(info, on=["sweep_id", "entry"]), at)
    joined = joined.sort_values(["order", "batch_size", "label_fraction"], kind="mergesort")
    return joined.rename(columns={"entry": "loss"})[LONG_COLUMNS].reset_index(drop=True)


def _add_diffs(out: pd.DataFrame, at: pd.DataFrame) -> pd.DataFrame:
    """Variant - base, each at its own selected lr, paired by seed, t-interval, Holm per table."""
    per_seed = {
        k: dict(zip(g["seed"].astype(int), g["acc"].astype(float)))
        for k, g in at.dropna(subset=["acc"]).groupby(PANEL, sort=True)
    }
    best_lr = {tuple(k): lr for *k, lr in out[[*PANEL, "best_lr"]].itertuples(index=False)}
    rows = []
    for sweep, entry, bs, lf, base_entry in out[[*PANEL, "base_entry"]].itertuples(
        index=False, name=None
    ):
        blank = (np.nan, np.nan, np.nan, np.nan, 0, np.nan, "")
        if base_entry is None:
            rows.append(blank)
            continue
        base_lr = best_lr.get((sweep, base_entry, bs, lf), np.nan)
        a = per_seed.get((sweep, entry, bs, lf), {})
        b = per_seed.get((sweep, base_entry, bs, lf), {})
        common = sorted(set(a) & set(b))
        if not common:
            note = "no paired seeds" if a and b else ""
            rows.append((base_lr, np.nan, np.nan, np.nan, 0, np.nan, note))
            continue
        d = np.array([a[s] - b[s] for s in common])
        if len(d) < MIN_SEEDS:
            rows.append((base_lr, float(d.mean()), np.nan, np.nan, len(d), np.nan, TOO_FEW))
            continue
        mean, low, high, p, _ = paired_t(d[None, :])
        rows.append(
            (base_lr, float(mean[0]), float(low[0]), float(high[0]), len(d), float(p[0]), "")
        )
    cols = ["base_lr", "diff", "diff_low", "diff_high", "diff_n", "diff_p", "diff_note"]
    frame = pd.DataFrame(rows, columns=cols, index=out.index)
    frame["diff_n"] = frame["diff_n"].astype(int)
    frame["diff_p_holm"] = np.nan
    keys = out[TABLE].astype(str).agg("\x1f".join, axis=1)
    for _, idx in frame.groupby(keys.to_numpy(), sort=True).groups.items():
        frame.loc[idx, "diff_p_holm"] = holm(frame.loc[idx, "diff_p"].to_numpy(float))
    sig = significant(frame["diff_p_holm"].to_numpy())
    frame["diff_significant"] = pd.array(
        [bool(x) if np.isfinite(p) else pd.NA for x, p in zip(sig, frame["diff_p_holm"])],
        dtype="boolean",
    )
    return pd.concat([out, frame], axis=1)


def comparisons(long: pd.DataFrame, metric: str) -> pd.DataFrame:
    """comparisons.csv: one row per (dataset, batch size, label fraction, variant) that has a
    base loss in the sweep; `significant` is after Holm's correction within the table."""
    # `base` of a variant is the entry it is paired with (entry_info); one without any is left out.
    names = set(zip(long["sweep_id"], long["loss"]))
    keep = np.array(
        [
            isinstance(a, str) and bool(a) and (s, b) in names
            for a, s, b in zip(long["addon"], long["sweep_id"], long["base"])
        ],
        dtype=bool,
    )
    v = long[keep]
    out = pd.DataFrame(
        {
            "sweep_id": v["sweep_id"],
            "dataset": v["dataset"],
            "batch_size": v["batch_size"],
            "label_fraction": v["label_fraction"],
            "variant": v["loss"],
            "base": v["base"],
            "metric": metric,
            "selected_on": v["selected_on"],
            "n_seeds": v["diff_n"],
            "variant_lr": v["best_lr"],
            "base_lr": v["base_lr"],
            "delta": v["diff"],
            "ci_low": v["diff_low"],
            "ci_high": v["diff_high"],
            "p_value": v["diff_p"],
            "p_holm": v["diff_p_holm"],
            "significant": v["diff_significant"],
            "note": v["diff_note"],
        }
    )
    out = out.sort_values(
        ["sweep_id", "dataset", "batch_size", "label_fraction", "variant"], kind="mergesort"
    )
    return out[COMPARISON_COLUMNS].reset_index(drop=True)


def fmt(x: float, accuracy: bool = True) -> str:
    """Accuracies with 4 decimals as in the paper tables; other metrics with 4 significant digits."""
    if x is None or not np.isfinite(x):
        return "—"
    return f"{x:.4f}" if accuracy else f"{x:.4g}"


def _cell_text(
    mean: float, std: float, n: int, running: int, diverged: int, cells: int, accuracy: bool
) -> str:
    if n == 0:
        text = "—"
    else:
        text = fmt(mean, accuracy) + (f" ± {fmt(std, accuracy)}" if n > 1 else "") + f" (n={n})"
    if cells and diverged == cells:
        text += " all diverged"
    if running:
        text += f" · {running} running"
    return text


def _diff_text(row: pd.Series, accuracy: bool) -> str:
    if pd.isna(row["diff"]):
        return str(row["diff_note"] or "")
    sign = "+" if row["diff"] >= 0 else ""
    text = f"{sign}{fmt(row['diff'], accuracy)}"
    if np.isfinite(row["diff_low"]):
        text += f" [{fmt(row['diff_low'], accuracy)}, {fmt(row['diff_high'], accuracy)}]"
        text += "*" if _flag(row["diff_significant"]) is True else ""
        text += f" (n={int(row['diff_n'])})"
    else:
        text += f" (n={int(row['diff_n'])}, {row['diff_note'] or TOO_FEW})"
    return text


def _flag(x: object) -> bool | None:
    return None if x is None or pd.isna(x) else bool(x)


def fraction_label(lf: float) -> str:
    """0.1 -> '10% labels' (the paper's column heading)."""
    return f"{lf * 100:g}% labels"


def comparison_wide(
    long: pd.DataFrame, sweep_id: str, dataset: str, batch_size: int, metric: str = "m_linear_top1"
) -> pd.DataFrame:
    """One paper table (strings): rows = losses in table order, columns per label fraction.

    Column names are "<fraction> labels <what>", e.g. "10% labels top-1" (the HTML page groups
    them under one "10% labels" heading)."""
    accuracy = "top" in metric
    name = "top-1" if metric.endswith("top1") else metric.removeprefix("m_")
    part = long[
        (long["sweep_id"] == sweep_id)
        & (long["dataset"] == dataset)
        & (long["batch_size"] == batch_size)
    ]
    has_top5 = part["top5_mean"].notna().any()
    has_diff = part["base_lr"].notna().any()
    losses = list(dict.fromkeys(part["loss"]))
    fractions = sorted(part["label_fraction"].unique())
    on_val = part["selected_on"].astype(str).str.startswith("m_val_").all()
    table: dict[str, list[str]] = {"loss": losses}
    for lf in fractions:
        sub = part[part["label_fraction"] == lf].set_index("loss").reindex(losses)
        head = fraction_label(lf)
        table[f"{head} {name}"] = [
            _cell_text(
                r.top1_mean,
                r.top1_std,
                _int(r.n_seeds),
                _int(r.n_running),
                _int(r.n_diverged),
                _int(r.n_cells),
                accuracy,
            )
            for r in sub.itertuples()
        ]
        if has_top5:
            table[f"{head} top-5"] = [
                _cell_text(r.top5_mean, r.top5_std, _int(r.n_seeds), 0, 0, 0, accuracy)
                for r in sub.itertuples()
            ]
        if has_diff:
            table[f"{head} Δ {name} vs base [95% CI]"] = [
                _diff_text(r, accuracy) for _, r in sub.iterrows()
            ]
        table[f"{head} lr (chosen on {'val' if on_val else 'TEST'})"] = [
            fmt(v, False) for v in sub["best_lr"]
        ]
    return pd.DataFrame(table)


def _int(x: Any) -> int:
    return 0 if x is None or pd.isna(x) else int(x)
