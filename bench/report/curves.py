"""Stability curves as matplotlib Figures (pure: DataFrame in, Figure out, nothing saved).

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

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from bench.report import style
from bench.report.stats import MIN_SEEDS, t_critical
from bench.report.style import Styles, family_panels, label
from bench.report.tables import fraction_label

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
        v=np.asarray(values, dtype=float), is_collapsed=(cells["collapsed"] == 1).to_numpy())


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


def _entries(frame: pd.DataFrame, cols: tuple[str, ...] = ("sweep_id", "entry")) -> list[tuple]:
    """Distinct (sweep, loss) in order of first appearance (callers sort in table order)."""
    return list(frame[list(cols)].drop_duplicates().itertuples(index=False, name=None))


def _mark_states(ax: object, sub: pd.DataFrame, color: object, x: str = "lr") -> None:
    """Diverged: 'x' at the panel bottom; collapsed: hollow triangle on the line (or at the
    bottom); running: hollow circle. Never plots an empty line (degenerate extent)."""
    bottom = ax.get_xaxis_transform()  # x in data, y in axes coordinates
    div = sub[sub["n_diverged"] > 0]
    if len(div):
        ax.plot(div[x], np.full(len(div), 0.04), "x", color=color, ms=6, mew=1.6,
                transform=bottom, clip_on=False)
    for col, marker, size in (("n_collapsed", "v", 7), ("n_running", "o", 6)):
        if col not in sub.columns:
            continue
        part = sub[sub[col] > 0]
        on_line = part["mean"].notna()
        if on_line.any():
            ax.plot(part[x][on_line], part["mean"][on_line], marker, mfc="white", mec=color,
                    ms=size, mew=1.3)
        if (~on_line).any():
            ax.plot(part[x][~on_line], np.full(int((~on_line).sum()), 0.1), marker, mfc="white",
                    mec=color, ms=size, transform=bottom, clip_on=False)


def _line(ax: object, sub: pd.DataFrame, st: dict, x: str = "lr") -> None:
    done = sub["mean"].notna()
    if done.any():
        ax.plot(sub[x][done], sub["mean"][done], ms=3.5, lw=1.4, **st)
        band = done & sub["low"].notna()
        if band.any():
            ax.fill_between(sub[x][band], sub["low"][band], sub["high"][band],
                            color=st["color"], alpha=0.15, lw=0)
    _mark_states(ax, sub, st["color"], x)


def _legend(entries: list[tuple], styles: Styles, multi: bool, extra: Sequence[Line2D] = (),
            states: bool = True) -> tuple[list, float]:
    """Handles for the entries (plain names: one figure is one dataset) and the state marks."""
    handles = [Line2D([], [], ms=4, label=label(styles.name(s, e), s if multi else None),
                      **styles(s, e)) for s, e in entries]
    handles += list(extra)
    handles += [] if not states else [Line2D([], [], ls="", marker="x", color="0.3", label="diverged seed(s)"),
                Line2D([], [], ls="", marker="v", mfc="white", mec="0.3", label="collapsed seed(s)"),
                Line2D([], [], ls="", marker="o", mfc="white", mec="0.3", label="running")]
    return handles, style.legend_width([h.get_label() for h in handles])


def _ylim(frames: Sequence[pd.DataFrame], floor: float | None = None,
          ceiling: float = 1.0) -> tuple[float, float]:
    """One y range for every panel of a figure (panels compare at a glance)."""
    vals = [f[c].to_numpy(float) for f in frames for c in ("mean", "low", "high") if c in f]
    vals = np.concatenate(vals) if vals else np.array([])
    vals = vals[np.isfinite(vals)]
    lo = float(vals.min()) if len(vals) else 0.0
    hi = float(vals.max()) if len(vals) else 1.0
    if floor is not None:
        lo = min(lo, floor)
    hi = min(max(hi, lo + 1e-3), ceiling)
    pad = 0.06 * (hi - lo)
    return lo - pad, hi + pad


def _chance_line(ax: object, chance: float | None) -> None:
    if chance is not None:
        ax.axhline(chance, color="0.45", lw=0.9, ls=(0, (1, 2)), zorder=0.5)


def _chance_handle(text: str = "chance") -> Line2D:
    return Line2D([], [], color="0.45", lw=0.9, ls=(0, (1, 2)), label=text)


def score_vs_lr(summary: pd.DataFrame, styles: Styles, title: str) -> Figure:
    """The headline: score above chance vs lr, a panel per loss family (wrapped at 4)."""
    entries = _entries(summary)
    panels = family_panels(entries, styles)
    multi = summary["sweep_id"].nunique() > 1
    handles, right = _legend(entries, styles, multi, [_chance_handle("chance (score 0)")])
    nrows, ncols = style.panels(len(panels))
    lines = max(style.panel_title(family).count("\n") + 1 for family, _ in panels)
    fig, axes = style.grid(nrows, ncols, w=2.6, h=2.0, right=right, sharex=False,
                           title_lines=lines)
    lrs = sorted(summary["lr"].unique())
    ylim = _ylim([summary], floor=0.0, ceiling=1.0)
    for n, (family, keys) in enumerate(panels):
        ax = axes.flat[n]
        for sweep, entry in keys:
            sub = summary[(summary["sweep_id"] == sweep) & (summary["entry"] == entry)]
            _line(ax, sub, styles(sweep, entry))
        _chance_line(ax, 0.0)
        style.log_axis(ax, "x", ticks=lrs)
        ax.set_ylim(*ylim)
        ax.set_title(style.panel_title(family), fontsize=9, color=styles.color(family),
                     fontweight="bold")
        ax.grid(alpha=0.3)
        if n % ncols == 0:
            ax.set_ylabel("score above chance", fontsize=8)
        ax.set_xlabel("learning rate", fontsize=8)
    style.hide_unused(axes, len(panels))
    style.legend(fig, handles, right)
    style.title(fig, title)
    return fig


def accuracy_vs_lr(summary: pd.DataFrame, styles: Styles, ylabel: str, chance: float | None,
                   title: str) -> Figure:
    """Test metric vs lr (log x): a row per loss family, a column per (batch size, label
    fraction), one y range for all panels, the chance level dotted."""
    entries = _entries(summary)
    panels = family_panels(entries, styles)
    cols = sorted(set(zip(summary["batch_size"], summary["label_fraction"])))
    multi = summary["sweep_id"].nunique() > 1
    handles, right = _legend(entries, styles, multi,
                             [_chance_handle()] if chance is not None else [])
    fig, axes = style.grid(len(panels), len(cols), w=2.4, h=1.7, right=right, hgap=0.45)
    lrs = sorted(summary["lr"].unique())
    ylim = _ylim([summary], floor=chance)
    for i, (family, keys) in enumerate(panels):
        for j, (bs, lf) in enumerate(cols):
            ax = axes[i, j]
            panel = summary[(summary["batch_size"] == bs) & (summary["label_fraction"] == lf)]
            for sweep, entry in keys:
                sub = panel[(panel["sweep_id"] == sweep) & (panel["entry"] == entry)]
                _line(ax, sub, styles(sweep, entry))
            _chance_line(ax, chance)
            style.log_axis(ax, "x", ticks=lrs)
            ax.set_ylim(*ylim)
            ax.grid(alpha=0.3)
            if i == 0:
                ax.set_title(f"batch {bs}, {fraction_label(lf)}", fontsize=9)
            if j == 0:
                ax.set_ylabel(f"{label(family)}\n{ylabel}", fontsize=8,
                              color=styles.color(family))
            if i == len(panels) - 1:
                ax.set_xlabel("learning rate", fontsize=8)
    style.legend(fig, handles, right)
    style.title(fig, title)
    return fig


def geometry_vs_lr(summaries: dict[str, pd.DataFrame], styles: Styles,
                   thresholds: dict[str, float], log_kinds: set[str], title: str) -> Figure:
    """Embedding geometry vs lr: a row per loss family, a column per (measure, batch size);
    the collapse threshold of a measure dotted red."""
    kinds = list(summaries)
    first = next(iter(summaries.values()))
    entries = _entries(first)
    panels = family_panels(entries, styles)
    bss = sorted(first["batch_size"].unique())
    multi = first["sweep_id"].nunique() > 1
    extra = [Line2D([], [], color="tab:red", lw=0.9, ls=(0, (2, 2)), label="collapse threshold")]
    handles, right = _legend(entries, styles, multi, extra if thresholds else [])
    cols = [(k, bs) for k in kinds for bs in bss]
    fig, axes = style.grid(len(panels), len(cols), w=2.4, h=1.7, right=right, hgap=0.45)
    lrs = sorted(first["lr"].unique())
    for j, (kind, bs) in enumerate(cols):
        summary = summaries[kind]
        panel = summary[summary["batch_size"] == bs]
        ylim = None if kind in log_kinds else _ylim([summary], floor=0.0)
        for i, (family, keys) in enumerate(panels):
            ax = axes[i, j]
            for sweep, entry in keys:
                sub = panel[(panel["sweep_id"] == sweep) & (panel["entry"] == entry)]
                _line(ax, sub, styles(sweep, entry))
            if kind in thresholds:
                ax.axhline(thresholds[kind], color="tab:red", lw=0.9, ls=(0, (2, 2)))
            style.log_axis(ax, "x", ticks=lrs)
            if kind in log_kinds and (summary["mean"] > 0).any():
                style.log_axis(ax, "y")
            elif ylim is not None:
                ax.set_ylim(*ylim)
            ax.grid(alpha=0.3)
            if i == 0:
                ax.set_title(f"{kind}, batch {bs}", fontsize=9)
            if j == 0:
                ax.set_ylabel(label(family), fontsize=8, color=styles.color(family))
            if i == len(panels) - 1:
                ax.set_xlabel("learning rate", fontsize=8)
    style.legend(fig, handles, right)
    style.title(fig, title)
    return fig


def batch_summary(long: pd.DataFrame) -> pd.DataFrame:
    """The comparison tables' cells (test at the lr chosen on validation) with their bands."""
    out = long.rename(columns={"loss": "entry", "top1_mean": "mean", "top1_std": "std",
                               "n_seeds": "count"}).copy()
    out["low"], out["high"] = interval(out["mean"], out["std"], out["count"])
    # the tables' state counts cover every lr of a panel, not the selected one: no marks here
    out[["n_running", "n_diverged", "n_collapsed"]] = 0
    return out


