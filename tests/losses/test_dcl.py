"""dcl and dclw: parity with lightly's DCLLoss / DCLWLoss, collapse value log(2B - 2)."""

from __future__ import annotations

import math

import pytest
import torch
from lightly.loss import DCLLoss as LightlyDCL
from lightly.loss import DCLWLoss as LightlyDCLW

from bench.losses import build_loss

from ._util import SHAPES, assert_same, views

# lightly's DCLW builds its weights with torch.tensor(tensor), which warns.
pytestmark = pytest.mark.filterwarnings("ignore:To copy construct from a tensor")


@pytest.mark.parametrize(("b", "d"), SHAPES)
@pytest.mark.parametrize("temperature", [0.1, 0.5])
def test_dcl_matches_lightly(b: int, d: int, temperature: float) -> None:
    # lightly averages its two directions: the same mean over 2B anchors, factor 1.
    z1, z2, _ = views(b, d, seed=b * d)
    ref = LightlyDCL(temperature=temperature, gather_distributed=False)
    assert_same(build_loss("dcl", temperature=temperature), ref, z1, z2)


@pytest.mark.parametrize(("b", "d"), SHAPES)
@pytest.mark.parametrize("sigma", [0.5, 0.2])
def test_dclw_matches_lightly(b: int, d: int, sigma: float) -> None:
    # Both compute the von Mises-Fisher weights on detached inputs, so gradients agree too.
    z1, z2, _ = views(b, d, seed=b * d + 1)
    ref = LightlyDCLW(temperature=0.2, sigma=sigma, gather_distributed=False)
    assert_same(build_loss("dclw", temperature=0.2, sigma=sigma), ref, z1, z2)


def test_dclw_weights_have_mean_one() -> None:
    loss = build_loss("dclw")
    w = loss.positive_weights(torch.randn(32, dtype=torch.float64))
    assert w.mean().item() == pytest.approx(1.0, abs=1e-12)


def test_small_temperature_fallback_matches_lightly() -> None:
    z1, z2, _ = views(16, 32, dtype=torch.float32)
    ref = LightlyDCL(temperature=0.02, gather_distributed=False)
    assert_same(build_loss("dcl", temperature=0.02), ref, z1, z2, tol=1e-4)


@pytest.mark.parametrize("name", ["dcl", "dclw"])
@pytest.mark.parametrize("b", [2, 16, 64])
def test_collapse_value_is_log_2b_minus_2(name: str, b: int) -> None:
    z = torch.randn(1, 16, dtype=torch.float64).expand(b, 16)
    assert build_loss(name)(z, z).item() == pytest.approx(math.log(2 * b - 2), abs=1e-10)
