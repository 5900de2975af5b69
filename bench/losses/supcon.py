"""SupCon (L_out): supervised contrastive loss; unlabelled samples are their own class."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bench.losses._contrastive import mean_logsumexp
from bench.losses._registry import register_loss
from bench.losses.base import check_range, checked_forward


@register_loss(
    "supcon",
    uses_labels=True,
    paper="SupCon, Khosla et al. 2020 (NeurIPS), arXiv:2004.11362",
    reference="pytorch-metric-learning SupConLoss; HobbitLong/SupContrast losses.py",
)
class SupConLoss(nn.Module):
    """Supervised contrastive loss, L_out form, over the 2B stacked views.

    With ``u = normalize(cat(z1, z2))``, ``s_ab = u_a . u_b / temperature``, ``A(a)`` every other
    view and ``P(a)`` the views of the same class as ``a`` (other than ``a``)::

        L = (temperature / base_temperature) * (1 / 2B) * sum_a [
                -(1 / |P(a)|) sum_{p in P(a)} s_ap + log sum_{k in A(a)} exp(s_ak) ]

    An unlabelled sample (label -1) is its own class: its other view is its only positive, so
    every anchor has a positive and the loss works at every label fraction; with no labels it is
    exactly :class:`~bench.losses.infonce.InfoNCELoss`. Full collapse gives ``log(2B - 1)``
    (times ``temperature / base_temperature``) whatever the labels.

    - [0] SupCon, Khosla et al. 2020, arXiv:2004.11362
    - [1] HobbitLong/SupContrast ``SupConLoss`` (contrast_mode='all');
      pytorch-metric-learning ``SupConLoss``.

    Convention: ``base_temperature`` defaults to ``temperature`` (factor 1), so the loss equals
    PML's ``SupConLoss`` (which normalises and averages over anchors with a positive: here all
    of them) and SupContrast's with ``base_temperature == temperature``; SupContrast's defaults
    (0.07/0.07) give the same; other ``base_temperature`` values scale it by
    ``temperature / base_temperature`` as SupContrast does. The positive sums come from per-class
    sums of embeddings (two thin ``(2B, K)`` matmuls), not from a 2B x 2B mask.

    Args:
        temperature: softmax temperature, > 0 (paper default 0.1).
        base_temperature: SupContrast's ``base_temperature``, > 0, or None for ``temperature``.

    Shapes: ``z1, z2``: ``(B, d)``; ``labels``: ``(B,)`` int64, -1 = unlabelled, or None.
    Returns a scalar.

    Example:
        >>> loss = SupConLoss()
        >>> z = torch.ones(4, 8)
        >>> round(float(loss(z, z, torch.tensor([0, 0, 1, -1]))), 4)  # collapse: log(2B - 1)
        1.9459
    """

    def __init__(self, temperature: float = 0.1, base_temperature: float | None = None) -> None:
        super().__init__()
        self.temperature = check_range("supcon", "temperature", temperature, gt=0)
        base = temperature if base_temperature is None else base_temperature
        self.base_temperature = check_range("supcon", "base_temperature", base, gt=0)
        self.last_terms: dict[str, Tensor] = {}

    @checked_forward
    def forward(self, z1: Tensor, z2: Tensor, labels: Tensor | None = None) -> Tensor:
        b = z1.shape[0]
        u = F.normalize(torch.cat([z1, z2]), dim=1)
        positive = (u * u.roll(b, dims=0)).sum(1)  # the other view: the only positive if unlabelled
        if labels is not None:
            y = torch.cat([labels, labels])
            has_label = y >= 0
            classes, index = torch.unique(y, return_inverse=True)
            onehot = index.unsqueeze(1) == torch.arange(len(classes), device=u.device)
            onehot = (onehot & has_label.unsqueeze(1)).to(u.dtype)  # (2B, K), labelled rows only
            others = onehot @ (onehot.T @ u) - u  # sum of the other views of the same class
            n_pos = (onehot @ onehot.sum(0) - 1).clamp(min=1)
            positive = torch.where(has_label, (others * u).sum(1) / n_pos, positive)
        loss = mean_logsumexp(u, 1.0 / self.temperature) - positive.mean() / self.temperature
        return loss * (self.temperature / self.base_temperature)
