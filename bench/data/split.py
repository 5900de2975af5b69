"""The labelled subset: stratified, drawn from `split_seed` only, nested across fractions.

Every loss and every trial seed must see the *same* labelled samples (DESIGN.md, "One trial"), and
CLOA's comparison at 10% / 50% / 100% labels only makes sense if the 10% set lies inside the 50%
set. Both follow from one construction: for each class c (in sorted order) draw one permutation of
its n_c samples from a private generator seeded with `split_seed`, and label its first
`max(1, round(f * n_c))` samples (none when f == 0). The permutation does not depend on f, and the
count is monotone in f, so a smaller fraction's set is a prefix of a larger one's. The private
generator makes the split independent of the global torch seed (and so of the trial seed).
"""

from __future__ import annotations

import math

import torch

from bench.config import ConfigError


def labelled_mask(labels: torch.Tensor, fraction: float, split_seed: int) -> torch.Tensor:
    """Bool mask (on `labels`' device) of the labelled samples; labels < 0 are never labelled."""
    if not isinstance(fraction, (int, float)) or isinstance(fraction, bool) or not 0 <= fraction <= 1:
        raise ConfigError(f"config key 'label_fraction' has value {fraction!r}; it must be in [0, 1].")
    y = labels.detach().to("cpu", torch.int64)
    mask = torch.zeros(len(y), dtype=torch.bool)
    if fraction > 0:
        g = torch.Generator().manual_seed(int(split_seed))
        for c in torch.unique(y[y >= 0]).tolist():
            idx = torch.nonzero(y == c).squeeze(1)
            # floor(x + 0.5), not round(): Python rounds halves to even, which is not monotone
            # across classes of different sizes in the way a reader expects.
            count = max(1, math.floor(fraction * len(idx) + 0.5))
            mask[idx[torch.randperm(len(idx), generator=g)[:count]]] = True
    return mask.to(labels.device)


def masked_labels(labels: torch.Tensor, fraction: float, split_seed: int) -> torch.Tensor:
    """`labels` with -1 for every sample outside `labelled_mask(labels, fraction, split_seed)`."""
    mask = labelled_mask(labels, fraction, split_seed)
    return torch.where(mask, labels, torch.full_like(labels, -1))
