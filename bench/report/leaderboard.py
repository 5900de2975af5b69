"""The stability leaderboard: how well each loss learns over the whole grid, above chance.

One ranking per dataset (and per label fraction with `Options.per_label_fraction`): entries of
different datasets are never ranked together. Cells are scored above chance (`cells`): a cell's
score is `(acc - chance) / (1 - chance)`, a diverged cell scores chance (0), a running cell is left
out. Definitions, which the report and README repeat (`definitions`):

- score (the rank key): per seed, the mean cell score over the grid - over lrs weighted by the
  decades of lr each grid point covers (equal weights on an evenly log-spaced grid), over batch
  sizes, then over label fractions; the column is the mean over seeds, ± its standard error
  sd/sqrt(n), with a 95% t-interval (df = n - 1) from 3 seeds. A diverged cell scores 0; an
  encoder that learned nothing does not: a probe on random features is far above chance, which
  is why a sweep should include the `untrained` control, the level a loss must beat.
- vs leader: "tied" when the loss's interval overlaps the leader's; "below" when it does not;
  "too few seeds" when either has fewer than 3. Overlapping intervals are a coarse screen, not a
  test: two losses whose intervals overlap may still differ.
- best: per label fraction, the (lr, batch size) with the best seed-mean *validation* metric;
  the test metric there (raw, not above chance), averaged over label fractions, ± se.
- lr_band: per (batch size, label fraction) panel, the longest run of consecutive grid lrs at
  which the loss's seed-mean score is >= 90% of a yardstick, the seed-mean score of the (loss,
  lr) with the best seed-mean validation score in that panel (one yardstick for all losses,
  chosen on validation), in decades of lr; averaged over panels.
- divergence_rate, collapse_rate: shares of finished cells that diverged, and that finished
  without diverging but collapsed (`cells.collapse_flags`: normalised variance, dead units, or
  RankMe on older stores).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from bench.report.stats import MIN_SEEDS, mean_ci

COLUMNS = [
    "dataset",
    "label_fraction",
    "rank",
    "loss",
    "sweep_id",
    "score",
    "score_se",
    "score_low",
    "score_high",
    "vs_leader",
    "best",
    "best_se",
    "lr_band",
    "divergence_rate",
    "collapse_rate",
    "n_seeds",
    "cells_done",
    "cells_seen",
    "entry",
]
ALL_FRACTIONS = "all"


@dataclass(frozen=True)
class Options:
    """Leaderboard knobs; every value is printed in the report next to the definitions.

    Collapse: `nvar_threshold` on the normalised variance 1 - |mean(u)|^2 of the L2-normalised
    backbone features u; it equals d * (std of u per dimension)^2, so it is the std-of-normalised-
    embedding test (healthy ~ 1/sqrt(d)) with the width d taken out: nvar < 0.05 is a per-dimension
    std below sqrt(0.05 / d), 22% of the healthy 1/sqrt(d), whatever d. `dead_threshold`: share of
    feature dimensions with zero variance. `rankme_threshold`: the rule for stores without either.
    """

    nvar_threshold: float = 0.05
    dead_threshold: float = 0.9
    rankme_threshold: float = 2.0
    band_fraction: float = 0.9
    per_label_fraction: bool = False


@dataclass(frozen=True)
class Grid:
    """One entry's cells as dense arrays indexed [seed, batch size, label fraction, lr]."""

    score: np.ndarray  # above chance, NaN where missing or unfinished
    acc: np.ndarray  # the reported metric (raw), same rule
    sel: np.ndarray  # the selection metric (validation, or test on older stores)
    bss: np.ndarray
    lfs: np.ndarray
    lrs: np.ndarray


AXES = ("seed", "batch_size", "label_fraction", "lr")


