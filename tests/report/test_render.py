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
from report_fixtures import EXPECTED, GOLDEN, cell_rows, store_table

from bench.cli import main
from bench.report.build import ReportError, build_report
from bench.report.html import render_html
from bench.report.markdown import render_markdown

FIGURES = tuple(f"{kind}-digits" for kind in (
    "score_vs_lr", "accuracy_vs_lr", "geometry_vs_lr", "accuracy_vs_batch_size", "epoch_curves",
    "heatmaps"))
OLD_STORE = ["m_val_knn_top1", "m_val_linear_top1", "m_val_linear_top5", "m_h_nvar", "m_h_dead",
             "m_num_classes"]
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
                "comparisons.csv", "comparison_bs64.csv", "comparison_bs256.csv"}
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
    assert ("| 1 | cloa+infonce | 0.6815 ± 0.0128 \\[0.6263, 0.7367\\] | leader | 0.7900 ± "
            "0.0115 | 2.00 | 0% | 0% | 3 | 36/36 |") in readme
    assert "| 3 | infonce | 0.4370 ± 0.0053 \\[0.4140, 0.4600\\] | below | 0.6800 ± 0.0058 | " \
        "0.00 | 17% | 17% | 3 | 36/36 |" in readme
    for column in ("cell score", "score", "vs leader", "best", "lr\\_band",
                   "divergence\\_rate", "collapse\\_rate", "rank"):
        assert f"- **{column}**:" in readme
    assert "m\\_h\\_nvar = 1 - \\|mean(u)\\|^2" in readme  # the collapse rule, printed
    assert "Sweep golden: 71 of 73 expected trials finished (72 seen; expected = seen in the " \
        "store and planned in sweep.json)" in readme
    assert "(figures/heatmaps-digits.png)" in readme
    assert "Selection: every lr is chosen on the validation split" in readme
    assert "Chance on digits: 0.1 (10 classes, from m\\_num\\_classes)" in readme
    assert "Warning" not in readme


def test_report_order_leaderboard_first_completeness_last(runs: dict) -> None:
    readme = (runs["a"] / "README.md").read_text()
    order = [readme.index(h) for h in ("## Stability leaderboard", "### digits: score above",
                                       "## Comparison tables", "## Figures", "## Completeness")]
    assert order == sorted(order)
    page = (runs["a"] / "index.html").read_text()
    order = [page.index(h) for h in ('id="leaderboard"', 'id="fig-score_vs_lr-digits"',
                                     'id="tables"', 'id="fig-accuracy_vs_lr-digits"',
                                     'id="completeness"')]
    assert order == sorted(order)


def test_store_without_validation_gets_a_banner(golden_rows: pd.DataFrame) -> None:
    report = build_report(golden_rows.drop(columns=OLD_STORE), figures=False)
    assert report.selection == {"golden": "m_linear_top1"}
    readme = render_markdown(report, {})
    assert "> **Warning: Selection used test data: sweep golden has no validation metric " \
        "m\\_val\\_linear\\_top1" in readme
    assert "lr (chosen on TEST)" in readme
    assert "RankMe m\\_h\\_rankme is below 2 (this store has no m\\_h\\_nvar" in readme
    assert "Chance on digits: 0.1 (10 classes, from dataset name)" in readme
    page = render_html(report, {})
    assert '<div class="banner" role="alert">Warning: Selection used test data' in page
    assert page.index('class="banner"') < page.index('id="leaderboard"')


def test_header_states_the_probe_of_each_dataset() -> None:
    specs = [{"trial_id": f"{d}{s}", "p_dataset": d, "seed": s, "p_probe_features": feat,
              "p_probe_optimizer": opt, "p_probe_lr": lr, "p_probe_batch_size": 256,
              "p_probe_epochs": 100, "p_ffn_hidden": ffn, "p_val_fraction": 0.1,
              "m_val_linear_top1": 0.5}
             for d, feat, opt, lr, ffn in (("digits", "standardized", "adamw", None, None),
                                           ("cifar10", "raw", "sgd", 0.1, "[512]"))
             for s in range(3)]
    report = build_report(cell_rows(specs), figures=False)
    assert "Probes on cifar10 (linear and FFN numbers): raw features; optimizer sgd; lr 0.1; " \
        "batch 256; 100 epochs; FFN hidden [512]." in report.context
    assert "Probes on digits (linear and FFN numbers): standardized features; optimizer adamw; " \
        "lr default; batch 256; 100 epochs; FFN hidden: the dataset's default (CLOA's widths)." \
        in report.context
    assert any("(10% of train held out)" in line for line in report.context)


