"""Embedding geometry (backbone features) vs learning rate, with the collapse thresholds."""

from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from bench.report import curves, style
from bench.report.figures import BAND_TEXT, MARKS, FigureContext, FigureSpec
from bench.report.style import Styles, family_panels, label
from bench.report.tables import fraction_label

ORDER = 30
# Normalised variance and dead-unit share; stores written before them: total variance, RankMe.
COLUMNS: tuple[str, ...] = ("m_h_nvar", "m_h_dead", "m_h_total_var", "m_h_rankme")


def draw(ctx: FigureContext) -> FigureSpec | None:
    geometry, thresholds, log_kinds = measures(ctx)
    if not geometry:
        return None
    ds, lf = ctx.dataset, ctx.lf
    kinds = " and ".join(geometry)
    return FigureSpec(
        f"geometry_vs_lr-{ctx.tag}",
        f"{ds}: embedding geometry vs learning rate",
        f"Backbone features at {fraction_label(lf)}: {kinds}, a row per loss family, a "
        "column per (measure, batch size); dashed red: the collapse threshold of the "
        f"leaderboard's collapse rule. {BAND_TEXT} {MARKS}",
        geometry_vs_lr(
            {k: v[v["label_fraction"] == lf] for k, v in geometry.items()},
            ctx.styles,
            thresholds,
            log_kinds,
            f"{ds}: backbone geometry vs learning rate ({fraction_label(lf)})",
        ),
        ds,
    )


def measures(ctx: FigureContext) -> tuple[dict[str, pd.DataFrame], dict[str, float], set[str]]:
    """The geometry measures to draw: normalised variance and dead share when the store has
    them, else total variance (log) and RankMe as older stores have."""
    cells, options = ctx.cells, ctx.options
    finished = cells["finished"]

    def has(col: str) -> bool:
        return col in cells.columns and bool(cells.loc[finished, col].notna().any())

    shown = (
        [("m_h_nvar", "normalised variance"), ("m_h_dead", "dead-unit share")]
        if has("m_h_nvar")
        else [("m_h_total_var", "total variance"), ("m_h_rankme", "RankMe")]
    )
    thresholds = {
        "normalised variance": options.nvar_threshold,
        "dead-unit share": options.dead_threshold,
    }
    if not has("m_h_nvar"):
        thresholds = {"RankMe": options.rankme_threshold}
    out = {}
    for col, kind in shown:
        if has(col):
            values = cells[col].astype(float).where(finished)
            out[kind] = ctx.ordered(curves.lr_summary(cells, values))
    return out, {k: v for k, v in thresholds.items() if k in out}, {"total variance"}


def geometry_vs_lr(
    summaries: dict[str, pd.DataFrame],
    styles: Styles,
    thresholds: dict[str, float],
    log_kinds: set[str],
    title: str,
) -> Figure:
    """Embedding geometry vs lr: a row per loss family, a column per (measure, batch size);
    the collapse threshold of a measure dotted red."""
    kinds = list(summaries)
    first = next(iter(summaries.values()))
    entries = curves.entries(first)
    panels = family_panels(entries, styles)
    bss = sorted(first["batch_size"].unique())
    multi = first["sweep_id"].nunique() > 1
    extra = [Line2D([], [], color="tab:red", lw=0.9, ls=(0, (2, 2)), label="collapse threshold")]
    handles, right = curves.legend(entries, styles, multi, extra if thresholds else [])
    cols = [(k, bs) for k in kinds for bs in bss]
    fig, axes = style.grid(len(panels), len(cols), w=2.4, h=1.7, right=right, hgap=0.45)
    lrs = sorted(first["lr"].unique())
    for j, (kind, bs) in enumerate(cols):
        summary = summaries[kind]
        panel = summary[summary["batch_size"] == bs]
        ylim = None if kind in log_kinds else curves.ylim([summary], floor=0.0)
        for i, (family, keys) in enumerate(panels):
            ax = axes[i, j]
            for sweep, entry in keys:
                sub = panel[(panel["sweep_id"] == sweep) & (panel["entry"] == entry)]
                curves.line(ax, sub, styles(sweep, entry))
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
