"""lr x batch-size heatmaps of seed-mean accuracy, one panel per loss, in one Figure.

Cell text: the seed-mean value; "div" (hatched) when every seed diverged, hatched with "k/n div"
when some did; "k/n col" when seeds collapsed; "…" with "done/expected" when seeds are still
running. One figure per dataset. Colour scale shared by
all panels so losses compare at a glance (CLOP's stability-across-lr-and-batch-size view).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from bench.report import style
from bench.report.figures import FigureContext, FigureSpec
from bench.report.style import label
from bench.report.tables import fraction_label

ORDER = 60
COLUMNS: tuple[str, ...] = ()


def draw(ctx: FigureContext) -> FigureSpec:
    ds, name, lf = ctx.dataset, ctx.name, ctx.lf
    info = ctx.info
    names = {k: str(v) for k, v in info["name"].items()} if "name" in info.columns else None
    return FigureSpec(
        f"heatmaps-{ctx.tag}",
        f"{ds}: {name}, lr x batch size",
        f"Seed-mean test {name} per (lr, batch size) at {fraction_label(lf)}. 'div': every seed "
        "diverged; hatched: some seeds diverged; 'k/n col': k of n seeds collapsed; '…d/n': d "
        "of n seeds finished.",
        heatmaps(
            ctx.accuracy,
            name,
            lf,
            f"{ds}: test {name}, lr x batch size "
            f"({fraction_label(lf)}; hatched = diverged seeds, … = running)",
            names,
        ),
        ds,
    )


def _cell_text(r: pd.Series) -> str:
    if r["n_cells"] and r["n_diverged"] == r["n_cells"]:
        return "div"
    text = "" if np.isnan(r["mean"]) else f"{r['mean']:.2f}"
    if r["n_running"]:
        done = int(r["n_cells"] - r["n_running"])
        text = f"{text or '…'}\n…{done}/{int(r['n_cells'])}"
    elif r["n_diverged"]:
        text += f"\n{int(r['n_diverged'])}/{int(r['n_cells'])} div"
    if r.get("n_collapsed", 0) and not r["n_running"]:
        text += f"\n{int(r['n_collapsed'])}/{int(r['n_cells'])} col"
    return text


def heatmaps(
    summary: pd.DataFrame,
    ylabel: str,
    lf: float,
    title: str,
    names: dict[tuple[str, str], str] | None = None,
) -> Figure:
    """A panel per (sweep, loss): rows = batch size, columns = lr, at label fraction `lf`;
    `names` gives each (sweep, entry) its panel title."""
    summary = summary[summary["label_fraction"] == lf]
    entries = list(
        summary[["sweep_id", "entry"]].drop_duplicates().itertuples(index=False, name=None)
    )
    lrs = sorted(summary["lr"].unique())
    bss = sorted(summary["batch_size"].unique())
    nrows, ncols = style.panels(len(entries), max_cols=3)
    fig, axes = style.grid(
        nrows,
        ncols,
        w=max(2.4, 0.5 * len(lrs) + 0.4),
        h=0.42 * len(bss) + 0.5,
        right=1.1,
        sharex=False,
        bottom=0.95,
        hgap=1.2,
    )
    vmax = float(np.nanmax(summary["mean"])) if summary["mean"].notna().any() else 1.0
    image = None
    multi = summary["sweep_id"].nunique() > 1
    for n, (sweep, entry) in enumerate(entries):
        ax = axes.flat[n]
        sub = summary[(summary["sweep_id"] == sweep) & (summary["entry"] == entry)]
        grid = np.full((len(bss), len(lrs)), np.nan)
        for r in sub.itertuples():
            grid[bss.index(r.batch_size), lrs.index(r.lr)] = r.mean
        image = ax.imshow(grid, cmap="viridis", vmin=0.0, vmax=vmax, aspect="auto", origin="lower")
        for _, r in sub.iterrows():
            x, y = lrs.index(r["lr"]), bss.index(r["batch_size"])
            dark = not np.isnan(r["mean"]) and r["mean"] < 0.6 * vmax  # viridis: low = dark
            ax.text(
                x,
                y,
                _cell_text(r),
                ha="center",
                va="center",
                fontsize=7,
                color="white" if dark else "black",
            )
            if r["n_diverged"]:
                ax.add_patch(
                    Rectangle(
                        (x - 0.5, y - 0.5), 1, 1, fill=False, hatch="///", edgecolor="0.35", lw=0
                    )
                )
        ax.set_xticks(range(len(lrs)), [f"{v:g}" for v in lrs], rotation=45)
        ax.set_yticks(range(len(bss)), [str(v) for v in bss])
        shown = (names or {}).get((sweep, entry), entry)
        ax.set_title(label(shown, sweep if multi else None), fontsize=9)
        ax.set_xlabel("learning rate", fontsize=8)
        if n % ncols == 0:
            ax.set_ylabel("batch size", fontsize=8)
    style.hide_unused(axes, len(entries))
    if image is not None:
        w, h = fig.get_figwidth(), fig.get_figheight()
        cax = fig.add_axes((1 - 0.85 / w, 0.95 / h, 0.15 / w, 1 - (0.95 + style.TOP) / h))
        fig.colorbar(image, cax=cax, label=ylabel)
    style.title(fig, title)
    return fig
