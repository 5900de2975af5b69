"""VICReg: variance-invariance-covariance regularisation, with the official code's scaling."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import FunctionCtx, once_differentiable

from bench.losses._registry import register_loss
from bench.losses.base import check_range, checked_forward


def variance_term(z: Tensor, eps: float = 1e-4) -> Tensor:
    """``mean_j relu(1 - sqrt(Var_b(z_j) + eps))`` with the unbiased variance."""
    return F.relu(1.0 - torch.sqrt(z.var(dim=0) + eps)).mean()


class _OffDiagonalSquares(torch.autograd.Function):
    """``sum_{i != j} (x^T x)_ij^2`` of a centred ``(B, d)`` x: one matmul each way.

    Its gradient is ``4 x offdiag(x^T x)`` (autograd through ``x^T @ x`` would do two matmuls).
    When ``B < d`` the B x B Gram matrix ``K = x x^T`` is used instead of the d x d product:
    ``||K||_F^2 - sum_j (x^T x)_jj^2``, gradient ``4 (K x - x * diag(x^T x))``.
    """

    @staticmethod
    def forward(ctx: FunctionCtx, x: Tensor) -> Tensor:
        n, d = x.shape
        if n < d:
            k, v = torch.mm(x, x.T), x.pow(2).sum(0)
            ctx.save_for_backward(x, k, v)
            return k.pow(2).sum() - v.pow(2).sum()
        c = torch.mm(x.T, x)
        c.diagonal().zero_()
        ctx.save_for_backward(x, c)
        return c.pow(2).sum()

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        if len(ctx.saved_tensors) == 3:
            x, k, v = ctx.saved_tensors
            return (torch.mm(k, x) - x * v).mul_(4 * grad)
        x, c = ctx.saved_tensors
        return torch.mm(x, c).mul_(4 * grad)


def covariance_term(z: Tensor) -> Tensor:
    """``(1/d) sum_{i != j} Cov(z)_ij^2`` with ``Cov = zc^T zc / (B - 1)``, ``zc`` centred."""
    n, d = z.shape
    return _OffDiagonalSquares.apply(z - z.mean(dim=0)) / ((n - 1) ** 2 * d)


@register_loss(
    "vicreg",
    uses_labels=False,
    paper="VICReg, Bardes, Ponce and LeCun 2022 (ICLR), arXiv:2105.04906",
    reference="lightly VICRegLoss (lightly/loss/vicreg_loss.py)",
    terms=("invariance", "variance", "covariance"),
)
class VICRegLoss(nn.Module):
    """VICReg: lambda * invariance + mu * variance + nu * covariance, official code scaling.

    ``inv = MSE(z1, z2)`` (mean over B*d), ``var = 0.5 * (v(z1) + v(z2))`` with
    ``v(z) = mean_j relu(1 - sqrt(Var(z_j) + eps))`` (unbiased variance), and
    ``cov = c(z1) + c(z2)`` with ``c(z) = (1/d) sum_{i != j} Cov(z)_ij^2``. The three terms
    (unweighted) are stored in ``last_terms``. Full collapse (every row of both views equal)
    gives ``mu * (1 - sqrt(eps)) = 24.75``.

    - [0] VICReg, Bardes et al. 2022, arXiv:2105.04906
    - [1] lightly ``VICRegLoss``; facebookresearch/vicreg ``main_vicreg.py``.

    Convention: equals lightly's ``VICRegLoss`` and the official code (including the 0.5 on the
    variance term). The paper's equations write a d-times larger invariance term and a 2x
    larger variance term; solo-learn's ``vicreg_loss_func`` omits the 0.5.

    Args:
        lambda_param: invariance weight, >= 0 (25).
        mu_param: variance weight, >= 0 (25).
        nu_param: covariance weight, >= 0 (1).
        eps: added to the variance before the square root, > 0 (1e-4).

    Shapes: ``z1, z2``: ``(B, d)`` with B >= 2; ``labels`` ignored. Returns a scalar.

    Example:
        >>> loss = VICRegLoss()
        >>> round(float(loss(torch.ones(4, 8), torch.ones(4, 8))), 4)
        24.75
        >>> sorted(loss.last_terms)
        ['covariance', 'invariance', 'variance']
    """

    def __init__(
        self,
        lambda_param: float = 25.0,
        mu_param: float = 25.0,
        nu_param: float = 1.0,
        eps: float = 1e-4,
    ) -> None:
        super().__init__()
        self.lambda_param = check_range("vicreg", "lambda_param", lambda_param, ge=0)
        self.mu_param = check_range("vicreg", "mu_param", mu_param, ge=0)
        self.nu_param = check_range("vicreg", "nu_param", nu_param, ge=0)
        self.eps = check_range("vicreg", "eps", eps, gt=0)
        self.last_terms: dict[str, Tensor] = {}

    @checked_forward
    def forward(self, z1: Tensor, z2: Tensor, labels: Tensor | None = None) -> Tensor:
        inv = F.mse_loss(z1, z2)
        var = 0.5 * (variance_term(z1, self.eps) + variance_term(z2, self.eps))
        cov = covariance_term(z1) + covariance_term(z2)
        self.last_terms = {
            "invariance": inv.detach(),
            "variance": var.detach(),
            "covariance": cov.detach(),
        }
        return self.lambda_param * inv + self.mu_param * var + self.nu_param * cov
