"""index.html: one self-contained page (inline CSS and JS, figures as data: URIs, no network).

Every string from the data goes through `esc` (HTML-escaped, quotes included): a plugin loss may
be named `<script>alert(1)</script>` and must show as text. A Content-Security-Policy allows
only inline styles/scripts and data: images, so the page cannot reach out even if some text
slipped through. The leaderboard sorts on a header click (vanilla JS, numeric `data-v` keys).
"""

from __future__ import annotations

import base64
import html as _html
import math

import pandas as pd

from bench.report.build import Report
from bench.report.figures import FigureSpec
from bench.report.markdown import (
    against_display,
    against_notes,
    comparison_notes,
    completeness_display,
    completeness_lines,
    header_lines,
    leaderboard_display,
    leaderboard_rules,
    scopes,
)

_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'"

_CSS = """
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1d232b;
  margin:0;background:#f6f7f9}
main{max-width:1280px;margin:0 auto;padding:24px 32px 64px;background:#fff}
h1{font-size:1.7em;margin:.2em 0 .3em}h2{margin-top:2em;border-bottom:2px solid #e3e6ea;
  padding-bottom:.2em}h3{margin-top:1.5em}
.meta{color:#56606b;margin:.2em 0}nav a{margin-right:1em}
.scroll{overflow-x:auto;margin:.6em 0}
table{border-collapse:collapse;font-size:13px;font-variant-numeric:tabular-nums}
th,td{border:1px solid #dde1e6;padding:4px 8px;text-align:left;white-space:nowrap}
th{background:#eef1f5}th[scope=colgroup]{text-align:center}tbody tr:nth-child(even){background:#fafbfc}
table.sortable th{cursor:pointer;user-select:none}
table.sortable th[aria-sort=ascending]::after{content:" \\25B2"}
table.sortable th[aria-sort=descending]::after{content:" \\25BC"}
dl.defs dt{font-weight:600;margin-top:.5em}dl.defs dd{margin-left:1.5em;max-width:900px}
figure{margin:1.5em 0}figure img{max-width:100%;height:auto;border:1px solid #e3e6ea}
figcaption{color:#3d4650;max-width:1000px;margin-top:.4em}
.note{color:#56606b;max-width:1000px}
.banner{background:#fff4e5;border:2px solid #e8590c;color:#7a2e00;padding:10px 14px;
  margin:12px 0;font-weight:600;max-width:1000px;border-radius:4px}
"""

_JS = """
document.querySelectorAll("table.sortable").forEach(function (table) {
  var heads = table.tHead.rows[0].cells;
  Array.prototype.forEach.call(heads, function (th, col) {
    th.addEventListener("click", function () {
      var asc = th.getAttribute("aria-sort") !== "ascending";
      Array.prototype.forEach.call(heads, function (h) { h.removeAttribute("aria-sort"); });
      th.setAttribute("aria-sort", asc ? "ascending" : "descending");
      var body = table.tBodies[0];
      var rows = Array.prototype.slice.call(body.rows);
      rows.sort(function (a, b) {
        var x = a.cells[col].getAttribute("data-v"), y = b.cells[col].getAttribute("data-v");
        var nx = x === "" ? NaN : Number(x), ny = y === "" ? NaN : Number(y);
        var c;
        if (isNaN(nx) || isNaN(ny)) {
          if (isNaN(nx) && isNaN(ny)) { c = String(x).localeCompare(String(y)); }
          else { return isNaN(nx) ? 1 : -1; }
        } else { c = nx - ny; }
        return asc ? c : -c;
      });
      rows.forEach(function (r) { body.appendChild(r); });
    });
  });
});
"""


def esc(value: object) -> str:
    return _html.escape(str(value), quote=True)


