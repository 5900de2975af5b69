"""The softmax denominator shared by infonce, dcl, dclw and supcon, fused for speed.

``mean_logsumexp(u, inv_tau, exclude_positive)`` returns
``mean_a log sum_{b in A(a)} exp(u_a . u_b * inv_tau)`` over the N = 2B rows of
``u = cat(u1, u2)`` (unit rows), where ``A(a)`` is every row but ``a`` itself (and, with
``exclude_positive``, but its other view ``a +- B``, as DCL does).

Why a custom autograd function: ``S = u u^T * inv_tau`` is symmetric and bounded by ``inv_tau``
because the rows are unit vectors. While ``exp(inv_tau)`` fits the dtype, ``E = exp(S)`` needs no
max-shift, and with ``a = 1 / rowsum(E)`` the softmax is ``P = diag(a) E``; as ``E`` is symmetric,
the gradient ``(P + P^T) u * inv_tau / N`` is ``(E * (a_i + a_j)) u * inv_tau / N``: one N x N
elementwise pass and ONE ``N x N @ N x d`` matmul (autograd through ``logsumexp`` would do a
softmax pass and two matmuls). The forward is one matmul, one in-place exp and one row sum; no
mask or log-softmax is materialised. Outside that range (tiny temperatures) it falls back to a
plain ``logsumexp`` through autograd.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.autograd.function import FunctionCtx, once_differentiable

# Largest inv_tau for which exp(+-inv_tau) and the row sums stay normal numbers (see module doc).
_MAX_INV_TAU = {torch.float32: 40.0, torch.float64: 300.0}


def _mask_(s: Tensor, value: float, exclude_positive: bool) -> Tensor:
    half = s.shape[0] // 2
    s.diagonal().fill_(value)
    if exclude_positive:
        s.diagonal(half).fill_(value)
        s.diagonal(-half).fill_(value)
    return s


class _MeanLogSumExp(torch.autograd.Function):
    @staticmethod
    def forward(ctx: FunctionCtx, u: Tensor, inv_tau: float, exclude_positive: bool) -> Tensor:
        e = _mask_(torch.mm(u * inv_tau, u.T).exp_(), 0.0, exclude_positive)
        rowsum = e.sum(1)
        ctx.save_for_backward(u, e, rowsum)
        ctx.inv_tau = inv_tau  # type: ignore[attr-defined]
        return rowsum.log().mean()

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None, None]:
        u, e, rowsum = ctx.saved_tensors
        a = rowsum.reciprocal().unsqueeze(1)
        w = (a + a.T).mul_(e)  # P + P^T, as E is symmetric
        return torch.mm(w, u).mul_(grad * ctx.inv_tau / u.shape[0]), None, None


def mean_logsumexp(u: Tensor, inv_tau: float, exclude_positive: bool = False) -> Tensor:
    """Mean over the 2B rows of ``u`` (unit rows) of the contrastive log-denominator.

    Args:
        u: ``(2B, d)`` L2-normalised ``cat(z1, z2)``.
        inv_tau: inverse temperature, > 0.
        exclude_positive: also drop the other view of each row (DCL's decoupled denominator).

    Returns:
        Scalar tensor.
    """
    if inv_tau <= _MAX_INV_TAU.get(u.dtype, 0.0):
        return _MeanLogSumExp.apply(u, inv_tau, exclude_positive)
    s = _mask_(torch.mm(u * inv_tau, u.T), float("-inf"), exclude_positive)
    return torch.logsumexp(s, dim=1).mean()
