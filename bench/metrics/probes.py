"""Supervised heads trained on frozen features: the linear probe and CLOA's FFN head, the
``probes`` metric family (final epoch only; off with ``probe_epochs: 0``).

Features are precomputed once (backbone output, projector removed), so a probe is a small
optimisation over tensors already on the device: no DataLoader, no augmentation.

Two recipes, chosen per trial (`probe_features`, `probe_optimizer`, `probe_lr`,
`probe_batch_size`, `probe_epochs`): the harness's default (below) and the papers' (CLOA: raw
features, SGD, batch 32). They answer different questions. Standardising rescales whatever the
encoder emits to unit spread, so it measures linear separability whatever the scale; but CLOA's
claim is that over-fused embeddings lose their variance, and a standardising probe scales a
shrunken representation back up, hiding exactly that. On raw features with SGD a representation
shrunk by 1e-4 cannot be fitted in the same budget (tests/test_metrics.py pins both).

Default recipe (one recipe for both heads, chosen to converge without per-dataset tuning):

* Features are standardised with the *training* mean and std (per dimension, computed in
  float64; dimensions constant on the training set are zeroed). This removes the arbitrary
  scale of the backbone's output, which differs by orders of magnitude between losses and
  between collapsed and healthy runs, so one learning rate works for all of them.
* AdamW, weight decay 1e-4 (decoupled), cosine decay to 0 over all steps, minibatches of
  ``batch_size`` drawn from a seeded permutation per epoch, cross-entropy. Default lr: 1e-3 for
  the FFN; ``0.1 / sqrt(D)`` for the linear probe on D features. Adam moves every weight by
  about lr per step, so a fixed lr under-trains a low-dimensional linear probe within 100 epochs
  of a small labelled set (digits pixels, D=64, 5% labels: 0.62 top-1 at lr 1e-3, 0.85 at
  0.1/sqrt(D), scikit-learn's logistic regression 0.86) and overshoots a high-dimensional one.
  Reference probes use SGD with large, loss-specific learning rates (SupContrast
  ``main_linear.py`` lr 1-5, solo-learn lr 1.0); on
  standardised features AdamW needs no such tuning.
* ``hidden=()`` is the linear probe (one ``nn.Linear``). ``hidden=(256, 128, 64)`` is CLOA's
  fine-tuning FFN for CIFAR-10 and ``(512, 1024, 1024)`` for CIFAR-100 (arXiv 2403.18699 v1,
  section 4): Linear+ReLU per hidden layer, then a Linear classifier.
  The paper does not say whether it used batch norm or dropout; we use neither, so the head has
  no train/eval difference and no randomness beyond its seeded initialisation and batch order
  (dropout would need the global RNG).

Determinism: all randomness (PyTorch's default ``nn.Linear`` initialisation U(+-1/sqrt(fan_in))
and the batch permutations) comes from one CPU ``torch.Generator(seed)``, so the result does not
depend on, or disturb, the global RNG and is the same for the same seed on the same device.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bench.metrics._inputs import check_splits, labelled_rows

# Read by `bench.metrics.declared()` without importing this module: keep it a literal.
FAMILY: dict[str, Any] = {
    "scope": "accuracy",
    "keys": ("linear_top1", "linear_top5", "ffn_top1", "ffn_top5"),
    "final_only": True,
    "needs": "probe_epochs",
}
# CLOA's fine-tuning heads (section 4): CIFAR-10 256-128-64, CIFAR-100 512-1024-1024.
_FFN_DEFAULTS = {"cifar100": (512, 1024, 1024)}
_FFN_FALLBACK = (256, 128, 64)

# Dimensions whose train std is below this fraction of the largest std are treated as constant.
_REL_STD_FLOOR = 1e-6
FEATURES = ("standardized", "raw")
OPTIMIZERS = ("adamw", "sgd")
SGD_MOMENTUM = 0.9
# CLOA fine-tunes its FFN with SGD at batch 32 and does not give the lr; 0.01 (momentum 0.9,
# cosine) is our choice: it trains CLOA's 256-128-64 head on raw BN+ReLU features of unit scale.
SGD_DEFAULT_LR = 0.01


def standardizer(train_x: Tensor) -> Callable[[Tensor], Tensor]:
    """The map x -> (x - mean) * scale with train_x's per-dimension mean and std.

    Statistics in float64 (features of a near-collapsed encoder can have a large mean and a tiny
    spread); outputs float32. Dimensions (nearly) constant on train_x map to 0.
    """
    x64 = train_x.double()
    mean = x64.mean(dim=0)
    std = x64.std(dim=0, correction=0) if train_x.shape[0] > 1 else torch.zeros_like(mean)
    # A dimension (nearly) constant on the training set carries no training signal and its test
    # values have no scale: zero it, or its random initial weights would add test-only noise.
    informative = std > _REL_STD_FLOOR * std.max()
    scale = torch.where(informative, 1.0 / std, torch.zeros_like(std))
    mean32, scale32 = mean.float(), scale.float()
    return lambda x: (x.float() - mean32) * scale32


def build_head(
    in_dim: int, hidden: Sequence[int], num_classes: int, generator: torch.Generator
) -> nn.Sequential:
    """Linear(+ReLU) stack ``in_dim -> *hidden -> num_classes`` initialised from ``generator``.

    Initialisation is PyTorch's ``nn.Linear`` default (weight and bias U(-b, b), b = 1/sqrt(fan_in))
    drawn from the given CPU generator instead of the global RNG.
    """
    dims = [in_dim, *hidden, num_classes]
    layers: list[nn.Module] = []
    for i, (fan_in, fan_out) in enumerate(itertools.pairwise(dims)):
        # skip_init: nn.Linear's own initialisation would draw from (and advance) the global RNG.
        layer = torch.nn.utils.skip_init(nn.Linear, fan_in, fan_out)
        bound = 1.0 / math.sqrt(fan_in)
        with torch.no_grad():
            layer.weight.uniform_(-bound, bound, generator=generator)
            layer.bias.uniform_(-bound, bound, generator=generator)
        layers.append(layer)
        if i < len(dims) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


@torch.no_grad()
def _topk_accuracy(
    head: nn.Module, x: Tensor, y: Tensor, num_classes: int, chunk: int = 8192
) -> tuple[float, float]:
    n_top = min(5, num_classes)
    hits1 = hits5 = 0
    for start in range(0, x.shape[0], chunk):
        ranked = head(x[start : start + chunk]).topk(n_top, dim=1).indices
        yy = y[start : start + chunk]
        hits1 += int((ranked[:, 0] == yy).sum())
        hits5 += int((ranked == yy[:, None]).any(dim=1).sum())
    return hits1 / x.shape[0], hits5 / x.shape[0]


def _fit(
    head: nn.Module,
    x: Tensor,
    y: Tensor,
    epochs: int,
    batch_size: int,
    lr: float,
    weight_decay: float,
    optimizer: str,
    generator: torch.Generator,
) -> None:
    """AdamW or SGD (momentum 0.9) + cosine decay to 0, cross-entropy, a permutation per epoch."""
    if optimizer == "sgd":
        opt: torch.optim.Optimizer = torch.optim.SGD(
            head.parameters(), lr=lr, momentum=SGD_MOMENTUM, weight_decay=weight_decay
        )
    else:
        opt = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=weight_decay)
    n = x.shape[0]
    total_steps = max(1, epochs * math.ceil(n / batch_size))
    step = 0
    for _ in range(epochs):
        perm = torch.randperm(n, generator=generator).to(x.device)
        for start in range(0, n, batch_size):
            idx = perm[start : start + batch_size]
            for group in opt.param_groups:
                group["lr"] = lr * 0.5 * (1.0 + math.cos(math.pi * step / total_steps))
            loss = F.cross_entropy(head(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1


def default_lr(optimizer: str, hidden: Sequence[int], in_dim: int) -> float:
    """The recipe's lr: AdamW 0.1/sqrt(D) linear, 1e-3 with hidden layers; SGD 0.01."""
    if optimizer == "sgd":
        return SGD_DEFAULT_LR
    return 1e-3 if hidden else 0.1 / math.sqrt(in_dim)


