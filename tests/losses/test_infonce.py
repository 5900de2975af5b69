"""infonce: parity with lightly's and pytorch-metric-learning's NT-Xent, collapse, CLOA Thm 3.1."""

from __future__ import annotations

import math

import pytest
import torch
from lightly.loss import NTXentLoss as LightlyNTXent
from pytorch_metric_learning.losses import NTXentLoss as PMLNTXent

from bench.losses import build_loss

from ._util import SHAPES, assert_same, views


@pytest.mark.parametrize(("b", "d"), SHAPES)
@pytest.mark.parametrize("temperature", [0.5, 0.1])
def test_matches_lightly(b: int, d: int, temperature: float) -> None:
    # lightly's NTXentLoss is the same mean over 2B anchors: factor 1.
    ref = LightlyNTXent(temperature=temperature, gather_distributed=False)
    z1, z2, _ = views(b, d, seed=b + d)
    assert_same(build_loss("infonce", temperature=temperature), ref, z1, z2)


@pytest.mark.parametrize(("b", "d"), SHAPES)
def test_matches_pytorch_metric_learning(b: int, d: int) -> None:
    # PML: embeddings = cat(z1, z2), labels = cat(arange B, arange B); one term per positive pair
    # (2B of them), MeanReducer: the same mean over 2B anchors (it adds a tiny eps in the log).
    pml = PMLNTXent(temperature=0.3)

    def ref(a: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        idx = torch.arange(a.shape[0])
        return pml(torch.cat([a, c]), torch.cat([idx, idx]))

    z1, z2, _ = views(b, d, seed=7 * b + d)
    assert_same(build_loss("infonce", temperature=0.3), ref, z1, z2)


@pytest.mark.parametrize(("temperature", "dtype"), [(0.02, torch.float32), (0.002, torch.float64)])
def test_small_temperature_fallback_matches_lightly(temperature: float, dtype: torch.dtype) -> None:
    # Below the fused kernel's range (exp(1/tau) too large for the dtype) a plain logsumexp runs.
    z1, z2, _ = views(16, 32, dtype=dtype)
    ref = LightlyNTXent(temperature=temperature, gather_distributed=False)
    tol = 1e-4 if dtype == torch.float32 else 1e-5
    assert_same(build_loss("infonce", temperature=temperature), ref, z1, z2, tol=tol)


@pytest.mark.parametrize("b", [2, 16, 64])
def test_collapse_value_is_log_2b_minus_1(b: int) -> None:
    z = torch.randn(1, 32, dtype=torch.float64).expand(b, 32)
    value = build_loss("infonce", temperature=0.2)(z, 3.0 * z)  # same direction, any scale
    assert value.item() == pytest.approx(math.log(2 * b - 1), abs=1e-10)


@pytest.mark.parametrize("signs", ["positive", "mixed"])
def test_gradient_vanishes_on_a_line_cloa_theorem_3_1(signs: str) -> None:
    # CLOA Theorem 3.1: all embeddings on one line through the origin are a stationary point of
    # InfoNCE; the gradient with respect to the UNnormalised embeddings is zero.
    g = torch.Generator().manual_seed(0)
    b, d = 16, 32
    v = torch.randn(d, generator=g, dtype=torch.float64)
    c = torch.rand(2 * b, 1, generator=g, dtype=torch.float64) + 0.5
    if signs == "mixed":
        c = c * torch.where(torch.rand(2 * b, 1, generator=g) < 0.5, -1.0, 1.0)
    z = (c * v).requires_grad_(True)
    build_loss("infonce", temperature=0.5)(z[:b], z[b:]).backward()
    assert z.grad is not None and z.grad.abs().max().item() < 1e-12
