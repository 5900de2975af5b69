"""Stability curves as matplotlib Figures (pure: DataFrame in, Figure out, nothing saved).

One figure per plot kind with a panel per (batch size, label fraction) or per loss, so the figure
count stays fixed however many rows the store has. Models: CLOA Figure 2 (accuracy and total
embedding variance vs lr, log axes; CLOA variants dashed as the paper draws them dotted) and
CLOP's accuracy across batch sizes. Marks: an 'x' at the bottom of a panel = at least one seed
diverged there; a hollow marker = some seeds of that point are still running; the band spans
min-max over seeds. Figures are built with `matplotlib.figure.Figure`, never pyplot, so no
backend or global figure registry is involved.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from bench.report import style
from bench.report.style import Styles, label
from bench.report.tables import fraction_label

GROUP = ["sweep_id", "entry", "batch_size", "label_fraction", "lr"]


def lr_summary(cells: pd.DataFrame, values: pd.Series) -> pd.DataFrame:
    """Per (sweep, loss, batch size, label fraction, lr): seed mean/min/max/n and cell states."""
    frame = cells[[*GROUP, "finished", "diverged"]].assign(v=values.to_numpy(float))
    grouped = frame.groupby(GROUP, sort=True)
    out = grouped["v"].agg(["mean", "min", "max", "count"])
    out["n_diverged"] = grouped["diverged"].sum()
    out["n_running"] = grouped["finished"].size() - grouped["finished"].sum()
    out["n_cells"] = grouped["finished"].size()
    return out.reset_index()


def _entries(frame: pd.DataFrame, cols: tuple[str, ...] = ("sweep_id", "entry")) -> list[tuple]:
    """Distinct (sweep, loss) in order of first appearance (callers sort in table order)."""
    return list(frame[list(cols)].drop_duplicates().itertuples(index=False, name=None))


def _mark_states(ax: object, sub: pd.DataFrame, color: str) -> None:
    """Diverged: 'x' at the panel bottom; running: hollow marker on the line (or at the bottom).

    Never plots an empty line (an empty unclipped Line2D has a degenerate extent).
    """
    bottom = ax.get_xaxis_transform()  # x in data, y in axes coordinates
    div = sub[sub["n_diverged"] > 0]
    if len(div):
        ax.plot(div["lr"], np.full(len(div), 0.03), "x", color=color, ms=7, mew=1.8,
                transform=bottom, clip_on=False)
    run = sub[sub["n_running"] > 0]
    on_line = run["mean"].notna()
    if on_line.any():
        ax.plot(run["lr"][on_line], run["mean"][on_line], "o", mfc="white", mec=color, ms=6)
    if (~on_line).any():
        ax.plot(run["lr"][~on_line], np.full(int((~on_line).sum()), 0.03), "o", mfc="white",
                mec=color, ms=6, transform=bottom, clip_on=False)


def _loss_legend(summary: pd.DataFrame, styles: Styles) -> tuple[list, float]:
    """Legend handles for the losses plus the state markers, and the width they need."""
    multi = summary["sweep_id"].nunique() > 1
    handles = [Line2D([], [], ms=4, label=label(e, s if multi else None),
                      **{"marker": "o", **styles(s, e)}) for s, e in _entries(summary)]
    handles += [Line2D([], [], ls="", marker="x", color="0.3", label="diverged seed(s)"),
                Line2D([], [], ls="", marker="o", mfc="white", mec="0.3", label="running")]
    return handles, style.legend_width([h.get_label() for h in handles])


def _lr_legend(lrs: list[float]) -> tuple[list, float]:
    cmap = style.viridis(len(lrs))
    handles = [Line2D([], [], color=cmap[k], marker="o", ms=3, label=f"lr {lr:g}")
               for k, lr in enumerate(lrs)]
    return handles, style.legend_width([h.get_label() for h in handles])


def accuracy_vs_lr(summary: pd.DataFrame, styles: Styles, ylabel: str) -> Figure:
    """Seed-mean accuracy vs lr (log x), a panel per (batch size, label fraction), band = min-max."""
    bss = sorted(summary["batch_size"].unique())
    lfs = sorted(summary["label_fraction"].unique())
    handles, right = _loss_legend(summary, styles)
    fig, axes = style.grid(len(bss), len(lfs), right=right)
    for (i, bs), (j, lf) in ((a, b) for a in enumerate(bss) for b in enumerate(lfs)):
        ax = axes[i, j]
        panel = summary[(summary["batch_size"] == bs) & (summary["label_fraction"] == lf)]
        for sweep, entry in _entries(panel):
            sub = panel[(panel["sweep_id"] == sweep) & (panel["entry"] == entry)]
            st = styles(sweep, entry)
            done = sub["mean"].notna()
            if done.any():
                ax.plot(sub["lr"][done], sub["mean"][done], **{"marker": "o", **st}, ms=3)
                ax.fill_between(sub["lr"][done], sub["min"][done], sub["max"][done],
                                color=st["color"], alpha=0.12, lw=0)
            _mark_states(ax, sub, st["color"])
        style.log_axis(ax, "x", ticks=sorted(summary["lr"].unique()))
        ax.set_title(f"batch {bs}, {fraction_label(lf)}", fontsize=9)
        ax.grid(alpha=0.3)
        if j == 0:
            ax.set_ylabel(ylabel, fontsize=8)
        if i == len(bss) - 1:
            ax.set_xlabel("learning rate", fontsize=8)
    style.legend(fig, handles, right)
    style.title(fig, f"{ylabel} vs learning rate (band: min-max over seeds)")
    return fig


def geometry_vs_lr(summaries: dict[str, pd.DataFrame], styles: Styles, lf: float) -> Figure:
    """CLOA Fig. 2 bottom: total embedding variance (log y) and RankMe vs lr, a column per batch
    size, at label fraction `lf` (for a loss that uses no labels every fraction is the same
    trial)."""
    kinds = list(summaries)
    first = next(iter(summaries.values()))
    bss = sorted(first["batch_size"].unique())
    handles, right = _loss_legend(first, styles)
    fig, axes = style.grid(len(kinds), len(bss), right=right)
    for i, kind in enumerate(kinds):
        summary = summaries[kind]
        summary = summary[summary["label_fraction"] == lf]
        for j, bs in enumerate(bss):
            ax = axes[i, j]
            panel = summary[summary["batch_size"] == bs]
            for sweep, entry in _entries(panel):
                sub = panel[(panel["sweep_id"] == sweep) & (panel["entry"] == entry)]
                st = styles(sweep, entry)
                done = sub["mean"].notna()
                if done.any():
                    ax.plot(sub["lr"][done], sub["mean"][done], **{"marker": "o", **st}, ms=3)
                _mark_states(ax, sub, st["color"])
            style.log_axis(ax, "x", ticks=sorted(first["lr"].unique()))
            if kind == "total variance" and (summary["mean"] > 0).any():
                style.log_axis(ax, "y")
            ax.set_title(f"batch {bs}", fontsize=9)
            ax.grid(alpha=0.3)
            if j == 0:
                ax.set_ylabel(f"{kind} (backbone)", fontsize=8)
            if i == len(kinds) - 1:
                ax.set_xlabel("learning rate", fontsize=8)
    style.legend(fig, handles, right)
    style.title(fig, f"Embedding geometry vs learning rate ({fraction_label(lf)})")
    return fig


def accuracy_vs_batch_size(summary: pd.DataFrame, ylabel: str, lf: float) -> Figure:
    """CLOP-style: seed-mean accuracy vs batch size, a line per lr, a panel per loss, at `lf`."""
    summary = summary[summary["label_fraction"] == lf]
    entries = _entries(summary)
    lrs = sorted(summary["lr"].unique())
    bss = [int(b) for b in sorted(summary["batch_size"].unique())]
    cmap = style.viridis(len(lrs))
    handles, right = _lr_legend(lrs)
    nrows, ncols = style.panels(len(entries))
    fig, axes = style.grid(nrows, ncols, w=2.6, right=right, sharex=False)
    multi = summary["sweep_id"].nunique() > 1
    for n, (sweep, entry) in enumerate(entries):
        ax = axes.flat[n]
        sub = summary[(summary["sweep_id"] == sweep) & (summary["entry"] == entry)]
        for k, lr in enumerate(lrs):
            line = sub[sub["lr"] == lr]
            done = line["mean"].notna()
            if done.any():
                ax.plot(line["batch_size"][done], line["mean"][done], marker="o", ms=3,
                        color=cmap[k])
            _mark_states(ax, line.assign(lr=line["batch_size"]), cmap[k])
        style.log_axis(ax, "x", ticks=bss, base=2)
        ax.set_title(label(entry, sweep if multi else None), fontsize=9)
        ax.grid(alpha=0.3)
        if n % ncols == 0:
            ax.set_ylabel(ylabel, fontsize=8)
        ax.set_xlabel("batch size", fontsize=8)
    style.hide_unused(axes, len(entries))
    style.legend(fig, handles, right)
    style.title(fig, f"{ylabel} vs batch size at each learning rate ({fraction_label(lf)})")
    return fig


def epoch_summary(rows: pd.DataFrame, cells: pd.DataFrame, long: pd.DataFrame, column: str,
                  lf: float) -> pd.DataFrame:
    """Seed-mean `column` per epoch for each loss at its best batch size, label fraction `lf`.

    Reads the raw rows (every evaluated epoch), not just the cells; the best batch size is the
    one with the highest best-over-lr mean in the comparison table.
    """
    at = long[long["label_fraction"] == lf].sort_values(
        ["sweep_id", "loss", "top1_mean", "batch_size"], ascending=[True, True, False, True],
        kind="mergesort", na_position="last")
    best = at.drop_duplicates(["sweep_id", "loss"])[["sweep_id", "loss", "batch_size"]]
    keys = cells[cells["label_fraction"] == lf][["sweep_id", "trial_id", "entry", "lr",
                                                 "batch_size"]]
    keys = keys.merge(best.rename(columns={"loss": "entry"}), on=["sweep_id", "entry",
                                                                   "batch_size"])
    parts = []
    for sweep, k in keys.groupby("sweep_id", sort=True):
        sel = rows[(rows["sweep_id"] == sweep) & (rows["label_fraction"] == lf)]
        parts.append(sel[["trial_id", "epoch", column]].merge(k, on="trial_id"))
    if not parts:
        return pd.DataFrame(columns=["sweep_id", "entry", "batch_size", "lr", "epoch", "mean"])
    data = pd.concat(parts, ignore_index=True).dropna(subset=[column])
    return (data.groupby(["sweep_id", "entry", "batch_size", "lr", "epoch"], sort=True)[column]
            .agg(["mean", "min", "max"]).reset_index())


def epoch_curves(summary: pd.DataFrame, ylabel: str, lf: float) -> Figure:
    """Per-epoch curves: a panel per loss (at its best batch size), a line per lr."""
    entries = _entries(summary, ("sweep_id", "entry", "batch_size"))
    lrs = sorted(summary["lr"].unique())
    cmap = style.viridis(len(lrs))
    handles, right = _lr_legend(lrs)
    nrows, ncols = style.panels(len(entries))
    fig, axes = style.grid(nrows, ncols, w=2.6, right=right, sharex=False)
    multi = summary["sweep_id"].nunique() > 1
    for n, (sweep, entry, bs) in enumerate(entries):
        ax = axes.flat[n]
        sub = summary[(summary["sweep_id"] == sweep) & (summary["entry"] == entry)]
        for k, lr in enumerate(lrs):
            line = sub[sub["lr"] == lr]
            if len(line):
                ax.plot(line["epoch"], line["mean"], color=cmap[k], lw=1.2)
                ax.fill_between(line["epoch"], line["min"], line["max"], color=cmap[k],
                                alpha=0.1, lw=0)
        ax.set_title(f"{label(entry, sweep if multi else None)} (batch {bs})", fontsize=9)
        ax.grid(alpha=0.3)
        ax.set_xlabel("epoch", fontsize=8)
        if n % ncols == 0:
            ax.set_ylabel(ylabel, fontsize=8)
    style.hide_unused(axes, len(entries))
    style.legend(fig, handles, right)
    style.title(fig, f"{ylabel} per epoch ({fraction_label(lf)}, band: min-max over seeds)")
    return fig
