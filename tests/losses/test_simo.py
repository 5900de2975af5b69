"""simo: parity with the authors' simo2_loss_fn (exp_vis src/train.py), rewritten in torch."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import Tensor

from bench.losses import build_loss

from ._util import assert_same

EPS = OLEAN = 1 / 137


def combined_loss(
    embeddings: Tensor, label: float, indices: tuple[Tensor, Tensor], eps: float
) -> Tensor:
    """exp_vis src/train.py lines 173-203, line for line."""
    e1, e2 = embeddings[indices[0]], embeddings[indices[1]]
    dot_product_squared = (e1 * e2).sum(1) ** 2
    squared_distances = ((e1 - e2) ** 2).sum(1)
    loss = torch.exp((1 - 2 * label) * torch.log1p(dot_product_squared / (eps + squared_distances)))
    return loss.sum()


def simo2_loss_fn(projected: Tensor, p: int, k: int, alpha: float, eps: float) -> Tensor:
    """exp_vis src/train.py lines 211-227 on a (P*K, dim) class-sorted batch of unit rows."""
    same_idx, cls_idx = torch.triu_indices(k, k, 1), torch.triu_indices(p, p, 1)
    reshaped = projected.reshape(p, k, -1)
    mean_embeddings = reshaped.mean(1)
    loss = combined_loss(mean_embeddings, alpha, (cls_idx[0], cls_idx[1]), eps)
    same_loss = sum(combined_loss(x, 1.0, (same_idx[0], same_idx[1]), eps) for x in reshaped)
    reshaped = reshaped.transpose(0, 1)
    diff_loss = sum(combined_loss(x, alpha, (cls_idx[0], cls_idx[1]), eps) for x in reshaped)
    return same_loss + loss + diff_loss


def authors_on_views(
    z1: Tensor, z2: Tensor, labels: Tensor, views: int, eps: float, olean: float
) -> Tensor:
    """The authors' loss on the harness's batch: class blocks in order of first appearance, each
    holding its samples' view-1 embeddings in batch order, then (views=2) their view-2 ones."""
    classes = list(dict.fromkeys(labels.tolist()))
    blocks = []
    for c in classes:
        idx = (labels == c).nonzero().squeeze(1)
        blocks.append(torch.cat([z1[idx], z2[idx]]) if views == 2 else z1[idx])
    rows = torch.nn.functional.normalize(torch.cat(blocks), dim=1)  # the model's x / ||x||
    return simo2_loss_fn(rows, len(classes), len(blocks[0]), olean, eps)


