"""The report's figures: one module per figure, found by module discovery (no list to edit).

A figure module defines

    ORDER = 40                   # its place among the figures (the headline comes first)
    COLUMNS = ("m_h_nvar",)      # store columns it reads beyond the report's own (bench report
                                 # reads only the columns something asks for)
    def draw(ctx: FigureContext) -> FigureSpec | None: ...
        # called once per dataset of the report; None when there is nothing to draw

and is pure: `ctx` holds the report's cells of one dataset and what every figure needs (the
metric, the selection, the focus label fraction, the styles), `draw` returns a
`matplotlib.figure.Figure` inside a `FigureSpec` and writes nothing (`bench.report.render`
does). Shared drawing helpers: `bench.report.curves` and `bench.report.style`.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from types import ModuleType
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from bench.report import curves
from bench.report.cells import focus_label_fraction, top_k
from bench.report.leaderboard import Options
from bench.report.style import Styles, slug
from bench.report.tables import fraction_label

BAND_TEXT = "Bands: 95% t-intervals of the seed mean (df = n - 1; none below 3 seeds)."
MARKS = (
    "x at the bottom: a seed diverged there; hollow triangle: a seed collapsed there; "
    "hollow circle: seeds still running."
)
FAMILIES = (
    "A panel per loss family (a base loss and its cloa+/clop+ variants, one colour per "
    "family in every figure; variants dashed/dotted as in CLOA Fig. 2)."
)


@dataclass(frozen=True)
class FigureSpec:
    name: str  # file stem under figures/
    title: str
    caption: str
    figure: Figure
    dataset: str = ""
    headline: bool = False  # shown right after the leaderboard


@dataclass
class FigureContext:
    """What a figure of one dataset draws from (see the module docstring)."""

    dataset: str
    cells: pd.DataFrame  # the report's scored cells of this dataset
    rows: pd.DataFrame  # raw rows (every evaluated epoch) of the epoch column
    long: pd.DataFrame  # the comparison tables' long form, this dataset
    info: pd.DataFrame  # entry order and names (`tables.entry_info`)
    styles: Styles
    metric: str
    selection: Mapping[str, str]  # sweep -> the column its lrs are chosen on
    options: Options
    epoch_col: str  # the metric of the per-epoch curves

    @property
    def name(self) -> str:
        return self.metric.removeprefix("m_")

    @property
    def tag(self) -> str:
        return slug(self.dataset)

    @cached_property
    def lf(self) -> float:
        """The label fraction the single-fraction figures show."""
        return focus_label_fraction(self.cells)

    @cached_property
    def chance(self) -> float | None:
        return float(self.cells["chance"].median()) if top_k(self.metric) else None

    @cached_property
    def chosen(self) -> str:
        sweeps = set(self.cells["sweep_id"])
        on_val = all(col != self.metric for s, col in self.selection.items() if s in sweeps)
        return "chosen on validation" if on_val else "chosen on TEST data (no validation metric)"

    @cached_property
    def batch_sizes(self) -> str:
        return ", ".join(str(int(b)) for b in sorted(self.cells["batch_size"].unique()))

    @cached_property
    def label_fractions(self) -> str:
        return ", ".join(fraction_label(f) for f in sorted(self.cells["label_fraction"].unique()))

    @cached_property
    def accuracy(self) -> pd.DataFrame:
        """Seed-mean test metric per (loss, batch size, label fraction, lr), in table order."""
        return self.ordered(curves.lr_summary(self.cells, self.cells["acc"]))

    def ordered(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Rows sorted so that losses appear in comparison-table order (base, then variants)."""
        order = self.info["order"].rename("_order")
        keyed = frame.join(order, on=["sweep_id", "entry"])
        return keyed.sort_values("_order", kind="mergesort").drop(columns="_order")


def modules() -> list[ModuleType]:
    """Every figure module of this package, in `ORDER`."""
    found = [
        importlib.import_module(f"{__name__}.{m.name}")
        for m in pkgutil.iter_modules(__path__)
        if not m.name.startswith("_")
    ]
    return sorted(found, key=lambda m: (m.ORDER, m.__name__))


def columns() -> tuple[str, ...]:
    """The store columns the figures read (beyond the report's own)."""
    return tuple(dict.fromkeys(c for m in modules() for c in m.COLUMNS))


def draw_all(ctx: FigureContext) -> list[FigureSpec]:
    specs: list[Any] = [m.draw(ctx) for m in modules()]
    return [s for s in specs if s is not None]