def accuracy_vs_batch_size(summary: pd.DataFrame, styles: Styles, ylabel: str,
                           chance: float | None, title: str) -> Figure:
    """CLOP's view: the test metric at the lr chosen on validation for each batch size, a row
    per loss family, a column per label fraction."""
    entries = _entries(summary)
    panels = family_panels(entries, styles)
    lfs = sorted(summary["label_fraction"].unique())
    bss = [int(b) for b in sorted(summary["batch_size"].unique())]
    multi = summary["sweep_id"].nunique() > 1
    handles, right = _legend(entries, styles, multi,
                             [_chance_handle()] if chance is not None else [], states=False)
    fig, axes = style.grid(len(panels), len(lfs), w=2.6, h=1.7, right=right, hgap=0.45)
    ylim = _ylim([summary], floor=chance)
    for i, (family, keys) in enumerate(panels):
        for j, lf in enumerate(lfs):
            ax = axes[i, j]
            panel = summary[summary["label_fraction"] == lf]
            for sweep, entry in keys:
                sub = panel[(panel["sweep_id"] == sweep) & (panel["entry"] == entry)]
                _line(ax, sub.sort_values("batch_size"), styles(sweep, entry), x="batch_size")
            _chance_line(ax, chance)
            style.log_axis(ax, "x", ticks=bss, base=2)
            ax.set_ylim(*ylim)
            ax.grid(alpha=0.3)
            if i == 0:
                ax.set_title(fraction_label(lf), fontsize=9)
            if j == 0:
                ax.set_ylabel(f"{label(family)}\n{ylabel}", fontsize=8,
                              color=styles.color(family))
            if i == len(panels) - 1:
                ax.set_xlabel("batch size", fontsize=8)
    style.legend(fig, handles, right)
    style.title(fig, title)
    return fig


