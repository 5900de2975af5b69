"""The test metric vs learning rate, per (batch size, label fraction)."""

from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure

from bench.report import curves, style
from bench.report.figures import BAND_TEXT, MARKS, FigureContext, FigureSpec
from bench.report.style import Styles, family_panels, label
from bench.report.tables import fraction_label

ORDER = 20
COLUMNS: tuple[str, ...] = ()


def draw(ctx: FigureContext) -> FigureSpec:
    ds, name = ctx.dataset, ctx.name
    return FigureSpec(
        f"accuracy_vs_lr-{ctx.tag}",
        f"{ds}: {name} vs learning rate",
        f"Seed-mean test {name} per loss: a row per loss family, a column per (batch size, "
        f"label fraction); dotted: chance. {BAND_TEXT} {MARKS}",
        accuracy_vs_lr(
            ctx.accuracy,
            ctx.styles,
            name,
            ctx.chance,
            f"{ds}: test {name} vs learning rate ({curves.BAND})",
        ),
        ds,
    )


def accuracy_vs_lr(
    summary: pd.DataFrame, styles: Styles, ylabel: str, chance: float | None, title: str
) -> Figure:
    """Test metric vs lr (log x): a row per loss family, a column per (batch size, label
    fraction), one y range for all panels, the chance level dotted."""
    entries = curves.entries(summary)
    panels = family_panels(entries, styles)
    cols = sorted(set(zip(summary["batch_size"], summary["label_fraction"])))
    multi = summary["sweep_id"].nunique() > 1
    handles, right = curves.legend(
        entries, styles, multi, [curves.chance_handle()] if chance is not None else []
    )
    fig, axes = style.grid(len(panels), len(cols), w=2.4, h=1.7, right=right, hgap=0.45)
    lrs = sorted(summary["lr"].unique())
    ylim = curves.ylim([summary], floor=chance)
    for i, (family, keys) in enumerate(panels):
        for j, (bs, lf) in enumerate(cols):
            ax = axes[i, j]
            panel = summary[(summary["batch_size"] == bs) & (summary["label_fraction"] == lf)]
            for sweep, entry in keys:
                sub = panel[(panel["sweep_id"] == sweep) & (panel["entry"] == entry)]
                curves.line(ax, sub, styles(sweep, entry))
            curves.chance_line(ax, chance)
            style.log_axis(ax, "x", ticks=lrs)
            ax.set_ylim(*ylim)
            ax.grid(alpha=0.3)
            if i == 0:
                ax.set_title(f"batch {bs}, {fraction_label(lf)}", fontsize=9)
            if j == 0:
                ax.set_ylabel(f"{label(family)}\n{ylabel}", fontsize=8, color=styles.color(family))
            if i == len(panels) - 1:
                ax.set_xlabel("learning rate", fontsize=8)
    style.legend(fig, handles, right)
    style.title(fig, title)
    return fig
