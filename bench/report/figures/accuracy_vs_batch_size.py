"""CLOP's view: the test metric at the selected lr vs batch size."""

from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure

from bench.report import curves, style
from bench.report.figures import BAND_TEXT, FigureContext, FigureSpec
from bench.report.style import Styles, family_panels, label
from bench.report.tables import fraction_label

ORDER = 40
COLUMNS: tuple[str, ...] = ()


def draw(ctx: FigureContext) -> FigureSpec:
    ds, name = ctx.dataset, ctx.name
    return FigureSpec(
        f"accuracy_vs_batch_size-{ctx.tag}",
        f"{ds}: {name} vs batch size",
        f"Test {name} at the lr {ctx.chosen} for each batch size (the comparison tables' cells; "
        f"CLOP's stability across batch sizes), a row per loss family, a column per label "
        f"fraction. {BAND_TEXT}",
        accuracy_vs_batch_size(
            batch_summary(ctx.long),
            ctx.styles,
            name,
            ctx.chance,
            f"{ds}: test {name} at the selected lr vs batch size",
        ),
        ds,
    )


def batch_summary(long: pd.DataFrame) -> pd.DataFrame:
    """The comparison tables' cells (test at the lr chosen on validation) with their bands."""
    out = long.rename(
        columns={"loss": "entry", "top1_mean": "mean", "top1_std": "std", "n_seeds": "count"}
    ).copy()
    out["low"], out["high"] = curves.interval(out["mean"], out["std"], out["count"])
    # the tables' state counts cover every lr of a panel, not the selected one: no marks here
    out[["n_running", "n_diverged", "n_collapsed"]] = 0
    return out


def accuracy_vs_batch_size(
    summary: pd.DataFrame, styles: Styles, ylabel: str, chance: float | None, title: str
) -> Figure:
    """CLOP's view: the test metric at the lr chosen on validation for each batch size, a row
    per loss family, a column per label fraction."""
    entries = curves.entries(summary)
    panels = family_panels(entries, styles)
    lfs = sorted(summary["label_fraction"].unique())
    bss = [int(b) for b in sorted(summary["batch_size"].unique())]
    multi = summary["sweep_id"].nunique() > 1
    handles, right = curves.legend(
        entries, styles, multi, [curves.chance_handle()] if chance is not None else [], states=False
    )
    fig, axes = style.grid(len(panels), len(lfs), w=2.6, h=1.7, right=right, hgap=0.45)
    ylim = curves.ylim([summary], floor=chance)
    for i, (family, keys) in enumerate(panels):
        for j, lf in enumerate(lfs):
            ax = axes[i, j]
            panel = summary[summary["label_fraction"] == lf]
            for sweep, entry in keys:
                sub = panel[(panel["sweep_id"] == sweep) & (panel["entry"] == entry)]
                curves.line(ax, sub.sort_values("batch_size"), styles(sweep, entry), x="batch_size")
            curves.chance_line(ax, chance)
            style.log_axis(ax, "x", ticks=bss, base=2)
            ax.set_ylim(*ylim)
            ax.grid(alpha=0.3)
            if i == 0:
                ax.set_title(fraction_label(lf), fontsize=9)
            if j == 0:
                ax.set_ylabel(f"{label(family)}\n{ylabel}", fontsize=8, color=styles.color(family))
            if i == len(panels) - 1:
                ax.set_xlabel("batch size", fontsize=8)
    style.legend(fig, handles, right)
    style.title(fig, title)
    return fig