def selected_settings(long: pd.DataFrame, lf: float) -> pd.DataFrame:
    """Per (sweep, loss) at label fraction `lf`: the (batch size, lr) with the best seed-mean
    selection metric (validation when the store has it; ties: smaller batch size)."""
    at = long[long["label_fraction"] == lf].sort_values(
        ["sweep_id", "loss", "selection_mean", "batch_size"], ascending=[True, True, False, True],
        kind="mergesort", na_position="last")
    best = at.drop_duplicates(["sweep_id", "loss"]).dropna(subset=["best_lr"])
    return best.rename(columns={"loss": "entry", "best_lr": "lr"})[
        ["sweep_id", "entry", "batch_size", "lr"]]


def epoch_summary(rows: pd.DataFrame, cells: pd.DataFrame, long: pd.DataFrame, column: str,
                  lf: float) -> pd.DataFrame:
    """Per (sweep, loss, epoch) at label fraction `lf`: the seed mean of `column` (and its band)
    at the loss's selected (batch size, lr). Reads the raw rows (every evaluated epoch)."""
    keys = cells[cells["label_fraction"] == lf][["sweep_id", "trial_id", "entry", "lr",
                                                 "batch_size"]]
    keys = keys.merge(selected_settings(long, lf), on=["sweep_id", "entry", "batch_size", "lr"])
    parts = []
    for sweep, k in keys.groupby("sweep_id", sort=True):
        sel = rows[(rows["sweep_id"] == sweep) & (rows["label_fraction"] == lf)]
        parts.append(sel[["trial_id", "epoch", column]].merge(k, on="trial_id"))
    cols = ["sweep_id", "entry", "batch_size", "lr", "epoch"]
    if not parts:
        return pd.DataFrame(columns=[*cols, "mean", "low", "high"])
    data = pd.concat(parts, ignore_index=True).dropna(subset=[column])
    out = data.groupby(cols, sort=True)[column].agg(["mean", "std", "count"])
    out["low"], out["high"] = interval(out["mean"], out["std"], out["count"])
    return out.reset_index()


