"""Projection head g(h) -> z of SimCLR (Chen et al. 2020, section 2.1): an MLP whose hidden layers
are Linear -> BatchNorm1d -> ReLU and whose last layer is a plain Linear, as in SimCLR v1/v2 and
lightly's `SimCLRProjectionHead`. Widths come from `cfg.projector` = (w1, ..., wn); `()` means no
projector (z = h).
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn


def build_projector(in_dim: int, widths: Sequence[int]) -> tuple[nn.Module, int]:
    """(module, out_dim): Linear+BN+ReLU between layers, no activation after the last Linear."""
    if not widths:
        return nn.Identity(), in_dim
    layers: list[nn.Module] = []
    width = in_dim
    for i, out in enumerate(widths):
        layers.append(nn.Linear(width, out))
        if i < len(widths) - 1:
            layers += [nn.BatchNorm1d(out), nn.ReLU(inplace=True)]
        width = out
    return nn.Sequential(*layers), width
