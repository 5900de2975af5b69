"""barlow_twins: parity with lightly's BarlowTwinsLoss, collapse value scale * d."""

from __future__ import annotations

import pytest
import torch
from lightly.loss import BarlowTwinsLoss as LightlyBarlowTwins

from bench.losses import build_loss

from ._util import SHAPES, assert_same, views


@pytest.mark.parametrize(("b", "d"), SHAPES)
@pytest.mark.parametrize("lambda_param", [5e-3, 0.1])
def test_matches_lightly(b: int, d: int, lambda_param: float) -> None:
    # Same BN standardisation (biased variance, eps 1e-5) and sums: factor 1 (scale=1).
    # Shapes with 4B < 3d take the B x B Gram-matrix path (hand-written backward), the others d x d.
    z1, z2, _ = views(b, d, seed=3 * b + d)
    ref = LightlyBarlowTwins(lambda_param=lambda_param, gather_distributed=False)
    assert_same(build_loss("barlow_twins", lambda_param=lambda_param), ref, z1, z2)


def test_scale_multiplies_the_loss() -> None:
    # solo-learn's barlow_loss_func = scale_loss * official loss.
    z1, z2, _ = views(16, 32)
    ref = LightlyBarlowTwins(gather_distributed=False)
    assert_same(build_loss("barlow_twins", scale=0.025), lambda a, c: 0.025 * ref(a, c), z1, z2)


@pytest.mark.parametrize(("b", "d"), [(2, 8), (16, 128), (64, 8)])
def test_collapse_value_is_scale_times_d(b: int, d: int) -> None:
    # Every row equal: batch standardisation gives 0, so C = 0 and L = scale * sum_i 1.
    z = torch.randn(1, d, dtype=torch.float64).expand(b, d)
    assert build_loss("barlow_twins")(z, z).item() == pytest.approx(d, abs=1e-9)
    assert build_loss("barlow_twins", scale=0.5)(z, 2 * z).item() == pytest.approx(d / 2, abs=1e-9)


@pytest.mark.parametrize(("b", "d"), [(6, 3), (3, 6)])
def test_gradcheck_both_paths(b: int, d: int) -> None:
    z1, z2, _ = views(b, d)
    z1.requires_grad_(True)
    z2.requires_grad_(True)
    assert torch.autograd.gradcheck(build_loss("barlow_twins", lambda_param=0.3), (z1, z2))
