"""InfoNCE / NT-Xent, the SimCLR loss, symmetric over the 2B views."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bench.losses._contrastive import mean_logsumexp
from bench.losses._registry import register_loss
from bench.losses.base import check_range, checked_forward


@register_loss(
    "infonce",
    uses_labels=False,
    paper="SimCLR, Chen et al. 2020, arXiv:2002.05709",
    reference="lightly NTXentLoss (lightly/loss/ntx_ent_loss.py)",
)
class InfoNCELoss(nn.Module):
    """NT-Xent: cross-entropy of each view against the other 2B-1 views, mean over 2B anchors.

    With ``u = normalize(cat(z1, z2))`` and ``s_ab = u_a . u_b / temperature``::

        L = (1 / 2B) sum_a [ -s_{a,p(a)} + log sum_{k != a} exp(s_{a,k}) ]

    where ``p(a)`` is the other view of anchor ``a``. Value at full collapse: ``log(2B - 1)``.

    - [0] SimCLR, Chen et al. 2020, arXiv:2002.05709
    - [1] lightly ``NTXentLoss``; pytorch-metric-learning ``NTXentLoss`` on ``cat(z1, z2)`` with
      labels ``cat(arange(B), arange(B))``.

    Convention: equals lightly's ``NTXentLoss`` and PML's ``NTXentLoss`` exactly (mean over 2B
    anchors); google-research/simclr's ``add_contrastive_loss`` returns 2x this. The default
    temperature 0.5 is lightly's (and the SimCLR CIFAR-10 recipe's); the ImageNet recipe uses 0.1.

    Args:
        temperature: softmax temperature, > 0.

    Shapes: ``z1, z2``: ``(B, d)``; ``labels``: ``(B,)`` or None, ignored. Returns a scalar.

    Example:
        >>> loss = InfoNCELoss(temperature=0.5)
        >>> z = torch.ones(4, 8)
        >>> round(float(loss(z, z)), 4)  # collapse: log(2B - 1) = log 7
        1.9459
    """

    def __init__(self, temperature: float = 0.5) -> None:
        super().__init__()
        self.temperature = check_range("infonce", "temperature", temperature, gt=0)
        self.last_terms: dict[str, Tensor] = {}

    @checked_forward
    def forward(self, z1: Tensor, z2: Tensor, labels: Tensor | None = None) -> Tensor:
        b = z1.shape[0]
        u = F.normalize(torch.cat([z1, z2]), dim=1)
        positive = (u[:b] * u[b:]).sum(1).mean() / self.temperature
        return mean_logsumexp(u, 1.0 / self.temperature) - positive
