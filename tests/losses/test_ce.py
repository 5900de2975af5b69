"""ce: parity with a hand-written softmax cross-entropy, no-label batches, its own parameters."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from bench.losses import build_loss, loss_info

from ._util import SHAPES, assert_same, views

K = 4


def ce_reference(z1: Tensor, z2: Tensor, labels: Tensor, w: Tensor, b: Tensor) -> Tensor:
    """Mean over the labelled embeddings of both views of -log softmax(W z + b)_y."""
    terms = []
    for z in (z1, z2):
        for i, y in enumerate(labels.tolist()):
            if y >= 0:
                logits = w @ z[i] + b
                terms.append(torch.logsumexp(logits, 0) - logits[y])
    return torch.stack(terms).mean() if terms else torch.zeros((), dtype=z1.dtype)


@pytest.mark.parametrize(("b", "d"), SHAPES)
@pytest.mark.parametrize("frac", [0.3, 1.0])
def test_matches_hand_written_cross_entropy(b: int, d: int, frac: float) -> None:
    z1, z2, labels = views(b, d, seed=11 * b + d, frac=frac, num_classes=K)
    labels[0] = 1  # at least one labelled sample
    ours = build_loss("ce", num_classes=K, dim=d, seed=2)
    w, bias = ours.classifier.weight.double(), ours.classifier.bias.double()
    assert_same(
        lambda a, c: ours(a, c, labels), lambda a, c: ce_reference(a, c, labels, w, bias), z1, z2
    )


@pytest.mark.parametrize("labels", [None, "all_unlabelled"])
def test_no_labels_is_exactly_zero_with_zero_gradients(labels: str | None) -> None:
    z1, z2, _ = views(8, 16, dtype=torch.float32)
    y = None if labels is None else torch.full((8,), -1)
    loss = build_loss("ce", num_classes=K, dim=16)
    a, c = z1.clone().requires_grad_(True), z2.clone().requires_grad_(True)
    value = loss(a, c, y)
    value.backward()  # connected to the graph: a training step on such a batch is a no-op
    assert value.item() == 0.0
    for g in (a.grad, c.grad, loss.classifier.weight.grad, loss.classifier.bias.grad):
        assert g is not None and torch.equal(g, torch.zeros_like(g))


def test_classifier_is_a_trainable_parameter_drawn_from_the_seed() -> None:
    a, b = (
        build_loss("ce", num_classes=K, dim=8, seed=3),
        build_loss("ce", num_classes=K, dim=8, seed=3),
    )
    names = {n for n, p in a.named_parameters() if p.requires_grad}
    assert names == {"classifier.weight", "classifier.bias"}
    assert torch.equal(a.classifier.weight, b.classifier.weight)
    other = build_loss("ce", num_classes=K, dim=8, seed=4)
    assert not torch.equal(a.classifier.weight, other.classifier.weight)
    assert a.classifier.weight.abs().max().item() <= 8**-0.5
    assert loss_info("ce").uses_labels and loss_info("ce").params == {}


def test_only_labelled_samples_matter() -> None:
    z1, z2, labels = views(10, 8, frac=0.5, num_classes=K)
    loss = build_loss("ce", num_classes=K, dim=8)
    moved1, moved2 = z1.clone(), z2.clone()
    unlabelled = labels < 0
    moved1[unlabelled] += 5.0
    moved2[unlabelled] -= 3.0
    assert loss(z1, z2, labels).item() == pytest.approx(
        loss(moved1, moved2, labels).item(), rel=1e-12
    )


@pytest.mark.parametrize(("num_classes", "dim"), [(None, 8), (4, None), (0, 8), (4, 2.5)])
def test_needs_num_classes_and_dim(num_classes: int | None, dim: int | None) -> None:
    with pytest.raises(ValueError, match=r"loss 'ce' needs (num_classes|dim)"):
        build_loss("ce", num_classes=num_classes, dim=dim)


def test_label_out_of_range_and_wrong_dim_are_errors() -> None:
    loss = build_loss("ce", num_classes=K, dim=8)
    z = torch.randn(4, 8)
    with pytest.raises(ValueError, match=r"labels must be in -1\.\.3"):
        loss(z, z, torch.tensor([0, 1, 4, -1]))
    with pytest.raises(ValueError, match="dim=8"):
        loss(torch.randn(4, 6), torch.randn(4, 6), torch.tensor([0, 1, 2, -1]))