def _key(value: object) -> str:
    """Sort key for data-v: numbers as repr, missing as "", text as itself."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return ""
    if isinstance(value, (int, float)):
        return repr(float(value))
    return str(value)


def _grouped_head(columns: list[str], sep: str) -> str:
    """Two header rows: "10% labels top-1" -> group "10% labels" over sub-heading "top-1"."""
    split = [c.split(sep, 1) if sep in c else [c] for c in columns]
    top, bottom, i = [], [], 0
    while i < len(split):
        if len(split[i]) == 1:
            top.append(f'<th scope="col" rowspan="2">{esc(split[i][0])}</th>')
            i += 1
            continue
        group = split[i][0]
        span = 0
        while i + span < len(split) and len(split[i + span]) == 2 and split[i + span][0] == group:
            bottom.append(f'<th scope="col">{esc(split[i + span][1])}</th>')
            span += 1
        top.append(f'<th scope="colgroup" colspan="{span}">{esc(group + sep.rstrip())}</th>')
        i += span
    return f"<tr>{''.join(top)}</tr><tr>{''.join(bottom)}</tr>"


def table(
    frame: pd.DataFrame,
    *,
    keys: pd.DataFrame | None = None,
    table_id: str = "",
    sortable: bool = False,
    group_sep: str | None = None,
) -> str:
    """An HTML table of `frame` (cells escaped); `keys` gives each cell's numeric sort key;
    `group_sep` splits column names into a two-row header (paper-style label-fraction groups)."""
    attrs = (f' id="{esc(table_id)}"' if table_id else "") + (
        ' class="sortable"' if sortable else ""
    )
    if group_sep:
        head = _grouped_head([str(c) for c in frame.columns], group_sep)
    else:
        head = "<tr>" + "".join(f'<th scope="col">{esc(c)}</th>' for c in frame.columns) + "</tr>"
    rows = []
    for i, row in enumerate(frame.itertuples(index=False, name=None)):
        cells = []
        for j, value in enumerate(row):
            key = _key(keys.iat[i, j]) if keys is not None else ""
            data = f' data-v="{esc(key)}"' if sortable else ""
            cells.append(f"<td{data}>{esc(value)}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return (
        f'<div class="scroll"><table{attrs}><thead>{head}</thead><tbody>'
        + "\n".join(rows)
        + "</tbody></table></div>"
    )


_BOARD_KEYS = {
    "rank": "rank",
    "score ± se [95% CI]": "score",
    "best (val-selected test)": "best",
    "lr band (decades)": "lr_band",
    "diverged": "divergence_rate",
    "collapsed": "collapse_rate",
    "seeds": "n_seeds",
}


def _leaderboard_keys(board: pd.DataFrame, shown: pd.DataFrame) -> pd.DataFrame:
    keys = pd.DataFrame(index=range(len(board)))
    for col in shown.columns:
        if col in _BOARD_KEYS:
            keys[col] = board[_BOARD_KEYS[col]].astype(float).to_numpy()
        elif col == "cells done":
            keys[col] = (board["cells_done"] / board["cells_seen"]).to_numpy()
        else:
            keys[col] = shown[col].to_numpy()
    return keys


def _paragraphs(lines: list[str], cls: str = "note") -> str:
    return "".join(f'<p class="{cls}">{esc(line)}</p>' for line in lines)


def _figure(spec: FigureSpec, images: dict[str, bytes]) -> str:
    uri = "data:image/png;base64," + base64.b64encode(images[spec.name]).decode("ascii")
    return (
        f'<figure id="fig-{esc(spec.name)}"><h3>{esc(spec.title)}</h3>'
        f'<img src="{uri}" alt="{esc(spec.title)}">'
        f"<figcaption>{esc(spec.caption)}</figcaption></figure>"
    )


def render_html(report: Report, images: dict[str, bytes]) -> str:
    """The whole page; `images` maps a figure name to its PNG bytes (embedded as data: URIs).

    Order: warnings, the leaderboards with their rules and the headline figures, comparison
    tables, --against, the other figures, completeness last."""
    title = f"Stability report: {report.sweep_id}"
    parts = [f"<h1>{esc(title)}</h1>"]
    parts += [f'<div class="banner" role="alert">Warning: {esc(b)}</div>' for b in report.banners]
    parts += [
        _paragraphs(header_lines(report), "meta"),
        '<nav><a href="#leaderboard">Leaderboard</a><a href="#tables">Comparison tables</a>'
        + ('<a href="#against">Against</a>' if report.against is not None else "")
        + '<a href="#figures">Figures</a><a href="#completeness">Completeness</a></nav>',
        '<h2 id="leaderboard">Stability leaderboard</h2>',
        _paragraphs(leaderboard_rules(report)),
        '<p class="note">Click a column header to sort.</p>',
    ]
    for heading, ident, board in scopes(report):
        shown = leaderboard_display(report, board)
        parts += [
            f"<h3>{esc(heading)}</h3>",
            table(shown, keys=_leaderboard_keys(board, shown), table_id=ident, sortable=True),
        ]
    parts.append(
        '<dl class="defs">'
        + "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in report.definitions)
        + "</dl>"
    )
    parts += [_figure(spec, images) for spec in report.figures if spec.headline]
    parts += ['<h2 id="tables">Comparison tables</h2>', _paragraphs(comparison_notes(report))]
    for ds, bs, wide in report.tables:
        parts += [f"<h3>{esc(ds)} · batch size {bs}</h3>", table(wide, group_sep=" labels ")]
    if report.against is not None:
        parts += [
            f'<h2 id="against">Against {esc(", ".join(report.other_sweep_ids))}</h2>',
            _paragraphs(against_notes(report)),
            table(against_display(report)),
        ]
    parts.append('<h2 id="figures">Figures</h2>')
    parts += [_figure(spec, images) for spec in report.figures if not spec.headline]
    parts += [
        '<h2 id="completeness">Completeness</h2>',
        _paragraphs(completeness_lines(report)),
        table(completeness_display(report)),
        "<h3>Grid</h3>",
        table(report.grids),
    ]
    if report.notes:
        parts += [
            "<h2>Data notes</h2>",
            "<ul>" + "".join(f"<li>{esc(n)}</li>" for n in report.notes) + "</ul>",
        ]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{_CSS}</style></head>\n<body><main>\n"
        + "\n".join(parts)
        + f"\n</main><script>{_JS}</script></body></html>\n"
    )
