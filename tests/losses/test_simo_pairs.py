"""simo_pairs: parity with an independent pairwise formula written from the authors' pair term."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from bench.losses import build_loss

from ._util import SHAPES, assert_same, views


def simo_reference(
    z1: Tensor, z2: Tensor, labels: Tensor | None, eps: float, olean: float
) -> Tensor:
    """Authors' pair term (1 + r)^(1 - 2y) over the unordered pairs i < j of cat(z1, z2):
    y = 1 for same-class pairs (an unlabelled sample's class is its own two views), y = olean
    for the others; the mean over the pairs of each type, summed."""
    b = z1.shape[0]
    e = torch.nn.functional.normalize(torch.cat([z1, z2]), dim=1)
    y = torch.full((b,), -1) if labels is None else labels
    cls = [int(v) if v >= 0 else f"own{i}" for i, v in enumerate(y.tolist())] * 2
    i, j = torch.triu_indices(2 * b, 2 * b, offset=1)
    dist = ((e[i] - e[j]) ** 2).sum(1)
    orth = (e[i] * e[j]).sum(1) ** 2
    r = orth / (eps + dist)
    same = torch.tensor([cls[a] == cls[c] for a, c in zip(i.tolist(), j.tolist())])
    pair = (1 + r) ** (1 - 2 * torch.where(same, 1.0, olean).to(r.dtype))
    pull = pair[same].mean()
    push = pair[~same].mean() if (~same).any() else torch.zeros((), dtype=r.dtype)
    return pull + push


@pytest.mark.parametrize(("b", "d"), SHAPES)
@pytest.mark.parametrize("frac", [0.0, 0.5, 1.0])
def test_matches_pairwise_formula(b: int, d: int, frac: float) -> None:
    z1, z2, labels = views(b, d, seed=17 * b + d, frac=frac)
    ours = build_loss("simo_pairs")
    assert_same(
        lambda a, c: ours(a, c, labels),
        lambda a, c: simo_reference(a, c, labels, 1 / 137, 1 / 137),
        z1,
        z2,
    )


def test_matches_with_other_eps_and_olean() -> None:
    z1, z2, labels = views(16, 32, frac=0.7)
    ours = build_loss("simo_pairs", eps=0.1, olean=0.2)
    assert_same(
        lambda a, c: ours(a, c, labels), lambda a, c: simo_reference(a, c, labels, 0.1, 0.2), z1, z2
    )


def test_single_class_batch_has_no_push_term() -> None:
    z1, z2, _ = views(8, 16)
    loss = build_loss("simo_pairs")
    value = loss(z1, z2, torch.zeros(8, dtype=torch.long))
    assert loss.last_terms["push"].item() == 0.0
    assert value.item() == pytest.approx(loss.last_terms["pull"].item())


@pytest.mark.parametrize("b", [2, 16])
def test_collapse_value(b: int) -> None:
    # Every embedding equal: d = 0, o = 1, r = 1/eps for every pair.
    eps, olean = 1 / 137, 1 / 137
    z = torch.randn(1, 8, dtype=torch.float64).expand(b, 8)
    want = 1 / (1 + 1 / eps) + (1 + 1 / eps) ** (1 - 2 * olean)
    assert build_loss("simo_pairs")(z, z).item() == pytest.approx(want, rel=1e-10)