def test_two_datasets_get_two_leaderboards_and_tables() -> None:
    specs = [{"trial_id": f"{d}-{loss}-{s}", "p_dataset": d, "loss": loss, "base_loss": "infonce",
              "addon": addon, "seed": s, "m_linear_top1": acc + 0.01 * s}
             for d, acc in (("digits", 0.9), ("cifar10", 0.5))
             for loss, addon in (("infonce", None), ("cloa+infonce", "cloa")) for s in range(3)]
    report = build_report(cell_rows(specs), figures=False)
    readme = render_markdown(report, {})
    assert "### cifar10\n" in readme and "### digits\n" in readme
    assert "### cifar10 · batch size 64" in readme and "### digits · batch size 64" in readme
    assert sorted(report.comparisons["dataset"]) == ["cifar10", "digits"]
    board = report.leaderboard
    assert board.groupby("dataset")["rank"].apply(list).to_dict() == {
        "cifar10": [1, 2], "digits": [1, 2]}


def test_html_is_self_contained_and_offline(runs: dict) -> None:
    page = (runs["a"] / "index.html").read_text()
    without_xmlns = re.sub(r'xmlns(:\w+)?="[^"]*"', "", page)
    assert "http://" not in without_xmlns and "https://" not in without_xmlns
    assert page.count('<img src="data:image/png;base64,') == len(FIGURES)
    assert "<link" not in page and " src=\"http" not in page
    assert 'id="leaderboard-digits" class="sortable"' in page


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


def test_bad_collapse_thresholds(tmp_path: Path) -> None:
    code, err = _code_and_err(str(GOLDEN), "--rankme-threshold", "0", "--out", str(tmp_path))
    assert code == 2 and "--rankme-threshold" in err
    code, err = _code_and_err(str(GOLDEN), "--nvar-threshold", "1.5", "--out", str(tmp_path))
    assert code == 2 and "--nvar-threshold" in err


def test_against_compares_two_sweeps(golden_rows: pd.DataFrame, tmp_path: Path) -> None:
    other = golden_rows.assign(sweep_id="baseline")
    other["m_linear_top1"] = other["m_linear_top1"] - 0.05
    store = tmp_path / "baseline" / "trials"
    store.mkdir(parents=True)
    pq.write_table(store_table(other), store / "b.parquet")
    out = tmp_path / "r"
    code, err = _run(str(GOLDEN), "--against", str(tmp_path), "--out", str(out),
                     "--per-label-fraction")
    assert code == 0, err
    board = pd.read_csv(out / "leaderboard.csv")
    assert sorted(set(board["sweep_id"])) == ["baseline", "golden"] and len(board) == 12
    assert sorted(set(board["label_fraction"])) == [0.1, 1.0]  # one ranking per fraction
    assert board.groupby("label_fraction")["rank"].apply(list).to_dict() == {
        0.1: [1, 2, 3, 4, 5, 6], 1.0: [1, 2, 3, 4, 5, 6]}
    against = pd.read_csv(out / "against.csv").set_index(["loss", "label_fraction"])
    assert against.loc[("infonce", 0.1), "best_diff"] == pytest.approx(0.05)
    assert against.loc[("infonce", 0.1), "dataset"] == "digits"
    assert "## Against baseline" in (out / "README.md").read_text()


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
    from bench.report.columns import report_columns
    from bench.store import SCHEMA

    default = report_columns(None)
    assert "m_linear_top1" in default and "m_h_rankme" in default and "m_h_std" not in default
    assert set(default) <= set(SCHEMA.names) | {"m_extra"}  # never a column the store lacks
    newer = ("m_val_linear_top1", "m_h_nvar", "m_h_dead", "m_num_classes")
    for col in newer:  # in the schema: read directly; not yet: via m_extra
        assert col in default if col in SCHEMA.names else "m_extra" in default
    assert {"m_ffn_top1", "m_ffn_top5"} <= set(report_columns("ffn_top1"))
    assert "m_extra" in report_columns("my_plugin_term")  # plugin metrics live in m_extra


def test_synthetic_stores_with_and_without_validation() -> None:
    from synthetic_results import synthetic_rows

    grid = {"n_epochs": 2, "losses": ("infonce", "cloa+infonce"), "seeds": (0, 1, 2),
            "lrs": (1e-2, 1e-1, 1.0)}
    new = build_report(synthetic_rows(validation=True, **grid), figures=False)
    assert new.selection == {"synthetic": "m_val_linear_top1"} and not new.banners
    assert "m_h_nvar" in dict(new.definitions)["collapse_rate"]
    assert any(line.startswith("Probes on cifar10") and "standardized features" in line
               for line in new.context)
    old = build_report(synthetic_rows(**grid), figures=False)
    assert old.selection == {"synthetic": "m_linear_top1"} and len(old.banners) == 1
    assert "RankMe" in dict(old.definitions)["collapse_rate"]
    assert set(new.comparisons["n_seeds"]) == {3}
