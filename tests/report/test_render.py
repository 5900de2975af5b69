"""`bench report` end to end on the golden store: outputs, determinism, bad input, escaping."""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from report_fixtures import EXPECTED, GOLDEN

from bench.cli import main
from bench.report.build import ReportError, build_report
from bench.report.html import render_html
from bench.report.markdown import render_markdown

FIGURES = ("accuracy_vs_lr", "geometry_vs_lr", "accuracy_vs_batch_size", "epoch_curves",
           "heatmaps")
TRUNCATED = "00002-0-deadbeef.parquet"


def _run(*argv: str) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(["report", *argv])
    return code, err.getvalue()


def _add_truncated_fragment(store: Path) -> None:
    frag = store / "golden" / "fragments" / "trial=0123abcd"
    frag.mkdir(parents=True)
    data = (store / "golden" / "trials" / "golden.parquet").read_bytes()
    (frag / TRUNCATED).write_bytes(data[: len(data) // 3])  # a writer killed mid-file


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """The CLI twice on a copy of the golden store with a truncated fragment: once with --out,
    once into the default reports/<sweep_id>/ of the working folder."""
    root = tmp_path_factory.mktemp("cli")
    store = root / "store"
    shutil.copytree(GOLDEN, store)
    _add_truncated_fragment(store)
    code1, err1 = _run(str(store), "--out", str(root / "out1"))
    cwd = os.getcwd()
    os.chdir(root)
    try:
        code2, _ = _run(str(store))
    finally:
        os.chdir(cwd)
    return {"codes": (code1, code2), "err": err1, "a": root / "out1",
            "b": root / "reports" / "golden", "root": root}


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


def test_cli_writes_every_output(runs: dict) -> None:
    assert runs["codes"] == (0, 0)
    names = set(_files(runs["a"]))
    expected = {"README.md", "index.html", "leaderboard.csv", "completeness.csv",
                "comparison_bs64.csv", "comparison_bs256.csv"}
    expected |= {f"figures/{f}.{ext}" for f in FIGURES for ext in ("png", "svg")}
    assert names == expected
    assert not [p for p in runs["root"].iterdir() if p.name.startswith(".")]  # no temp left


def test_golden_csvs_match_expected(runs: dict) -> None:
    for path in sorted(EXPECTED.glob("*.csv")):
        assert (runs["a"] / path.name).read_text() == path.read_text(), path.name


def test_two_runs_are_byte_identical(runs: dict) -> None:
    a, b = _files(runs["a"]), _files(runs["b"])
    assert a.keys() == b.keys()
    assert [name for name in a if a[name] != b[name]] == []


def test_truncated_fragment_is_reported_and_skipped(runs: dict) -> None:
    assert "bench: warning: skipping unreadable results file" in runs["err"]
    assert TRUNCATED in runs["err"]
    readme = (runs["a"] / "README.md").read_text()
    assert "## Data notes" in readme and TRUNCATED in readme


def test_readme_has_leaderboard_definitions_and_completeness(runs: dict) -> None:
    readme = (runs["a"] / "README.md").read_text()
    assert "| 1 | cloa+infonce | 0.7800 ± 0.0049 | 2.00 ± 0.00 |" in readme
    for column in ("best", "robust\\_decades", "worst", "collapse\\_rate", "bs\\_sensitivity"):
        assert f"- **{column}**:" in readme
    assert "Sweep golden: 71 of 73 expected trials finished (72 seen; expected = seen in the " \
        "store and planned in sweep.json)" in readme
    assert "![accuracy\\_vs\\_lr" not in readme and "(figures/heatmaps.png)" in readme


def test_html_is_self_contained_and_offline(runs: dict) -> None:
    page = (runs["a"] / "index.html").read_text()
    without_xmlns = re.sub(r'xmlns(:\w+)?="[^"]*"', "", page)
    assert "http://" not in without_xmlns and "https://" not in without_xmlns
    assert page.count('<img src="data:image/png;base64,') == len(FIGURES)
    assert "<link" not in page and " src=\"http" not in page
    assert 'id="leaderboard-table" class="sortable"' in page


def _code_and_err(*argv: str) -> tuple[int, str]:
    code, err = _run(*argv)
    assert err.count("\n") == 1 and err.startswith("bench: error: "), err
    return code, err


def test_no_results_is_one_sentence(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    code, err = _code_and_err(str(tmp_path / "empty"), "--out", str(tmp_path / "r"))
    assert code == 2 and "no results under" in err and not (tmp_path / "r").exists()


def test_unknown_metric_lists_metrics_and_keeps_old_report(tmp_path: Path) -> None:
    out = tmp_path / "r"
    out.mkdir()
    (out / "old.txt").write_text("previous report")
    code, err = _code_and_err(str(GOLDEN), "--out", str(out), "--metric", "top9")
    assert code == 2 and "unknown metric 'top9'" in err and "linear_top1" in err
    assert [p.name for p in out.iterdir()] == ["old.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["r"]


def test_mixed_sweeps_need_sweep_id(golden_copy: Path, tmp_path: Path) -> None:
    table = pq.read_table(golden_copy / "golden" / "trials" / "golden.parquet")
    other = table.set_column(0, "sweep_id", [["other"] * table.num_rows])
    (golden_copy / "other" / "trials").mkdir(parents=True)
    pq.write_table(other, golden_copy / "other" / "trials" / "x.parquet")
    code, err = _code_and_err(str(golden_copy), "--out", str(tmp_path / "r"))
    assert code == 2 and "2 sweeps (golden, other)" in err and "--sweep-id" in err
    assert not (tmp_path / "r").exists()


def test_unwritable_output_folder(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    code, err = _code_and_err(str(GOLDEN), "--out", str(blocker / "r"))
    assert code == 2 and "cannot write the report" in err


def test_bad_rankme_threshold(tmp_path: Path) -> None:
    code, err = _code_and_err(str(GOLDEN), "--rankme-threshold", "0", "--out", str(tmp_path))
    assert code == 2 and "--rankme-threshold" in err


def test_against_compares_two_sweeps(golden_rows: pd.DataFrame, tmp_path: Path) -> None:
    other = golden_rows.assign(sweep_id="baseline")
    other["m_linear_top1"] = other["m_linear_top1"] - 0.05
    store = tmp_path / "baseline" / "trials"
    store.mkdir(parents=True)
    from bench.store import conform

    pq.write_table(conform(pa_table(other)), store / "b.parquet")
    out = tmp_path / "r"
    code, err = _run(str(GOLDEN), "--against", str(tmp_path), "--out", str(out))
    assert code == 0, err
    board = pd.read_csv(out / "leaderboard.csv")
    assert sorted(set(board["sweep_id"])) == ["baseline", "golden"] and len(board) == 6
    against = pd.read_csv(out / "against.csv").set_index("loss")
    assert against.loc["infonce", "best_diff"] == pytest.approx(0.05)
    assert "## Against baseline" in (out / "README.md").read_text()


def pa_table(frame: pd.DataFrame):
    import pyarrow as pa

    return pa.Table.from_pandas(frame, preserve_index=False)


def test_against_the_same_sweep_is_refused(golden_rows: pd.DataFrame) -> None:
    with pytest.raises(ReportError, match="same sweep 'golden'"):
        build_report(golden_rows, other=golden_rows, figures=False)


def test_hostile_loss_names_are_escaped(golden_rows: pd.DataFrame) -> None:
    evil = "<script>alert(1)</script>"
    rows = golden_rows.copy()
    rows.loc[rows["loss"] == "vicreg", ["loss", "base_loss"]] = evil
    report = build_report(rows, figures=False)
    page = render_html(report, {})
    assert evil not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    readme = render_markdown(report, {})
    assert evil not in readme and "&lt;script&gt;alert(1)&lt;/script&gt;" in readme


def test_report_never_imports_torch_or_ray() -> None:
    code = ("import sys, bench.report.render, bench.commands.report, bench.store; "
            "bad = [m for m in ('torch', 'ray') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_sweep_with_nothing_finished_still_reports(golden_rows: pd.DataFrame) -> None:
    first_epoch = golden_rows[golden_rows["epoch"] == 1]
    assert not first_epoch["final"].any()
    report = build_report(first_epoch)
    assert report.metric == "m_knn_top1"
    assert (report.completeness["trials_done"] == 0).all()
    assert "0 of 72 expected trials finished" in render_markdown(report, {
        s.name: ("a.png", "a.svg") for s in report.figures})
    assert report.leaderboard["best"].isna().all()


def test_report_reads_only_the_columns_it_needs() -> None:
    from bench.commands.report import report_columns

    default = report_columns(None)
    assert "m_linear_top1" in default and "m_h_rankme" in default and "m_extra" not in default
    assert {"m_ffn_top1", "m_ffn_top5"} <= set(report_columns("ffn_top1"))
    assert "m_extra" in report_columns("my_plugin_term")  # plugin metrics live in m_extra