def epoch_curves(summary: pd.DataFrame, styles: Styles, ylabel: str, title: str) -> Figure:
    """Per-epoch curves: a panel per loss family, a line per loss at its selected setting."""
    entries = _entries(summary)
    panels = family_panels(entries, styles)
    multi = summary["sweep_id"].nunique() > 1
    handles, right = _legend(entries, styles, multi, states=False)
    nrows, ncols = style.panels(len(panels))
    lines = max(style.panel_title(family).count("\n") + 1 for family, _ in panels)
    fig, axes = style.grid(nrows, ncols, w=2.6, h=2.0, right=right, sharex=False,
                           title_lines=lines)
    ylim = _ylim([summary])
    for n, (family, keys) in enumerate(panels):
        ax = axes.flat[n]
        for sweep, entry in keys:
            sub = summary[(summary["sweep_id"] == sweep) & (summary["entry"] == entry)]
            if not len(sub):
                continue
            st = styles(sweep, entry)
            ax.plot(sub["epoch"], sub["mean"], lw=1.3, ms=3, **st)
            band = sub["low"].notna()
            if band.any():
                ax.fill_between(sub["epoch"][band], sub["low"][band], sub["high"][band],
                                color=st["color"], alpha=0.15, lw=0)
        ax.set_ylim(*ylim)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(style.panel_title(family), fontsize=9, color=styles.color(family),
                     fontweight="bold")
        ax.grid(alpha=0.3)
        ax.set_xlabel("epoch", fontsize=8)
        if n % ncols == 0:
            ax.set_ylabel(ylabel, fontsize=8)
    style.hide_unused(axes, len(panels))
    style.legend(fig, handles, right)
    style.title(fig, title)
    return fig
