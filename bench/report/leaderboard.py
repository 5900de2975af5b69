"""The stability leaderboard: how well and how robustly each loss learns over the whole grid.

Every column is a statistic of the seed-mean accuracy grid M[batch size, label fraction, lr] of one
loss (cells scored as in `cells.score`: diverged = 0, unfinished = missing). Definitions, which
the report and README repeat verbatim:

- best: per label fraction the best seed-mean accuracy over (lr, batch size); averaged over
  label fractions.
- robust_decades: per (batch size, label fraction) the longest run of consecutive grid lrs whose
  seed-mean accuracy is >= 90% of the loss's best at that label fraction; each grid lr covers the
  half-way points (in log10 lr) to its neighbours, so a run of k lrs on a grid with one point
  per decade spans k decades. Averaged over (batch size, label fraction) panels.
- worst: like best, with the minimum over (lr, batch size) (a diverged cell counts as 0).
- collapse_rate: share of finished (lr, batch size, label fraction, seed) cells that diverged or
  whose final RankMe of the backbone features (m_h_rankme) is below the threshold (default 2).
- bs_sensitivity: per label fraction max - min over batch sizes of the best-over-lr seed-mean
  accuracy; averaged over label fractions (n/a with one batch size).
- Uncertainty (`*_se`): the standard deviation of the statistic over bootstrap resamples of the
  seeds (the same resampled seeds for every cell of the loss), i.e. a bootstrap standard error.
- rank: mean of the per-column ranks (average ranks for ties; columns that are n/a for every
  loss are skipped); ties broken by higher best, then by name.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from bench.report.cells import score
from bench.report.stats import rng_for, seed_resamples

# (column, higher is better)
SCORED = (("best", True), ("robust_decades", True), ("worst", True), ("collapse_rate", False),
          ("bs_sensitivity", False))
COLUMNS = ["rank", "loss", "sweep_id"] + [c for s, _ in SCORED for c in (s, f"{s}_se")] + [
    "mean_rank", "n_seeds", "cells_done", "cells_seen"]


@dataclass(frozen=True)
class Options:
    """Leaderboard knobs; every value is printed in the report next to the definitions."""

    rankme_threshold: float = 2.0
    robust_fraction: float = 0.9
    n_boot: int = 1000


@dataclass(frozen=True)
class Grid:
    """One loss's cells as dense arrays indexed [seed, batch size, label fraction, lr]."""

    acc: np.ndarray  # scores, NaN where missing or unfinished
    collapsed: np.ndarray  # 1 collapsed, 0 healthy, NaN missing or unfinished
    lrs: np.ndarray


def build_grid(cells: pd.DataFrame, metric: str, rankme_threshold: float) -> Grid:
    """Dense arrays of one loss's cells (duplicates at one grid point: the last cell wins)."""
    axes = [np.unique(cells[c].to_numpy()) for c in ("seed", "batch_size", "label_fraction", "lr")]
    idx = tuple(np.searchsorted(ax, cells[c].to_numpy())
                for ax, c in zip(axes, ("seed", "batch_size", "label_fraction", "lr")))
    shape = tuple(len(ax) for ax in axes)
    acc = np.full(shape, np.nan)
    acc[idx] = score(cells, metric).to_numpy(float)
    rankme = (cells["m_h_rankme"].to_numpy(float) if "m_h_rankme" in cells.columns
              else np.full(len(cells), np.nan))
    with np.errstate(invalid="ignore"):
        flag = (cells["diverged"].to_numpy(bool) | (rankme < rankme_threshold)).astype(float)
    flag[~cells["finished"].to_numpy(bool)] = np.nan
    collapsed = np.full(shape, np.nan)
    collapsed[idx] = flag
    return Grid(acc, collapsed, axes[3].astype(float))


def lr_widths(lrs: np.ndarray) -> np.ndarray:
    """Decades of lr each grid point covers: half-way (log10) to each neighbour; 0 for one lr."""
    e = np.log10(lrs)
    if len(e) < 2:
        return np.zeros(len(e))
    ext = np.concatenate([[2 * e[0] - e[1]], e, [2 * e[-1] - e[-2]]])
    return (ext[2:] - ext[:-2]) / 2


def _mean(x: np.ndarray, axis: int | tuple[int, ...]) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(x, axis=axis)


def statistics(m: np.ndarray, lrs: np.ndarray, robust_fraction: float = 0.9) -> dict[str, np.ndarray]:
    """Accuracy columns from seed-mean grids m[..., batch size, label fraction, lr]."""
    best_lf = np.fmax.reduce(m, axis=(-3, -1))  # (..., lf)
    worst_lf = np.fmin.reduce(m, axis=(-3, -1))
    thr = (robust_fraction * best_lf)[..., None, :, None]
    with np.errstate(invalid="ignore"):
        ok = (m >= thr) & (best_lf > 0)[..., None, :, None]
    widths = lr_widths(lrs)
    cur = np.zeros(m.shape[:-1])
    run = np.zeros(m.shape[:-1])
    for i, w in enumerate(widths):
        cur = np.where(ok[..., i], cur + w, 0.0)
        run = np.maximum(run, cur)
    has_data = ~np.isnan(m).all(axis=-1)
    run = np.where(has_data, run, np.nan)
    best_bs = np.fmax.reduce(m, axis=-1)  # (..., bs, lf)
    spread = np.fmax.reduce(best_bs, axis=-2) - np.fmin.reduce(best_bs, axis=-2)
    spread = np.where((~np.isnan(best_bs)).sum(axis=-2) >= 2, spread, np.nan)
    return {"best": _mean(best_lf, -1), "worst": _mean(worst_lf, -1),
            "robust_decades": _mean(run, (-2, -1)), "bs_sensitivity": _mean(spread, -1)}


