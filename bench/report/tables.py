"""Paper-style comparison tables: loss x label fraction, best over lr, per batch size.

Modelled on CLOA's Tables 3-4 (arXiv:2403.18699 companion, "CIFAR10/100 Classification Accuracy
with Different Loss Functions"): each base loss is followed by its `cloa+`/`clop+` variants, each
cell is the best lr's accuracy. Unlike the paper we report mean ± std over seeds with n, and the
variant - base difference with a 95% bootstrap interval over seeds, marked `*` when it excludes 0.

The best lr is chosen per (loss, batch size, label fraction) by the seed-mean of the top-1 metric
(ties: the smaller lr); top-5 is read at that same lr.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from bench.report.cells import score
from bench.report.stats import bootstrap_diff, rng_for

PANEL = ["sweep_id", "entry", "batch_size", "label_fraction"]
LONG_COLUMNS = ["sweep_id", "loss", "base", "addon", "batch_size", "label_fraction", "best_lr",
                "top1_mean", "top1_std", "top5_mean", "top5_std", "n_seeds", "n_cells",
                "n_running", "n_diverged", "diff", "diff_low", "diff_high", "diff_paired",
                "diff_significant"]


def entry_info(cells: pd.DataFrame) -> pd.DataFrame:
    """Per (sweep_id, entry): its base loss, add-on and position in table order.

    Order: base losses alphabetically, each followed directly by its add-on variants (by add-on
    name), as the paper tables place CLOA-InfoNCE under InfoNCE.
    """
    cols = ["sweep_id", "entry", "loss", "base_loss", "addon"]
    suffixed = "entry_suffix" in cells.columns
    first = cells.drop_duplicates(["sweep_id", "entry"])[
        [*cols, *(["entry_suffix"] if suffixed else [])]].copy()
    first["base"] = first["base_loss"].where(first["base_loss"].notna(), first["loss"]).astype(str)
    if suffixed:  # a variant pairs with the base loss of its own dataset
        first["base"] = first["base"] + first["entry_suffix"].astype(str)
    addon = [a if isinstance(a, str) and a else None for a in first["addon"]]
    first["addon"] = pd.Series(addon, index=first.index, dtype=object)
    first["is_variant"] = first["addon"].notna()
    first = first.sort_values(["sweep_id", "base", "is_variant", "addon", "entry"],
                              kind="mergesort", na_position="first")
    names = set(zip(first["sweep_id"], first["entry"]))
    first["base_entry"] = [b if v and (s, b) in names else None
                           for s, b, v in zip(first["sweep_id"], first["base"], first["is_variant"])]
    first["order"] = np.arange(len(first))
    return first.set_index(["sweep_id", "entry"])[["base", "addon", "base_entry", "order"]]


def best_over_lr(cells: pd.DataFrame, metric: str, top5: str | None = None) -> pd.DataFrame:
    """Long table: one row per (sweep, loss, batch size, label fraction) at its best lr."""
    c = cells[[*PANEL, "lr", "seed", "finished", "diverged"]].copy()
    c["s1"] = score(cells, metric)
    c["s5"] = score(cells, top5) if top5 else np.nan
    means = (c.groupby([*PANEL, "lr"], sort=True)["s1"].mean().dropna().reset_index()
             .sort_values([*PANEL, "s1", "lr"], ascending=[True] * 4 + [False, True],
                          kind="mergesort"))
    best = means.drop_duplicates(PANEL).rename(columns={"lr": "best_lr"})[[*PANEL, "best_lr"]]
    counts = c.groupby(PANEL, sort=True).agg(
        n_cells=("finished", "size"),
        n_running=("finished", lambda s: int((~s).sum())),
        n_diverged=("diverged", "sum"),
    ).reset_index()
    at = c.merge(best, on=PANEL).query("lr == best_lr")
    stats = at.groupby(PANEL, sort=True).agg(
        top1_mean=("s1", "mean"), top1_std=("s1", "std"), n_seeds=("s1", "count"),
        top5_mean=("s5", "mean"), top5_std=("s5", "std"),
    ).reset_index()
    out = counts.merge(best, on=PANEL, how="left").merge(stats, on=PANEL, how="left")
    out["n_seeds"] = out["n_seeds"].fillna(0).astype(int)
    out["n_diverged"] = out["n_diverged"].astype(int)
    info = entry_info(cells)
    joined = _add_diffs(out.join(info, on=["sweep_id", "entry"]), at)
    joined = joined.sort_values(["order", "batch_size", "label_fraction"], kind="mergesort")
    return joined.rename(columns={"entry": "loss"})[LONG_COLUMNS].reset_index(drop=True)


def _add_diffs(out: pd.DataFrame, at: pd.DataFrame) -> pd.DataFrame:
    """Variant - base, each at its own best lr, with a bootstrap interval over seeds."""
    per_seed = {k: dict(zip(g["seed"].astype(int), g["s1"].astype(float)))
                for k, g in at.dropna(subset=["s1"]).groupby(PANEL, sort=True)}
    diffs = []
    for sweep, entry, bs, lf, base_entry in out[[*PANEL, "base_entry"]].itertuples(
            index=False, name=None):
        a = per_seed.get((sweep, entry, bs, lf), {})
        b = per_seed.get((sweep, base_entry, bs, lf), {}) if base_entry is not None else {}
        if not a or not b:
            diffs.append((np.nan, np.nan, np.nan, pd.NA, pd.NA))
            continue
        d = bootstrap_diff(a, b, rng=rng_for(sweep, entry, bs, lf))
        sig = d.significant if np.isfinite(d.low) else pd.NA
        diffs.append((d.diff, d.low, d.high, d.paired, sig))
    cols = ["diff", "diff_low", "diff_high", "diff_paired", "diff_significant"]
    frame = pd.DataFrame(diffs, columns=cols, index=out.index)
    for col in cols[3:]:
        frame[col] = frame[col].astype("boolean")
    return pd.concat([out, frame], axis=1)


def fmt(x: float, accuracy: bool = True) -> str:
    """Accuracies with 4 decimals as in the paper tables; other metrics with 4 significant digits."""
    if x is None or not np.isfinite(x):
        return "—"
    return f"{x:.4f}" if accuracy else f"{x:.4g}"


def _cell_text(mean: float, std: float, n: int, running: int, diverged: int, cells: int,
               accuracy: bool) -> str:
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
        return ""
    sign = "+" if row["diff"] >= 0 else ""
    text = f"{sign}{fmt(row['diff'], accuracy)}"
    if np.isfinite(row["diff_low"]):
        text += f" [{fmt(row['diff_low'], accuracy)}, {fmt(row['diff_high'], accuracy)}]"
        text += "*" if _flag(row["diff_significant"]) is True else ""
    else:
        text += " (n<2, no CI)"
    if _flag(row["diff_paired"]) is False:
        text += " unpaired"
    return text


def _flag(x: object) -> bool | None:
    return None if x is None or pd.isna(x) else bool(x)


def fraction_label(lf: float) -> str:
    """0.1 -> '10% labels' (the paper's column heading)."""
    return f"{lf * 100:g}% labels"


def comparison_wide(long: pd.DataFrame, sweep_id: str, batch_size: int,
                    metric: str = "m_linear_top1") -> pd.DataFrame:
    """One paper table (strings): rows = losses in table order, columns per label fraction.

    Column names are "<fraction> labels <what>", e.g. "10% labels top-1" (the HTML page groups
    them under one "10% labels" heading)."""
    accuracy = "top" in metric
    name = "top-1" if metric.endswith("top1") else metric.removeprefix("m_")
    part = long[(long["sweep_id"] == sweep_id) & (long["batch_size"] == batch_size)]
    has_top5 = part["top5_mean"].notna().any()
    has_diff = part["diff"].notna().any()
    losses = list(dict.fromkeys(part["loss"]))
    fractions = sorted(part["label_fraction"].unique())
    table: dict[str, list[str]] = {"loss": losses}
    for lf in fractions:
        sub = part[part["label_fraction"] == lf].set_index("loss").reindex(losses)
        head = fraction_label(lf)
        table[f"{head} {name}"] = [
            _cell_text(r.top1_mean, r.top1_std, _int(r.n_seeds), _int(r.n_running),
                       _int(r.n_diverged), _int(r.n_cells), accuracy)
            for r in sub.itertuples()]
        if has_top5:
            table[f"{head} top-5"] = [
                _cell_text(r.top5_mean, r.top5_std, _int(r.n_seeds), 0, 0, 0, accuracy)
                for r in sub.itertuples()]
        if has_diff:
            table[f"{head} Δ {name} vs base [95% CI]"] = [
                _diff_text(r, accuracy) for _, r in sub.iterrows()]
        table[f"{head} best lr"] = [fmt(v, False) for v in sub["best_lr"]]
    return pd.DataFrame(table)


def _int(x: object) -> int:
    return 0 if x is None or pd.isna(x) else int(x)