class Probe:
    """A trained head and the feature transform it was trained with; `score` any split."""

    def __init__(
        self, head: nn.Module | None, transform: Callable[[Tensor], Tensor], num_classes: int
    ) -> None:
        self.head, self.transform, self.num_classes = head, transform, num_classes

    @torch.no_grad()
    def score(self, x: Tensor, y: Tensor) -> tuple[float, float]:
        """(top1, top5) on (x, y) as fractions; NaN when x is empty or not finite or fit failed."""
        if self.head is None or x.shape[0] == 0 or not bool(torch.isfinite(x).all()):
            return math.nan, math.nan
        device = next(self.head.parameters()).device
        x, y = x.detach().to(device), y.to(device).long()
        with torch.inference_mode(False):
            return _topk_accuracy(self.head, self.transform(x), y, self.num_classes)


def fit_probe(
    train_x: Tensor,
    train_y: Tensor,
    num_classes: int,
    hidden: Sequence[int] = (),
    epochs: int = 100,
    batch_size: int = 256,
    lr: float | None = None,
    weight_decay: float = 1e-4,
    seed: int = 0,
    features: str = "standardized",
    optimizer: str = "adamw",
) -> Probe:
    """Train a head on frozen features; see `train_probe` for the arguments.

    `features="standardized"` trains on train-standardised features (the default recipe above);
    `"raw"` trains on the features as the encoder emits them, as CLOA's fine-tuning does, so a
    representation that collapsed in scale stays collapsed for the probe.
    """
    if features not in FEATURES or optimizer not in OPTIMIZERS:
        raise ValueError(
            f"fit_probe needs features in {FEATURES} and optimizer in {OPTIMIZERS}, "
            f"got features={features!r}, optimizer={optimizer!r}."
        )
    device = train_x.device
    train_x, train_y = labelled_rows("train_probe", train_x, train_y, "no labelled training sample")
    if batch_size < 1 or epochs < 0:
        raise ValueError(
            f"train_probe needs batch_size >= 1 and epochs >= 0, got "
            f"batch_size={batch_size}, epochs={epochs}."
        )
    if not bool(torch.isfinite(train_x).all()):
        return Probe(None, lambda x: x, num_classes)
    # The caller may evaluate under torch.inference_mode(); training needs autograd and normal
    # (non-inference) tensors, so leave it here. Inputs are only read, never saved for backward.
    with torch.inference_mode(False), torch.enable_grad():
        transform = standardizer(train_x) if features == "standardized" else (lambda x: x.float())
        x = transform(train_x)
        if lr is None:
            lr = default_lr(optimizer, hidden, x.shape[1])
        generator = torch.Generator().manual_seed(seed)
        head = build_head(x.shape[1], hidden, num_classes, generator).to(device)
        _fit(head, x, train_y, epochs, batch_size, lr, weight_decay, optimizer, generator)
    return Probe(head, transform, num_classes)


