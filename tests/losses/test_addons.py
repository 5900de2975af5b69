"""cloa and clop add-on terms and their composition: formulas, targets, no-label batches."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from bench.losses import build_loss, loss_info, orthonormal_targets

from ._util import SHAPES, assert_same, views

K = 4


def cloa_reference(z1: Tensor, z2: Tensor, labels: Tensor, targets: Tensor) -> Tensor:
    """CLOA Eq. (2), one-to-one with a mean-reduced base: the sum over the labelled set S (both
    views' embeddings) of 1 - cos(z, c_y), divided by the 2B embeddings of the batch."""
    total = torch.zeros((), dtype=z1.dtype)
    for i, y in enumerate(labels.tolist()):
        if y >= 0:
            for z in (z1[i], z2[i]):
                total = total + 1 - torch.cosine_similarity(z, targets[y], dim=0)
    return total / (2 * len(labels))


def clop_reference(z1: Tensor, z2: Tensor, labels: Tensor, targets: Tensor) -> Tensor:
    """CLOP, lambda = 1: (1/|S_b|) sum_i [1 - (cos(z1_i, c) + cos(z2_i, c)) / 2]."""
    terms = [
        1
        - (
            torch.cosine_similarity(z1[i], targets[y], dim=0)
            + torch.cosine_similarity(z2[i], targets[y], dim=0)
        )
        / 2
        for i, y in enumerate(labels.tolist())
        if y >= 0
    ]
    return torch.stack(terms).mean() if terms else torch.zeros((), dtype=z1.dtype)


REFERENCES = {"cloa": cloa_reference, "clop": clop_reference}


@pytest.mark.parametrize(("b", "d"), SHAPES)
@pytest.mark.parametrize("addon", ["cloa", "clop"])
def test_composite_matches_base_plus_weighted_formula(addon: str, b: int, d: int) -> None:
    z1, z2, labels = views(b, d, seed=19 * b + d, frac=0.6, num_classes=K)
    ours = build_loss(
        f"{addon}+infonce", num_classes=K, dim=d, seed=3, addon_weight=0.7, temperature=0.2
    )
    base = build_loss("infonce", temperature=0.2)
    targets = ours.addon.targets.double()
    assert_same(
        lambda a, c: ours(a, c, labels),
        lambda a, c: base(a, c) + 0.7 * REFERENCES[addon](a, c, labels, targets),
        z1,
        z2,
    )


def test_default_reductions_and_their_relations() -> None:
    z1, z2, labels = views(32, 16, frac=0.5, num_classes=K)
    n_labelled = int((labels >= 0).sum())

    def term(addon: str, reduction: str | None = None) -> float:
        loss = build_loss(f"{addon}+dcl", num_classes=K, dim=16, reduction=reduction)
        return loss.addon(z1, z2, labels).item()

    assert loss_info("cloa+dcl").params["reduction"] == "batch"
    assert loss_info("clop+dcl").params["reduction"] == "labelled"
    raw = term("cloa", "sum")
    assert raw == pytest.approx(2 * n_labelled * term("clop"), rel=1e-12)
    assert term("cloa") == pytest.approx(raw / (2 * 32), rel=1e-12)
    for reduction in ("batch", "labelled", "sum"):
        assert term("cloa", reduction) == pytest.approx(term("clop", reduction), rel=1e-12)


@pytest.mark.parametrize("addon", ["cloa", "clop"])
def test_reduction_definitions_padding_and_duplication(addon: str) -> None:
    # batch = sum over labelled / 2B, labelled = mean over labelled, sum = raw: padding the batch
    # with as many unlabelled samples halves "batch" and keeps "labelled"; duplicating the batch
    # keeps both (and doubles "sum").
    z1, z2, labels = views(12, 16, frac=0.6, num_classes=K)
    pad1, pad2, _ = views(12, 16, seed=5, num_classes=K)
    unlabelled = torch.full((12,), -1)

    def value(reduction: str, a: Tensor, c: Tensor, y: Tensor) -> float:
        term = build_loss(f"{addon}+infonce", num_classes=K, dim=16, reduction=reduction).addon
        return term(a, c, y).item()

    padded = (torch.cat([z1, pad1]), torch.cat([z2, pad2]), torch.cat([labels, unlabelled]))
    doubled = (torch.cat([z1, z1]), torch.cat([z2, z2]), torch.cat([labels, labels]))
    one = {r: value(r, z1, z2, labels) for r in ("batch", "labelled", "sum")}
    assert one["batch"] > 0
    assert value("batch", *padded) == pytest.approx(one["batch"] / 2, rel=1e-12)
    assert value("labelled", *padded) == pytest.approx(one["labelled"], rel=1e-12)
    assert value("sum", *padded) == pytest.approx(one["sum"], rel=1e-12)
    assert value("batch", *doubled) == pytest.approx(one["batch"], rel=1e-12)
    assert value("labelled", *doubled) == pytest.approx(one["labelled"], rel=1e-12)
    assert value("sum", *doubled) == pytest.approx(2 * one["sum"], rel=1e-12)


@pytest.mark.parametrize("addon", ["cloa", "clop"])
@pytest.mark.parametrize("bad", ["mean", "", None, 1])
def test_bad_reduction_is_one_sentence_naming_key_and_value(addon: str, bad: object) -> None:
    if bad is None:  # None means "the default" in build_loss
        assert build_loss(f"{addon}+infonce", num_classes=K, dim=8, reduction=None)
        return
    with pytest.raises(ValueError) as info:
        build_loss(f"{addon}+infonce", num_classes=K, dim=8, reduction=bad)
    msg = str(info.value)
    assert msg == f"{addon}: reduction must be one of 'batch', 'labelled' or 'sum', got {bad!r}."


@pytest.mark.parametrize("addon", ["cloa", "clop"])
@pytest.mark.parametrize("labels", [None, "all_unlabelled"])
def test_no_labelled_sample_adds_exactly_zero(addon: str, labels: str | None) -> None:
    z1, z2, _ = views(8, 16, dtype=torch.float32)
    y = None if labels is None else torch.full((8,), -1)
    loss = build_loss(f"{addon}+vicreg", num_classes=K, dim=16)
    a, c = z1.clone().requires_grad_(True), z2.clone().requires_grad_(True)
    value = loss(a, c, y)
    value.backward()
    assert loss.last_terms["addon"].item() == 0.0
    assert value.item() == build_loss("vicreg")(z1, z2).item()
    assert torch.isfinite(a.grad).all() and torch.isfinite(c.grad).all()


@pytest.mark.parametrize(("k", "d", "seed"), [(10, 10, 0), (10, 128, 1), (1, 3, 2), (100, 128, 3)])
def test_targets_are_orthonormal_and_seeded(k: int, d: int, seed: int) -> None:
    t = orthonormal_targets(k, d, seed)
    assert t.shape == (k, d) and t.dtype == torch.float32
    torch.testing.assert_close(t @ t.T, torch.eye(k), atol=1e-6, rtol=0)
    assert torch.equal(t, orthonormal_targets(k, d, seed))
    assert not torch.allclose(t, orthonormal_targets(k, d, seed + 1))


def test_targets_are_a_buffer_drawn_from_the_seed() -> None:
    a = build_loss("clop+supcon", num_classes=K, dim=8, seed=5)
    b = build_loss("cloa+infonce", num_classes=K, dim=8, seed=5)
    assert "addon.targets" in dict(a.named_buffers())
    assert not any(p.requires_grad for p in a.parameters())
    assert torch.equal(a.addon.targets, b.addon.targets)
    assert a.to(torch.float64).addon.targets.dtype == torch.float64


def test_more_classes_than_dims_is_an_error_naming_both() -> None:
    with pytest.raises(ValueError, match=r"num_classes \(12\) must be <= dim \(8\)"):
        build_loss("cloa+infonce", num_classes=12, dim=8)


@pytest.mark.parametrize(("num_classes", "dim"), [(None, 8), (4, None), (0, 8), (4, 2.5)])
def test_composite_needs_num_classes_and_dim(num_classes: int | None, dim: int | None) -> None:
    with pytest.raises(ValueError, match=r"num_classes|dim"):
        build_loss("clop+infonce", num_classes=num_classes, dim=dim)


def test_label_out_of_range_and_wrong_dim_are_errors() -> None:
    loss = build_loss("clop+infonce", num_classes=K, dim=8)
    z = torch.randn(4, 8)
    with pytest.raises(ValueError, match=r"labels must be in -1\.\.3"):
        loss(z, z, torch.tensor([0, 1, 4, -1]))
    with pytest.raises(ValueError, match="dim=8"):
        loss(torch.randn(4, 6), torch.randn(4, 6), torch.tensor([0, 1, 2, -1]))


def test_composite_info_and_terms() -> None:
    info = loss_info("clop+vicreg")
    assert info.uses_labels and info.kind == "composite"
    assert info.params == {
        **loss_info("vicreg").params,
        "addon_weight": 1.0,
        "reduction": "labelled",
    }
    assert info.terms == ("base", "addon", "invariance", "variance", "covariance")
    loss = build_loss("clop+vicreg", num_classes=K, dim=8)
    z1, z2, labels = views(6, 8, num_classes=K)
    value = loss(z1, z2, labels)
    assert set(loss.last_terms) == set(info.terms)
    t = loss.last_terms
    assert value.item() == pytest.approx((t["base"] + t["addon"]).item(), rel=1e-12)


def test_negative_addon_weight_is_an_error() -> None:
    with pytest.raises(ValueError, match="addon_weight must be >= 0"):
        build_loss("cloa+infonce", num_classes=K, dim=8, addon_weight=-1.0)


def test_cloa_gradient_does_not_vanish_on_a_line() -> None:
    # Where InfoNCE alone is stationary (all embeddings on one line, CLOA Thm 3.1), the anchor
    # term still pulls labelled samples towards their orthogonal class targets.
    g = torch.Generator().manual_seed(0)
    b, d = 16, 32
    z = (torch.rand(2 * b, 1, generator=g, dtype=torch.float64) + 0.5) * torch.randn(
        d, generator=g, dtype=torch.float64
    )
    z.requires_grad_(True)
    labels = torch.arange(b) % K
    build_loss("cloa+infonce", num_classes=K, dim=d)(z[:b], z[b:], labels).backward()
    assert z.grad is not None and z.grad.abs().max().item() > 1e-3
