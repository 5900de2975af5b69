"""The report as Markdown (README.md): warnings, leaderboards and their rules, the headline
figures, comparison tables, the other figures, then completeness.

Every string from the data is escaped: a plugin may name its loss anything, including HTML or
Markdown syntax, and it must show as typed.
"""

from __future__ import annotations

import html
import math
from typing import Any

import pandas as pd

from bench.report.build import SCORED_COLUMNS, Report
from bench.report.figures import FigureSpec
from bench.report.leaderboard import ALL_FRACTIONS
from bench.report.stats import ALPHA, MIN_SEEDS
from bench.report.style import slug
from bench.report.tables import fraction_label

_MD_SPECIAL = "\\`*_[]|#"


def escape(text: object) -> str:
    """Markdown- and HTML-safe text for a table cell or a line."""
    out = html.escape(str(text), quote=False)
    for ch in _MD_SPECIAL:
        out = out.replace(ch, "\\" + ch)
    return out.replace("\n", " ")


def table(frame: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table of `frame` (all cells escaped)."""
    head = "| " + " | ".join(escape(c) for c in frame.columns) + " |"
    sep = "|" + "|".join("---" for _ in frame.columns) + "|"
    body = [
        "| " + " | ".join(escape(v) for v in row) + " |"
        for row in frame.itertuples(index=False, name=None)
    ]
    return "\n".join([head, sep, *body])


def num(x: Any, digits: int = 4) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)) or pd.isna(x):
        return "n/a"
    return f"{float(x):.{digits}f}"


def with_se(value: float, se: float, digits: int = 4) -> str:
    text = num(value, digits)
    return text if text == "n/a" or pd.isna(se) else f"{text} ± {num(se, digits)}"


def scopes(report: Report) -> list[tuple[str, str, pd.DataFrame]]:
    """(heading, html id, leaderboard rows) per ranking: one per dataset (and label fraction)."""
    out = []
    board = report.leaderboard
    for (ds, lf), part in board.groupby(["dataset", "label_fraction"], sort=False):
        heading = str(ds) if lf == ALL_FRACTIONS else f"{ds} · {fraction_label(float(lf))}"
        ident = "leaderboard-" + slug(ds) + ("" if lf == ALL_FRACTIONS else f"-{float(lf):g}")
        out.append((heading, ident, part.reset_index(drop=True)))
    return out


def leaderboard_display(report: Report, board: pd.DataFrame) -> pd.DataFrame:
    """One ranking as strings, in rank order (shared by Markdown and HTML)."""
    multi = bool(report.other_sweep_ids)
    out = pd.DataFrame({"rank": board["rank"].astype(str), "loss": board["loss"]})
    if multi:
        out["sweep"] = board["sweep_id"]
    out["score ± se [95% CI]"] = [
        _with_ci(v, se, lo, hi)
        for v, se, lo, hi in zip(
            board["score"], board["score_se"], board["score_low"], board["score_high"]
        )
    ]
    out["vs leader"] = board["vs_leader"]
    out["best (val-selected test)"] = [
        with_se(v, s) for v, s in zip(board["best"], board["best_se"])
    ]
    out["lr band (decades)"] = [num(v, 2) for v in board["lr_band"]]
    out["diverged"] = [_pct(v) for v in board["divergence_rate"]]
    out["collapsed"] = [_pct(v) for v in board["collapse_rate"]]
    out["seeds"] = board["n_seeds"].astype(str)
    out["cells done"] = [f"{d}/{s}" for d, s in zip(board["cells_done"], board["cells_seen"])]
    return out


def _with_ci(value: float, se: float, low: float, high: float) -> str:
    text = with_se(value, se)
    if text != "n/a" and pd.notna(low) and math.isfinite(low):
        text += f" [{num(low)}, {num(high)}]"
    return text


def _pct(x: Any) -> str:
    text = num(x, 4)
    return text if text == "n/a" else f"{100 * float(x):.0f}%"


def leaderboard_rules(report: Report) -> list[str]:
    """The lines printed with every leaderboard: what ranks, and how."""
    o = report.options
    scope = (
        "one ranking per (dataset, label fraction)"
        if o.per_label_fraction
        else "one ranking per dataset"
    )
    return [
        f"Ranked by score ({scope}; entries of different datasets are never ranked "
        "together). Losses whose 95% interval overlaps the leader's are marked tied (a coarse "
        "screen, not a test). The `untrained` control, where present, is the encoder as "
        "initialised: a loss at or below it learned nothing the probe needs."
    ]


def completeness_display(report: Report) -> pd.DataFrame:
    """The completeness table as strings."""
    return report.completeness.astype(str)


def completeness_lines(report: Report) -> list[str]:
    """One sentence per sweep: finished of expected trials (seen, plus planned not yet seen)."""
    lines = []
    for sweep, comp in report.completeness.groupby("sweep_id", sort=True):
        seen, done = int(comp["trials_seen"].sum()), int(comp["trials_done"].sum())
        expected = int(comp["trials_expected"].sum())
        source = (
            "seen in the store and planned in sweep.json"
            if report.planned_trials.get(str(sweep))
            else "seen in the store; no sweep.json"
        )
        state = "complete" if done == expected else "still running or incomplete"
        lines.append(
            f"Sweep {sweep}: {done} of {expected} expected trials finished "
            f"({seen} seen; expected = {source}): {state}."
        )
    return lines


def header_lines(report: Report) -> list[str]:
    top5 = f", top-5 {report.top5}" if report.top5 else ""
    lines = [
        f"Metric {report.metric}{top5} (test split). Rebuilt from the Parquet store alone "
        "by bench report."
    ]
    if report.data_as_of:
        lines.append(f"Data as of {report.data_as_of} (newest row written).")
    return lines + report.context


def render_markdown(report: Report, figure_paths: dict[str, tuple[str, str]]) -> str:
    """README.md: `figure_paths` maps a figure name to (png path, svg path) relative to it."""
    out = [f"# Stability report: {escape(report.sweep_id)}", ""]
    out += [f"> **Warning: {escape(b)}**" for b in report.banners]
    out += [""] if report.banners else []
    out += _paragraphs(header_lines(report))
    out += ["## Stability leaderboard", "", *_paragraphs(leaderboard_rules(report))]
    for heading, _, board in scopes(report):
        out += [f"### {escape(heading)}", "", table(leaderboard_display(report, board)), ""]
    out += ["Columns:", ""]
    out += [f"- **{escape(k)}**: {escape(v)}" for k, v in report.definitions]
    out += [""]
    headline = [s for s in report.figures if s.headline]
    others = [s for s in report.figures if not s.headline]
    for spec in headline:
        out += _figure(spec, figure_paths)
    out += ["## Comparison tables", "", *_paragraphs(comparison_notes(report))]
    for ds, bs, wide in report.tables:
        out += [f"### {escape(ds)} · batch size {bs}", "", table(wide), ""]
    if report.against is not None:
        out += [
            "## Against " + ", ".join(escape(s) for s in report.other_sweep_ids),
            "",
            *_paragraphs(against_notes(report)),
            table(against_display(report)),
            "",
        ]
    if others:
        out += ["## Figures", ""]
        for spec in others:
            out += _figure(spec, figure_paths)
    out += [
        "## Completeness",
        "",
        *_paragraphs(completeness_lines(report)),
        table(completeness_display(report)),
        "",
    ]
    out += ["## Grid", "", table(report.grids), ""]
    if report.notes:
        out += ["## Data notes", "", *[f"- {escape(n)}" for n in report.notes], ""]
    return "\n".join(out).rstrip() + "\n"


def _figure(spec: FigureSpec, figure_paths: dict[str, tuple[str, str]]) -> list[str]:
    png, svg = figure_paths[spec.name]
    return [
        f"### {escape(spec.title)}",
        "",
        f"![{escape(spec.title)}]({png})",
        "",
        f"{escape(spec.caption)} ([SVG]({svg}))",
        "",
    ]


def _paragraphs(lines: list[str]) -> list[str]:
    """Escaped lines, each its own Markdown paragraph."""
    return [part for line in lines for part in (escape(line), "")]


def comparison_notes(report: Report) -> list[str]:
    on_test = [s for s, col in report.selection.items() if col == report.metric]
    chosen = (
        "on TEST data (this store has no validation metric; see the warning above)"
        if report.sweep_id in on_test
        else f"on the seed mean of the validation metric {report.selection[report.sweep_id]}"
    )
    return [
        f"Cells: the test metric at the lr chosen {chosen} for that loss, batch size and label "
        "fraction (each loss at its own lr, as in CLOA Tables 3-4), mean ± std over seeds (n "
        "seeds). A diverged seed counts as chance; running seeds are listed and left out.",
        f"Δ: add-on variant minus its base loss, paired by seed (seeds only one side has are left "
        f"out), with the 95% t-interval (df = n - 1) and (n) paired seeds. * = significant after "
        f"Holm's correction over the comparisons of that table (Holm-adjusted two-sided p < "
        f"{ALPHA:g}). With fewer than {MIN_SEEDS} paired seeds only the estimate is shown, marked "
        "too few seeds, never a *. No bootstrap is used: at 2-5 seeds a percentile bootstrap "
        "interval covers far less than 95%.",
        "comparisons.csv has every comparison as data: dataset, batch size, label fraction, "
        "variant, base, metric, n seeds, the selected lrs, delta, ci_low, ci_high, p, Holm p and "
        "significant (after correction).",
    ]


def against_notes(report: Report) -> list[str]:
    others = ", ".join(report.other_sweep_ids)
    return [
        f"Each cell: the leaderboard column in {report.sweep_id} vs in {others} "
        f"({report.sweep_id} minus {others}), per dataset. The leaderboards above rank the "
        "losses of both sweeps on a dataset together (column sweep). Compare the grids "
        "first: a column compares like with like only on the same lr, batch-size and "
        "label-fraction grid."
    ]


def against_display(report: Report) -> pd.DataFrame:
    a = report.against
    assert a is not None
    out = pd.DataFrame(
        {"dataset": a["dataset"], "loss": a["loss"], "against": a["against"], "in": a["in"]}
    )
    if (a["label_fraction"] != ALL_FRACTIONS).any():
        out.insert(1, "label fraction", a["label_fraction"].astype(str))
    for col in SCORED_COLUMNS:
        digits = 2 if col == "lr_band" else 4
        out[col] = [
            f"{num(x, digits)} vs {num(y, digits)} ({_signed(d, digits)})"
            for x, y, d in zip(a[f"{col}_this"], a[f"{col}_other"], a[f"{col}_diff"])
        ]
    return out


def _signed(x: float, digits: int) -> str:
    text = num(x, digits)
    return text if text == "n/a" or text.startswith("-") else "+" + text
