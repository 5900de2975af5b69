"""Cell selection, metric choice and the paper-style comparison tables."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from report_fixtures import EXPECTED, cell_rows

from bench.report.build import scored_cells
from bench.report.cells import (
    MetricError,
    chance,
    completeness,
    resolve_metric,
    score,
    select_cells,
    selection_columns,
    top5_of,
)
from bench.report.tables import best_over_lr, comparison_wide, comparisons

OLD_STORE = ["m_val_knn_top1", "m_val_linear_top1", "m_val_linear_top5", "m_h_nvar", "m_h_dead",
             "m_num_classes"]


def long_of(rows: pd.DataFrame) -> pd.DataFrame:
    cells, _, _, selection = scored_cells(select_cells(rows), "m_linear_top1")
    return best_over_lr(cells, selection)


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


def test_score_diverged_is_chance_and_running_is_missing() -> None:
    cells = select_cells(cell_rows([
        {"trial_id": "a", "m_linear_top1": 0.7},
        {"trial_id": "b", "status": "diverged", "m_linear_top1": math.nan},
        {"trial_id": "c", "status": "running", "final": False, "m_linear_top1": math.nan},
    ]))
    s = score(cells, "m_linear_top1", chance(cells, "m_linear_top1")).to_numpy()
    assert s[0] == 0.7 and s[1] == pytest.approx(0.1) and np.isnan(s[2])  # digits: 10 classes


def test_chance_from_class_count_or_dataset_name() -> None:
    cells = select_cells(cell_rows([
        {"trial_id": "a", "p_dataset": "cifar100"},
        {"trial_id": "b", "p_dataset": "synthetic_subspaces", "p_dataset_params": '{"k": 4}'},
        {"trial_id": "c", "p_dataset": "synthetic_subspaces", "p_dataset_params": "{}"},
        {"trial_id": "d", "p_dataset": "my_data", "m_num_classes": 20.0},
        {"trial_id": "e", "p_dataset": "other_data"},  # no count stored anywhere: unknown
        {"trial_id": "f", "p_dataset": "tiny_imagenet"},
    ])).set_index("trial_id")
    top1 = chance(cells, "m_linear_top1").loc[list("abcdef")]
    assert top1.tolist() == pytest.approx([0.01, 0.25, 1 / 3, 0.05, 0.0, 0.005])
    assert chance(cells, "m_knn_top5")["a"] == pytest.approx(0.05)
    assert chance(cells, "m_h_rankme").eq(0).all()  # not an accuracy


def test_a_cell_without_a_class_count_takes_its_datasets() -> None:
    """A plugin dataset's trial that diverged before its first evaluation stored no class
    count: its chance level is its dataset's (from the other cells), not 0."""
    cells = select_cells(cell_rows([
        {"trial_id": "a", "p_dataset": "my_data", "m_num_classes": 20.0},
        {"trial_id": "b", "p_dataset": "my_data", "status": "diverged", "m_linear_top1": math.nan,
         "m_num_classes": math.nan},
    ])).set_index("trial_id")
    assert chance(cells, "m_linear_top1").loc[["a", "b"]].tolist() == pytest.approx([0.05, 0.05])


def test_selection_column_per_sweep() -> None:
    rows = cell_rows([{"trial_id": "a", "sweep_id": "new", "m_val_linear_top1": 0.5},
                      {"trial_id": "b", "sweep_id": "old", "m_val_linear_top1": math.nan}])
    assert selection_columns(select_cells(rows), "m_linear_top1") == {
        "new": "m_val_linear_top1", "old": "m_linear_top1"}
    plain = select_cells(cell_rows([{}]))
    assert selection_columns(plain, "m_knn_top1") == {"s": "m_knn_top1"}


def test_entries_split_by_loss_params() -> None:
    rows = cell_rows([{"trial_id": "a", "p_loss_params": '{"temperature": 0.1}'},
                      {"trial_id": "b", "p_loss_params": '{"temperature": 0.5}'}])
    assert sorted(select_cells(rows)["entry"]) == ["infonce (temperature=0.1)",
                                                   "infonce (temperature=0.5)"]


def test_golden_tables_match_expected_csv(golden_rows: pd.DataFrame) -> None:
    from bench.report.render import _csv

    long = long_of(golden_rows)
    for bs in (64, 256):
        got = _csv(long[long["batch_size"] == bs]).decode()
        assert got == (EXPECTED / f"comparison_bs{bs}.csv").read_text()
    got = _csv(comparisons(long, "m_linear_top1")).decode()
    assert got == (EXPECTED / "comparisons.csv").read_text()


