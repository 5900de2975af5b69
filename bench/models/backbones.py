"""Backbones: timm ResNets (optionally with the CIFAR stem) and CLOA's MLP.

- `resnet18` / `resnet50`: `timm.create_model(name, num_classes=0, pretrained=False, in_chans=C)`,
  so the output is the globally pooled feature (512 / 2048), the "ResNet18 with its last
  fully-connected layer removed" of CLOA section 5.1. `cifar_stem=True` swaps the 7x7 stride-2
  first convolution and the max-pool for a 3x3 stride-1 convolution and an identity, the usual
  CIFAR variant (SimCLR appendix B.9; solo-learn and lightly do the same for 32x32 inputs).
- `mlp`: CLOA section 3's "three-layer neural network characterized by dense connectivity, ReLU
  activation function, and batch normalization": Linear -> BatchNorm1d -> ReLU per width of
  `cfg.mlp_hidden`, on the flattened input (so it also takes images, e.g. digits' 1x8x8).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

BACKBONES = ("mlp", "resnet18", "resnet50")


class MLPBackbone(nn.Module):
    """Flatten, then Linear -> BatchNorm1d -> ReLU for each hidden width (CLOA section 3)."""

    def __init__(self, in_features: int, hidden: Sequence[int]) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = in_features
        for out in hidden:
            layers += [nn.Linear(width, out), nn.BatchNorm1d(out), nn.ReLU(inplace=True)]
            width = out
        self.layers = nn.Sequential(*layers)
        self.num_features = width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # flatten() is a reshape in logical (N, C, H, W) order, so channels_last input is fine.
        return self.layers(x.flatten(1))


def apply_cifar_stem(model: nn.Module) -> nn.Module:
    """Replace a timm ResNet's conv1 with 3x3 stride 1 (same channels) and its max-pool with Identity."""
    old = model.conv1
    assert isinstance(old, nn.Conv2d), f"{type(model).__name__}.conv1 is not a convolution"
    model.conv1 = nn.Conv2d(
        old.in_channels, old.out_channels, kernel_size=3, stride=1, padding=1, bias=False
    )
    model.maxpool = nn.Identity()
    return model


def build_backbone(
    name: str,
    input_shape: Sequence[int],
    *,
    cifar_stem: bool = True,
    mlp_hidden: Sequence[int] = (512, 512, 512),
) -> tuple[nn.Module, int]:
    """(module, feature_dim) for a backbone name; the caller validates `name` against BACKBONES."""
    if name == "mlp":
        mlp = MLPBackbone(math.prod(input_shape), mlp_hidden)
        return mlp, mlp.num_features
    import timm  # imported here: it is slow to import and the MLP trials never need it

    model = timm.create_model(name, num_classes=0, pretrained=False, in_chans=input_shape[0])
    if cifar_stem:
        apply_cifar_stem(model)
    return model, int(model.num_features)  # type: ignore[arg-type]
