"""CLOA add-on term: Orthonormal Anchor Regression, summed over labelled embeddings."""

from __future__ import annotations

from torch import Tensor

from bench.losses._registry import register_addon
from bench.losses.base import checked_forward
from bench.losses.composite import AddonTerm


@register_addon(
    "cloa",
    paper="CLOA (OAR loss), Li and Pimentel-Alarcon 2024, arXiv:2403.18699v1",
    reference="paper Eq. 2; HuanranLi/ContrastiveLearning_V2 src/OAR_model_SimCLR.py",
)
class CLOATerm(AddonTerm):
    """CLOA's Orthonormal Anchor Regression: sum over labelled embeddings of 1 - cos(z, c_y).

    ``c_k`` are fixed random orthonormal targets (one per class, drawn from the trial seed) and
    the sum runs over every labelled embedding of both views (labels >= 0); unlabelled samples
    contribute nothing and a batch without labels gives exactly 0. Use as ``"cloa+BASE"``:
    ``L = L_base + addon_weight * L_OAR`` (the paper adds it with weight 1).

    - [0] CLOA, Li and Pimentel-Alarcon 2024, arXiv:2403.18699 v1, Eq. (2)
    - [1] HuanranLi/ContrastiveLearning_V2 ``src/OAR_model_SimCLR.py`` (first author's code)

    Reduction: the paper's plain SUM over the labelled set (so the term grows with the number
    of labelled samples per batch), applied to both views' embeddings. The first author's code
    instead takes the MEAN over labelled samples and both views of ``-cos``, which differs from
    this by the factor ``2 * n_labelled`` and a constant, and equals the ``clop`` add-on; use
    ``clop`` for that reduction.

    Args:
        num_classes: number of classes K of the dataset; K <= dim.
        dim: embedding dimension d.
        seed: seed of the orthonormal targets.

    Shapes: ``z1, z2``: ``(B, d)``; ``labels``: ``(B,)`` int64 in -1..K-1, or None.
    Returns a scalar.

    Example:
        >>> import torch
        >>> term = CLOATerm(num_classes=3, dim=8)
        >>> z = term.targets[torch.tensor([0, 1, 2, 0])]  # on target: cos = 1
        >>> abs(float(term(z, z, torch.tensor([0, 1, 2, -1])))) < 1e-6
        True
    """

    @checked_forward
    def forward(self, z1: Tensor, z2: Tensor, labels: Tensor | None = None) -> Tensor:
        cos, mask = self.target_cosines(z1, z2, labels)
        return (mask - cos).sum()
