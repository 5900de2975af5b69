"""Per-epoch curves of each loss at its selected (batch size, lr)."""

from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from bench.report import curves, style
from bench.report.figures import BAND_TEXT, FigureContext, FigureSpec
from bench.report.style import Styles, family_panels, label
from bench.report.tables import fraction_label

ORDER = 50
COLUMNS: tuple[str, ...] = ("m_knn_top1",)  # the curves' metric when the store has it


def draw(ctx: FigureContext) -> FigureSpec | None:
    ds, lf = ctx.dataset, ctx.lf
    epochs = ctx.ordered(epoch_summary(ctx.rows, ctx.cells, ctx.long, ctx.epoch_col, lf))
    if not len(epochs):
        return None
    ename = ctx.epoch_col.removeprefix("m_")
    return FigureSpec(
        f"epoch_curves-{ctx.tag}",
        f"{ds}: {ename} per epoch",
        f"Seed-mean test {ename} at every evaluated epoch, {fraction_label(lf)}, each loss "
        f"at its (batch size, lr) {ctx.chosen}. {BAND_TEXT}",
        epoch_curves(
            epochs,
            ctx.styles,
            ename,
            f"{ds}: {ename} per epoch ({fraction_label(lf)}, selected setting)",
        ),
        ds,
    )


def selected_settings(long: pd.DataFrame, lf: float) -> pd.DataFrame:
    """Per (sweep, loss) at label fraction `lf`: the (batch size, lr) with the best seed-mean
    selection metric (validation when the store has it; ties: smaller batch size)."""
    at = long[long["label_fraction"] == lf].sort_values(
        ["sweep_id", "loss", "selection_mean", "batch_size"],
        ascending=[True, True, False, True],
        kind="mergesort",
        na_position="last",
    )
    best = at.drop_duplicates(["sweep_id", "loss"]).dropna(subset=["best_lr"])
    return best.rename(columns={"loss": "entry", "best_lr": "lr"})[
        ["sweep_id", "entry", "batch_size", "lr"]
    ]


def epoch_summary(
    rows: pd.DataFrame, cells: pd.DataFrame, long: pd.DataFrame, column: str, lf: float
) -> pd.DataFrame:
    """Per (sweep, loss, epoch) at label fraction `lf`: the seed mean of `column` (and its band)
    at the loss's selected (batch size, lr). Reads the raw rows (every evaluated epoch)."""
    keys = cells[cells["label_fraction"] == lf][
        ["sweep_id", "trial_id", "entry", "lr", "batch_size"]
    ]
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
    out["low"], out["high"] = curves.interval(out["mean"], out["std"], out["count"])
    return out.reset_index()


def epoch_curves(summary: pd.DataFrame, styles: Styles, ylabel: str, title: str) -> Figure:
    """Per-epoch curves: a panel per loss family, a line per loss at its selected setting."""
    entries = curves.entries(summary)
    panels = family_panels(entries, styles)
    multi = summary["sweep_id"].nunique() > 1
    handles, right = curves.legend(entries, styles, multi, states=False)
    nrows, ncols = style.panels(len(panels))
    fig, axes = style.grid(nrows, ncols, w=2.6, h=2.0, right=right, sharex=False)
    ylim = curves.ylim([summary])
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
                ax.fill_between(
                    sub["epoch"][band],
                    sub["low"][band],
                    sub["high"][band],
                    color=st["color"],
                    alpha=0.15,
                    lw=0,
                )
        ax.set_ylim(*ylim)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(label(family), fontsize=9, color=styles.color(family), fontweight="bold")
        ax.grid(alpha=0.3)
        ax.set_xlabel("epoch", fontsize=8)
        if n % ncols == 0:
            ax.set_ylabel(ylabel, fontsize=8)
    style.hide_unused(axes, len(panels))
    style.legend(fig, handles, right)
    style.title(fig, title)
    return fig
