"""Assemble every table and figure of a report from result rows (pure: nothing is written).

`build_report(rows)` turns the store's rows into a `Report`: completeness, paper-style comparison
tables, the stability leaderboard (optionally against a second sweep) and the stability figures.
`render.py` serialises it; `markdown.py` and `html.py` lay it out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from bench.report import curves, heatmaps
from bench.report.cells import (
    completeness,
    focus_label_fraction,
    resolve_metric,
    score,
    select_cells,
    top5_of,
)
from bench.report.leaderboard import Options, definitions, leaderboard
from bench.report.style import Styles
from bench.report.tables import best_over_lr, comparison_wide, entry_info, fraction_label

SCORED_COLUMNS = ("best", "robust_decades", "worst", "collapse_rate", "bs_sensitivity")


class ReportError(ValueError):
    """Results that cannot make one report (mixed sweeps, --against the same sweep)."""

    user_error = True


@dataclass(frozen=True)
class FigureSpec:
    name: str  # file stem under figures/
    title: str
    caption: str
    figure: Figure


@dataclass
class Report:
    sweep_id: str
    other_sweep_ids: list[str]
    metric: str
    top5: str | None
    focus_lf: float
    options: Options
    completeness: pd.DataFrame
    planned_trials: dict[str, dict[str, list[str]]]  # sweep -> loss -> planned trial ids
    grids: pd.DataFrame
    long: pd.DataFrame
    tables: list[tuple[int, pd.DataFrame]]  # (batch size, wide table of the primary sweep)
    leaderboard: pd.DataFrame
    definitions: list[tuple[str, str]]
    against: pd.DataFrame | None
    data_as_of: str | None
    notes: list[str] = field(default_factory=list)
    figures: list[FigureSpec] = field(default_factory=list)


def single_sweep(rows: pd.DataFrame, source: str) -> str:
    """The one sweep id in `rows`; ReportError naming them when several are mixed."""
    ids = sorted(rows["sweep_id"].dropna().astype(str).unique())
    if len(ids) != 1:
        raise ReportError(f"{source} holds results of {len(ids)} sweeps ({', '.join(ids)}); "
                          "choose one with --sweep-id.")
    return ids[0]


def build_report(rows: pd.DataFrame, *, other: pd.DataFrame | None = None,
                 metric: str | None = None, options: Options | None = None,
                 planned_trials: Mapping[str, Mapping[str, Sequence[str]]] | None = None,
                 notes: Sequence[str] = (), figures: bool = True) -> Report:
    """Every table and figure of the report on `rows` (one sweep), optionally against `other`."""
    options = options or Options()
    planned = {str(s): {str(loss): sorted(map(str, ids)) for loss, ids in by_loss.items()}
               for s, by_loss in (planned_trials or {}).items()}
    sweep = single_sweep(rows, "the results")
    frames = [rows]
    if other is not None:
        other_id = single_sweep(other, "the --against results")
        if other_id == sweep:
            raise ReportError(f"--against holds the same sweep {sweep!r}; compare two sweeps.")
        frames.append(other)
    cells = pd.concat([select_cells(f) for f in frames], ignore_index=True)
    metric = resolve_metric(cells, metric)
    top5 = top5_of(metric, cells)
    long = best_over_lr(cells, metric, top5)
    primary = long[long["sweep_id"] == sweep]
    tables = [(int(bs), comparison_wide(long, sweep, int(bs), metric))
              for bs in sorted(primary["batch_size"].unique())]
    board = leaderboard(cells, metric, options)
    report = Report(
        sweep_id=sweep, other_sweep_ids=sorted(set(cells["sweep_id"]) - {sweep}), metric=metric,
        top5=top5, focus_lf=focus_label_fraction(cells), options=options,
        completeness=_with_planned(completeness(cells), cells, planned),
        planned_trials=planned,
        grids=grid_description(cells), long=long, tables=tables, leaderboard=board,
        definitions=definitions(options, metric),
        against=against_table(board, sweep) if other is not None else None,
        data_as_of=_data_as_of(frames), notes=list(notes))
    if figures:
        report.figures = make_figures(report, cells, frames)
    return report


def _with_planned(comp: pd.DataFrame, cells: pd.DataFrame,
                  planned: dict[str, dict[str, list[str]]]) -> pd.DataFrame:
    """Add `trials_expected`: the trials seen plus those sweep.json plans that have no rows yet
    (a loss with none seen yet gets a row of its own)."""
    seen = {s: set(g) for s, g in cells.groupby("sweep_id")["trial_id"]}
    unseen = {(s, loss): len(set(ids) - seen.get(s, set()))
              for s, by_loss in planned.items() for loss, ids in by_loss.items()}
    present = set(zip(comp["sweep_id"].astype(str), comp["loss"].astype(str)))
    extra = [{"sweep_id": s, "loss": loss} for (s, loss), n in sorted(unseen.items())
             if n and (s, loss) not in present]
    if extra:
        comp = pd.concat([comp, pd.DataFrame(extra)], ignore_index=True).fillna(0)
        comp = comp.sort_values(["sweep_id", "loss"], kind="mergesort").reset_index(drop=True)
    expected = [int(n) + unseen.get((str(s), str(loss)), 0)
                for s, loss, n in zip(comp["sweep_id"], comp["loss"], comp["trials_seen"])]
    comp.insert(2, "trials_expected", expected)
    for col in comp.columns[2:]:
        comp[col] = comp[col].astype(int)
    return comp


def grid_description(cells: pd.DataFrame) -> pd.DataFrame:
    """Per sweep: the grid the report covers (losses, lrs, batch sizes, fractions, seeds)."""
    rows = []
    for sweep, c in cells.groupby("sweep_id", sort=True):
        lrs = sorted(c["lr"].unique())
        rows.append({
            "sweep_id": sweep, "losses": c["entry"].nunique(),
            "lr": f"{len(lrs)} values, {lrs[0]:g} to {lrs[-1]:g}",
            "batch_size": ", ".join(str(int(b)) for b in sorted(c["batch_size"].unique())),
            "label_fraction": ", ".join(f"{f:g}" for f in sorted(c["label_fraction"].unique())),
            "seeds": ", ".join(str(int(s)) for s in sorted(c["seed"].unique())),
        })
    return pd.DataFrame(rows)


def against_table(board: pd.DataFrame, sweep: str) -> pd.DataFrame:
    """For each loss in both sweeps: its leaderboard columns here, there, and the difference."""
    mine = board[board["sweep_id"] == sweep].set_index("loss")
    rows = []
    for other_id, theirs in board[board["sweep_id"] != sweep].groupby("sweep_id", sort=True):
        theirs = theirs.set_index("loss")
        for loss in sorted(set(mine.index) | set(theirs.index)):
            row: dict[str, object] = {"loss": loss, "against": other_id,
                                      "in": _presence(loss, mine, theirs)}
            for col in SCORED_COLUMNS:
                a = mine[col].get(loss, np.nan)
                b = theirs[col].get(loss, np.nan)
                row[f"{col}_this"], row[f"{col}_other"], row[f"{col}_diff"] = a, b, a - b
            rows.append(row)
    return pd.DataFrame(rows)


def _presence(loss: str, mine: pd.DataFrame, theirs: pd.DataFrame) -> str:
    if loss in mine.index and loss in theirs.index:
        return "both"
    return "this sweep only" if loss in mine.index else "other sweep only"


def _data_as_of(frames: list[pd.DataFrame]) -> str | None:
    """The newest `written_at` in the data (never the time of the report: outputs must be
    byte-identical for the same Parquet)."""
    stamps = [f["written_at"].max() for f in frames if "written_at" in f.columns]
    stamps = [s for s in stamps if pd.notna(s)]
    if not stamps:
        return None
    return pd.Timestamp(max(stamps)).strftime("%Y-%m-%d %H:%M:%S UTC")


def make_figures(report: Report, cells: pd.DataFrame,
                 frames: list[pd.DataFrame]) -> list[FigureSpec]:
    """The five stability figures (fixed count, panels grow with the grid, not the rows)."""
    info = entry_info(cells)
    styles = Styles(info, report.sweep_id)
    name = report.metric.removeprefix("m_")
    acc = _table_order(curves.lr_summary(cells, score(cells, report.metric)), info)
    lf = report.focus_lf
    specs = [FigureSpec("accuracy_vs_lr", f"{name} vs learning rate",
                        "Seed-mean final accuracy per loss; a panel per (batch size, label "
                        "fraction). Band: min-max over seeds. x at the bottom: a seed diverged "
                        "there; hollow marker: seeds still running. CLOA variants dashed, CLOP "
                        "dotted (as CLOA Fig. 2).", curves.accuracy_vs_lr(acc, styles, name))]
    geometry = {}
    for col, kind in (("m_h_total_var", "total variance"), ("m_h_rankme", "RankMe")):
        if col in cells.columns and cells[col].notna().any():
            values = cells[col].astype(float).where(cells["finished"])
            geometry[kind] = _table_order(curves.lr_summary(cells, values), info)
    if geometry:
        specs.append(FigureSpec(
            "geometry_vs_lr", "Embedding variance and RankMe vs learning rate",
            f"Backbone features at {fraction_label(lf)}: total variance (sum of per-dimension "
            "variances, log scale; CLOA Fig. 2 bottom) and RankMe effective rank. A collapse "
            "shows as both dropping.", curves.geometry_vs_lr(geometry, styles, lf)))
    specs.append(FigureSpec(
        "accuracy_vs_batch_size", f"{name} vs batch size",
        f"Seed-mean accuracy at {fraction_label(lf)} for each lr across batch sizes (CLOP's "
        "stability across batch sizes).", curves.accuracy_vs_batch_size(acc, name, lf)))
    epoch_col = "m_knn_top1" if "m_knn_top1" in cells.columns else report.metric
    rows = pd.concat([f[[c for c in ("sweep_id", "trial_id", "label_fraction", "epoch",
                                     epoch_col) if c in f.columns]] for f in frames],
                     ignore_index=True)
    epochs = _table_order(curves.epoch_summary(rows, cells, report.long, epoch_col, lf), info)
    if len(epochs):
        ename = epoch_col.removeprefix("m_")
        specs.append(FigureSpec(
            "epoch_curves", f"{ename} per epoch",
            f"Seed-mean {ename} at every evaluated epoch, {fraction_label(lf)}, each loss at "
            "its best batch size, a line per lr.", curves.epoch_curves(epochs, ename, lf)))
    specs.append(FigureSpec(
        "heatmaps", f"{name}: lr x batch size",
        f"Seed-mean accuracy per (lr, batch size) at {fraction_label(lf)}. 'div': every seed "
        "diverged; hatched: some seeds diverged; '…d/n': d of n seeds finished.",
        heatmaps.heatmaps(acc, name, lf)))
    return specs


def _table_order(frame: pd.DataFrame, info: pd.DataFrame) -> pd.DataFrame:
    """Rows sorted so that losses appear in comparison-table order (base, then its variants)."""
    order = info["order"].rename("_order")
    keyed = frame.join(order, on=["sweep_id", "entry"])
    return keyed.sort_values("_order", kind="mergesort").drop(columns="_order")
