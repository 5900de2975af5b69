"""The untrained control: an encoder that is never trained, evaluated like every other loss."""

from __future__ import annotations

from torch import Tensor, nn

from bench.losses._registry import register_loss
from bench.losses.base import checked_forward


@register_loss(
    "untrained",
    uses_labels=False,
    paper="control: the encoder at its random initialisation (random-init baseline)",
    reference="none (its value is 0 by definition)",
)
class UntrainedControl(nn.Module):
    """No training at all: the trial takes no optimizer step (``trains_encoder = False``), so
    every evaluation reads the randomly initialised encoder of the trial's seed.

    Why: a probe on random features is far above chance (a 2-layer MLP on digits: ~0.88 linear
    top-1 at 10% labels, chance 0.1), so "above chance" alone does not show that a loss learned
    anything. In a sweep this entry is the level a loss must beat; its lr and batch size change
    nothing. The value is 0 (with a gradient of 0) so that it fits the loss interface.

    Example:
        >>> import torch
        >>> float(UntrainedControl()(torch.ones(4, 8), torch.ones(4, 8)))
        0.0
    """

    trains_encoder = False  # read by bench.train: no backward pass, no optimizer step

    def __init__(self) -> None:
        super().__init__()
        self.last_terms: dict[str, Tensor] = {}

    @checked_forward
    def forward(self, z1: Tensor, z2: Tensor, labels: Tensor | None = None) -> Tensor:
        return (z1.sum() + z2.sum()) * 0.0
