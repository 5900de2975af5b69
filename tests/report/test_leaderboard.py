"""Scoring functions on hand-built frames: robust lr range, collapse rate, bootstrap, ranking."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from report_fixtures import grid_rows

from bench.report.cells import select_cells
from bench.report.leaderboard import Options, leaderboard, lr_widths, rank, statistics
from bench.report.stats import bootstrap_diff, rng_for

NAN = math.nan


def test_lr_widths_in_decades() -> None:
    assert lr_widths(np.array([1e-3, 1e-2, 1e-1, 1.0])) == pytest.approx([1, 1, 1, 1])
    # half-way to each neighbour: 0.5 decade steps give 0.5, an uneven grid averages its steps
    assert lr_widths(np.array([0.01, 0.1, 1.0, 3.1622776601683795])) == pytest.approx(
        [1, 1, 0.75, 0.5])
    assert lr_widths(np.array([0.1])) == pytest.approx([0])


def _robust(acc: list[float], lrs: tuple[float, ...] = (1e-3, 1e-2, 1e-1, 1.0)) -> float:
    m = np.array(acc, dtype=float)[None, None, :]  # one batch size, one label fraction
    return float(statistics(m, np.array(lrs))["robust_decades"])


def test_robust_range_longest_contiguous_run() -> None:
    assert _robust([0.5, 0.95, 0.92, 0.3]) == pytest.approx(2)  # >= 0.855 at two adjacent lrs
    assert _robust([0.95, 0.2, 0.9, 0.9]) == pytest.approx(2)  # a dip splits the run
    assert _robust([0.95, NAN, 0.9, 0.9]) == pytest.approx(2)  # a missing cell does too
    assert _robust([0.9, 0.9, 0.9, 0.9]) == pytest.approx(4)
    assert _robust([0.0, 0.0, 0.0, 0.0]) == 0  # nothing learned: no robust range


def test_robust_range_uses_best_at_each_label_fraction_and_averages_panels() -> None:
    # two batch sizes x one fraction; the second batch size holds 90% of the best at 3 lrs
    m = np.array([[[0.5, 1.0, 0.5, 0.5]], [[0.9, 0.95, 0.92, 0.1]]])
    stats = statistics(m, np.array([1e-3, 1e-2, 1e-1, 1.0]))
    assert float(stats["robust_decades"]) == pytest.approx((1 + 3) / 2)
    assert float(stats["best"]) == 1.0 and float(stats["worst"]) == pytest.approx(0.1)
    assert float(stats["bs_sensitivity"]) == pytest.approx(0.05)


def test_bs_sensitivity_needs_two_batch_sizes() -> None:
    assert math.isnan(float(statistics(np.array([[[0.5, 0.6]]]), np.array([0.1, 1.0]))[
        "bs_sensitivity"]))


def test_collapse_rate_counts_diverged_and_low_rankme() -> None:
    rows = grid_rows({0.1: [0.5, 0.5, NAN, 0.5]})  # seed 2 diverged
    rows.loc[rows["seed"] == 0, "m_h_rankme"] = 1.2  # collapsed but finished
    rows.loc[rows["seed"] == 1, "m_h_rankme"] = 5.0
    rows.loc[rows["seed"] == 3, ["final", "status"]] = [False, "running"]  # not counted
    cells = select_cells(rows)
    board = leaderboard(cells, "m_linear_top1", Options(rankme_threshold=2.0, n_boot=200))
    assert board["collapse_rate"].iloc[0] == pytest.approx(2 / 3)
    board = leaderboard(cells, "m_linear_top1", Options(rankme_threshold=6.0, n_boot=200))
    assert board["collapse_rate"].iloc[0] == pytest.approx(1.0)


def test_bootstrap_paired_interval() -> None:
    a = {s: 0.6 + 0.01 * s for s in range(5)}
    same = bootstrap_diff(a, {s: v - 0.1 for s, v in a.items()}, rng=rng_for("x"))
    assert same.paired and same.diff == pytest.approx(0.1)
    assert (same.low, same.high) == pytest.approx((0.1, 0.1)) and same.significant
    noise = np.random.default_rng(0).normal(0, 0.05, size=(2, 10))
    b = {s: 0.6 + noise[0, s] for s in range(10)}
    c = {s: 0.6 + noise[1, s] for s in range(10)}
    d = bootstrap_diff(b, c, rng=rng_for("y"))
    assert d.low < d.diff < d.high and not d.significant  # no true effect: 0 inside


def test_bootstrap_unpaired_and_too_few_seeds() -> None:
    d = bootstrap_diff({0: 0.9, 1: 0.91, 2: 0.92}, {3: 0.5, 4: 0.52, 5: 0.51}, rng=rng_for("z"))
    assert not d.paired and d.significant and d.low > 0.35
    one = bootstrap_diff({0: 0.9}, {0: 0.5}, rng=rng_for("w"))
    assert one.diff == pytest.approx(0.4) and math.isnan(one.low) and not one.significant


def test_bootstrap_is_deterministic() -> None:
    a, b = {0: 0.1, 1: 0.3, 2: 0.2}, {0: 0.0, 1: 0.25, 2: 0.1}
    assert bootstrap_diff(a, b, rng=rng_for("k")) == bootstrap_diff(a, b, rng=rng_for("k"))


def test_golden_leaderboard_by_hand(golden_rows: pd.DataFrame) -> None:
    """Values worked out from make_golden.accuracy (see the module docstring there)."""
    board = leaderboard(select_cells(golden_rows), "m_linear_top1").set_index("loss")
    assert board["rank"].to_dict() == {"cloa+infonce": 1, "vicreg": 2, "infonce": 3}
    expect = {  # best, robust_decades, worst, collapse_rate, bs_sensitivity
        "infonce": (0.68, 1.0, 0.0, 1 / 3, 0.02),
        "cloa+infonce": (0.78, 2.0, 0.61, 0.0, 0.02),
        "vicreg": (0.66, 1.5, 0.46, 0.0, 0.02),
    }
    cols = ["best", "robust_decades", "worst", "collapse_rate", "bs_sensitivity"]
    for loss, values in expect.items():
        assert board.loc[loss, cols].tolist() == pytest.approx(values)
    assert board.loc["vicreg", "mean_rank"] == pytest.approx((3 + 2 + 2 + 1.5 + 2) / 5)
    assert board.loc["infonce", "best_se"] > 0 and board.loc["infonce", "worst_se"] == 0


def test_one_seed_has_no_uncertainty() -> None:
    board = leaderboard(select_cells(grid_rows({0.1: [0.5], 1.0: [0.6]})), "m_linear_top1")
    assert math.isnan(board["best_se"].iloc[0]) and board["best"].iloc[0] == 0.6


def test_rank_rule_and_ties() -> None:
    table = pd.DataFrame({"loss": ["a", "b", "c"], "sweep_id": "s",
                          "best": [0.8, 0.9, 0.8], "robust_decades": [2.0, 1.0, 2.0],
                          "worst": [0.1, 0.1, 0.1], "collapse_rate": [0.0, 0.0, 0.0],
                          "bs_sensitivity": [NAN, NAN, NAN]})
    ranked = rank(table)
    # a and c tie on every column; b wins on best but loses on robust range: all mean rank 2
    assert ranked["loss"].tolist() == ["b", "a", "c"]
    assert ranked["mean_rank"].tolist() == pytest.approx([2.0, 2.0, 2.0])
