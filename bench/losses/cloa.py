"""CLOA add-on term: Orthonormal Anchor Regression, 1 - cos to fixed orthonormal class anchors."""

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
    """CLOA's Orthonormal Anchor Regression: 1 - cos(z, c_y) over the labelled embeddings.

    ``c_k`` are fixed random orthonormal targets (one per class, drawn from the trial seed); the
    term runs over every labelled embedding of both views (labels >= 0); unlabelled samples
    contribute nothing and a batch without labels gives exactly 0. Use as ``"cloa+BASE"``:
    ``L = L_base + addon_weight * L_OAR`` (the paper adds it with weight 1).

    - [0] CLOA, Li and Pimentel-Alarcon 2024, arXiv:2403.18699 v1, Eq. (2)
    - [1] HuanranLi/ContrastiveLearning_V2 ``src/OAR_model_SimCLR.py`` (first author's code)

    Reduction (``reduction``), with ``S`` the labelled embeddings of the batch and ``2B`` all of
    its embeddings:

    - ``"batch"`` (default, the paper): ``sum_S (1 - cos) / 2B``. The paper's Eq. (2) sums over
      ``S`` and adds that to its InfoNCE, Eq. (1), which is itself a sum over the 2B anchors, so
      each labelled embedding weighs as much as one anchor of the base. Against the harness's
      mean-reduced base losses that one-to-one weighting is the sum divided by 2B; the raw sum
      would be 2B times stronger (256x at batch 128). This is the default because it is the
      weighting the paper states and it does not change with the label fraction per embedding.
    - ``"labelled"`` (the first author's code): ``mean_S (1 - cos)``, the mean over labelled
      embeddings of both views (the code takes the mean of ``-cos``: same gradient). There the
      labelled samples come as a separate, fully labelled batch of the same size B, so its
      mean is also one-to-one per embedding; with the harness's labelled subset inside the
      batch it weighs each labelled embedding ``B / n_labelled`` times more. Equals ``clop``.
    - ``"sum"``: the raw ``sum_S (1 - cos)``, Eq. (2) read without the base's scale.

    Barlow Twins and VICReg are not sums over anchors, so no reduction makes the add-on
    one-to-one with them and the paper states none: sweep ``addon_weight`` for those bases.

    Args:
        num_classes: number of classes K of the dataset; K <= dim.
        dim: embedding dimension d.
        seed: seed of the orthonormal targets.
        reduction: ``"batch"`` (default), ``"labelled"`` or ``"sum"``, as above.

    Shapes: ``z1, z2``: ``(B, d)``; ``labels``: ``(B,)`` int64 in -1..K-1, or None.
    Returns a scalar.

    Example:
        >>> import torch
        >>> term = CLOATerm(num_classes=3, dim=8)
        >>> z = term.targets[torch.tensor([0, 1, 2, 0])]  # on target: cos = 1
        >>> abs(float(term(z, z, torch.tensor([0, 1, 2, -1])))) < 1e-6
        True
        >>> y = torch.tensor([0, -1, -1, -1])  # one labelled sample, both views at -c_0: 2 * 2
        >>> [float(CLOATerm(3, 8, reduction=r)(-z, -z, y)) for r in ("batch", "labelled", "sum")]
        [0.5, 2.0, 4.0]
    """

    def __init__(self, num_classes: int, dim: int, seed: int = 0, reduction: str = "batch") -> None:
        super().__init__(num_classes, dim, seed, reduction=reduction, name="cloa")

    @checked_forward
    def forward(self, z1: Tensor, z2: Tensor, labels: Tensor | None = None) -> Tensor:
        cos, mask = self.target_cosines(z1, z2, labels)
        return self.reduce(mask - cos, mask)