def build_grid(cells: pd.DataFrame) -> Grid:
    """Dense arrays of one entry's scored cells (duplicates at one grid point: the last wins)."""
    axes = [np.unique(cells[c].to_numpy()) for c in AXES]
    idx = tuple(np.searchsorted(ax, cells[c].to_numpy()) for ax, c in zip(axes, AXES))
    shape = tuple(len(ax) for ax in axes)
    arrays = {}
    for col in ("score", "acc", "sel"):
        a = np.full(shape, np.nan)
        a[idx] = cells[col].to_numpy(float)
        arrays[col] = a
    return Grid(**arrays, bss=axes[1], lfs=axes[2].astype(float), lrs=axes[3].astype(float))


def lr_widths(lrs: np.ndarray) -> np.ndarray:
    """Decades of lr each grid point covers: half-way (log10) to each neighbour; 0 for one lr."""
    e = np.log10(lrs)
    if len(e) < 2:
        return np.zeros(len(e))
    ext = np.concatenate([[2 * e[0] - e[1]], e, [2 * e[-1] - e[-2]]])
    return (ext[2:] - ext[:-2]) / 2


def _nanmean(x: np.ndarray, axis: int | tuple[int, ...]) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(x, axis=axis)


def per_seed_score(score: np.ndarray, lrs: np.ndarray) -> np.ndarray:
    """score[seed, bs, lf, lr] -> per seed: lr-width-weighted mean over (bs, lr) per label
    fraction, then the mean over label fractions (missing cells skipped)."""
    w = lr_widths(lrs)
    w = w if w.sum() > 0 else np.ones(len(lrs))
    have = np.isfinite(score)
    weights = np.where(have, w, 0.0)
    num = np.where(have, score, 0.0) * weights
    with np.errstate(invalid="ignore", divide="ignore"):
        per_lf = num.sum(axis=(1, 3)) / weights.sum(axis=(1, 3))  # (seed, lf)
    return _nanmean(per_lf, 1)


def band_decades(
    means: np.ndarray, lrs: np.ndarray, yardstick: np.ndarray, fraction: float
) -> np.ndarray:
    """Longest run of consecutive lrs with means[..., lr] >= fraction * yardstick[...], in
    decades (`lr_widths`); 0 when the yardstick is not above chance, NaN for a panel without
    data."""
    with np.errstate(invalid="ignore"):
        ok = (means >= (fraction * yardstick)[..., None]) & (yardstick > 0)[..., None]
    cur = np.zeros(means.shape[:-1])
    run = np.zeros(means.shape[:-1])
    for i, w in enumerate(lr_widths(lrs)):
        cur = np.where(ok[..., i], cur + w, 0.0)
        run = np.maximum(run, cur)
    return np.where(np.isfinite(means).any(axis=-1), run, np.nan)


def best_on_validation(grid: Grid) -> tuple[float, np.ndarray]:
    """Per label fraction, the (batch size, lr) with the best seed-mean selection metric (ties:
    smaller lr, then smaller batch size); returns the mean over label fractions of the seed-mean
    test metric there, and the per-seed values (mean over label fractions)."""
    sel_mean = _nanmean(grid.sel, 0)  # (bs, lf, lr)
    n_seeds = grid.acc.shape[0]
    per_seed = np.full((n_seeds, len(grid.lfs)), np.nan)
    means = np.full(len(grid.lfs), np.nan)
    for j in range(len(grid.lfs)):
        m = sel_mean[:, j, :].T  # (lr, bs): flat order = smaller lr first, then smaller bs
        if not np.isfinite(m).any():
            continue
        k = int(np.nanargmax(m.ravel()))
        lr_i, bs_i = divmod(k, m.shape[1])
        per_seed[:, j] = grid.acc[:, bs_i, j, lr_i]
        means[j] = _nanmean(per_seed[:, j], 0)
    return float(_nanmean(means, 0)), _nanmean(per_seed, 1)