def class_batch(p: int, k: int, d: int, seed: int, shuffle: bool) -> tuple[Tensor, Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    labels = torch.randperm(10, generator=g)[:p].repeat_interleave(k)
    z1 = torch.randn(p * k, d, generator=g, dtype=torch.float64)
    z2 = z1 + 0.5 * torch.randn(p * k, d, generator=g, dtype=torch.float64)
    if shuffle:
        perm = torch.randperm(p * k, generator=g)
        z1, z2, labels = z1[perm], z2[perm], labels[perm]
    return z1, z2, labels


CASES = [(2, 2, 8), (4, 8, 16), (8, 4, 128), (3, 5, 16), (1, 6, 8)]


@pytest.mark.parametrize(("p", "k", "d"), CASES)
@pytest.mark.parametrize("views", [2, 1])
@pytest.mark.parametrize("shuffle", [False, True])
def test_matches_the_authors_code_on_class_structured_batches(
    p: int, k: int, d: int, views: int, shuffle: bool
) -> None:
    z1, z2, labels = class_batch(p, k, d, seed=13 * p + k + d, shuffle=shuffle)
    ours = build_loss("simo", views=views)
    unused = (lambda c: 0 * c.sum()) if views == 1 else (lambda c: 0)  # views=1 ignores z2
    assert_same(
        lambda a, c: ours(a, c, labels) + unused(c),
        lambda a, c: authors_on_views(a, c, labels, views, EPS, OLEAN) + unused(c),
        z1,
        z2,
    )


def test_matches_with_other_eps_and_olean() -> None:
    z1, z2, labels = class_batch(4, 4, 16, seed=1, shuffle=True)
    ours = build_loss("simo", eps=0.1, olean=0.2)
    assert_same(
        lambda a, c: ours(a, c, labels),
        lambda a, c: authors_on_views(a, c, labels, 2, 0.1, 0.2),
        z1,
        z2,
    )


def pairwise_reference(z1: Tensor, z2: Tensor, labels: Tensor) -> Tensor:
    """The general definition on any batch, pair by pair: unlabelled rows take no part, same =
    same-class pairs, diff = different classes at equal within-class rank, means = class means."""
    e = torch.nn.functional.normalize(torch.cat([z1, z2]), dim=1)
    y = torch.cat([labels, labels]).tolist()
    rank, seen = [], {}
    for c in y:
        rank.append(seen.get(c, 0))
        seen[c] = seen.get(c, 0) + 1

    def f(a: Tensor, b: Tensor, t: float) -> Tensor:
        r = (a @ b) ** 2 / (EPS + ((a - b) ** 2).sum())
        return (1 + r) ** (1 - 2 * t)

    total = torch.zeros((), dtype=e.dtype)
    for i, j in itertools.combinations(range(len(y)), 2):
        if y[i] < 0 or y[j] < 0:
            continue
        if y[i] == y[j]:
            total = total + f(e[i], e[j], 1.0)
        elif rank[i] == rank[j]:
            total = total + f(e[i], e[j], OLEAN)
    classes = sorted({c for c in y if c >= 0})
    means = {c: e[[i for i in range(len(y)) if y[i] == c]].mean(0) for c in classes}
    for a, b in itertools.combinations(classes, 2):
        total = total + f(means[a], means[b], OLEAN)
    return total


@pytest.mark.parametrize("seed", range(4))
def test_any_batch_follows_the_pairwise_definition(seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    z1, z2 = (
        torch.randn(11, 6, generator=g, dtype=torch.float64),
        torch.randn(11, 6, generator=g, dtype=torch.float64),
    )
    labels = torch.randint(-1, 4, (11,), generator=g)
    ours = build_loss("simo")
    assert_same(
        lambda a, c: ours(a, c, labels), lambda a, c: pairwise_reference(a, c, labels), z1, z2
    )


def test_unlabelled_samples_take_no_part() -> None:
    z1, z2, labels = class_batch(3, 4, 16, seed=2, shuffle=True)
    extra1, extra2, _ = class_batch(1, 5, 16, seed=3, shuffle=False)
    loss = build_loss("simo")
    padded = loss(
        torch.cat([extra1, z1]), torch.cat([extra2, z2]), torch.cat([torch.full((5,), -1), labels])
    )
    assert padded.item() == pytest.approx(loss(z1, z2, labels).item(), rel=1e-12)


@pytest.mark.parametrize("labels", [None, "all_unlabelled"])
def test_no_labels_is_exactly_zero(labels: str | None) -> None:
    z1, z2, _ = class_batch(2, 3, 8, seed=0, shuffle=False)
    y = None if labels is None else torch.full((6,), -1)
    a, c = z1.clone().requires_grad_(True), z2.clone().requires_grad_(True)
    loss = build_loss("simo")
    value = loss(a, c, y)
    value.backward()
    assert value.item() == 0.0 and torch.equal(a.grad, torch.zeros_like(a))


def test_terms_add_up_and_collapse_value() -> None:
    p, k = 3, 4
    z = torch.randn(1, 8, dtype=torch.float64).expand(p * k, 8)
    labels = torch.arange(p).repeat_interleave(k)
    loss = build_loss("simo")
    value = loss(z, z, labels)
    t = loss.last_terms
    assert value.item() == pytest.approx((t["same"] + t["diff"] + t["means"]).item(), rel=1e-12)
    # Every embedding (and every class mean) equal: d = 0, o = 1, r = 1/eps for every pair.
    q = 1 + 1 / EPS
    same = p * (2 * k) * (2 * k - 1) / 2 / q
    push = q ** (1 - 2 * OLEAN)
    want = same + 2 * k * p * (p - 1) / 2 * push + p * (p - 1) / 2 * push
    assert value.item() == pytest.approx(want, rel=1e-10)


@pytest.mark.parametrize("views", [0, 3, True, 1.5])
def test_bad_views_is_an_error(views: object) -> None:
    with pytest.raises(ValueError, match=r"simo: views must be 1 or 2, got"):
        build_loss("simo", views=views)
