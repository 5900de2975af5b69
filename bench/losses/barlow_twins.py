"""Barlow Twins: cross-correlation of batch-standardised views pushed to the identity."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import FunctionCtx, once_differentiable

from bench.losses._registry import register_loss
from bench.losses.base import check_range, checked_forward


class _GramInner(torch.autograd.Function):
    """``<a a^T, b b^T> = ||a^T b||_F^2`` from two B x B Gram matrices, one matmul each way each.

    Gradients ``2 (b b^T) a`` and ``2 (a a^T) b`` (autograd would do two matmuls per Gram).
    """

    @staticmethod
    def forward(ctx: FunctionCtx, a: Tensor, b: Tensor) -> Tensor:
        ga, gb = torch.mm(a, a.T), torch.mm(b, b.T)
        ctx.save_for_backward(a, b, ga, gb)
        return (ga * gb).sum()

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, Tensor]:
        a, b, ga, gb = ctx.saved_tensors
        return torch.mm(gb, a).mul_(2 * grad), torch.mm(ga, b).mul_(2 * grad)


@register_loss(
    "barlow_twins",
    uses_labels=False,
    paper="Barlow Twins, Zbontar et al. 2021, arXiv:2103.03230",
    reference="lightly BarlowTwinsLoss (lightly/loss/barlow_twins_loss.py)",
)
class BarlowTwinsLoss(nn.Module):
    """Barlow Twins redundancy-reduction loss.

    Each view is standardised per dimension over the batch (``BatchNorm1d(d, affine=False)`` in
    train mode: biased variance, eps 1e-5), ``C = zhat1^T zhat2 / B`` (d x d) and::

        L = scale * [ sum_i (1 - C_ii)^2 + lambda_param * sum_{i != j} C_ij^2 ]

    No mean over entries: the loss grows with d; full collapse gives ``scale * d``.

    - [0] Barlow Twins, Zbontar et al. 2021, arXiv:2103.03230
    - [1] lightly ``BarlowTwinsLoss``; facebookresearch/barlowtwins ``main.py``.

    Convention: with ``scale=1`` equals lightly's ``BarlowTwinsLoss`` and the official code;
    solo-learn's ``barlow_loss_func`` is ``scale_loss`` (0.025, CIFAR config 0.1) times it.
    ``lambda_param`` defaults to the paper's 5e-3 (official code: 0.0051). When ``4B < 3d`` the
    sum of all ``C_ij^2`` is computed as ``<zhat1 zhat1^T, zhat2 zhat2^T> / B^2`` (two B x B Gram
    matrices instead of the d x d product, fewer multiply-adds; same value).

    Args:
        lambda_param: weight of the off-diagonal (redundancy) term, >= 0.
        scale: overall factor, > 0 (solo-learn's ``scale_loss``).

    Shapes: ``z1, z2``: ``(B, d)``; ``labels`` ignored. Returns a scalar.

    Example:
        >>> float(BarlowTwinsLoss()(torch.ones(4, 8), torch.ones(4, 8)))  # collapse: d
        8.0
    """

    def __init__(self, lambda_param: float = 5e-3, scale: float = 1.0) -> None:
        super().__init__()
        self.lambda_param = check_range("barlow_twins", "lambda_param", lambda_param, ge=0)
        self.scale = check_range("barlow_twins", "scale", scale, gt=0)
        self.last_terms: dict[str, Tensor] = {}

    @checked_forward
    def forward(self, z1: Tensor, z2: Tensor, labels: Tensor | None = None) -> Tensor:
        n, d = z1.shape
        a = F.batch_norm(z1, None, None, training=True, eps=1e-5)
        b = F.batch_norm(z2, None, None, training=True, eps=1e-5)
        if 4 * n < 3 * d:  # 4 B^2 d multiply-adds instead of 3 B d^2
            diag = (a * b).sum(0) / n
            off = _GramInner.apply(a, b) / n**2 - diag.pow(2).sum()
        else:
            c = torch.mm(a.T, b).div_(n)
            diag = c.diagonal()
            c2 = c.pow(2)
            c2.diagonal().zero_()
            off = c2.sum()
        loss = (1 - diag).pow(2).sum() + self.lambda_param * off
        return loss if self.scale == 1.0 else self.scale * loss
