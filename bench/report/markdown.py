"""The report as Markdown (README.md): completeness, leaderboard, definitions, tables, figures.

Every string from the data is escaped: a plugin may name its loss anything, including HTML or
Markdown syntax, and it must show as typed.
"""

from __future__ import annotations

import html
import math

import pandas as pd

from bench.report.build import SCORED_COLUMNS, Report

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
    body = ["| " + " | ".join(escape(v) for v in row) + " |"
            for row in frame.itertuples(index=False, name=None)]
    return "\n".join([head, sep, *body])


def num(x: object, digits: int = 4) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)) or pd.isna(x):
        return "n/a"
    return f"{float(x):.{digits}f}"


def with_se(value: float, se: float, digits: int = 4) -> str:
    text = num(value, digits)
    return text if text == "n/a" or pd.isna(se) else f"{text} ± {num(se, digits)}"


def leaderboard_display(report: Report) -> pd.DataFrame:
    """The leaderboard as strings, in rank order (shared by Markdown and HTML)."""
    b = report.leaderboard
    multi = bool(report.other_sweep_ids)
    out = pd.DataFrame({"rank": b["rank"].astype(str), "loss": b["loss"]})
    if multi:
        out["sweep"] = b["sweep_id"]
    for col in SCORED_COLUMNS:
        digits = 2 if col == "robust_decades" else 4
        out[col] = [with_se(v, s, digits) for v, s in zip(b[col], b[f"{col}_se"])]
    out["mean rank"] = [num(v, 2) for v in b["mean_rank"]]
    out["seeds"] = b["n_seeds"].astype(str)
    out["cells done"] = [f"{d}/{s}" for d, s in zip(b["cells_done"], b["cells_seen"])]
    return out


def completeness_display(report: Report) -> pd.DataFrame:
    """The completeness table as strings."""
    return report.completeness.astype(str)


def completeness_lines(report: Report) -> list[str]:
    """One sentence per sweep: finished of expected trials (seen, plus planned not yet seen)."""
    lines = []
    for sweep, comp in report.completeness.groupby("sweep_id", sort=True):
        seen, done = int(comp["trials_seen"].sum()), int(comp["trials_done"].sum())
        expected = int(comp["trials_expected"].sum())
        source = ("seen in the store and planned in sweep.json"
                  if report.planned_trials.get(str(sweep)) else "seen in the store; no sweep.json")
        state = "complete" if done == expected else "still running or incomplete"
        lines.append(f"Sweep {sweep}: {done} of {expected} expected trials finished "
                     f"({seen} seen; expected = {source}): {state}.")
    return lines


def header_lines(report: Report) -> list[str]:
    top5 = f", top-5 {report.top5}" if report.top5 else ""
    lines = [f"Metric {report.metric}{top5}. Rebuilt from the Parquet store alone by "
             "bench report."]
    if report.data_as_of:
        lines.append(f"Data as of {report.data_as_of} (newest row written).")
    return lines


def render_markdown(report: Report, figure_paths: dict[str, tuple[str, str]]) -> str:
    """README.md: `figure_paths` maps a figure name to (png path, svg path) relative to it."""
    out = [f"# Stability report: {escape(report.sweep_id)}", "", *_paragraphs(header_lines(report))]
    out += ["## Completeness", "", *_paragraphs(completeness_lines(report)),
            table(completeness_display(report)), ""]
    out += ["## Grid", "", table(report.grids), ""]
    out += ["## Stability leaderboard", "", table(leaderboard_display(report)), "",
            "Columns:", ""]
    out += [f"- **{escape(k)}**: {escape(v)}" for k, v in report.definitions]
    out += ["", "## Comparison tables", "", *_paragraphs(comparison_notes(report))]
    for bs, wide in report.tables:
        out += [f"### Batch size {bs}", "", table(wide), ""]
    if report.against is not None:
        out += ["## Against " + ", ".join(escape(s) for s in report.other_sweep_ids), "",
                *_paragraphs(against_notes(report)), table(against_display(report)), ""]
    if report.figures:
        out += ["## Figures", ""]
        for spec in report.figures:
            png, svg = figure_paths[spec.name]
            out += [f"### {escape(spec.title)}", "", f"![{escape(spec.title)}]({png})", "",
                    f"{escape(spec.caption)} ([SVG]({svg}))", ""]
    if report.notes:
        out += ["## Data notes", "", *[f"- {escape(n)}" for n in report.notes], ""]
    return "\n".join(out).rstrip() + "\n"


def _paragraphs(lines: list[str]) -> list[str]:
    """Escaped lines, each its own Markdown paragraph."""
    return [part for line in lines for part in (escape(line), "")]


def comparison_notes(report: Report) -> list[str]:
    return [
        "Cells: mean ± std over seeds (n seeds) at the lr with the best seed-mean top-1 for that "
        "loss, batch size and label fraction (each loss at its own best lr, as in CLOA Tables "
        "3-4). Diverged runs count as 0; running seeds are listed and left out.",
        "Δ: add-on variant minus its base loss, with a 95% percentile bootstrap interval over "
        "seeds (2000 resamples, fixed RNG seed), paired by seed when both have the same seeds, "
        "else resampled independently (marked unpaired); * = the interval excludes 0.",
    ]


def against_notes(report: Report) -> list[str]:
    others = ", ".join(report.other_sweep_ids)
    return [f"Each cell: the leaderboard column in {report.sweep_id} vs in {others} "
            f"({report.sweep_id} minus {others}). The leaderboard above ranks the losses of "
            "both sweeps together (column sweep). Compare the grids first: a column compares "
            "like with like only on the same lr, batch-size and label-fraction grid."]


def against_display(report: Report) -> pd.DataFrame:
    a = report.against
    assert a is not None
    out = pd.DataFrame({"loss": a["loss"], "against": a["against"], "in": a["in"]})
    for col in SCORED_COLUMNS:
        digits = 2 if col == "robust_decades" else 4
        out[col] = [f"{num(x, digits)} vs {num(y, digits)} ({_signed(d, digits)})"
                    for x, y, d in zip(a[f"{col}_this"], a[f"{col}_other"], a[f"{col}_diff"])]
    return out


def _signed(x: float, digits: int) -> str:
    text = num(x, digits)
    return text if text == "n/a" or text.startswith("-") else "+" + text