def loss_row(grid: Grid, options: Options, rng: np.random.Generator) -> dict[str, float]:
    """Point estimates and bootstrap standard errors of every column for one loss."""
    n_seeds = grid.acc.shape[0]
    point = statistics(_mean(grid.acc, 0), grid.lrs, options.robust_fraction)
    point["collapse_rate"] = _mean(grid.collapsed, (0, 1, 2, 3))
    row = {k: _clean(v) for k, v in point.items()}
    if n_seeds >= 2:
        idx = seed_resamples(n_seeds, rng=rng, n_boot=options.n_boot)
        boot = statistics(_mean(grid.acc[idx], 1), grid.lrs, options.robust_fraction)
        boot["collapse_rate"] = _mean(grid.collapsed[idx], (1, 2, 3, 4))
        for k, v in boot.items():
            finite = v[np.isfinite(v)]
            row[f"{k}_se"] = _clean(finite.std(ddof=1)) if len(finite) >= 2 else float("nan")
    else:
        row.update({f"{k}_se": float("nan") for k in point})
    return row


def _clean(x: float | np.ndarray) -> float:
    """Round away float noise (1e-17 standard errors, 0.0199999 vs 0.02) so that equal values
    tie in the ranking and print as the same number."""
    return round(float(x), 12)


def leaderboard(cells: pd.DataFrame, metric: str, options: Options | None = None) -> pd.DataFrame:
    """One row per (sweep_id, loss), ranked by the combined rule in the module docstring."""
    options = options or Options()
    rows = []
    for (sweep, entry), group in cells.groupby(["sweep_id", "entry"], sort=True):
        grid = build_grid(group, metric, options.rankme_threshold)
        row = loss_row(grid, options, rng_for(sweep, entry))
        row.update(loss=entry, sweep_id=sweep, n_seeds=grid.acc.shape[0],
                   cells_done=int(group["finished"].sum()), cells_seen=len(group))
        rows.append(row)
    table = pd.DataFrame(rows)
    return rank(table)[COLUMNS]


def rank(table: pd.DataFrame) -> pd.DataFrame:
    """Add `mean_rank` and `rank` (1 = most stable) as the module docstring states."""
    ranks = []
    for col, higher in SCORED:
        if table[col].notna().any():
            ranks.append(table[col].rank(ascending=not higher, method="average"))
    table = table.copy()
    table["mean_rank"] = pd.concat(ranks, axis=1).mean(axis=1) if ranks else np.nan
    table = table.sort_values(["mean_rank", "best", "loss", "sweep_id"],
                              ascending=[True, False, True, True], kind="mergesort",
                              na_position="last")
    table["rank"] = np.arange(1, len(table) + 1)
    return table.reset_index(drop=True)


def definitions(options: Options, metric: str) -> list[tuple[str, str]]:
    """(column, definition) pairs printed under the leaderboard in README.md and index.html."""
    pct = f"{options.robust_fraction:.0%}"
    return [
        ("score", f"each (lr, batch size, label fraction, seed) cell scores its final {metric}; "
                  "a diverged cell without a value scores 0; running cells are left out. "
                  "Accuracy grids are seed means."),
        ("best", "per label fraction, the best seed-mean accuracy over (lr, batch size); "
                 "averaged over label fractions. Higher is better."),
        ("robust_decades", f"per (batch size, label fraction), the longest run of consecutive "
                           f"grid lrs whose seed-mean accuracy stays >= {pct} of the loss's own "
                           "best at that label fraction, in decades of lr: each grid lr covers "
                           "the half-way points (log10) to its neighbours, so k lrs one decade "
                           "apart span k decades (one lr in the grid: 0). Averaged over (batch "
                           "size, label fraction). Higher is better."),
        ("worst", "per label fraction, the worst seed-mean accuracy over (lr, batch size) "
                  "(diverged = 0); averaged over label fractions. Higher is better."),
        ("collapse_rate", "share of finished (lr, batch size, label fraction, seed) cells that "
                          "diverged or whose final RankMe of the backbone features (m_h_rankme) "
                          f"is below {options.rankme_threshold:g}. Lower is better."),
        ("bs_sensitivity", "per label fraction, max - min over batch sizes of the best-over-lr "
                           "seed-mean accuracy; averaged over label fractions (n/a with one "
                           "batch size). Lower is better."),
        ("± (se)", f"bootstrap standard error over seeds: the seeds of a loss are resampled with "
                   f"replacement ({options.n_boot} times, fixed RNG seed) and the column is "
                   "recomputed; n/a with fewer than 2 seeds."),
        ("rank", "sort by the mean of the per-column ranks (best, robust_decades, worst: higher "
                 "ranks first; collapse_rate, bs_sensitivity: lower first; ties share the "
                 "average rank; a column that is n/a for every loss is skipped); ties broken by "
                 "higher best, then by name."),
    ]