def yardsticks(cells: pd.DataFrame) -> pd.Series:
    """Per (batch size, label fraction): the seed-mean test cell score of the (entry, lr) with
    the best seed-mean validation score (`sel_score`), so the yardstick is chosen on validation
    like every other best (the largest test mean would be a maximum taken on test)."""
    means = cells.groupby(["sweep_id", "entry", "batch_size", "label_fraction", "lr"], sort=True)[
        ["score", "sel_score"]
    ].mean()
    chosen = means.dropna(subset=["sel_score"]).sort_values("sel_score", kind="mergesort")
    return chosen.groupby(level=["batch_size", "label_fraction"])["score"].last()


def entry_row(cells: pd.DataFrame, yard: pd.Series, options: Options) -> dict[str, object]:
    """Every column of one entry (one sweep's loss on one dataset)."""
    grid = build_grid(cells)
    seeds = per_seed_score(grid.score, grid.lrs)
    ci = mean_ci(seeds)
    best, best_seeds = best_on_validation(grid)
    best_ci = mean_ci(best_seeds)
    means = _nanmean(grid.score, 0)  # (bs, lf, lr)
    ys = np.array([[yard.get((bs, lf), np.nan) for lf in grid.lfs] for bs in grid.bss])
    band = band_decades(means, grid.lrs, ys, options.band_fraction)
    finished = cells["finished"].to_numpy(bool)
    known = finished & cells["collapsed"].notna().to_numpy()
    done = int(finished.sum())
    return {
        "score": _clean(ci.mean),
        "score_se": _clean(ci.se),
        "score_low": _clean(ci.low),
        "score_high": _clean(ci.high),
        "best": _clean(best),
        "best_se": _clean(best_ci.se),
        "lr_band": _clean(_nanmean(band, (0, 1))),
        "divergence_rate": _clean(cells["diverged"].sum() / done) if done else np.nan,
        "collapse_rate": (
            _clean((cells["collapsed"].to_numpy() == 1)[known].mean()) if known.any() else np.nan
        ),
        "n_seeds": ci.n,
        "cells_done": done,
        "cells_seen": len(cells),
    }


def _clean(x: float | np.ndarray) -> float:
    """Round away float noise (1e-17, 0.0199999 vs 0.02) so that equal values tie and print the
    same."""
    x = float(x)
    return round(x, 12) if np.isfinite(x) else float("nan")


def leaderboard(cells: pd.DataFrame, options: Options | None = None) -> pd.DataFrame:
    """One ranking per dataset (per (dataset, label fraction) with `options.per_label_fraction`)
    of the scored `cells` (`cells.add_scores`), ranked as the module docstring states."""
    options = options or Options()
    boards = []
    for dataset, dcells in cells.groupby("dataset", sort=True):
        scopes: list[tuple[object, pd.DataFrame]] = [(ALL_FRACTIONS, dcells)]
        if options.per_label_fraction:
            scopes = [(float(lf), g) for lf, g in dcells.groupby("label_fraction", sort=True)]
        for lf, scope in scopes:
            yard = yardsticks(scope)
            rows = []
            for (sweep, entry), group in scope.groupby(["sweep_id", "entry"], sort=True):
                row = entry_row(group, yard, options)
                row.update(
                    dataset=dataset,
                    label_fraction=lf,
                    loss=group["name"].iloc[0],
                    sweep_id=sweep,
                    entry=entry,
                )
                rows.append(row)
            boards.append(rank(pd.DataFrame(rows)))
    return pd.concat(boards, ignore_index=True)[COLUMNS]


def rank(board: pd.DataFrame) -> pd.DataFrame:
    """Sort one ranking by score (high first; ties by name, then sweep), number it, and mark
    every loss against the leader's 95% interval."""
    board = board.sort_values(
        ["score", "loss", "sweep_id"],
        ascending=[False, True, True],
        kind="mergesort",
        na_position="last",
    ).reset_index(drop=True)
    board["rank"] = np.arange(1, len(board) + 1)
    lead_low = board["score_low"].iloc[0]
    lead_high = board["score_high"].iloc[0]
    status = []
    for i, (low, high) in enumerate(zip(board["score_low"], board["score_high"])):
        if i == 0:
            status.append("leader")
        elif not (np.isfinite(low) and np.isfinite(lead_low)):
            status.append("too few seeds")
        else:
            status.append("tied" if high >= lead_low and low <= lead_high else "below")
    board["vs_leader"] = status
    return board


