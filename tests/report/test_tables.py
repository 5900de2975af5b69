"""Cell selection, metric choice and the paper-style comparison tables."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from report_fixtures import EXPECTED, cell_rows

from bench.report.cells import (
    MetricError,
    completeness,
    resolve_metric,
    score,
    select_cells,
    top5_of,
)
from bench.report.tables import best_over_lr, comparison_wide


def test_final_row_wins_else_latest_row() -> None:
    rows = cell_rows([
        {"trial_id": "a", "epoch": 1, "final": False, "status": "running", "m_knn_top1": 0.1},
        {"trial_id": "a", "epoch": 2, "final": True, "m_knn_top1": 0.2},
        {"trial_id": "b", "epoch": 1, "final": False, "status": "running", "m_knn_top1": 0.3},
        {"trial_id": "b", "epoch": 3, "final": False, "status": "running", "m_knn_top1": 0.4},
        {"trial_id": "b", "epoch": 2, "final": False, "status": "running", "m_knn_top1": 0.5},
    ])
    cells = select_cells(rows).set_index("trial_id")
    assert cells.loc["a", "m_knn_top1"] == 0.2 and cells.loc["a", "finished"]
    assert cells.loc["b", "m_knn_top1"] == 0.4 and not cells.loc["b", "finished"]


def test_one_cell_per_label_fraction() -> None:
    rows = cell_rows([{"trial_id": "a", "label_fraction": f} for f in (0.1, 1.0)])
    assert sorted(select_cells(rows)["label_fraction"]) == [0.1, 1.0]


def test_metric_default_prefix_and_unknown() -> None:
    cells = select_cells(cell_rows([{}]))
    assert resolve_metric(cells) == "m_linear_top1"
    assert resolve_metric(cells, "knn_top1") == resolve_metric(cells, "m_knn_top1") == "m_knn_top1"
    with pytest.raises(MetricError, match=r"unknown metric 'nope'.*h_rankme, knn_top1, linear_top1"):
        resolve_metric(cells, "nope")
    no_linear = select_cells(cell_rows([{"m_linear_top1": math.nan}]))
    assert resolve_metric(no_linear) == "m_knn_top1"
    assert top5_of("m_linear_top1", cells) is None


def test_score_diverged_is_zero_and_running_is_missing() -> None:
    cells = select_cells(cell_rows([
        {"trial_id": "a", "m_linear_top1": 0.7},
        {"trial_id": "b", "status": "diverged", "m_linear_top1": math.nan},
        {"trial_id": "c", "status": "running", "final": False, "m_linear_top1": math.nan},
    ])).set_index("trial_id")
    s = score(cells.reset_index(), "m_linear_top1").to_numpy()
    assert s[0] == 0.7 and s[1] == 0.0 and np.isnan(s[2])


def test_entries_split_by_loss_params() -> None:
    rows = cell_rows([{"trial_id": "a", "p_loss_params": '{"temperature": 0.1}'},
                      {"trial_id": "b", "p_loss_params": '{"temperature": 0.5}'}])
    assert sorted(select_cells(rows)["entry"]) == ["infonce (temperature=0.1)",
                                                   "infonce (temperature=0.5)"]


def test_golden_tables_match_expected_csv(golden_rows: pd.DataFrame) -> None:
    from bench.report.render import _csv

    cells = select_cells(golden_rows)
    long = best_over_lr(cells, "m_linear_top1", "m_linear_top5")
    for bs in (64, 256):
        got = _csv(long[long["batch_size"] == bs]).decode()
        assert got == (EXPECTED / f"comparison_bs{bs}.csv").read_text()


def test_golden_cells_by_hand(golden_rows: pd.DataFrame) -> None:
    """make_golden.accuracy: lr shape + 0.10 (all labels) + 0.02 (batch 256) + 0.01 * seed."""
    long = best_over_lr(select_cells(golden_rows), "m_linear_top1", "m_linear_top5")
    row = long.set_index(["loss", "batch_size", "label_fraction"]).loc
    r = row[("infonce", 64, 0.1)]  # lr 1 diverged (scores 0), best lr 0.1: 0.60 + seeds
    assert (r["best_lr"], r["n_seeds"], r["n_diverged"]) == (0.1, 3, 3)
    assert r["top1_mean"] == pytest.approx(0.61) and r["top1_std"] == pytest.approx(0.01)
    v = row[("cloa+infonce", 256, 1.0)]
    assert v["best_lr"] == 1.0 and v["top1_mean"] == pytest.approx(0.83)
    assert v["diff"] == pytest.approx(0.10) and v["diff_paired"] and v["diff_significant"]
    assert row[("vicreg", 64, 0.1)]["n_running"] == 1
    assert list(dict.fromkeys(long["loss"])) == ["infonce", "cloa+infonce", "vicreg"]


def test_wide_table_text(golden_rows: pd.DataFrame) -> None:
    long = best_over_lr(select_cells(golden_rows), "m_linear_top1", "m_linear_top5")
    wide = comparison_wide(long, "golden", 64).set_index("loss")
    assert wide.loc["infonce", "10% labels top-1"] == "0.6100 ± 0.0100 (n=3)"
    assert wide.loc["vicreg", "10% labels top-1"] == "0.5900 ± 0.0100 (n=3) · 1 running"
    assert wide.loc["cloa+infonce", "100% labels Δ top-1 vs base [95% CI]"] == (
        "+0.1000 [0.1000, 0.1000]*")


def test_unpaired_difference_when_seeds_differ() -> None:
    rows = pd.concat([
        cell_rows([{"trial_id": f"b{s}", "seed": s, "m_linear_top1": 0.5 + 0.01 * s}
                   for s in range(3)]),
        cell_rows([{"trial_id": f"v{s}", "seed": s, "loss": "cloa+infonce", "addon": "cloa",
                    "m_linear_top1": 0.6 + 0.01 * s} for s in range(1, 4)]),
    ], ignore_index=True)
    long = best_over_lr(select_cells(rows), "m_linear_top1").set_index("loss")
    assert long.loc["cloa+infonce", "diff"] == pytest.approx(0.11)
    assert long.loc["cloa+infonce", "diff_paired"] == False  # noqa: E712 (pandas boolean)


def test_completeness_counts(golden_rows: pd.DataFrame) -> None:
    comp = completeness(select_cells(golden_rows)).set_index("loss")
    assert comp.loc["vicreg", ["trials_seen", "trials_done", "trials_running"]].tolist() == [
        18, 17, 1]
    assert comp.loc["infonce", "trials_diverged"] == 3


def test_a_sweep_over_two_datasets_never_mixes_them() -> None:
    """The demo sweeps digits and synthetic subspaces: each (loss, dataset) is its own entry, and
    a CLOA variant is compared with the base loss of its own dataset."""
    specs = []
    for dataset, acc in (("digits", 0.9), ("synthetic_subspaces", 0.5)):
        for loss, base, addon, bonus in (("infonce", "infonce", None, 0.0),
                                         ("cloa+infonce", "infonce", "cloa", 0.05)):
            for seed in (0, 1):
                specs.append({"p_dataset": dataset, "loss": loss, "base_loss": base,
                              "addon": addon, "seed": seed, "m_linear_top1": acc + bonus,
                              "trial_id": f"{dataset}-{loss}-{seed}"})
    cells = select_cells(cell_rows(specs))
    assert set(cells["entry"]) == {"infonce · digits", "cloa+infonce · digits",
                                   "infonce · synthetic_subspaces",
                                   "cloa+infonce · synthetic_subspaces"}
    long = best_over_lr(cells, "m_linear_top1").set_index("loss")
    assert long.loc["infonce · digits", "top1_mean"] == pytest.approx(0.9)
    assert long.loc["infonce · synthetic_subspaces", "top1_mean"] == pytest.approx(0.5)
    assert long.loc["cloa+infonce · synthetic_subspaces", "diff"] == pytest.approx(0.05)
    # one dataset: names stay plain
    plain = select_cells(cell_rows([{"p_dataset": "digits"}]))
    assert list(plain["entry"]) == ["infonce"]
