"""The one module of `bench.report` that writes files.

`render_report(rows, out)` builds the report in memory (tables, figures as PNG and SVG bytes,
README.md, index.html, CSVs), writes it into a temporary folder beside `out` and renames that
into place, replacing an older report only once the new one is complete: a failure at any
point leaves the previous report (or nothing), never a half-written folder.

Determinism: the same rows give byte-identical Markdown, CSV and HTML (and, with one matplotlib
version and font set, PNG/SVG): no clock is read, SVG ids use a fixed hash salt, and the date and
software metadata of PNG/SVG files are dropped.
"""

from __future__ import annotations

import io
import os
import shutil
import tempfile
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from bench.report.build import Report, ReportError, build_report
from bench.report.html import render_html
from bench.report.leaderboard import Options
from bench.report.markdown import render_markdown

DPI = 100  # modest: the PNGs are embedded in index.html; the SVGs are there for print
_RC: dict[str, Any] = {
    "svg.hashsalt": "contrastive-bench",
    "svg.fonttype": "path",
    "path.simplify": True,
}


def check_writable(out: Path) -> None:
    """Fail before any work if `out` cannot be created or replaced (one sentence, ReportError)."""
    if out.exists() and not out.is_dir():
        raise ReportError(f"cannot write the report to {out}: it exists and is not a folder.")
    parent = out.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise ReportError(f"cannot write the report to {out}: {parent} is not a folder.")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ReportError(f"cannot write the report to {out}: {parent} is not writable.")


def figure_bytes(figure: Figure, fmt: str) -> bytes:
    """A Figure as PNG or SVG bytes with the Agg backend and no date/software metadata."""
    import matplotlib

    matplotlib.use("Agg")  # headless, and the same rasteriser everywhere
    metadata = {"Software": None} if fmt == "png" else {"Date": None, "Creator": None}
    buf = io.BytesIO()
    with matplotlib.rc_context(_RC):  # type: ignore[arg-type]  # keys typed as a Literal of all rc names
        figure.savefig(buf, format=fmt, dpi=DPI, metadata=metadata)
    return buf.getvalue()


def figure_files(figure: Figure) -> tuple[bytes, bytes]:
    """(PNG, SVG) of a Figure; the constrained layout is solved once, for the PNG, and then
    frozen, since it is the slowest step of a draw."""
    png = figure_bytes(figure, "png")
    figure.set_layout_engine("none")
    return png, figure_bytes(figure, "svg")


def _csv(frame: pd.DataFrame) -> bytes:
    return frame.to_csv(index=False, lineterminator="\n", float_format="%.6g").encode()


def report_files(report: Report) -> dict[str, bytes]:
    """Every output file of a report, by path relative to the report folder."""
    files: dict[str, bytes] = {}
    pngs: dict[str, bytes] = {}
    paths: dict[str, tuple[str, str]] = {}
    for spec in report.figures:
        png, svg = figure_files(spec.figure)
        pngs[spec.name] = png
        paths[spec.name] = (f"figures/{spec.name}.png", f"figures/{spec.name}.svg")
        files[paths[spec.name][0]] = png
        files[paths[spec.name][1]] = svg
    files["README.md"] = render_markdown(report, paths).encode()
    files["index.html"] = render_html(report, pngs).encode()
    files["leaderboard.csv"] = _csv(report.leaderboard)
    files["completeness.csv"] = _csv(report.completeness)
    files["comparisons.csv"] = _csv(report.comparisons)
    primary = report.long[report.long["sweep_id"] == report.sweep_id]
    for bs in sorted({bs for _, bs, _ in report.tables}):
        files[f"comparison_bs{bs}.csv"] = _csv(primary[primary["batch_size"] == bs])
    if report.against is not None:
        files["against.csv"] = _csv(report.against)
    return files


def write_atomically(out: Path, files: Mapping[str, bytes]) -> None:
    """Write `files` into a temporary folder beside `out`, then rename it to `out`."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    old = out.parent / f".{out.name}.old-{uuid.uuid4().hex[:8]}"
    try:
        tmp.chmod(0o755)  # mkdtemp makes it private; a report folder is meant to be shared
        for rel in sorted(files):
            path = tmp / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(files[rel])
        if out.exists():
            out.rename(old)
            try:
                tmp.rename(out)
            except BaseException:
                old.rename(out)  # put the previous report back
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def render_report(
    rows: pd.DataFrame,
    out: str | os.PathLike[str],
    *,
    other: pd.DataFrame | None = None,
    metric: str | None = None,
    options: Options | None = None,
    planned_trials: Mapping[str, Mapping[str, Sequence[str]]] | None = None,
    notes: Sequence[str] = (),
    figures: bool = True,
) -> Path:
    """Build the report on `rows` (and `other`, for --against) and write it to `out`.

    `figures=False` leaves out the figures (the tables and leaderboard are unchanged).
    """
    out = Path(out)
    check_writable(out)
    report = build_report(
        rows,
        other=other,
        metric=metric,
        options=options,
        planned_trials=planned_trials,
        notes=notes,
        figures=figures,
    )
    files = report_files(report)
    try:
        write_atomically(out, files)
    except OSError as err:
        raise ReportError(f"cannot write the report to {out}: {err.strerror or err}.") from err
    return out
