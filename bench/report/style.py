"""Figure layout and styling shared by the stability figures.

Layout is computed in inches (fixed margins, one legend column on the right) instead of with
matplotlib's constrained layout: that solver measured ~60% of the drawing time of a report, and
fixed margins also make every figure line up the same way. Tick labels are plain numbers
("0.001", "64"), never mathtext, which is slow to parse and hard to read at small sizes.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullLocator

_STYLES = {None: "-", "cloa": "--", "clop": ":"}
_MARKERS = ("o", "s", "^", "D", "v", "P")
MAX_LINES = 6  # lines per panel: a family with more entries is split over several panels
LEFT, BOTTOM, TOP, WGAP, HGAP = 0.8, 0.65, 0.75, 0.6, 0.65  # inches


class Styles:
    """A colour per loss family (a base loss and its add-on variants), the same in every figure
    of a report whatever the dataset; line style by add-on (CLOA dashed, CLOP dotted, as CLOA
    Fig. 2 draws its variants); a marker per entry within its family (parameter variants). A loss
    of an --against sweep is drawn faded."""

    def __init__(self, info: pd.DataFrame, primary: str) -> None:
        families = sorted(set(info["family"]))
        self._color = {f: _palette(len(families))[i % 20] for i, f in enumerate(families)}
        names = info.get("name", pd.Series(info.index.get_level_values(1), index=info.index))
        self._marker = {}
        for _, group in info.assign(_name=names).groupby("family", sort=True):
            # in table order (the base loss first), by name so that datasets and sweeps agree
            plain = list(dict.fromkeys(group.sort_values(["order", "_name"])["_name"]))
            for key, name in zip(group.index, group["_name"]):
                self._marker[key] = _MARKERS[plain.index(name) % len(_MARKERS)]
        self._info = info
        self._primary = primary

    def name(self, sweep: str, entry: str) -> str:
        """The entry's name without its dataset suffix (a figure shows one dataset)."""
        if "name" in self._info.columns:
            return str(self._info.loc[(sweep, entry), "name"])
        return entry

    def family(self, sweep: str, entry: str) -> str:
        return str(self._info.loc[(sweep, entry), "family"])

    def color(self, family: str) -> Any:
        return self._color.get(family, "0.3")

    def __call__(self, sweep: str, entry: str) -> dict[str, Any]:
        row = self._info.loc[(sweep, entry)]
        style: dict[str, Any] = {
            "color": self._color[row["family"]],
            "linestyle": _STYLES.get(row["addon"], "-."),
            "marker": self._marker[(sweep, entry)],
        }
        if sweep != self._primary:
            style.update(alpha=0.5)
        return style


def family_panels(
    entries: list[tuple[str, str]], styles: Styles
) -> list[tuple[str, list[tuple[str, str]]]]:
    """(family title, entries) per panel: entries grouped by family in the given order, at most
    MAX_LINES per panel ("infonce (2/2)" when a family needs more)."""
    groups: dict[str, list[tuple[str, str]]] = {}
    for key in entries:
        groups.setdefault(styles.family(*key), []).append(key)
    panels = []
    for family, keys in groups.items():
        chunks = [keys[i : i + MAX_LINES] for i in range(0, len(keys), MAX_LINES)]
        for i, chunk in enumerate(chunks):
            title = family if len(chunks) == 1 else f"{family} ({i + 1}/{len(chunks)})"
            panels.append((title, chunk))
    return panels


def slug(text: str) -> str:
    """A file-name-safe form of a dataset name ("synthetic_subspaces", "my_data_v2")."""
    out = re.sub(r"[^A-Za-z0-9_.-]+", "_", str(text)).strip("._")
    return out or "dataset"


def _palette(n: int) -> list[Any]:
    """Matplotlib's default 10 colours, or tab20's 20 when more families must stay apart."""
    if n <= 10:
        return [f"C{i}" for i in range(10)] * 2
    from matplotlib import colormaps

    return [colormaps["tab20"](i) for i in range(20)]


def label(text: str, sweep: str | None = None) -> str:
    """Escape mathtext: a loss named with `$` must show as typed, not fail to parse."""
    text = f"{text} [{sweep}]" if sweep else text
    return text.replace("$", r"\$")


def legend_width(labels: list[str], fontsize: float = 8) -> float:
    """Inches a legend column needs for `labels` (about 0.6 em per character plus the key)."""
    longest = max((len(s) for s in labels), default=0)
    return 0.75 + longest * fontsize * 0.6 / 72


def grid(
    nrows: int,
    ncols: int,
    *,
    w: float = 3.0,
    h: float = 2.3,
    right: float = 0.3,
    sharex: bool = True,
    bottom: float = BOTTOM,
    hgap: float = HGAP,
) -> tuple[Figure, np.ndarray]:
    """A Figure with an nrows x ncols grid of w x h inch panels and `right` inches to spare."""
    width = LEFT + ncols * w + (ncols - 1) * WGAP + right
    height = bottom + nrows * h + (nrows - 1) * hgap + TOP
    fig = Figure(figsize=(width, height))
    spec = {
        "left": LEFT / width,
        "right": 1 - right / width,
        "bottom": bottom / height,
        "top": 1 - TOP / height,
        "wspace": WGAP / w,
        "hspace": hgap / h,
    }
    axes = fig.subplots(nrows, ncols, squeeze=False, sharex=sharex, gridspec_kw=spec)
    for ax in axes.flat:
        ax.tick_params(labelsize=8)
        ax.xaxis.set_minor_locator(NullLocator())
        ax.yaxis.set_minor_locator(NullLocator())
    return fig, axes


def title(fig: Figure, text: str) -> None:
    fig.suptitle(text, fontsize=10, y=1 - 0.12 / fig.get_figheight(), va="top")


def legend(fig: Figure, handles: list[Any], right: float) -> None:
    """The legend in the reserved right column, top-aligned with the panels."""
    width, height = fig.get_figwidth(), fig.get_figheight()
    fig.legend(
        handles=handles,
        loc="upper left",
        fontsize=8,
        frameon=False,
        bbox_to_anchor=(1 - (right - 0.1) / width, 1 - TOP / height),
    )


def log_axis(
    ax: Axes, which: str = "x", ticks: Sequence[float] | None = None, base: int = 10
) -> None:
    """Log scale with plain-number tick labels and no minor ticks (set after the scale, which
    would otherwise reinstall its default locators). `ticks`: label exactly these values (the
    grid's lrs or batch sizes) when there are few enough to read; else 1-2-5 per decade."""
    axis = ax.xaxis if which == "x" else ax.yaxis
    (ax.set_xscale if which == "x" else ax.set_yscale)("log", base=base)
    if ticks is not None and len(ticks) <= 8:
        axis.set_ticks(ticks, [f"{t:g}" for t in ticks])
    else:
        axis.set_major_locator(LogLocator(base=base, subs=(1.0, 2.0, 5.0), numticks=8))
        axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_locator(NullLocator())


def panels(n: int, max_cols: int = 4) -> tuple[int, int]:
    """(rows, columns) for n panels wrapped at max_cols."""
    ncols = min(max_cols, max(n, 1))
    return math.ceil(max(n, 1) / ncols), ncols


def hide_unused(axes: np.ndarray, used: int) -> None:
    for ax in axes.flat[used:]:
        ax.set_visible(False)


def viridis(n: int) -> list[tuple[float, ...]]:
    """n colours for an ordered variable (lr): dark = small."""
    from matplotlib import colormaps

    return [colormaps["viridis"](x) for x in np.linspace(0.0, 0.9, max(n, 1))]
