"""The headline figure: the leaderboard's score above chance vs learning rate."""

from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure

from bench.report import curves, style
from bench.report.figures import BAND_TEXT, FAMILIES, MARKS, FigureContext, FigureSpec
from bench.report.style import Styles, family_panels, label

ORDER = 10
COLUMNS: tuple[str, ...] = ()


def draw(ctx: FigureContext) -> FigureSpec:
    ds, name = ctx.dataset, ctx.name
    return FigureSpec(
        f"score_vs_lr-{ctx.tag}",
        f"{ds}: score above chance vs learning rate",
        f"The leaderboard's cell score, (acc - chance) / (1 - chance) of the test {name} with "
        f"diverged = 0, averaged per seed over batch sizes ({ctx.batch_sizes}) and label "
        f"fractions ({ctx.label_fractions}), then over seeds. {BAND_TEXT} {FAMILIES} {MARKS}",
        score_vs_lr(
            ctx.ordered(curves.score_summary(ctx.cells)),
            ctx.styles,
            f"{ds}: score above chance vs learning rate (0 = chance, 1 = perfect)",
        ),
        ds,
        headline=True,
    )


def score_vs_lr(summary: pd.DataFrame, styles: Styles, title: str) -> Figure:
    """The headline: score above chance vs lr, a panel per loss family (wrapped at 4)."""
    entries = curves.entries(summary)
    panels = family_panels(entries, styles)
    multi = summary["sweep_id"].nunique() > 1
    handles, right = curves.legend(
        entries, styles, multi, [curves.chance_handle("chance (score 0)")]
    )
    nrows, ncols = style.panels(len(panels))
    fig, axes = style.grid(nrows, ncols, w=2.6, h=2.0, right=right, sharex=False)
    lrs = sorted(summary["lr"].unique())
    ylim = curves.ylim([summary], floor=0.0, ceiling=1.0)
    for n, (family, keys) in enumerate(panels):
        ax = axes.flat[n]
        for sweep, entry in keys:
            sub = summary[(summary["sweep_id"] == sweep) & (summary["entry"] == entry)]
            curves.line(ax, sub, styles(sweep, entry))
        curves.chance_line(ax, 0.0)
        style.log_axis(ax, "x", ticks=lrs)
        ax.set_ylim(*ylim)
        ax.set_title(label(family), fontsize=9, color=styles.color(family), fontweight="bold")
        ax.grid(alpha=0.3)
        if n % ncols == 0:
            ax.set_ylabel("score above chance", fontsize=8)
        ax.set_xlabel("learning rate", fontsize=8)
    style.hide_unused(axes, len(panels))
    style.legend(fig, handles, right)
    style.title(fig, title)
    return fig