def test_golden_cells_by_hand(golden_rows: pd.DataFrame) -> None:
    """make_golden.accuracy: lr shape + 0.10 (all labels) + 0.02 (batch 256) + step * seed,
    step 0.02 for cloa+infonce and 0.01 otherwise; validation equal to test except vicreg's,
    which prefers lr 0.01 (0.60 vs 0.55) where its test accuracy is lower (0.52 vs 0.58)."""
    row = long_of(golden_rows).set_index(["loss", "batch_size", "label_fraction"]).loc
    r = row[("infonce", 64, 0.1)]  # lr 1 diverged (scores chance), best lr 0.1: 0.60 + seeds
    assert (r["best_lr"], r["n_seeds"], r["n_diverged"]) == (0.1, 3, 3)
    assert r["top1_mean"] == pytest.approx(0.61) and r["top1_std"] == pytest.approx(0.01)
    assert r["selected_on"] == "m_val_linear_top1"
    v = row[("cloa+infonce", 256, 1.0)]
    assert (v["best_lr"], v["base_lr"]) == (1.0, 0.1) and v["top1_mean"] == pytest.approx(0.84)
    # per seed: (0.80 + 0.02 s) - (0.70 + 0.01 s) = 0.10 + 0.01 s -> mean 0.11, sd 0.01, df 2
    half = 4.302653 * 0.01 / math.sqrt(3)
    assert v["diff"] == pytest.approx(0.11) and v["diff_n"] == 3
    assert (v["diff_low"], v["diff_high"]) == pytest.approx((0.11 - half, 0.11 + half))
    t = 0.11 / (0.01 / math.sqrt(3))
    assert v["diff_p"] == pytest.approx(1 - t / math.sqrt(2 + t * t))
    assert v["diff_p_holm"] == pytest.approx(2 * v["diff_p"])  # 2 equal p-values per table
    assert v["diff_significant"]
    w = row[("vicreg", 256, 0.1)]  # chosen on validation: lr 0.01, where test is 0.52 + 0.02
    assert w["best_lr"] == 0.01 and w["top1_mean"] == pytest.approx(0.55)
    assert row[("vicreg", 64, 0.1)]["n_running"] == 1
    assert row[("vicreg", 64, 0.1)]["n_seeds"] == 2
    assert row[("infonce", 256, 0.1)]["n_collapsed"] == 3
    assert list(dict.fromkeys(long_of(golden_rows)["loss"])) == ["infonce", "cloa+infonce",
                                                                  "vicreg"]


def test_store_without_validation_selects_on_test(golden_rows: pd.DataFrame) -> None:
    long = long_of(golden_rows.drop(columns=OLD_STORE)).set_index(
        ["loss", "batch_size", "label_fraction"])
    w = long.loc[("vicreg", 256, 0.1)]
    assert w["selected_on"] == "m_linear_top1"
    assert w["best_lr"] == 0.1 and w["top1_mean"] == pytest.approx(0.61)  # the test optimum


def test_wide_table_text(golden_rows: pd.DataFrame) -> None:
    long = long_of(golden_rows)
    wide = comparison_wide(long, "golden", "digits", 64).set_index("loss")
    assert wide.loc["infonce", "10% labels top-1"] == "0.6100 ± 0.0100 (n=3)"
    assert wide.loc["vicreg", "10% labels top-1"] == "0.5250 ± 0.0071 (n=2) · 1 running"
    assert wide.loc["cloa+infonce", "100% labels Δ top-1 vs base [95% CI]"] == (
        "+0.1100 [0.0852, 0.1348]* (n=3)")
    assert wide.loc["vicreg", "10% labels lr (chosen on val)"] == "0.01"
    old = comparison_wide(long_of(golden_rows.drop(columns=OLD_STORE)), "golden", "digits", 64)
    assert "10% labels lr (chosen on TEST)" in old.columns


def test_fewer_than_three_paired_seeds_is_too_few() -> None:
    """Seeds only one side has are left out of the pairing; 2 paired seeds: estimate only."""
    rows = pd.concat([
        cell_rows([{"trial_id": f"b{s}", "seed": s, "m_linear_top1": 0.5 + 0.01 * s}
                   for s in range(3)]),
        cell_rows([{"trial_id": f"v{s}", "seed": s, "loss": "cloa+infonce", "addon": "cloa",
                    "m_linear_top1": 0.6 + 0.02 * s} for s in range(1, 4)]),
    ], ignore_index=True)
    long = long_of(rows).set_index("loss")
    v = long.loc["cloa+infonce"]
    assert v["diff"] == pytest.approx(0.115) and v["diff_n"] == 2  # seeds 1, 2
    assert v["diff_note"] == "too few seeds" and pd.isna(v["diff_significant"])
    assert math.isnan(v["diff_low"])
    wide = comparison_wide(long.reset_index(), "s", "digits", 64).set_index("loss")
    assert wide.loc["cloa+infonce", "100% labels Δ top-1 vs base [95% CI]"] == (
        "+0.1150 (n=2, too few seeds)")


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
    long = long_of(cell_rows(specs)).set_index("loss")
    assert long.loc["infonce · digits", "dataset"] == "digits"
    assert long.loc["infonce · digits", "top1_mean"] == pytest.approx(0.9)
    assert long.loc["infonce · synthetic_subspaces", "top1_mean"] == pytest.approx(0.5)
    assert long.loc["cloa+infonce · synthetic_subspaces", "diff"] == pytest.approx(0.05)
    # one dataset: names stay plain
    plain = select_cells(cell_rows([{"p_dataset": "digits"}]))
    assert list(plain["entry"]) == ["infonce"]


