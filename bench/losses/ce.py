"""ce: cross-entropy of a linear classifier on the embeddings, over the labelled samples only."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bench.losses._registry import register_loss
from bench.losses.base import checked_forward
from bench.losses.composite import stacked_labels


def _positive_int(loss: str, arg: str, value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(
            f"loss {loss!r} needs {arg} as a positive int (the dataset's number of classes and "
            f"the embedding dimension), got {arg}={value!r}."
        )
    return value


@register_loss(
    "ce",
    uses_labels=True,
    paper="supervised baseline at the same label budget (softmax cross-entropy; e.g. "
    "SimCLR's supervised baseline, Chen et al. 2020, arXiv:2002.05709)",
    reference="torch.nn.functional.cross_entropy on nn.Linear logits",
)
class CrossEntropyLoss(nn.Module):
    """Supervised baseline: a linear classifier on the embedding, trained with cross-entropy.

    ``logits = W z + b`` for each of the 2B embeddings ``cat(z1, z2)`` (both views), and::

        L = mean over the labelled embeddings (labels >= 0) of  -log softmax(logits)_y

    Unlabelled samples contribute nothing; a batch without labels gives exactly 0, with zero
    (finite) gradients for the encoder and the classifier. The classifier ``(W, b)`` is this
    loss's own parameter: the trial's optimizer trains it with the encoder, gradient clipping
    covers it and the trial's checkpoint saves it. The embedding is what the loss receives, so
    with ``projector: []`` the classifier sits on the backbone output: the model is then a plain
    supervised classifier trained on exactly the labels the label-using losses see (the same
    label budget), which is the baseline the contrastive losses must beat.

    - [0] the usual supervised baseline of contrastive-learning papers, e.g. SimCLR (Chen et
      al. 2020, arXiv:2002.05709), whose supervised baseline trains the same backbone with
      cross-entropy on the labels.
    - [1] ``torch.nn.functional.cross_entropy`` on ``nn.Linear`` logits (what the tests check).

    Initialisation: ``nn.Linear``'s default, ``U(-1/sqrt(d), 1/sqrt(d))`` for weights and
    biases, drawn from ``seed`` (not the global RNG) so that one seed gives one classifier.

    Args:
        num_classes: number of classes K of the dataset (given by the trial).
        dim: embedding dimension d (given by the trial).
        seed: seed of the classifier's initialisation (the trial seed).

    Shapes: ``z1, z2``: ``(B, d)``; ``labels``: ``(B,)`` int64 in -1..K-1, or None.
    Returns a scalar.

    Example:
        >>> loss = CrossEntropyLoss(num_classes=3, dim=4)
        >>> z = torch.randn(5, 4)
        >>> loss(z, z, torch.full((5,), -1)).item()  # no labels: exactly 0
        0.0
        >>> with torch.no_grad():
        ...     _ = loss.classifier.weight.zero_(), loss.classifier.bias.zero_()
        >>> round(loss(z, z, torch.tensor([0, 1, 2, -1, 0])).item(), 4)  # uniform: log 3
        1.0986
    """

    def __init__(
        self, num_classes: int | None = None, dim: int | None = None, seed: int = 0
    ) -> None:
        super().__init__()
        k, d = _positive_int("ce", "num_classes", num_classes), _positive_int("ce", "dim", dim)
        self.classifier = nn.Linear(d, k)
        g = torch.Generator().manual_seed(int(seed))
        bound = 1.0 / math.sqrt(d)
        with torch.no_grad():
            self.classifier.weight.copy_(torch.rand(k, d, generator=g) * 2 * bound - bound)
            self.classifier.bias.copy_(torch.rand(k, generator=g) * 2 * bound - bound)
        self.last_terms: dict[str, Tensor] = {}

    @checked_forward
    def forward(self, z1: Tensor, z2: Tensor, labels: Tensor | None = None) -> Tensor:
        k, d = self.classifier.weight.shape
        y = stacked_labels("loss 'ce'", z1, labels, k, d)
        z = torch.cat([z1, z2])
        mask = (y >= 0).to(z.dtype)
        weight, bias = self.classifier.weight.to(z.dtype), self.classifier.bias.to(z.dtype)
        per_embedding = F.cross_entropy(F.linear(z, weight, bias), y.clamp(min=0), reduction="none")
        # Masked mean: unlabelled rows are multiplied by 0, so no labels gives 0 and 0 gradients.
        return (per_embedding * mask).sum() / mask.sum().clamp(min=1.0)
