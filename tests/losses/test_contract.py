"""Contract tests over every registered loss (plugins' too) and a few composites."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest
import torch
from torch import nn

import bench.losses
from bench.losses import build_loss, list_losses, loss_info

from ._util import COMPOSITES, NUM_CLASSES, views

NAMES = list_losses() + COMPOSITES
D = 16


def make(name: str) -> nn.Module:
    return build_loss(name, num_classes=NUM_CLASSES, dim=D, seed=0)


def mixed_labels(b: int) -> torch.Tensor:
    return torch.tensor([i % NUM_CLASSES if i % 3 else -1 for i in range(b)])


def run(loss: nn.Module, z1: torch.Tensor, z2: torch.Tensor, labels: torch.Tensor | None):
    a, c = z1.clone().requires_grad_(True), z2.clone().requires_grad_(True)
    value = loss(a, c, labels)
    value.backward()
    return value, a.grad, c.grad


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("b", [2, 9])
@pytest.mark.parametrize("labels", ["none", "all_unlabelled", "mixed", "all_labelled"])
def test_finite_scalar_and_gradients(name: str, b: int, labels: str) -> None:
    z1, z2, _ = views(b, D, dtype=torch.float32)
    y = {
        "none": None,
        "all_unlabelled": torch.full((b,), -1),
        "mixed": mixed_labels(b),
        "all_labelled": torch.arange(b) % NUM_CLASSES,
    }[labels]
    value, g1, g2 = run(make(name), z1, z2, y)
    assert value.shape == () and value.dtype == torch.float32
    assert torch.isfinite(value) and torch.isfinite(g1).all() and torch.isfinite(g2).all()


@pytest.mark.parametrize("name", NAMES)
def test_deterministic(name: str) -> None:
    z1, z2, _ = views(12, D, dtype=torch.float32)
    y = mixed_labels(12)
    first, second = run(make(name), z1, z2, y), run(make(name), z1, z2, y)
    for x, w in zip(first, second):
        assert torch.equal(x, w)


@pytest.mark.parametrize("name", NAMES)
def test_float64_stays_float64(name: str) -> None:
    z1, z2, _ = views(6, D)
    value, g1, _ = run(make(name), z1, z2, mixed_labels(6))
    assert value.dtype == torch.float64 and g1.dtype == torch.float64


@pytest.mark.parametrize("name", NAMES)
def test_bf16_autocast_runs_in_float32(name: str) -> None:
    # Under autocast the projector emits bf16; the loss upcasts and computes in float32, so it
    # equals the float32 loss of the same (bf16-rounded) embeddings.
    torch.manual_seed(0)
    proj = nn.Linear(8, D)
    x1, x2 = torch.randn(10, 8), torch.randn(10, 8)
    loss, y = make(name), mixed_labels(10)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        z1, z2 = proj(x1), proj(x2)
        value = loss(z1, z2, y)
    assert z1.dtype == torch.bfloat16 and value.dtype == torch.float32
    value.backward()
    assert torch.isfinite(value) and all(torch.isfinite(p.grad).all() for p in proj.parameters())
    want = make(name)(z1.detach().float(), z2.detach().float(), y)
    torch.testing.assert_close(value.detach(), want, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", [n for n in NAMES if n != "dclw"])
def test_gradcheck(name: str) -> None:
    # Checks the hand-written backward of the shared softmax denominator among others. dclw is
    # left out: its weights are detached on purpose (as in lightly), so autograd != finite
    # differences there.
    z1, z2, _ = views(5, 6)
    loss = build_loss(name, num_classes=4, dim=6, seed=0)
    y = torch.tensor([0, -1, 1, 0, 3])
    z1.requires_grad_(True)
    z2.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, c: loss(a, c, y), (z1, z2), fast_mode=True)


@pytest.mark.parametrize("name", NAMES)
def test_terms_match_info(name: str) -> None:
    loss = make(name)
    assert isinstance(loss.last_terms, dict)
    z1, z2, _ = views(6, D)
    loss(z1, z2, mixed_labels(6))
    assert tuple(sorted(loss.last_terms)) == tuple(sorted(loss_info(name).terms))
    assert all(t.shape == () and not t.requires_grad for t in loss.last_terms.values())


@pytest.mark.parametrize("name", [n for n in list_losses() if not loss_info(n).uses_labels])
def test_losses_without_labels_ignore_them(name: str) -> None:
    z1, z2, _ = views(8, D)
    loss = make(name)
    assert torch.equal(loss(z1, z2, mixed_labels(8)), loss(z1, z2))


BAD_INPUTS = {
    "different shapes": (torch.randn(4, D), torch.randn(5, D), None, "same shape"),
    "1-D views": (torch.randn(D), torch.randn(D), None, "2-D"),
    "3-D views": (torch.randn(2, 4, D), torch.randn(2, 4, D), None, "2-D"),
    "integer views": (
        torch.ones(4, D, dtype=torch.long),
        torch.ones(4, D, dtype=torch.long),
        None,
        "floating-point",
    ),
    "batch of 1": (torch.randn(1, D), torch.randn(1, D), None, "B >= 2"),
    "labels shape": (
        torch.randn(4, D),
        torch.randn(4, D),
        torch.zeros(4, 1, dtype=torch.long),
        r"shape \(B,\)",
    ),
    "float labels": (torch.randn(4, D), torch.randn(4, D), torch.zeros(4), "integer"),
    "bool labels": (
        torch.randn(4, D),
        torch.randn(4, D),
        torch.zeros(4, dtype=torch.bool),
        "integer",
    ),
    "list views": ([[0.0] * D] * 4, torch.randn(4, D), None, "torch.Tensor"),
}


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_inputs_are_value_errors(name: str, case: str) -> None:
    z1, z2, labels, match = BAD_INPUTS[case]
    with pytest.raises(ValueError, match=match):
        make(name)(z1, z2, labels)


def test_int32_labels_are_accepted() -> None:
    z1, z2, _ = views(6, D)
    y = mixed_labels(6)
    loss = make("cloa+supcon")
    assert torch.equal(loss(z1, z2, y.int()), loss(z1, z2, y))


def test_docstring_examples_run() -> None:
    for mod in pkgutil.iter_modules(bench.losses.__path__, "bench.losses."):
        result = doctest.testmod(importlib.import_module(mod.name), optionflags=doctest.ELLIPSIS)
        assert result.failed == 0, mod.name
    assert doctest.testmod(bench.losses).failed == 0


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("name", NAMES)
def test_cuda_matches_cpu_and_runs_under_bf16_autocast(name: str) -> None:
    z1, z2, _ = views(64, 128, dtype=torch.float32)
    y = torch.arange(64) % NUM_CLASSES
    y[::3] = -1
    cpu = build_loss(name, num_classes=NUM_CLASSES, dim=128)
    gpu = build_loss(name, num_classes=NUM_CLASSES, dim=128).to("cuda")
    want = run(cpu, z1, z2, y)
    got = run(gpu, z1.cuda(), z2.cuda(), y.cuda())
    for w, g in zip(want, got):
        torch.testing.assert_close(g.cpu(), w, rtol=1e-4, atol=1e-4)
    proj = nn.Linear(128, 128).cuda()
    with torch.autocast("cuda", dtype=torch.bfloat16):
        value = gpu(proj(z1.cuda()), proj(z2.cuda()), y.cuda())
    assert value.dtype == torch.float32 and torch.isfinite(value)
    value.backward()
    assert all(torch.isfinite(p.grad).all() for p in proj.parameters())
