"""What the stability-curve figures share (`bench.report.figures`): summaries of the cells per
lr with their bands, and the lines, marks, legends and y ranges every panel draws.

Small multiples, one figure set per dataset: a panel (or a row of panels) per loss family - a
base loss with its `cloa+`/`clop+` variants, at most six lines (`style.MAX_LINES`) - in the
family's colour, the same in every figure. Models: CLOA Figure 2 (accuracy and embedding geometry
vs lr, log axes; variants dashed/dotted) and CLOP's accuracy across batch sizes. Bands are 95%
t-intervals of the seed mean (df = n - 1, from 3 seeds; none below). Marks: 'x' at the bottom of
a panel = a seed diverged there; hollow triangle = a seed collapsed there; hollow circle = seeds
still running. Figures are built with `matplotlib.figure.Figure`, never pyplot, so no backend or
global figure registry is involved.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.lines import Line2D

from bench.report import style
from bench.report.stats import MIN_SEEDS, t_critical
from bench.report.style import Styles, label

GROUP = ["sweep_id", "entry", "batch_size", "label_fraction", "lr"]
BAND = "band: 95% t-interval over seeds (n >= 3)"


@cache
def _t(n: int) -> float:
    return t_critical(n - 1)


def interval(mean: pd.Series, sd: pd.Series, n: pd.Series) -> tuple[pd.Series, pd.Series]:
    """95% t-interval of a seed mean; NaN with fewer than MIN_SEEDS seeds."""
    t = pd.Series([_t(int(k)) if k >= MIN_SEEDS else np.nan for k in n], index=mean.index)
    half = t * sd / np.sqrt(n.where(n > 0))
    return mean - half, mean + half


def _summarise(frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    grouped = frame.groupby(keys, sort=True)
    out = grouped["v"].agg(["mean", "std", "count"])
    out["n_diverged"] = grouped["diverged"].sum()
    out["n_collapsed"] = grouped["is_collapsed"].sum()
    out["n_running"] = grouped["finished"].size() - grouped["finished"].sum()
    out["n_cells"] = grouped["finished"].size()
    out["low"], out["high"] = interval(out["mean"], out["std"], out["count"])
    return out.reset_index()


def _frame(cells: pd.DataFrame, values: pd.Series | np.ndarray) -> pd.DataFrame:
    return cells[[*GROUP, "seed", "finished", "diverged"]].assign(
        v=np.asarray(values, dtype=float), is_collapsed=(cells["collapsed"] == 1).to_numpy()
    )


def lr_summary(cells: pd.DataFrame, values: pd.Series | np.ndarray) -> pd.DataFrame:
    """Per (sweep, loss, batch size, label fraction, lr): seed mean, t-interval, cell states."""
    return _summarise(_frame(cells, values), GROUP)


def score_summary(cells: pd.DataFrame) -> pd.DataFrame:
    """Per (sweep, loss, lr): the leaderboard's cell score averaged per seed over batch sizes
    and label fractions, then over seeds (with its interval); states counted over all cells."""
    frame = _frame(cells, cells["score"])
    keys = ["sweep_id", "entry", "lr"]
    per_seed = frame.groupby([*keys, "seed"], sort=True)["v"].mean().rename("v").reset_index()
    stats = per_seed.groupby(keys, sort=True)["v"].agg(["mean", "std", "count"])
    stats["low"], stats["high"] = interval(stats["mean"], stats["std"], stats["count"])
    grouped = frame.groupby(keys, sort=True)
    stats["n_diverged"] = grouped["diverged"].sum()
    stats["n_collapsed"] = grouped["is_collapsed"].sum()
    stats["n_running"] = grouped["finished"].size() - grouped["finished"].sum()
    return stats.reset_index()


def entries(
    frame: pd.DataFrame, cols: tuple[str, ...] = ("sweep_id", "entry")
) -> list[tuple[str, str]]:
    """Distinct (sweep, loss) in order of first appearance (callers sort in table order)."""
    return list(frame[list(cols)].drop_duplicates().itertuples(index=False, name=None))


def mark_states(ax: Axes, sub: pd.DataFrame, color: Any, x: str = "lr") -> None:
    """Diverged: 'x' at the panel bottom; collapsed: hollow triangle on the line (or at the
    bottom); running: hollow circle. Never plots an empty line (degenerate extent)."""
    bottom = ax.get_xaxis_transform()  # x in data, y in axes coordinates
    div = sub[sub["n_diverged"] > 0]
    if len(div):
        ax.plot(
            div[x],
            np.full(len(div), 0.04),
            "x",
            color=color,
            ms=6,
            mew=1.6,
            transform=bottom,
            clip_on=False,
        )
    for col, marker, size in (("n_collapsed", "v", 7), ("n_running", "o", 6)):
        if col not in sub.columns:
            continue
        part = sub[sub[col] > 0]
        on_line = part["mean"].notna()
        if on_line.any():
            ax.plot(
                part[x][on_line],
                part["mean"][on_line],
                marker,
                mfc="white",
                mec=color,
                ms=size,
                mew=1.3,
            )
        if (~on_line).any():
            ax.plot(
                part[x][~on_line],
                np.full(int((~on_line).sum()), 0.1),
                marker,
                mfc="white",
                mec=color,
                ms=size,
                transform=bottom,
                clip_on=False,
            )


def line(ax: Axes, sub: pd.DataFrame, st: dict[str, Any], x: str = "lr") -> None:
    done = sub["mean"].notna()
    if done.any():
        ax.plot(sub[x][done], sub["mean"][done], ms=3.5, lw=1.4, **st)
        band = done & sub["low"].notna()
        if band.any():
            ax.fill_between(
                sub[x][band],
                sub["low"][band],
                sub["high"][band],
                color=st["color"],
                alpha=0.15,
                lw=0,
            )
    mark_states(ax, sub, st["color"], x)


def legend(
    entries: list[tuple[str, str]],
    styles: Styles,
    multi: bool,
    extra: Sequence[Line2D] = (),
    states: bool = True,
) -> tuple[list[Line2D], float]:
    """Handles for the entries (plain names: one figure is one dataset) and the state marks."""
    handles = [
        Line2D([], [], ms=4, label=label(styles.name(s, e), s if multi else None), **styles(s, e))
        for s, e in entries
    ]
    handles += list(extra)
    handles += (
        []
        if not states
        else [
            Line2D([], [], ls="", marker="x", color="0.3", label="diverged seed(s)"),
            Line2D([], [], ls="", marker="v", mfc="white", mec="0.3", label="collapsed seed(s)"),
            Line2D([], [], ls="", marker="o", mfc="white", mec="0.3", label="running"),
        ]
    )
    return handles, style.legend_width([str(h.get_label()) for h in handles])


def ylim(
    frames: Sequence[pd.DataFrame], floor: float | None = None, ceiling: float = 1.0
) -> tuple[float, float]:
    """One y range for every panel of a figure (panels compare at a glance)."""
    parts = [f[c].to_numpy(float) for f in frames for c in ("mean", "low", "high") if c in f]
    vals = np.concatenate(parts) if parts else np.array([])
    vals = vals[np.isfinite(vals)]
    lo = float(vals.min()) if len(vals) else 0.0
    hi = float(vals.max()) if len(vals) else 1.0
    if floor is not None:
        lo = min(lo, floor)
    hi = min(max(hi, lo + 1e-3), ceiling)
    pad = 0.06 * (hi - lo)
    return lo - pad, hi + pad


def chance_line(ax: Axes, chance: float | None) -> None:
    if chance is not None:
        ax.axhline(chance, color="0.45", lw=0.9, ls=(0, (1, 2)), zorder=0.5)


def chance_handle(text: str = "chance") -> Line2D:
    return Line2D([], [], color="0.45", lw=0.9, ls=(0, (1, 2)), label=text)
