"""Label split invariants: stratified, nested across fractions, fixed by split_seed alone."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from bench.config import ConfigError
from bench.data.split import carve_validation, labelled_mask, masked_labels, validation_mask

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


# --- the validation hold-out ---------------------------------------------------------------------


@pytest.mark.parametrize("fraction", [0.05, 0.1, 0.3])
def test_validation_split_is_stratified(fraction):
    mask = validation_mask(LABELS, fraction, split_seed=0)
    for c, n in enumerate(SIZES):
        assert int(mask[c == LABELS].sum()) == math.floor(fraction * n + 0.5)


def test_validation_split_is_nested_and_fixed_by_split_seed_alone():
    masks = [validation_mask(LABELS, f, split_seed=3) for f in (0.05, 0.1, 0.2, 0.4)]
    for small, large in itertools.pairwise(masks):
        assert not (small & ~large).any()
    torch.manual_seed(123)  # the global RNG (trial seed) must not matter
    assert torch.equal(validation_mask(LABELS, 0.1, split_seed=3), masks[1])
    assert not torch.equal(validation_mask(LABELS, 0.1, split_seed=4), masks[1])


def test_validation_split_does_not_reuse_the_label_split():
    # Same seed, same fraction: a different draw, so labelled and held-out samples are unrelated.
    assert not torch.equal(validation_mask(LABELS, 0.1, 0), labelled_mask(LABELS, 0.1, 0))


@pytest.mark.parametrize("fraction", [-0.1, 0.5, 0.9, True, "0.1"])
def test_validation_fraction_out_of_range_is_a_config_error(fraction):
    with pytest.raises(ConfigError, match="val_fraction"):
        validation_mask(LABELS, fraction, split_seed=0)


def test_carved_validation_is_disjoint_from_train_and_test_and_identical_across_trials():
    from bench.config import TrialConfig
    from bench.data import load_dataset
    from bench.train import prepare_trial

    ds = load_dataset("digits")
    carved = carve_validation(ds, 0.1, split_seed=0)
    assert len(carved.train_x) + len(carved.val_x) == len(ds.train_x)
    # Disjointness by index (digits has duplicate images, so content would mislead).
    held = validation_mask(ds.train_y, 0.1, 0)
    assert torch.equal(carved.val_y, ds.train_y[held]) and torch.equal(carved.train_y, ds.train_y[~held])
    # Every loss and seed of a sweep gets the same hold-out (the trial carves it from split_seed).
    base = dict(dataset="digits", epochs=1, batch_size=64, device="cpu", projector=(32,),
                mlp_hidden=(32,))
    splits = [prepare_trial(TrialConfig(loss=loss, seed=seed, **base)).dataset
              for loss, seed in (("infonce", 0), ("supcon", 0), ("infonce", 5))]
    for other in splits[1:]:
        assert torch.equal(other.val_x, splits[0].val_x) and torch.equal(other.train_x, splits[0].train_x)
    assert torch.equal(splits[0].val_x, carved.val_x)
    # The test split is untouched.
    assert torch.equal(splits[0].test_x, ds.test_x)
