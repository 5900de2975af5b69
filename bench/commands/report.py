"""`bench report RESULTS`: tables, stability curves and the leaderboard from a results store.

Reads only the Parquet store (`bench.store.read_results`), never torch or Ray. Skipped
(truncated or unreadable) result files are printed as warnings and listed in the report.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import pandas as pd

from bench.commands import UsageError
from bench.commands.common import add_results_argument

HELP = "write tables, stability curves and the leaderboard from a results store"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_results_argument(p)
    p.add_argument(
        "--out",
        type=Path,
        metavar="DIR",
        help="output folder (default: reports/<sweep_id> under the current folder)",
    )
    p.add_argument(
        "--metric",
        metavar="NAME",
        help="metric to compare, with or without the m_ prefix (default: linear_top1 "
        "if the trials have it, else knn_top1)",
    )
    p.add_argument(
        "--against",
        metavar="OTHER_RESULTS",
        help="a second results store: its losses join the leaderboard and a "
        "comparison section is added",
    )
    p.add_argument("--sweep-id", help="the sweep to report when RESULTS holds several")
    p.add_argument("--against-sweep-id", help="the sweep to use when OTHER_RESULTS holds several")
    p.add_argument(
        "--nvar-threshold",
        type=float,
        default=0.05,
        metavar="V",
        help="a finished cell whose backbone normalised variance (m_h_nvar) is below V "
        "counts as collapsed (default 0.05)",
    )
    p.add_argument(
        "--dead-threshold",
        type=float,
        default=0.9,
        metavar="D",
        help="... or whose share of zero-variance backbone dimensions (m_h_dead) is at "
        "least D (default 0.9)",
    )
    p.add_argument(
        "--rankme-threshold",
        type=float,
        default=2.0,
        metavar="R",
        help="stores without m_h_nvar: a finished cell whose backbone RankMe is below "
        "R counts as collapsed (default 2)",
    )
    p.add_argument(
        "--per-label-fraction",
        action="store_true",
        help="one leaderboard per (dataset, label fraction) instead of per dataset",
    )


def read(
    path: str, sweep_id: str | None, columns: list[str] | None = None, quiet: bool = False
) -> tuple[pd.DataFrame, list[str]]:
    """Rows of the store at `path` (these columns) and the messages of the files it skipped."""
    from bench.store import StoreWarning, expand_extra, read_results

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", StoreWarning)
        rows = read_results(path, sweep_id, columns=columns)
    notes = sorted({str(w.message) for w in caught if issubclass(w.category, StoreWarning)})
    for note in notes if not quiet else ():
        print(f"bench: warning: {note}", file=sys.stderr)
    return expand_extra(rows).drop(columns=["m_extra"], errors="ignore"), notes


def planned_trials(path: str, sweep_id: str) -> dict[str, list[str]]:
    """Trial ids the sweep planned, per loss, from its sweep.json ({} when there is none)."""
    from bench.store import StoreError, read_sweep_meta

    for storage in (path, str(Path(path).parent)):
        try:
            meta = read_sweep_meta(storage, sweep_id)
        except StoreError:
            continue
        planned: dict[str, list[str]] = {}
        for trial in meta.get("trials") or []:
            if isinstance(trial, dict) and "trial_id" in trial:
                planned.setdefault(str(trial.get("loss")), []).append(str(trial["trial_id"]))
        return planned
    return {}


def run(args: argparse.Namespace) -> int:
    from bench.report.build import single_sweep
    from bench.report.cells import MetricError, resolve_metric, select_cells
    from bench.report.columns import report_columns
    from bench.report.leaderboard import Options
    from bench.report.render import check_writable, render_report

    if not args.rankme_threshold > 0:
        raise UsageError(f"--rankme-threshold must be positive, got {args.rankme_threshold}.")
    if not 0 < args.nvar_threshold < 1:
        raise UsageError(f"--nvar-threshold must be between 0 and 1, got {args.nvar_threshold}.")
    if not 0 < args.dead_threshold <= 1:
        raise UsageError(f"--dead-threshold must be in (0, 1], got {args.dead_threshold}.")
    if args.out is not None:
        check_writable(args.out)
    columns = report_columns(args.metric)  # only what the report uses: reading is the cost
    rows, notes = read(args.results, args.sweep_id, columns)
    sweep = single_sweep(rows, args.results)
    other = None
    planned = {sweep: planned_trials(args.results, sweep)}
    if args.against:
        other, more = read(args.against, args.against_sweep_id, columns)
        notes += more
        other_sweep = single_sweep(other, args.against)
        planned[other_sweep] = planned_trials(args.against, other_sweep)
    out = args.out if args.out is not None else Path("reports") / sweep
    try:
        render_report(
            rows,
            out,
            other=other,
            metric=args.metric,
            options=Options(
                rankme_threshold=args.rankme_threshold,
                nvar_threshold=args.nvar_threshold,
                dead_threshold=args.dead_threshold,
                per_label_fraction=args.per_label_fraction,
            ),
            planned_trials={k: v for k, v in planned.items() if v},
            notes=notes,
        )
    except MetricError:
        # Only some metric columns were read: list every metric the store has values for.
        everything, _ = read(args.results, args.sweep_id, quiet=True)
        resolve_metric(select_cells(everything), args.metric)
        raise
    print(f"report written to {out}/ (open {out / 'index.html'})")
    return 0
