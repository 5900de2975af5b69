"""Label split invariants: stratified, nested across fractions, fixed by split_seed alone."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from bench.config import ConfigError
from bench.data.split import labelled_mask, masked_labels

# Unequal class sizes (5..140) in a shuffled order, so stratification is visible.
SIZES = [5, 17, 40, 140, 33, 8, 61, 99, 12, 25]
LABELS = torch.cat([torch.full((n,), c) for c, n in enumerate(SIZES)])[
    torch.randperm(sum(SIZES), generator=torch.Generator().manual_seed(42))]


@pytest.mark.parametrize("fraction", [0.01, 0.1, 0.5, 0.9, 1.0])
def test_stratified_counts_per_class(fraction):
    mask = labelled_mask(LABELS, fraction, split_seed=0)
    for c, n in enumerate(SIZES):
        want = max(1, math.floor(fraction * n + 0.5))
        assert int(mask[torch.eq(LABELS, c)].sum()) == want


def test_nested_across_fractions():
    fractions = [0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0]
    masks = [labelled_mask(LABELS, f, split_seed=3) for f in fractions]
    for small, large in itertools.pairwise(masks):
        assert bool((small & ~large).sum() == 0)  # small is a subset of large
        assert int(small.sum()) <= int(large.sum())
    assert bool(masks[-1].all())


def test_depends_on_split_seed_only():
    torch.manual_seed(0)
    a = labelled_mask(LABELS, 0.1, split_seed=7)
    torch.manual_seed(123)  # a different trial seed must not change the labelled set
    torch.rand(1000)
    b = labelled_mask(LABELS, 0.1, split_seed=7)
    assert torch.equal(a, b)
    assert not torch.equal(a, labelled_mask(LABELS, 0.1, split_seed=8))


def test_masked_labels_and_edge_fractions():
    lab = masked_labels(LABELS, 0.5, split_seed=0)
    mask = labelled_mask(LABELS, 0.5, split_seed=0)
    assert torch.equal(lab[mask], LABELS[mask]) and bool((lab[~mask] == -1).all())
    assert lab.dtype == LABELS.dtype
    assert not labelled_mask(LABELS, 0.0, split_seed=0).any()
    assert bool((masked_labels(LABELS, 0.0, split_seed=0) == -1).all())
    with pytest.raises(ConfigError, match=r"'label_fraction' has value 1.5"):
        labelled_mask(LABELS, 1.5, split_seed=0)


def test_unlabelled_inputs_are_never_labelled():
    y = LABELS.clone()
    y[:50] = -1
    mask = labelled_mask(y, 1.0, split_seed=0)
    assert not mask[:50].any() and bool(mask[50:].all())
