"""Assemble every table and figure of a report from result rows (pure: nothing is written).

`build_report(rows)` turns the store's rows into a `Report`: the stability leaderboards (one per
dataset), paper-style comparison tables and comparisons.csv, the figure sets (one per dataset),
completeness (optionally against a second sweep), plus the header's context: how settings were
selected (validation, or a banner when a store has no validation metrics), chance per dataset
and which probe produced the linear/FFN numbers.
`render.py` serialises it; `markdown.py` and `html.py` lay it out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from bench.report import figures
from bench.report.cells import (
    PROBE_PARAMS,
    add_scores,
    class_counts,
    completeness,
    focus_label_fraction,
    resolve_metric,
    select_cells,
    selection_columns,
    top5_of,
    top_k,
    validation_column,
)
from bench.report.figures import FigureSpec
from bench.report.leaderboard import Options, collapse_rule_text, definitions, leaderboard
from bench.report.style import Styles
from bench.report.tables import (
    best_over_lr,
    comparison_wide,
    comparisons,
    entry_info,
)

SCORED_COLUMNS = ("score", "best", "lr_band", "divergence_rate", "collapse_rate")


class ReportError(ValueError):
    """Results that cannot make one report (mixed sweeps, --against the same sweep)."""

    user_error = True


@dataclass
class Report:
    sweep_id: str
    other_sweep_ids: list[str]
    metric: str
    top5: str | None
    selection: dict[str, str]  # sweep -> the column its lrs are chosen on
    focus_lf: float
    options: Options
    datasets: list[str]
    completeness: pd.DataFrame
    planned_trials: dict[str, dict[str, list[str]]]  # sweep -> loss -> planned trial ids
    grids: pd.DataFrame
    long: pd.DataFrame
    tables: list[tuple[str, int, pd.DataFrame]]  # (dataset, batch size, wide table), primary
    comparisons: pd.DataFrame
    leaderboard: pd.DataFrame
    definitions: list[tuple[str, str]]
    against: pd.DataFrame | None
    data_as_of: str | None
    banners: list[str] = field(default_factory=list)  # warnings shown above everything
    context: list[str] = field(default_factory=list)  # selection, chance, probes, collapse
    notes: list[str] = field(default_factory=list)
    figures: list[FigureSpec] = field(default_factory=list)


def single_sweep(rows: pd.DataFrame, source: str) -> str:
    """The one sweep id in `rows`; ReportError naming them when several are mixed."""
    ids = sorted(rows["sweep_id"].dropna().astype(str).unique())
    if len(ids) != 1:
        raise ReportError(
            f"{source} holds results of {len(ids)} sweeps ({', '.join(ids)}); "
            "choose one with --sweep-id."
        )
    return ids[0]


def scored_cells(
    cells: pd.DataFrame, metric: str | None = None, options: Options | None = None
) -> tuple[pd.DataFrame, str, str | None, dict[str, str]]:
    """Cells with every score column (`cells.add_scores`), the resolved metric, its top-5
    companion and the per-sweep selection column."""
    options = options or Options()
    metric = resolve_metric(cells, metric)
    top5 = top5_of(metric, cells)
    selection = selection_columns(cells, metric)
    scored = add_scores(
        cells,
        metric,
        top5,
        selection,
        nvar_threshold=options.nvar_threshold,
        dead_threshold=options.dead_threshold,
        rankme_threshold=options.rankme_threshold,
    )
    return scored, metric, top5, selection


def build_report(
    rows: pd.DataFrame,
    *,
    other: pd.DataFrame | None = None,
    metric: str | None = None,
    options: Options | None = None,
    planned_trials: Mapping[str, Mapping[str, Sequence[str]]] | None = None,
    notes: Sequence[str] = (),
    figures: bool = True,
) -> Report:
    """Every table and figure of the report on `rows` (one sweep), optionally against `other`."""
    options = options or Options()
    planned = {
        str(s): {str(loss): sorted(map(str, ids)) for loss, ids in by_loss.items()}
        for s, by_loss in (planned_trials or {}).items()
    }
    sweep = single_sweep(rows, "the results")
    frames = [rows]
    if other is not None:
        other_id = single_sweep(other, "the --against results")
        if other_id == sweep:
            raise ReportError(f"--against holds the same sweep {sweep!r}; compare two sweeps.")
        frames.append(other)
    # One selection over both stores: a dataset both hold with other parameters is told apart.
    cells = select_cells(pd.concat(frames, ignore_index=True))
    cells, metric, top5, selection = scored_cells(cells, metric, options)
    long = best_over_lr(cells, selection)
    primary = long[long["sweep_id"] == sweep]
    tables = [
        (str(ds), int(bs), comparison_wide(long, sweep, str(ds), int(bs), metric))
        for (ds, bs), _ in primary.groupby(["dataset", "batch_size"], sort=True)
    ]
    board = leaderboard(cells, options)
    rules = set(cells["collapse_rule"]) - {"none"}
    report = Report(
        sweep_id=sweep,
        other_sweep_ids=sorted(set(cells["sweep_id"]) - {sweep}),
        metric=metric,
        top5=top5,
        selection=selection,
        focus_lf=focus_label_fraction(cells),
        options=options,
        datasets=sorted(cells["dataset"].unique()),
        completeness=_with_planned(completeness(cells), cells, planned),
        planned_trials=planned,
        grids=grid_description(cells),
        long=long,
        tables=tables,
        comparisons=comparisons(primary, metric),
        leaderboard=board,
        definitions=definitions(options, metric, collapse_rule_text(options, rules)),
        against=against_table(board, sweep) if other is not None else None,
        data_as_of=_data_as_of(frames),
        banners=banners(selection, metric),
        context=context_lines(cells, metric, selection, options),
        notes=list(notes),
    )
    if figures:
        report.figures = make_figures(report, cells, frames)
    return report


def banners(selection: dict[str, str], metric: str) -> list[str]:
    """The warning that opens a report whose lrs were chosen on test data."""
    on_test = sorted(s for s, col in selection.items() if col == metric)
    if not on_test:
        return []
    which = ", ".join(on_test)
    return [
        f"Selection used test data: sweep {which} has no validation metric "
        f"{validation_column(metric)} (written before the validation split), so every best "
        f"lr in this report was chosen on the same test {metric} it reports. Those numbers "
        "are optimistic and the intervals do not account for the selection; rerun the sweep "
        "with a validation split for trustworthy tables."
    ]


def context_lines(
    cells: pd.DataFrame, metric: str, selection: dict[str, str], options: Options
) -> list[str]:
    """Header lines: how settings were selected, chance per dataset, the probes, collapse rule."""
    lines = []
    on_val = sorted(s for s, col in selection.items() if col != metric)
    if on_val:
        split = _distinct(cells[cells["sweep_id"].isin(on_val)], "p_val_fraction")
        held = (
            f" ({', '.join(f'{float(v):.0%}' for v in split)} of train held out)" if split else ""
        )
        lines.append(
            f"Selection: every lr is chosen on the validation split{held} "
            f"({validation_column(metric)}, seed mean); the tables and the leaderboard's "
            f"best report the test {metric} once, at that choice."
        )
    counts, source = class_counts(cells)
    k = top_k(metric)
    for ds in sorted(cells["dataset"].unique()):
        mask = (cells["dataset"] == ds).to_numpy()
        n = counts[mask].dropna().unique()
        if len(n) and k:
            src = ", ".join(sorted(set(source[mask]) - {"unknown"}))
            lines.append(
                f"Chance on {ds}: {min(1.0, k / n[0]):.4g} ({int(n[0])} classes, from "
                f"{src}); scores above chance are (acc - chance) / (1 - chance)."
            )
        elif k:
            lines.append(
                f"Chance on {ds}: unknown (no m_num_classes and not a built-in dataset "
                "name), so scores use chance 0."
            )
    lines += probe_lines(cells, metric)
    return lines


def probe_lines(cells: pd.DataFrame, metric: str) -> list[str]:
    """One line per dataset: which probe produced the linear and FFN numbers."""
    # p_probe_lr is null on purpose (the recipe's default lr) whenever the other probe settings
    # are recorded, so it counts as recorded with them.
    present = [
        c
        for c in PROBE_PARAMS
        if c in cells.columns
        and (
            cells[c].notna().any()
            or (
                c == "p_probe_lr"
                and "p_probe_features" in cells.columns
                and cells["p_probe_features"].notna().any()
            )
        )
    ]
    if not present:
        return []
    lines = []
    for ds, group in cells.groupby("dataset", sort=True):
        combos = group[present].astype(object).where(group[present].notna(), None)
        combos = sorted(
            {
                tuple(_probe_value(c, v) for c, v in zip(present, row))
                for row in combos.itertuples(index=False, name=None)
            }
        )
        texts = ["; ".join(combos_row) for combos_row in combos]
        missing = [
            c.removeprefix("p_probe_").replace("_", " ")
            for c in PROBE_PARAMS
            if c not in present and c != "p_ffn_hidden"
        ]
        tail = f" (not recorded in this store: {', '.join(missing)})" if missing else ""
        many = " (differs between trials)" if len(texts) > 1 else ""
        lines.append(
            f"Probes on {ds} (linear and FFN numbers){many}: " + " | ".join(texts) + tail + "."
        )
    return lines


def _probe_value(col: str, value: Any) -> str:
    if col == "p_probe_features":
        return f"{value or 'unrecorded'} features"
    if col == "p_probe_optimizer":
        return f"optimizer {value or 'unrecorded'}"
    if col == "p_probe_lr":
        return "lr default" if value is None else f"lr {float(value):g}"
    if col == "p_probe_batch_size":
        return "batch unrecorded" if value is None else f"batch {int(value)}"
    if col == "p_probe_epochs":
        return "epochs unrecorded" if value is None else f"{int(value)} epochs"
    if col == "p_ffn_hidden":
        return (
            "FFN hidden: the dataset's default (CLOA's widths)"
            if value is None
            else f"FFN hidden {value}"
        )
    return f"{col} {value}"


def _distinct(cells: pd.DataFrame, col: str) -> list[Any]:
    if col not in cells.columns:
        return []
    return sorted(cells[col].dropna().unique())


def _with_planned(
    comp: pd.DataFrame, cells: pd.DataFrame, planned: dict[str, dict[str, list[str]]]
) -> pd.DataFrame:
    """Add `trials_expected`: the trials seen plus those sweep.json plans that have no rows yet
    (a loss with none seen yet gets a row of its own)."""
    seen = {s: set(g) for s, g in cells.groupby("sweep_id")["trial_id"]}
    unseen = {
        (s, loss): len(set(ids) - seen.get(s, set()))
        for s, by_loss in planned.items()
        for loss, ids in by_loss.items()
    }
    present = set(zip(comp["sweep_id"].astype(str), comp["loss"].astype(str)))
    extra = [
        {"sweep_id": s, "loss": loss}
        for (s, loss), n in sorted(unseen.items())
        if n and (s, loss) not in present
    ]
    if extra:
        comp = pd.concat([comp, pd.DataFrame(extra)], ignore_index=True).fillna(0)
        comp = comp.sort_values(["sweep_id", "loss"], kind="mergesort").reset_index(drop=True)
    expected = [
        int(n) + unseen.get((str(s), str(loss)), 0)
        for s, loss, n in zip(comp["sweep_id"], comp["loss"], comp["trials_seen"])
    ]
    comp.insert(2, "trials_expected", expected)
    for col in comp.columns[2:]:
        comp[col] = comp[col].astype(int)
    return comp


def grid_description(cells: pd.DataFrame) -> pd.DataFrame:
    """Per (sweep, dataset): the grid the report covers (losses, lrs, batch sizes, fractions,
    seeds)."""
    rows = []
    for (sweep, ds), c in cells.groupby(["sweep_id", "dataset"], sort=True):
        lrs = sorted(c["lr"].unique())
        rows.append(
            {
                "sweep_id": sweep,
                "dataset": ds,
                "losses": c["entry"].nunique(),
                "lr": f"{len(lrs)} values, {lrs[0]:g} to {lrs[-1]:g}",
                "batch_size": ", ".join(str(int(b)) for b in sorted(c["batch_size"].unique())),
                "label_fraction": ", ".join(f"{f:g}" for f in sorted(c["label_fraction"].unique())),
                "seeds": ", ".join(str(int(s)) for s in sorted(c["seed"].unique())),
            }
        )
    return pd.DataFrame(rows)


def against_table(board: pd.DataFrame, sweep: str) -> pd.DataFrame:
    """For each (dataset, loss) in both sweeps: its leaderboard columns here, there, and the
    difference (each ranking scope separately)."""
    key = ["dataset", "label_fraction", "loss"]
    mine = board[board["sweep_id"] == sweep].set_index(key)
    rows = []
    for other_id, theirs in board[board["sweep_id"] != sweep].groupby("sweep_id", sort=True):
        theirs = theirs.set_index(key)
        for k in sorted(set(mine.index) | set(theirs.index), key=str):
            row: dict[str, object] = {
                "dataset": k[0],
                "label_fraction": k[1],
                "loss": k[2],
                "against": other_id,
                "in": _presence(k, mine, theirs),
            }
            for col in SCORED_COLUMNS:
                a = mine[col].get(k, np.nan)
                b = theirs[col].get(k, np.nan)
                row[f"{col}_this"], row[f"{col}_other"], row[f"{col}_diff"] = a, b, a - b
            rows.append(row)
    return pd.DataFrame(rows)


def _presence(key: tuple[Any, ...], mine: pd.DataFrame, theirs: pd.DataFrame) -> str:
    if key in mine.index and key in theirs.index:
        return "both"
    return "this sweep only" if key in mine.index else "other sweep only"


def _data_as_of(frames: list[pd.DataFrame]) -> str | None:
    """The newest `written_at` in the data (never the time of the report: outputs must be
    byte-identical for the same Parquet)."""
    stamps = [f["written_at"].max() for f in frames if "written_at" in f.columns]
    stamps = [s for s in stamps if pd.notna(s)]
    if not stamps:
        return None
    return pd.Timestamp(max(stamps)).strftime("%Y-%m-%d %H:%M:%S UTC")


def make_figures(
    report: Report, cells: pd.DataFrame, frames: list[pd.DataFrame]
) -> list[FigureSpec]:
    """One figure set per dataset, each figure a module of `bench.report.figures` (in their
    ORDER: the headline score figure, then accuracy vs lr, geometry vs lr, accuracy vs batch
    size, per-epoch curves and heatmaps; panels grow with the families and the grid, the figure
    count with the datasets only)."""
    info = entry_info(cells)
    styles = Styles(info, report.sweep_id)
    epoch_col = "m_knn_top1" if "m_knn_top1" in cells.columns else report.metric
    rows = pd.concat(
        [
            f[
                [
                    c
                    for c in ("sweep_id", "trial_id", "label_fraction", "epoch", epoch_col)
                    if c in f.columns
                ]
            ]
            for f in frames
        ],
        ignore_index=True,
    )
    specs: list[FigureSpec] = []
    for ds in report.datasets:
        specs += figures.draw_all(
            figures.FigureContext(
                dataset=ds,
                cells=cells[cells["dataset"] == ds],
                rows=rows,
                long=report.long[report.long["dataset"] == ds],
                info=info,
                styles=styles,
                metric=report.metric,
                selection=report.selection,
                options=report.options,
                epoch_col=epoch_col,
            )
        )
    return specs
