"""simo_pairs: this harness's per-pair SimO variant, with pair masks over the 2B stacked views."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import FunctionCtx, once_differentiable

from bench.losses._registry import register_loss
from bench.losses.base import check_range, checked_forward


def _two_view_keys(labels: Tensor | None, batch: int, device: torch.device) -> Tensor:
    """Class key of each of the 2B stacked embeddings ``cat(z1, z2)``, shape ``(2B,)``.

    Labelled samples (``label >= 0``) keep their label; an unlabelled sample gets its own negative
    key shared only by its two views, so "same key" means "same class, or the other view".
    """
    own = -1 - torch.arange(batch, device=device)
    keys = own if labels is None else torch.where(labels >= 0, labels, own)
    return torch.cat([keys, keys])


class _SimOPairs(torch.autograd.Function):
    """Mean pull and push over the masked ordered pairs of unit rows ``e``, fused.

    With ``g = e e^T``, ``den = eps + max(2 - 2g, 0)`` and ``q = 1 + r = 1 + g^2 / den``:
    ``pull = sum_same 1/q / n_same`` and ``push = sum_other q^power / n_other``. The gradient is
    ``2 W e`` with ``W = dL/dq * dq/dg`` (W is symmetric); this keeps four 2B x 2B buffers and
    two matmuls where autograd would keep about ten and do three.
    """

    @staticmethod
    def forward(
        ctx: FunctionCtx, e: Tensor, same: Tensor, other: Tensor, eps: float, power: float
    ) -> tuple[Tensor, Tensor]:
        g = torch.mm(e, e.T)
        t = torch.rsub(g, 1.0).clamp_(min=0.0).mul_(2.0).add_(eps)  # den = eps + ||e_i - e_j||^2
        torch.div(g, t, out=t)  # t = g / den, so r = g * t
        q = torch.mul(g, t).add_(1.0)
        inv = q.reciprocal().mul_(same)
        qp = q.pow_(power).mul_(other)
        n_same, n_other = same.sum().clamp(min=1), other.sum().clamp(min=1)
        ctx.save_for_backward(e, g, t, inv, qp, n_same, n_other)
        ctx.power = power  # type: ignore[attr-defined]
        return inv.sum() / n_same, qp.sum() / n_other

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_pull: Tensor, grad_push: Tensor) -> tuple[Tensor | None, ...]:
        e, g, t, inv, qp, n_same, n_other = ctx.saved_tensors
        w = torch.mul(g, t).add_(1.0)  # q
        torch.div(qp, w, out=w).mul_(grad_push * ctx.power / n_other)  # d push / dq
        w.sub_(inv.square().mul_(grad_pull / n_same))  # + d pull / dq
        w.mul_(torch.mul(t, g < 1.0).add_(1.0).mul_(t).mul_(2.0))  # * dq/dg
        return torch.mm(w, e).mul_(2.0), None, None, None, None


@register_loss(
    "simo_pairs",
    uses_labels=True,
    paper="SimO, Bouhsine et al. 2024, arXiv:2410.05233 (this harness's per-pair variant)",
    reference="mlnomadpy/exp_vis src/train.py combined_loss pair term (authors' JAX code)",
    terms=("pull", "push"),
)
class SimOPairsLoss(nn.Module):
    """SimO, per-pair variant: same-class pairs pulled and aligned, all others pushed orthogonal.

    This is the harness's own variant of SimO, not the authors' training objective (that is
    ``simo``, with its three terms on class-structured batches): the authors' pair term
    ``(1 + r)^(1 - 2y)`` applied with per-pair masks to every pair of the 2B stacked views, so
    that it runs on ordinary two-view batches at any label fraction.

    With ``e = normalize(cat(z1, z2))`` (2B rows), for each pair ``i != j``:
    ``d_ij = ||e_i - e_j||^2``, ``o_ij = (e_i . e_j)^2`` and ``r_ij = o_ij / (eps + d_ij)``::

        pull = mean over same-class pairs of   1 / (1 + r_ij)           (authors' y = 1)
        push = mean over other pairs of        (1 + r_ij)^(1 - 2*olean) (authors' y = olean)
        L = pull + push

    Same class means equal labels (>= 0), or the two views of one sample: an unlabelled sample
    is its own class, as in ``supcon``. Pull brings same-class pairs close and (anti-)aligned,
    push drives other pairs towards orthogonality. A batch with no different-class pair has
    ``push = 0``. Full collapse gives ``1/(1 + 1/eps) + (1 + 1/eps)^(1 - 2*olean)``.
    ``last_terms`` holds ``pull`` and ``push``.

    Differences to the authors' code (``simo`` follows it): every pair of the batch instead of
    within-class pairs, index-matched cross-class pairs and class-mean pairs; means over pairs
    of each type instead of sums (so the scale does not grow with B^2); no class-mean term; an
    unlabelled sample is its own class, so it also learns from unlabelled batches.

    - [0] SimO, Bouhsine et al. 2024, arXiv:2410.05233 (ICLR 2025 submission, withdrawn)
    - [1] mlnomadpy/exp_vis ``src/train.py`` ``combined_loss`` (eps 1/137, orth_lean 1/137).

    Args:
        eps: added to the squared distance in ``r``, > 0 (1/137).
        olean: orthogonality-leaning factor, in [0, 0.5) (1/137).

    Shapes: ``z1, z2``: ``(B, d)``; ``labels``: ``(B,)`` int64, -1 = unlabelled, or None.
    Returns a scalar.

    Example:
        >>> loss = SimOPairsLoss()
        >>> z1, z2 = torch.eye(4, 8), torch.eye(4, 8)
        >>> round(float(loss(z1, z2)), 4)  # views agree, samples orthogonal: pull 1/138, push 1
        1.0072
    """

    def __init__(self, eps: float = 1 / 137, olean: float = 1 / 137) -> None:
        super().__init__()
        self.eps = check_range("simo_pairs", "eps", eps, gt=0)
        self.olean = check_range("simo_pairs", "olean", olean, ge=0, lt=0.5)
        self.last_terms: dict[str, Tensor] = {}

    @checked_forward
    def forward(self, z1: Tensor, z2: Tensor, labels: Tensor | None = None) -> Tensor:
        e = F.normalize(torch.cat([z1, z2]), dim=1)
        keys = _two_view_keys(labels, z1.shape[0], e.device)
        same = keys.unsqueeze(0) == keys.unsqueeze(1)
        other = ~same
        same.fill_diagonal_(False)
        pull, push = _SimOPairs.apply(e, same, other, self.eps, 1.0 - 2.0 * self.olean)
        self.last_terms = {"pull": pull.detach(), "push": push.detach()}
        return pull + push
