"""DCL and DCLW: decoupled contrastive learning (the positive pair leaves the denominator)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bench.losses._contrastive import mean_logsumexp
from bench.losses._registry import register_loss
from bench.losses.base import check_range, checked_forward

_PAPER = "DCL, Yeh et al. 2022 (ECCV), arXiv:2110.06848"


@register_loss(
    "dcl", uses_labels=False, paper=_PAPER, reference="lightly DCLLoss (lightly/loss/dcl_loss.py)"
)
class DCLLoss(nn.Module):
    """Decoupled contrastive loss: NT-Xent without the positive pair in the denominator.

    With ``u = normalize(cat(z1, z2))``, ``s_ab = u_a . u_b / temperature`` and ``p(a)`` the other
    view of anchor ``a``::

        L = (1 / 2B) sum_a [ -w_a s_{a,p(a)} + log sum_{k not in {a, p(a)}} exp(s_{a,k}) ]

    with ``w = 1`` (DCL; DCLW sets the weights). It can be negative; full collapse gives
    ``log(2B - 2)``.

    - [0] DCL, Yeh et al. 2022, arXiv:2110.06848
    - [1] lightly ``DCLLoss`` / ``DCLWLoss``; raminnakhli/Decoupled-Contrastive-Learning.

    Convention: equals lightly's ``DCLLoss`` (mean of both directions). The authors' code
    (raminnakhli) computes one direction per call and does not normalise its inputs; on unit
    inputs the mean of both directions equals this.

    Args:
        temperature: softmax temperature, > 0 (default 0.1, lightly's).

    Shapes: ``z1, z2``: ``(B, d)``; ``labels`` ignored. Returns a scalar.

    Example:
        >>> round(float(DCLLoss()(torch.ones(4, 8), torch.ones(4, 8))), 4)  # log(2B - 2)
        1.7918
    """

    def __init__(self, temperature: float = 0.1) -> None:
        super().__init__()
        self.temperature = check_range("dcl", "temperature", temperature, gt=0)
        self.last_terms: dict[str, Tensor] = {}

    def positive_weights(self, cos: Tensor) -> Tensor | None:
        """Weights ``w`` of the positive term, ``(B,)``, or None for ``w = 1``."""
        return None

    @checked_forward
    def forward(self, z1: Tensor, z2: Tensor, labels: Tensor | None = None) -> Tensor:
        b = z1.shape[0]
        u = F.normalize(torch.cat([z1, z2]), dim=1)
        cos = (u[:b] * u[b:]).sum(1)
        w = self.positive_weights(cos)
        positive = (cos if w is None else w * cos).mean() / self.temperature
        return mean_logsumexp(u, 1.0 / self.temperature, exclude_positive=True) - positive


@register_loss(
    "dclw", uses_labels=False, paper=_PAPER, reference="lightly DCLWLoss (lightly/loss/dcl_loss.py)"
)
class DCLWLoss(DCLLoss):
    """DCL with negative von Mises-Fisher weighting of the positive term (DCLW).

    ``w_i = 2 - B * softmax_i(cos(z1_i, z2_i) / sigma)`` (mean 1 over the batch), computed on
    detached inputs as lightly does, so the weights are constants for the gradient (the
    raminnakhli code does not detach). Otherwise as :class:`DCLLoss`; collapse value
    ``log(2B - 2)``.

    - [0] DCL, Yeh et al. 2022, arXiv:2110.06848
    - [1] lightly ``DCLWLoss``; equals it exactly.

    Args:
        temperature: softmax temperature, > 0 (default 0.1).
        sigma: von Mises-Fisher weighting temperature, > 0 (default 0.5).

    Shapes: ``z1, z2``: ``(B, d)``; ``labels`` ignored. Returns a scalar.

    Example:
        >>> round(float(DCLWLoss()(torch.ones(4, 8), torch.ones(4, 8))), 4)
        1.7918
    """

    def __init__(self, temperature: float = 0.1, sigma: float = 0.5) -> None:
        super().__init__(temperature=check_range("dclw", "temperature", temperature, gt=0))
        self.sigma = check_range("dclw", "sigma", sigma, gt=0)

    def positive_weights(self, cos: Tensor) -> Tensor:
        return 2.0 - cos.shape[0] * torch.softmax(cos.detach() / self.sigma, dim=0)
