"""Helpers shared by the loss tests: random views and loss-and-gradient comparison."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

# (B, d) grid of the parity tests.
SHAPES = [(2, 8), (2, 128), (16, 8), (16, 128), (64, 8), (64, 128)]
COMPOSITES = ["cloa+infonce", "clop+vicreg", "cloa+supcon", "clop+barlow_twins"]
NUM_CLASSES = 10


def views(
    b: int,
    d: int,
    *,
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
    frac: float = 0.5,
    num_classes: int = 4,
) -> tuple[Tensor, Tensor, Tensor]:
    """Random views ``(B, d)`` (the second correlated with the first) and labels with -1s."""
    g = torch.Generator().manual_seed(seed)
    z1 = torch.randn(b, d, generator=g, dtype=dtype)
    z2 = z1 + 0.7 * torch.randn(b, d, generator=g, dtype=dtype)
    labels = torch.randint(0, num_classes, (b,), generator=g)
    labels[torch.rand(b, generator=g) >= frac] = -1
    return z1, z2, labels


LossFn = Callable[[Tensor, Tensor], Tensor]


def value_and_grads(fn: LossFn, z1: Tensor, z2: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    a = z1.detach().clone().requires_grad_(True)
    b = z2.detach().clone().requires_grad_(True)
    loss = fn(a, b)
    g1, g2 = torch.autograd.grad(loss, (a, b))
    return loss.detach(), g1, g2


def assert_same(ours: LossFn, ref: LossFn, z1: Tensor, z2: Tensor, tol: float = 1e-5) -> None:
    """Loss AND gradients with respect to both views agree to ``tol`` (rtol and atol)."""
    got, want = value_and_grads(ours, z1, z2), value_and_grads(ref, z1, z2)
    for name, x, y in zip(("loss", "grad z1", "grad z2"), got, want):
        torch.testing.assert_close(x, y, rtol=tol, atol=tol, msg=lambda m, n=name: f"{n}: {m}")
