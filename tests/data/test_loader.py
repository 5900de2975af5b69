"""ClassBatches: P classes x K labelled samples per batch, drawn on the device from a generator."""

from __future__ import annotations

import pytest
import torch

from bench.config import ConfigError
from bench.data.loader import ClassBatches


def labels_with_holes(n_classes: int = 5, per_class: int = 12, unlabelled: int = 20):
    y = torch.arange(n_classes).repeat_interleave(per_class)
    y = torch.cat([y, torch.full((unlabelled,), -1)])
    return y[torch.randperm(len(y), generator=torch.Generator().manual_seed(0))]


def batches(labels: torch.Tensor, batch: int, p: int, steps: int = 30, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return ClassBatches(labels, batch, p, steps, g, fraction=0.5)


def test_each_batch_is_p_classes_by_k_distinct_labelled_samples():
    y = labels_with_holes()
    sampler = batches(y, 12, 3)
    drawn = list(sampler)
    assert len(drawn) == len(sampler) == 30
    for idx in drawn:
        assert idx.dtype == torch.int64 and idx.shape == (12,)
        assert len(set(idx.tolist())) == 12  # no sample twice in a batch
        blocks = y[idx].reshape(3, 4)  # classes in contiguous blocks of K = 4
        assert (blocks >= 0).all()
        assert (blocks == blocks[:, :1]).all() and len(set(blocks[:, 0].tolist())) == 3


def test_draws_cover_every_labelled_sample_and_class():
    y = labels_with_holes()
    seen = torch.cat(list(batches(y, 10, 5, steps=60)))
    assert set(seen.tolist()) == set(torch.nonzero(y >= 0).squeeze(1).tolist())
    counts = torch.bincount(y[seen], minlength=5)
    assert counts.min() == counts.max() == 60 * 2  # every class in every batch when P = 5


def test_same_generator_seed_same_batches():
    y = labels_with_holes()
    a = torch.stack(list(batches(y, 8, 2, steps=5, seed=3)))
    b = torch.stack(list(batches(y, 8, 2, steps=5, seed=3)))
    c = torch.stack(list(batches(y, 8, 2, steps=5, seed=4)))
    assert torch.equal(a, b) and not torch.equal(a, c)


@pytest.mark.parametrize(
    ("batch", "p", "needles"),
    [
        (12, 5, ["'classes_per_batch' has value 5", "divisor of batch_size (12)"]),
        (12, 6, ["'classes_per_batch' has value 6", "only 5 classes", "labels of 50%"]),
        (26, 2, ["has value 2", "13 samples", "only 12 labelled", "labels of 50%"]),
    ],
)
def test_impossible_requests_are_one_sentence_config_errors(batch, p, needles):
    with pytest.raises(ConfigError) as info:
        batches(labels_with_holes(), batch, p)
    msg = str(info.value)
    assert "\n" not in msg and msg.count(". ") == 0, msg
    for needle in needles:
        assert needle in msg, msg


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_runs_on_the_device_of_the_labels():
    y = labels_with_holes().cuda()
    g = torch.Generator(device="cuda").manual_seed(0)
    idx = next(iter(ClassBatches(y, 12, 3, 2, g)))
    assert idx.device.type == "cuda" and (y[idx] >= 0).all()
