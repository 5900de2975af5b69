"""supcon: parity with pytorch-metric-learning's SupConLoss and the SupContrast formula."""

from __future__ import annotations

import math

import pytest
import torch
from pytorch_metric_learning.losses import SupConLoss as PMLSupCon
from torch import Tensor

from bench.losses import build_loss

from ._util import SHAPES, assert_same, views


def own_class_labels(labels: Tensor) -> Tensor:
    """Give each unlabelled sample (-1) a fresh class of its own, as our supcon does."""
    fresh = int(labels.max().clamp(min=0)) + 1 + torch.arange(labels.shape[0])
    return torch.where(labels >= 0, labels, fresh)


def supcontrast(features: Tensor, labels: Tensor, temperature: float, base: float) -> Tensor:
    """SupContrast's SupConLoss, contrast_mode='all' (HobbitLong/SupContrast losses.py@66a8fe5),
    re-written here: features (B, n_views, d) already L2-normalised by the caller."""
    b, n_views, _ = features.shape
    f = torch.cat(torch.unbind(features, dim=1))
    logits = f @ f.T / temperature
    logits = logits - logits.max(dim=1, keepdim=True).values.detach()
    mask = (labels[:, None] == labels[None, :]).double().repeat(n_views, n_views)
    not_self = 1.0 - torch.eye(b * n_views, dtype=torch.float64)
    mask = mask * not_self
    log_prob = logits - torch.log((torch.exp(logits) * not_self).sum(1, keepdim=True))
    pos = mask.sum(1)
    mean_log_prob_pos = (mask * log_prob).sum(1) / torch.where(pos < 1e-6, 1.0, pos)
    return (-(temperature / base) * mean_log_prob_pos).mean()


@pytest.mark.parametrize(("b", "d"), SHAPES)
@pytest.mark.parametrize("frac", [0.0, 0.5, 1.0])
def test_matches_pytorch_metric_learning(b: int, d: int, frac: float) -> None:
    # PML SupConLoss normalises its embeddings and averages over anchors that have a positive
    # (AvgNonZeroReducer). Here every anchor has one (its other view), so nothing is dropped;
    # PML has no base temperature: our default base_temperature = temperature gives factor 1.
    z1, z2, labels = views(b, d, seed=11 * b + d, frac=frac)
    y = own_class_labels(labels)
    ours, pml = build_loss("supcon", temperature=0.1), PMLSupCon(temperature=0.1)
    assert_same(
        lambda a, c: ours(a, c, labels),
        lambda a, c: pml(torch.cat([a, c]), torch.cat([y, y])),
        z1,
        z2,
    )


@pytest.mark.parametrize(("b", "d"), SHAPES)
@pytest.mark.parametrize(("temperature", "base"), [(0.1, 0.1), (0.07, 0.07), (0.1, 0.07)])
def test_matches_supcontrast_formula(b: int, d: int, temperature: float, base: float) -> None:
    # SupContrast does not normalise (the caller must) and scales by temperature/base.
    z1, z2, labels = views(b, d, seed=13 * b + d, frac=0.6)
    y = own_class_labels(labels)
    ours = build_loss("supcon", temperature=temperature, base_temperature=base)

    def ref(a: Tensor, c: Tensor) -> Tensor:
        feats = torch.nn.functional.normalize(torch.stack([a, c], dim=1), dim=2)
        return supcontrast(feats, y, temperature, base)

    assert_same(lambda a, c: ours(a, c, labels), ref, z1, z2)


def test_without_labels_equals_infonce() -> None:
    z1, z2, _ = views(16, 32)
    infonce = build_loss("infonce", temperature=0.2)
    assert_same(lambda a, c: build_loss("supcon", temperature=0.2)(a, c, None), infonce, z1, z2)
    all_unlabelled = torch.full((16,), -1)
    assert_same(
        lambda a, c: build_loss("supcon", temperature=0.2)(a, c, all_unlabelled), infonce, z1, z2
    )


@pytest.mark.parametrize("b", [2, 16, 64])
@pytest.mark.parametrize("frac", [0.0, 0.5, 1.0])
def test_collapse_value_is_log_2b_minus_1(b: int, frac: float) -> None:
    # With base = tau every anchor's positives and negatives tie: log(2B - 1) for any labels.
    _, _, labels = views(b, 8, frac=frac)
    z = torch.randn(1, 8, dtype=torch.float64).expand(b, 8)
    value = build_loss("supcon")(z, z, labels).item()
    assert value == pytest.approx(math.log(2 * b - 1), abs=1e-10)
