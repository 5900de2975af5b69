"""Add-on terms and their composition with a base loss: ``"ADDON+BASE"``.

``build_loss("cloa+infonce", num_classes=10, dim=128, seed=0)`` returns a :class:`CompositeLoss`
whose forward is ``base(z1, z2, labels) + addon_weight * addon(z1, z2, labels)``. The add-on
terms (``cloa``, ``clop``) subclass :class:`AddonTerm`, which owns the fixed orthonormal targets.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bench.config import ConfigError
from bench.losses.base import LossParamError, check_range, checked_forward

# How an add-on term reduces its per-embedding values ``1 - cos(z, c_y)`` over the 2B embeddings
# of a batch: "batch" = sum over the labelled ones / 2B, "labelled" = mean over the labelled ones,
# "sum" = raw sum. The add-on classes document which paper or code each one matches.
ADDON_REDUCTIONS = ("batch", "labelled", "sum")


def check_reduction(loss: str, value: Any) -> str:
    """Return ``value`` if it is one of :data:`ADDON_REDUCTIONS`, else a one-sentence ValueError."""
    if not isinstance(value, str) or value not in ADDON_REDUCTIONS:
        raise LossParamError(loss, "reduction", value, "one of 'batch', 'labelled' or 'sum'")
    return value


def check_target_shape(loss: str, num_classes: Any, dim: Any) -> None:
    """Raise a one-sentence ConfigError unless ``1 <= num_classes <= dim`` are ints (the
    dataset and the projector do not fit the add-on: a property of the config)."""
    for arg, value in (("num_classes", num_classes), ("dim", dim)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ConfigError(
                f"loss {loss!r} needs {arg} as a positive int (the dataset's number of "
                f"classes and the embedding dimension), got {arg}={value!r}."
            )
    if num_classes > dim:
        raise ConfigError(
            f"loss {loss!r} needs one orthonormal target per class in the embedding "
            f"space, so num_classes ({num_classes}) must be <= dim ({dim})."
        )


def stacked_labels(who: str, z1: Tensor, labels: Tensor | None, k: int, d: int) -> Tensor:
    """Both views' labels ``cat(labels, labels)`` (``(2B,)``, -1 = unlabelled; all -1 for None),
    after checking that ``z1`` has ``d`` columns and every label is below ``k``."""
    if z1.shape[1] != d:
        raise ValueError(
            f"{who} was built for dim={d} but z1 and z2 have {z1.shape[1]} "
            "columns; pass the embedding dimension as dim."
        )
    if labels is None:
        labels = torch.full((z1.shape[0],), -1, dtype=torch.long, device=z1.device)
    elif labels.is_cuda:  # checked on the device: no host sync in every training step
        torch._assert_async(labels.max() < k, f"labels must be in -1..{k - 1} (num_classes={k})")
    elif int(labels.max()) >= k:
        raise ValueError(
            f"labels must be in -1..{k - 1} (num_classes={k}), got a label {int(labels.max())}."
        )
    return torch.cat([labels, labels])


def orthonormal_targets(num_classes: int, dim: int, seed: int = 0) -> Tensor:
    """``(num_classes, dim)`` float32 rows that are unit norm and mutually orthogonal.

    QR of a ``(dim, num_classes)`` standard Gaussian matrix drawn from ``torch.Generator``
    seeded with ``seed`` (float64 on CPU, so the same seed gives the same targets everywhere);
    signs fixed by ``diag(R) > 0`` so the factorisation is unique.
    """
    check_target_shape("targets", num_classes, dim)
    g = torch.Generator().manual_seed(int(seed))
    q, r = torch.linalg.qr(torch.randn(dim, num_classes, generator=g, dtype=torch.float64))
    q = q * torch.where(torch.diagonal(r) < 0, -1.0, 1.0)
    return q.T.contiguous().float()


class AddonTerm(nn.Module):
    """Base class of a label-guided add-on term with fixed orthonormal class targets.

    Args:
        num_classes: number of classes K of the dataset (not of the batch).
        dim: embedding dimension d; K <= d.
        seed: seed of the targets (the trial seed).
        reduction: ``"batch"``, ``"labelled"`` or ``"sum"`` (see :meth:`reduce`); each
            subclass declares its own default in its ``__init__`` (the registry reads it there).
        name: the add-on's name, for error messages.

    Attributes:
        targets: buffer ``(K, d)``, one unit vector per class, mutually orthonormal.
    """

    targets: Tensor

    def __init__(
        self, num_classes: int, dim: int, seed: int = 0, reduction: str = "batch",
        name: str = "add-on",
    ) -> None:  # fmt: skip
        super().__init__()
        self.reduction = check_reduction(name, reduction)
        self.register_buffer("targets", orthonormal_targets(num_classes, dim, seed))
        self.last_terms: dict[str, Tensor] = {}

    def reduce(self, values: Tensor, mask: Tensor) -> Tensor:
        """Reduce per-embedding ``values`` (2B,), already 0 where ``mask`` (labelled) is 0.

        ``"batch"``: ``values.sum() / 2B`` (every embedding of the batch counts in the
        denominator, labelled or not); ``"labelled"``: ``values.sum() / n_labelled`` (the mean
        over the labelled embeddings, 0 when there are none); ``"sum"``: ``values.sum()``.
        Padding a batch with unlabelled samples scales ``"batch"`` down and leaves
        ``"labelled"`` unchanged; duplicating a batch leaves both unchanged and doubles ``"sum"``.
        """
        total = values.sum()
        if self.reduction == "batch":
            return total / values.shape[0]
        if self.reduction == "labelled":
            return total / mask.sum().clamp(min=1.0)
        return total

    def target_cosines(
        self, z1: Tensor, z2: Tensor, labels: Tensor | None
    ) -> tuple[Tensor, Tensor]:
        """``cos(z, c_y)`` of all 2B embeddings ``cat(z1, z2)`` and a 0/1 labelled mask, ``(2B,)``.

        Unlabelled rows get cosine 0 and mask 0, so masked sums are exactly 0 without labels.
        """
        k, d = self.targets.shape
        y = stacked_labels("the add-on", z1, labels, k, d)
        mask = (y >= 0).to(z1.dtype)
        c = self.targets.to(z1.dtype)[y.clamp(min=0)]
        cos = (F.normalize(torch.cat([z1, z2]), dim=1) * c).sum(1) * mask
        return cos, mask


class CompositeLoss(nn.Module):
    """``base(z1, z2, labels) + addon_weight * addon(z1, z2, labels)``.

    ``last_terms`` holds the base's own terms plus ``"base"`` (the base loss) and ``"addon"``
    (the unweighted add-on term).

    Args:
        base: the base loss module.
        addon: the add-on term module.
        addon_weight: non-negative weight of the add-on term (default 1).
        name: the composite's registry name, for error messages.
    """

    def __init__(
        self, base: nn.Module, addon: nn.Module, addon_weight: float = 1.0, name: str = "composite"
    ) -> None:
        super().__init__()
        self.base, self.addon, self.name = base, addon, name
        self.addon_weight = check_range(name, "addon_weight", addon_weight, ge=0)
        self.last_terms: dict[str, Tensor] = {}

    @checked_forward
    def forward(self, z1: Tensor, z2: Tensor, labels: Tensor | None = None) -> Tensor:
        base = self.base(z1, z2, labels)
        addon = self.addon(z1, z2, labels)
        self.last_terms = {
            **getattr(self.base, "last_terms", {}),
            "base": base.detach(),
            "addon": addon.detach(),
        }
        return base + self.addon_weight * addon
