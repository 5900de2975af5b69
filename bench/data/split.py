"""The validation hold-out and the labelled subset: stratified, from `split_seed` only, nested.

Every loss and every trial seed must see the *same* labelled samples (README.md, "One trial"), and
CLOA's comparison at 10% / 50% / 100% labels only makes sense if the 10% set lies inside the 50%
set. Both follow from one construction: for each class c (in sorted order) draw one permutation of
its n_c samples from a private generator seeded with `split_seed`, and label its first
`max(1, round(f * n_c))` samples (none when f == 0). The permutation does not depend on f, and the
count is monotone in f, so a smaller fraction's set is a prefix of a larger one's. The private
generator makes the split independent of the global torch seed (and so of the trial seed).

The validation split (`carve_validation`) is made the same way, from its own generator
(`split_seed` + `VAL_SEED_OFFSET`), *before* the label split: it is removed from the training set,
so pretraining, the kNN bank and the probes never see it, and everything the harness selects (lr,
temperatures, `bench tune` objectives) is chosen on it while the test split is only reported.
"""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING

import torch

from bench.config import ConfigError

if TYPE_CHECKING:
    from bench.data import Dataset

VAL_SEED_OFFSET = 1_000_003  # the validation draw must not reuse the label split's permutations


def _stratified_prefix(y: torch.Tensor, fraction: float, seed: int, minimum: int) -> torch.Tensor:
    """Per class, the first `max(minimum, floor(f * n_c + 0.5))` samples of a seeded permutation."""
    mask = torch.zeros(len(y), dtype=torch.bool)
    if fraction > 0:
        g = torch.Generator().manual_seed(int(seed))
        for c in torch.unique(y[y >= 0]).tolist():
            idx = torch.nonzero(y == c).squeeze(1)
            # floor(x + 0.5), not round(): Python rounds halves to even, which is not monotone
            # across classes of different sizes in the way a reader expects.
            count = max(minimum, math.floor(fraction * len(idx) + 0.5))
            mask[idx[torch.randperm(len(idx), generator=g)[:count]]] = True
    return mask


def labelled_mask(labels: torch.Tensor, fraction: float, split_seed: int) -> torch.Tensor:
    """Bool mask (on `labels`' device) of the labelled samples; labels < 0 are never labelled."""
    if (
        not isinstance(fraction, (int, float))
        or isinstance(fraction, bool)
        or not 0 <= fraction <= 1
    ):
        raise ConfigError(
            f"config key 'label_fraction' has value {fraction!r}; it must be in [0, 1]."
        )
    y = labels.detach().to("cpu", torch.int64)
    return _stratified_prefix(y, fraction, split_seed, minimum=1).to(labels.device)


def masked_labels(labels: torch.Tensor, fraction: float, split_seed: int) -> torch.Tensor:
    """`labels` with -1 for every sample outside `labelled_mask(labels, fraction, split_seed)`."""
    mask = labelled_mask(labels, fraction, split_seed)
    return torch.where(mask, labels, torch.full_like(labels, -1))


def validation_mask(labels: torch.Tensor, fraction: float, split_seed: int) -> torch.Tensor:
    """Bool mask of the validation hold-out: stratified, nested across fractions, from split_seed.

    Per class `floor(f * n_c + 0.5)` samples (possibly 0 for a tiny class), so a class is never
    emptied from the training set by a fraction below 0.5.
    """
    if (
        not isinstance(fraction, (int, float))
        or isinstance(fraction, bool)
        or not 0 <= fraction < 0.5
    ):
        raise ConfigError(
            f"config key 'val_fraction' has value {fraction!r}; it must be in [0, 0.5)."
        )
    y = labels.detach().to("cpu", torch.int64)
    return _stratified_prefix(y, fraction, split_seed + VAL_SEED_OFFSET, minimum=0).to(
        labels.device
    )


def carve_validation(ds: Dataset, fraction: float, split_seed: int) -> Dataset:
    """`ds` with a stratified validation split moved out of its training set (`val_x`, `val_y`).

    The same (`fraction`, `split_seed`) gives the same split for every loss and trial seed.
    `fraction == 0` leaves the training set whole and the validation split empty.
    """
    held = validation_mask(ds.train_y, fraction, split_seed)
    keep = ~held
    return dataclasses.replace(
        ds,
        train_x=ds.train_x[keep],
        train_y=ds.train_y[keep],
        val_x=ds.train_x[held],
        val_y=ds.train_y[held],
    )
