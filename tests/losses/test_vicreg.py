"""vicreg: parity with lightly's VICRegLoss (official scaling), terms, collapse value 24.75."""

from __future__ import annotations

import pytest
import torch
from lightly.loss import VICRegLoss as LightlyVICReg
from lightly.loss.vicreg_loss import covariance_loss, invariance_loss, variance_loss

from bench.losses import build_loss

from ._util import SHAPES, assert_same, views


@pytest.mark.parametrize(("b", "d"), SHAPES)
def test_matches_lightly(b: int, d: int) -> None:
    # lightly = official facebookresearch/vicreg (0.5 on the variance term): factor 1.
    # B < d takes the B x B Gram path of the covariance term, B >= d the d x d one.
    z1, z2, _ = views(b, d, seed=5 * b + d)
    ref = LightlyVICReg(gather_distributed=False)
    assert_same(build_loss("vicreg"), ref, z1, z2)


def test_matches_lightly_with_other_weights() -> None:
    z1, z2, _ = views(16, 32)
    ref = LightlyVICReg(
        lambda_param=1.0, mu_param=2.0, nu_param=3.0, eps=1e-3, gather_distributed=False
    )
    ours = build_loss("vicreg", lambda_param=1.0, mu_param=2.0, nu_param=3.0, eps=1e-3)
    assert_same(ours, ref, z1, z2)


def test_terms_are_the_unweighted_terms() -> None:
    z1, z2, _ = views(16, 32)
    loss = build_loss("vicreg")
    loss(z1, z2)
    t = loss.last_terms
    assert t["invariance"].item() == pytest.approx(invariance_loss(z1, z2).item(), rel=1e-10)
    want_var = 0.5 * (variance_loss(z1) + variance_loss(z2))
    assert t["variance"].item() == pytest.approx(want_var.item(), rel=1e-10)
    want_cov = covariance_loss(z1) + covariance_loss(z2)
    assert t["covariance"].item() == pytest.approx(want_cov.item(), rel=1e-10)
    assert not any(v.requires_grad for v in t.values())


@pytest.mark.parametrize(("b", "d"), [(2, 8), (64, 128)])
def test_collapse_value(b: int, d: int) -> None:
    # Every row of both views equal: inv = 0, std_j = sqrt(eps) = 0.01 so var = 0.99, cov = 0:
    # L = 25 * 0.99 = 24.75 (the variance term of VICReg, Bardes et al. 2022, eq. 1).
    z = torch.randn(1, d, dtype=torch.float64).expand(b, d)
    assert build_loss("vicreg")(z, z).item() == pytest.approx(24.75, abs=1e-10)


@pytest.mark.parametrize(("b", "d"), [(5, 3), (3, 5)])
def test_covariance_gradcheck_both_paths(b: int, d: int) -> None:
    # B >= d: d x d covariance; B < d: B x B Gram matrix. Both have a hand-written backward.
    z1, z2, _ = views(b, d)
    z1.requires_grad_(True)
    z2.requires_grad_(True)
    assert torch.autograd.gradcheck(build_loss("vicreg"), (z1, z2))
