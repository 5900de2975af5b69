"""Optimizers (torch's SGD and AdamW, timm's LARS) and the warmup + cosine learning-rate schedule.

The schedule is a pure function of the step, so a resumed trial needs no scheduler state.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from bench.config import TrialConfig


def trainable_parameters(*modules: nn.Module) -> list[nn.Parameter]:
    """The parameters of `modules` that require grad, each once, in module order.

    A trial trains the encoder and, after it, the loss module's own parameters (a loss may own
    some: `ce`'s linear classifier); the same list is what gradient clipping covers.
    """
    seen: set[int] = set()
    params = []
    for module in modules:
        for p in module.parameters():
            if p.requires_grad and id(p) not in seen:
                seen.add(id(p))
                params.append(p)
    return params


def _param_groups(params: list[nn.Parameter], weight_decay: float) -> list[dict[str, Any]]:
    """Biases and norm weights (1-d tensors) get no weight decay, as in SimCLR/BYOL recipes."""
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for p in params:
        (no_decay if p.ndim <= 1 else decay).append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def build_optimizer(cfg: TrialConfig, *modules: nn.Module) -> torch.optim.Optimizer:
    """The optimizer of every trainable parameter of `modules` (the encoder, then the loss)."""
    lr = cfg.effective_lr
    params = trainable_parameters(*modules)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(
            params,
            lr=lr,
            momentum=cfg.momentum,
            nesterov=cfg.nesterov and cfg.momentum > 0,
            weight_decay=cfg.weight_decay,
        )
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(_param_groups(params, cfg.weight_decay), lr=lr)
    if cfg.optimizer == "lars":
        # LARS adapts only groups with weight decay (timm's default): biases/BN are plain SGD.
        # Imported here: timm takes seconds to import, and every new Ray worker would pay it.
        from timm.optim.lars import Lars

        return Lars(
            _param_groups(params, cfg.weight_decay),
            lr=lr,
            momentum=cfg.momentum,
            nesterov=cfg.nesterov and cfg.momentum > 0,
        )
    raise ValueError(f"config key 'optimizer' has value {cfg.optimizer!r}; use sgd, lars or adamw.")


def lr_at(cfg: TrialConfig, step: int, steps_per_epoch: int) -> float:
    """Learning rate at optimizer step `step` (0-based): linear warmup, then cosine to 0 or flat."""
    base = cfg.effective_lr
    warmup = cfg.warmup_epochs * steps_per_epoch
    total = max(cfg.epochs * steps_per_epoch, 1)
    if step < warmup:
        return base * (step + 1) / warmup
    if cfg.schedule == "constant":
        return base
    progress = (step - warmup) / max(total - warmup, 1)
    return base * 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))
