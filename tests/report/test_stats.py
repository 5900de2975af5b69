"""The statistics of the report: t-intervals, Holm, selection on validation, and simulations
showing that the comparison tables' significance marks have the error rate they claim.

Simulation model (one "table" = one dataset and batch size: 2 variants x 2 label fractions = 4
comparisons, Holm-corrected together, as in the demo grid): for each loss, seed and lr, a run's
true accuracy is curve(lr) + run noise (sd 1); its validation and test accuracies are that plus
independent measurement noise (sd 0.5 each), so selection on validation shares the run noise with
test but not the test's own noise. The lr is chosen per loss on the seed-mean validation value,
the per-seed test values at the chosen lr are differenced by seed. "SD" below is the seed-to-seed
standard deviation of one loss's test accuracy at one lr, sqrt(1 + 0.25).
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest
from report_fixtures import cell_rows

from bench.report.build import scored_cells
from bench.report.cells import select_cells
from bench.report.stats import (
    holm,
    mean_ci,
    paired_t,
    select_lr,
    significant,
    t_critical,
    t_p_value,
)
from bench.report.tables import best_over_lr

CURVE = np.array([0.0, 1.5, 2.0, 1.8, 0.5])  # a peaked lr curve (in units of the run noise)
SD = math.sqrt(1.0 + 0.5**2)
REPS = 5000  # tables per simulation: 20,000 comparisons, a rate's standard error < 0.2%


def test_t_distribution_matches_scipy() -> None:
    stats = pytest.importorskip("scipy.stats")
    for df in (1, 2, 3, 4, 5, 9, 30, 120):
        assert t_critical(df) == pytest.approx(stats.t.ppf(0.975, df), rel=1e-10)
        t = np.array([0.0, 0.3, 1.0, 2.5, 7.0, 40.0])
        assert t_p_value(t, df) == pytest.approx(2 * stats.t.sf(t, df), abs=1e-12)
    assert t_critical(2) == pytest.approx(4.302653, abs=1e-6)


def test_paired_t_interval() -> None:
    mean, low, high, p, se = paired_t(np.array([[0.10, 0.11, 0.12]]))
    assert mean[0] == pytest.approx(0.11) and se[0] == pytest.approx(0.01 / math.sqrt(3))
    assert (low[0], high[0]) == pytest.approx((0.11 - 4.302653 * 0.01 / math.sqrt(3),
                                               0.11 + 4.302653 * 0.01 / math.sqrt(3)))
    assert p[0] == pytest.approx(1 - 19.0526 / math.sqrt(2 + 19.0526**2), abs=1e-5)  # df = 2
    constant = paired_t(np.array([[0.1, 0.1, 0.1], [0.0, 0.0, 0.0]]))
    assert constant[3].tolist() == [0.0, 1.0]  # no spread: certain, unless there is no effect
    assert (constant[1][0], constant[2][0]) == (pytest.approx(0.1), pytest.approx(0.1))


def test_mean_ci_needs_three_seeds_for_an_interval() -> None:
    two = mean_ci(np.array([0.5, 0.6]))
    assert two.mean == pytest.approx(0.55) and two.se == pytest.approx(0.05)
    assert math.isnan(two.low) and not two.enough
    one = mean_ci(np.array([0.5, np.nan]))
    assert one.n == 1 and math.isnan(one.se)
    three = mean_ci(np.array([0.5, 0.6, 0.7]))
    assert three.enough and three.low < 0.6 < three.high


def test_holm_step_down() -> None:
    adj = holm(np.array([0.01, 0.04, 0.03, np.nan]))
    # sorted 0.01, 0.03, 0.04 -> 3 * 0.01, 2 * 0.03, 1 * 0.04 with a running maximum
    assert adj[:3] == pytest.approx([0.03, 0.06, 0.06]) and math.isnan(adj[3])
    rows = holm(np.array([[0.5, 0.9], [0.001, 0.2]]))  # each row its own family
    assert rows == pytest.approx(np.array([[1.0, 1.0], [0.002, 0.2]]))
    assert significant(np.array([0.049, 0.05, np.nan])).tolist() == [True, False, False]


def test_select_lr_on_seed_mean_ties_to_smaller_lr() -> None:
    val = np.array([[0.5, 0.7, 0.7], [0.5, 0.7, 0.7]])
    assert select_lr(val) == 1
    assert select_lr(np.array([[np.nan, 0.2], [0.9, 0.1]])) == 0  # NaN skipped in the mean
    assert select_lr(np.full((2, 3), np.nan)) == -1


def simulate(n_seeds: int, effect: float, *, reps: int = REPS, m: int = 4, seed: int = 0,
             correct: bool = True) -> float:
    """Share of comparisons flagged significant (Holm within each table of m when `correct`)."""
    rng = np.random.default_rng([seed, n_seeds])
    shape = (reps, m, 2, n_seeds, len(CURVE))  # (table, comparison, base/variant, seed, lr)
    run = CURVE + rng.normal(0, 1.0, shape)
    val = run + rng.normal(0, 0.5, shape)
    test = run + rng.normal(0, 0.5, shape)
    test[:, :, 1] += effect
    chosen = select_lr(val)[..., None, None]
    picked = np.take_along_axis(test, np.repeat(chosen, n_seeds, axis=-2), axis=-1)[..., 0]
    _, _, _, p, _ = paired_t(picked[:, :, 1] - picked[:, :, 0])
    return float(significant(holm(p) if correct else p).mean())


@pytest.mark.parametrize("n_seeds", [3, 5])
def test_null_simulation_flags_at_most_five_percent(n_seeds: int) -> None:
    """Variant and base from one distribution, lr selected on validation: measured 1.0% (3
    seeds) and 0.9% (5 seeds) of comparisons flagged after Holm, 3.9% / 3.6% before it."""
    assert simulate(n_seeds, 0.0) <= 0.05
    assert simulate(n_seeds, 0.0, correct=False) <= 0.05  # calibrated even before Holm


def test_true_difference_of_three_sd_is_flagged_in_most_repetitions() -> None:
    """Measured: 89% at 5 seeds (Holm over 4); at 3 seeds (df = 2) 20% with Holm over 4 and
    51% uncorrected: three seeds cannot show a 3-SD effect reliably, which the report says by
    printing wide intervals. A 3-SD effect on the paired difference is found at 3 seeds in 75% of
    single comparisons."""
    assert simulate(5, 3 * SD) > 0.8
    assert simulate(3, 3 * SD * math.sqrt(2), m=1) > 0.6


def _null_store(n_seeds: int, tables: int, seed: int) -> pd.DataFrame:
    """Hand-built rows: infonce and cloa+infonce from one distribution, each "batch size" one
    table with two label fractions (so 2 comparisons per table), val and test measured apart."""
    rng = np.random.default_rng(seed)
    lrs = (1e-3, 1e-2, 1e-1, 1.0)
    curve = 0.6 + 0.02 * CURVE[: len(lrs)]
    specs = []
    grid = itertools.product(range(tables), (0.1, 1.0), range(n_seeds), enumerate(lrs),
                             (("infonce", None), ("cloa+infonce", "cloa")))
    for bs, lf, s, (i, lr), (loss, addon) in grid:
        run = curve[i] + rng.normal(0, 0.02)
        specs.append({"trial_id": f"{loss}-{bs}-{lf}-{s}-{lr}", "loss": loss, "addon": addon,
                      "p_batch_size": bs + 1, "label_fraction": lf, "seed": s, "p_lr": lr,
                      "m_linear_top1": run + rng.normal(0, 0.01),
                      "m_val_linear_top1": run + rng.normal(0, 0.01)})
    return cell_rows(specs)


@pytest.mark.parametrize("n_seeds", [3, 5])
def test_null_through_the_comparison_tables(n_seeds: int) -> None:
    """The same property through best_over_lr on store rows (200 tables, 400 comparisons;
    measured 1.75% flagged at 3 seeds, 1.5% at 5)."""
    cells, _, _, selection = scored_cells(select_cells(_null_store(n_seeds, 200, n_seeds)))
    assert set(selection.values()) == {"m_val_linear_top1"}
    long = best_over_lr(cells, selection)
    flags = long.loc[long["loss"] == "cloa+infonce", "diff_significant"]
    assert flags.notna().all() and len(flags) == 400
    assert flags.astype(bool).mean() <= 0.05