def definitions(options: Options, metric: str, collapse_rule: str) -> list[tuple[str, str]]:
    """(column, definition) pairs printed under the leaderboard in README.md and index.html."""
    pct = f"{options.band_fraction:.0%}"
    name = metric.removeprefix("m_")
    scope = "(dataset, label fraction)" if options.per_label_fraction else "dataset"
    return [
        (
            "cell score",
            f"each (lr, batch size, label fraction, seed) cell scores its final test "
            f"{name} above chance, (acc - chance) / (1 - chance): 0 = guessing, 1 = "
            "perfect. A diverged cell scores chance (0); running cells are left out.",
        ),
        (
            "score",
            "the rank key. Per seed, the mean cell score over the grid: over lrs weighted by "
            "the decades of lr each grid point covers (equal weights on an evenly "
            "log-spaced grid), over batch sizes, then over label fractions; the column is "
            "the mean over seeds ± its standard error (sd / sqrt(n)), with the 95% "
            f"t-interval (df = n - 1) from {MIN_SEEDS} seeds. A loss must be good across "
            "the grid to rank. Chance is not what an encoder that learned nothing scores: a "
            "probe on random features is usually far above chance. The `untrained` control "
            "(the encoder as initialised, where a sweep has it) is the level to beat.",
        ),
        (
            "vs leader",
            "tied: the loss's 95% interval overlaps the leader's; below: it does not; "
            f"too few seeds: the loss or the leader has fewer than {MIN_SEEDS}. Overlap is a "
            "coarse screen, not a test: losses whose intervals overlap may still differ.",
        ),
        (
            "best",
            "per label fraction, the test metric (raw, not above chance) at the (lr, batch "
            "size) with the best seed-mean validation metric; averaged over label "
            "fractions, ± se over seeds. Not the rank key.",
        ),
        (
            "lr_band",
            f"per (batch size, label fraction) panel, the longest run of consecutive grid "
            f"lrs where the loss's seed-mean score is >= {pct} of a yardstick: the "
            "seed-mean score of the (loss, lr) of this ranking with the best seed-mean "
            "validation score in the panel (one yardstick for all), in decades of lr (each "
            "lr covers the half-way points, in log10, to its neighbours); averaged over "
            "panels.",
        ),
        ("divergence_rate", "share of finished cells whose training diverged (non-finite loss)."),
        (
            "collapse_rate",
            f"share of finished cells that did not diverge but collapsed: {collapse_rule}.",
        ),
        (
            "rank",
            f"one ranking per {scope} (never across datasets), by score, high first; ties by name.",
        ),
    ]


def collapse_rule_text(options: Options, rules: set[str]) -> str:
    """The collapse rule as printed, for the rules the cells actually used."""
    nvar = (
        f"the backbone features' normalised variance m_h_nvar = 1 - |mean(u)|^2 of the "
        f"L2-normalised features u is below {options.nvar_threshold:g} (equivalently their "
        f"per-dimension std is below sqrt({options.nvar_threshold:g} / d) of width d, vs "
        f"1/sqrt(d) when healthy) or their share of zero-variance dimensions m_h_dead is at "
        f"least {options.dead_threshold:g}"
    )
    rankme = f"the backbone RankMe m_h_rankme is below {options.rankme_threshold:g}"
    if "nvar" in rules and "rankme" in rules:
        return f"{nvar}; for cells without these (older stores): {rankme}"
    if "nvar" in rules:
        return nvar
    if "rankme" in rules:
        return f"{rankme} (this store has no m_h_nvar or m_h_dead: the older rule)"
    return "not measured (no geometry metrics stored)"
