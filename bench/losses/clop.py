"""CLOP add-on term: mean over labelled samples of 1 - cos to orthonormal prototypes."""

from __future__ import annotations

from torch import Tensor

from bench.losses._registry import register_addon
from bench.losses.base import checked_forward
from bench.losses.composite import AddonTerm


@register_addon(
    "clop",
    paper="CLOP, Li, Nguyen and Pimentel-Alarcon 2024, arXiv:2403.18699v2",
    reference="manhbeo/CLOP CLOPLoss.py (cosine distance)",
)
class CLOPTerm(AddonTerm):
    """CLOP prototype term: mean over labelled samples and both views of 1 - cos(z, c_y).

    ``c_k`` are fixed random orthonormal prototypes (one per class, drawn from the trial seed);
    ``S_b`` are the labelled samples of the batch (labels >= 0). A batch without labelled
    samples gives exactly 0. Use as ``"clop+BASE"``: ``L = L_base + addon_weight * L_CLOP``, so
    ``addon_weight`` is CLOP's lambda (default 1, the code's ``--lambda_val``).

    - [0] CLOP, Li, Nguyen and Pimentel-Alarcon 2024, arXiv:2403.18699 v2
    - [1] manhbeo/CLOP ``CLOPLoss.py`` (``distance="cosine"``)

    Reduction (``reduction``): ``"labelled"`` (default) is the code's mean over ``S_b``, the
    form verified against the reference implementation (tests/losses/test_addons.py); the v2 paper text
    could not be read, so the code is the specification. ``"batch"`` divides the sum over the
    labelled embeddings by all 2B embeddings of the batch instead (CLOA's paper weighting, see
    ``cloa``) and ``"sum"`` is the raw sum.

    Differences to the reference code (by design): prototypes come from a QR instead of an SVD
    of a Gaussian matrix (both give random orthonormal rows); the labelled samples are the fixed
    labelled subset of the label fraction (the repo's HEAD semantics) rather than a fresh random
    subset of every batch; only the cosine distance is implemented.

    Args:
        num_classes: number of classes K of the dataset; K <= dim.
        dim: embedding dimension d.
        seed: seed of the orthonormal prototypes.
        reduction: ``"labelled"`` (default), ``"batch"`` or ``"sum"``, as above.

    Shapes: ``z1, z2``: ``(B, d)``; ``labels``: ``(B,)`` int64 in -1..K-1, or None.
    Returns a scalar.

    Example:
        >>> import torch
        >>> term = CLOPTerm(num_classes=3, dim=8)
        >>> z = term.targets[torch.tensor([0, 1, 2])]
        >>> float(term(z, -z, torch.tensor([0, 1, -1])))  # views at +c and -c: 1 - 0
        1.0
    """

    def __init__(
        self, num_classes: int, dim: int, seed: int = 0, reduction: str = "labelled"
    ) -> None:
        super().__init__(num_classes, dim, seed, reduction=reduction, name="clop")

    @checked_forward
    def forward(self, z1: Tensor, z2: Tensor, labels: Tensor | None = None) -> Tensor:
        cos, mask = self.target_cosines(z1, z2, labels)
        return self.reduce(mask - cos, mask)
