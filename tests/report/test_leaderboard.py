"""The stability leaderboard on hand-built cells: score above chance, one ranking per dataset,
lr band against one yardstick, divergence and collapse, ties with the leader."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from report_fixtures import cell_rows, grid_rows

from bench.report.build import scored_cells
from bench.report.cells import select_cells
from bench.report.leaderboard import (
    Options,
    band_decades,
    leaderboard,
    lr_widths,
    per_seed_score,
)

NAN = math.nan
LRS = (1e-3, 1e-2, 1e-1, 1.0)


def board_of(rows: pd.DataFrame, options: Options | None = None) -> pd.DataFrame:
    cells, _, _, _ = scored_cells(select_cells(rows), "m_linear_top1", options)
    return leaderboard(cells, options)


def test_lr_widths_in_decades() -> None:
    assert lr_widths(np.array([1e-3, 1e-2, 1e-1, 1.0])) == pytest.approx([1, 1, 1, 1])
    # half-way to each neighbour: 0.5 decade steps give 0.5, an uneven grid averages its steps
    assert lr_widths(np.array([0.01, 0.1, 1.0, 3.1622776601683795])) == pytest.approx(
        [1, 1, 0.75, 0.5])
    assert lr_widths(np.array([0.1])) == pytest.approx([0])


def test_score_weights_lrs_by_the_decades_they_cover() -> None:
    lrs = np.array([0.01, 0.1, 1.0, 3.1622776601683795])  # widths 1, 1, 0.75, 0.5
    score = np.array([1.0, 1.0, 0.0, 0.0])[None, None, None, :]  # (seed, bs, lf, lr)
    assert per_seed_score(score, lrs)[0] == pytest.approx(2 / 3.25)
    with_gap = np.array([1.0, NAN, 0.0, 0.0])[None, None, None, :]  # a running cell: left out
    assert per_seed_score(with_gap, lrs)[0] == pytest.approx(1 / 2.25)
    one_lr = np.array([[[[0.4]]]])
    assert per_seed_score(one_lr, np.array([0.1]))[0] == pytest.approx(0.4)


def test_band_is_the_longest_run_against_the_yardstick() -> None:
    lrs = np.array(LRS)

    def band(means: list[float], yard: float) -> float:
        return float(band_decades(np.array(means)[None, :], lrs, np.array([yard]), 0.9)[0])

    assert band([0.5, 0.95, 0.92, 0.3], 1.0) == pytest.approx(2)
    assert band([0.95, 0.2, 0.9, 0.9], 1.0) == pytest.approx(2)  # a dip splits the run
    assert band([0.95, NAN, 0.9, 0.9], 1.0) == pytest.approx(2)  # a missing cell does too
    assert band([0.5, 0.5, 0.5, 0.5], 1.0) == 0  # good for the loss itself, not for the panel
    assert band([0.0, 0.0, 0.0, 0.0], 0.0) == 0  # nothing learned anywhere: no band


def test_never_learning_ranks_below_learns_then_fails() -> None:
    """The issue's example: A sits at chance (10%) at every lr, B reaches 90% for three decades
    of lr and diverges at the fourth. B's score is 3/4 of (0.9 - 0.1) / 0.9; A's is 0."""
    a = grid_rows({lr: [0.1, 0.1, 0.1] for lr in LRS}, loss="a", base_loss="a")
    b = grid_rows({**{lr: [0.9, 0.9, 0.9] for lr in LRS[:3]}, 1.0: [NAN, NAN, NAN]},
                  loss="b", base_loss="b")
    a["trial_id"] = "a" + a["trial_id"]
    board = board_of(pd.concat([a, b], ignore_index=True)).set_index("loss")
    assert board.loc["b", "rank"] == 1 and board.loc["a", "rank"] == 2
    assert board.loc["a", "score"] == pytest.approx(0.0)
    assert board.loc["b", "score"] == pytest.approx(0.75 * 0.8 / 0.9)
    assert board.loc["a", "lr_band"] == 0 and board.loc["b", "lr_band"] == pytest.approx(3)
    assert board.loc["b", "divergence_rate"] == pytest.approx(0.25)
    assert board.loc["a", "vs_leader"] == "below"  # zero spread: intervals are points


def _noisy(loss: str, level: float, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = grid_rows({lr: list(level + rng.normal(0, 0.02, 3)) for lr in LRS},
                     loss=loss, base_loss=loss)
    rows["trial_id"] = loss + rows["trial_id"]
    return rows


def test_uniformly_better_loss_ranks_first() -> None:
    """"better" is "plain" + 5 points in every cell (same noise); "worse" is 5 points lower."""
    plain = _noisy("plain", 0.70, 1)
    better = plain.assign(loss="better", base_loss="better",
                          m_linear_top1=plain["m_linear_top1"] + 0.05,
                          trial_id="b" + plain["trial_id"])
    rows = pd.concat([plain, better, _noisy("worse", 0.65, 3)], ignore_index=True)
    board = board_of(rows)
    assert board["loss"].tolist() == ["better", "plain", "worse"]
    assert board["rank"].tolist() == [1, 2, 3]
    scores = board.set_index("loss")["score"]
    assert scores["better"] - scores["plain"] == pytest.approx(0.05 / 0.9)
    assert board["vs_leader"].iloc[0] == "leader"


def test_overlapping_intervals_are_tied_and_two_seeds_are_too_few() -> None:
    rows = pd.concat([_noisy("x", 0.70, 1), _noisy("y", 0.705, 2)], ignore_index=True)
    board = board_of(rows)
    assert board["vs_leader"].tolist() == ["leader", "tied"]
    two = board_of(rows[rows["seed"] < 2])
    assert two["vs_leader"].tolist() == ["leader", "too few seeds"]
    assert two["score_se"].notna().all() and two["score_low"].isna().all()


def test_datasets_never_share_a_ranking() -> None:
    specs = []
    for dataset, acc in (("digits", 0.9), ("cifar100", 0.5)):
        for loss in ("infonce", "vicreg"):
            for seed in range(3):
                bonus = 0.05 if loss == "vicreg" and dataset == "cifar100" else 0.0
                specs.append({"p_dataset": dataset, "loss": loss, "base_loss": loss,
                              "seed": seed, "m_linear_top1": acc + bonus + 0.001 * seed,
                              "trial_id": f"{dataset}-{loss}-{seed}"})
    board = board_of(cell_rows(specs))
    assert sorted(board["dataset"].unique()) == ["cifar100", "digits"]
    for _, part in board.groupby("dataset"):
        assert part["rank"].tolist() == [1, 2]  # each dataset ranked on its own
        assert set(part["loss"]) == {"infonce", "vicreg"}
    cifar = board[board["dataset"] == "cifar100"].set_index("loss")
    assert cifar.loc["vicreg", "rank"] == 1
    assert cifar.loc["infonce", "score"] == pytest.approx((0.501 - 0.01) / 0.99)  # 100 classes


def test_per_label_fraction_rankings() -> None:
    rows = pd.concat([grid_rows({0.1: [0.5, 0.5, 0.5]}, label_fraction=lf, trial_id=None)
                      for lf in (0.1, 1.0)], ignore_index=True)
    rows["trial_id"] = [f"t{i}" for i in range(len(rows))]
    board = board_of(rows, Options(per_label_fraction=True))
    assert board["label_fraction"].tolist() == [0.1, 1.0]
    assert board_of(rows)["label_fraction"].tolist() == ["all"]


def test_collapse_rate_uses_nvar_and_dead_units() -> None:
    rows = grid_rows({0.1: [0.5, 0.5, NAN, 0.5, 0.5]})  # seed 2 diverged
    rows["m_h_nvar"] = [0.01, 0.5, NAN, 0.5, 0.5]  # seed 0: collapsed to a direction
    rows["m_h_dead"] = [0.0, 0.0, NAN, 0.95, 0.0]  # seed 3: dimensions dead
    rows.loc[rows["seed"] == 4, ["final", "status"]] = [False, "running"]  # not counted
    board = board_of(rows).iloc[0]
    assert board["collapse_rate"] == pytest.approx(2 / 4)
    assert board["divergence_rate"] == pytest.approx(1 / 4)
    lenient = board_of(rows, Options(nvar_threshold=0.001, dead_threshold=0.99)).iloc[0]
    assert lenient["collapse_rate"] == 0


def test_collapse_falls_back_to_rankme_on_older_stores() -> None:
    rows = grid_rows({0.1: [0.5, 0.5, 0.5]})  # no m_h_nvar: the older rule
    rows["m_h_rankme"] = [1.2, 5.0, 50.0]
    assert board_of(rows, Options(rankme_threshold=2.0))["collapse_rate"].iloc[0] == (
        pytest.approx(1 / 3))
    assert board_of(rows, Options(rankme_threshold=6.0))["collapse_rate"].iloc[0] == (
        pytest.approx(2 / 3))


def test_best_is_selected_on_validation() -> None:
    rows = grid_rows({0.01: [0.6, 0.6, 0.6], 0.1: [0.7, 0.7, 0.7]})
    rows["m_val_linear_top1"] = np.where(rows["p_lr"] == 0.01, 0.8, 0.5)  # val prefers 0.01
    assert board_of(rows)["best"].iloc[0] == pytest.approx(0.6)
    assert board_of(rows.drop(columns="m_val_linear_top1"))["best"].iloc[0] == pytest.approx(0.7)


def test_one_seed_has_no_uncertainty() -> None:
    board = board_of(grid_rows({0.1: [0.5], 1.0: [0.6]}))
    assert math.isnan(board["score_se"].iloc[0]) and board["best"].iloc[0] == 0.6


def test_golden_leaderboard_by_hand(golden_rows: pd.DataFrame) -> None:
    """From make_golden: chance 0.1 (digits), score = (acc - 0.1) / 0.9, three lrs one decade
    apart (equal weights). infonce per seed s: lf 0.1 cells sum (acc - 0.1) = 2.06 + 0.05 s over
    6 cells (the diverged lr 1 at batch 64 scores 0), lf 1: 2.56 + 0.05 s, so its score per seed is
    (2.31 + 0.05 s) / 5.4 and the mean 2.36 / 5.4. cloa+infonce: (3.56 + 0.12 s) / 5.4. vicreg's
    running cell (lr 0.01, batch 64, seed 2) is left out of seed 2's mean."""
    cells, _, _, _ = scored_cells(select_cells(golden_rows))
    board = leaderboard(cells).set_index("loss")
    assert board["rank"].to_dict() == {"cloa+infonce": 1, "vicreg": 2, "infonce": 3}
    assert board.loc["infonce", "score"] == pytest.approx(2.36 / 5.4)
    assert board.loc["cloa+infonce", "score"] == pytest.approx(3.68 / 5.4)
    seed2 = ((2.14 / 5 + 2.64 / 5) / 2) / 0.9
    assert board.loc["vicreg", "score"] == pytest.approx((2.82 / 5.4 + 2.76 / 5.4 + seed2) / 3)
    se = 0.05 / 5.4 / math.sqrt(3)  # per-seed scores step by 0.05 / 5.4: sd = the step
    assert board.loc["infonce", "score_se"] == pytest.approx(se)
    assert board.loc["infonce", "score_low"] == pytest.approx(2.36 / 5.4 - 4.302653 * se)
    assert board["vs_leader"].to_dict() == {"cloa+infonce": "leader", "vicreg": "below",
                                            "infonce": "below"}
    # best: the val-selected (batch 256; lr 0.1, 1 and 0.01) test accuracy, mean over fractions
    assert board["best"].to_dict() == pytest.approx(
        {"cloa+infonce": 0.79, "vicreg": 0.60, "infonce": 0.68})
    # only cloa+infonce reaches 90% of the panel's best score (its own lr 1) at two lrs
    assert board["lr_band"].to_dict() == {"cloa+infonce": 2.0, "vicreg": 0.0, "infonce": 0.0}
    assert board.loc["infonce", ["divergence_rate", "collapse_rate"]].tolist() == pytest.approx(
        [6 / 36, 6 / 36])
    assert board.loc["vicreg", ["cells_done", "cells_seen"]].tolist() == [34, 36]