def test_an_ablation_grid_keeps_each_setting_apart_and_pairs_within_it() -> None:
    """A grid over optimizer (cloa_collapse_ablations.yaml) must not pool AdamW and SGD trials
    into one entry, and a CLOA variant is compared with the base loss of its own setting."""
    specs = []
    for optimizer, acc in (("sgd", 0.9), ("adamw", 0.4)):
        for loss, base, addon, bonus in (("infonce", "infonce", None, 0.0),
                                         ("cloa+infonce", "infonce", "cloa", 0.05)):
            for seed in (0, 1, 2):
                specs.append({"p_optimizer": optimizer, "loss": loss, "base_loss": base,
                              "addon": addon, "seed": seed, "m_linear_top1": acc + bonus,
                              "trial_id": f"{optimizer}-{loss}-{seed}"})
    cells = select_cells(cell_rows(specs))
    assert set(cells["entry"]) == {"infonce [optimizer=sgd]", "cloa+infonce [optimizer=sgd]",
                                   "infonce [optimizer=adamw]", "cloa+infonce [optimizer=adamw]"}
    long = long_of(cell_rows(specs)).set_index("loss")
    assert long.loc["infonce [optimizer=adamw]", "top1_mean"] == pytest.approx(0.4)
    assert long.loc["cloa+infonce [optimizer=sgd]", "diff"] == pytest.approx(0.05)
    assert long.loc["cloa+infonce [optimizer=adamw]", "diff"] == pytest.approx(0.05)


def test_a_loss_parameter_grid_pairs_each_variant_with_the_base_at_its_own_parameters() -> None:
    """cloa_collapse_temperature.yaml: infonce and cloa+infonce at three temperatures. Each
    cloa+infonce entry is compared with infonce at the same temperature (the entry names differ
    from the base loss's name, so pairing by name found none)."""
    specs = []
    for temp, acc in ((0.1, 0.9), (1.0, 0.5)):
        for loss, base, addon, bonus in (("infonce", "infonce", None, 0.0),
                                         ("cloa+infonce", "infonce", "cloa", 0.05 + temp / 10)):
            for seed in (0, 1, 2):
                specs.append({"loss": loss, "base_loss": base, "addon": addon, "seed": seed,
                              "p_loss_params": f'{{"temperature": {temp}}}',
                              "m_linear_top1": acc + bonus, "trial_id": f"{temp}-{loss}-{seed}"})
    rows = long_of(cell_rows(specs))
    pairs = comparisons(rows, "m_linear_top1")  # comparisons.csv lists both, named by their base
    assert sorted(zip(pairs["variant"], pairs["base"])) == [
        ("cloa+infonce (temperature=0.1)", "infonce (temperature=0.1)"),
        ("cloa+infonce (temperature=1.0)", "infonce (temperature=1.0)")]
    long = rows.set_index("loss")
    assert long.loc["cloa+infonce (temperature=0.1)", "diff"] == pytest.approx(0.06)
    assert long.loc["cloa+infonce (temperature=1.0)", "diff"] == pytest.approx(0.15)
    assert math.isnan(long.loc["infonce (temperature=0.1)", "diff"])


def test_one_dataset_name_with_other_parameters_is_another_dataset() -> None:
    """`--against` a sweep on the same dataset with other dataset_params (or a grid over them):
    never one ranking, one chance level or one table for both."""
    rows = cell_rows([
        {"trial_id": "a", "sweep_id": "mine", "p_dataset": "synthetic_subspaces",
         "p_dataset_params": '{"k": 3, "n_train": 1024}'},
        {"trial_id": "b", "sweep_id": "theirs", "p_dataset": "synthetic_subspaces",
         "p_dataset_params": '{"k": 4, "n_train": 1024}'},
        {"trial_id": "c", "sweep_id": "mine", "p_dataset": "digits", "p_dataset_params": "{}"},
    ])
    cells = select_cells(rows).set_index("trial_id")
    assert cells.loc["a", "dataset"] == "synthetic_subspaces (k=3)"
    assert cells.loc["b", "dataset"] == "synthetic_subspaces (k=4)"
    assert cells.loc["c", "dataset"] == "digits"
    assert chance(cells, "m_linear_top1").loc[["a", "b"]].tolist() == pytest.approx([1 / 3, 0.25])
    assert cells.loc["a", "entry"] == "infonce · synthetic_subspaces (k=3)"  # one sweep, 2 datasets