def train_probe(
    train_x: Tensor,
    train_y: Tensor,
    test_x: Tensor,
    test_y: Tensor,
    num_classes: int,
    hidden: Sequence[int] = (),
    epochs: int = 100,
    batch_size: int = 256,
    lr: float | None = None,
    weight_decay: float = 1e-4,
    seed: int = 0,
    features: str = "standardized",
    optimizer: str = "adamw",
) -> tuple[float, float]:
    """Train a head on frozen features and return its test (top1, top5) as fractions in [0, 1].

    Args:
        train_x, train_y: (N, D) features and (N,) labels of the labelled subset; rows with a
            label < 0 (unlabelled) are ignored.
        test_x, test_y: (M, D) features and labels of the test split.
        num_classes: C; top-5 uses min(5, C).
        hidden: hidden widths; () = linear probe, (256, 128, 64) = CLOA's CIFAR-10 FFN.
        epochs: passes over the training set (0 evaluates the initial head).
        batch_size: minibatch size; a training set smaller than it is one full batch per epoch.
        lr: peak lr (cosine decay to 0); None = `default_lr`.
        weight_decay: weight decay (decoupled for AdamW, L2 for SGD).
        seed: seeds the head's initialisation and the batch order.
        features: "standardized" (train mean/std) or "raw".
        optimizer: "adamw" or "sgd" (momentum 0.9).

    Runs on ``train_x``'s device. Returns (nan, nan) if a feature is NaN/inf or there is no test
    sample. Raises ValueError for mismatched shapes or an empty labelled set.
    """
    check_splits("train_probe", ("train_x", "test_x", "train_y", "test_y"), train_x, train_y,
                 test_x, test_y, num_classes)  # fmt: skip
    probe = fit_probe(
        train_x,
        train_y,
        num_classes,
        hidden=hidden,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        weight_decay=weight_decay,
        seed=seed,
        features=features,
        optimizer=optimizer,
    )
    return probe.score(test_x, test_y)


def ffn_widths(cfg: Any) -> tuple[int, ...]:
    """The FFN head's hidden widths: the trial's `ffn_hidden`, else CLOA's for the dataset."""
    if cfg.ffn_hidden:
        return tuple(cfg.ffn_hidden)
    return _FFN_DEFAULTS.get(cfg.dataset, _FFN_FALLBACK)


def scores(
    bank: Tensor,
    bank_y: Tensor,
    queries: dict[str, tuple[Tensor, Tensor]],
    num_classes: int,
    cfg: Any,
) -> dict[str, float]:
    """The family's entry point (bench.metrics): a linear probe and the FFN head trained on the
    labelled bank with the trial's probe recipe, each scored on every query split (keys
    `<prefix>linear_top1`, ...)."""
    out: dict[str, float] = {}
    with torch.enable_grad():
        for name, hidden in (("linear", ()), ("ffn", ffn_widths(cfg))):
            probe = fit_probe(
                bank,
                bank_y,
                num_classes,
                hidden=hidden,
                epochs=cfg.probe_epochs,
                batch_size=cfg.probe_batch_size,
                lr=cfg.probe_lr,
                seed=cfg.seed,
                features=cfg.probe_features,
                optimizer=cfg.probe_optimizer,
            )
            for prefix, (query, query_y) in queries.items():
                top1, top5 = probe.score(query, query_y)
                out[f"{prefix}{name}_top1"], out[f"{prefix}{name}_top5"] = top1, top5
    return out
