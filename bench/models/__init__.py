"""Encoders: backbone (evaluated on its features h) + projector (trained through z = g(h)).

`build_encoder(cfg, dataset)` reads `cfg.backbone`, `cfg.cifar_stem`, `cfg.mlp_hidden` and
`cfg.projector`, and the input shape from the dataset.
"""

from __future__ import annotations

import torch
from torch import nn

from bench.config import ConfigError, TrialConfig
from bench.data import Dataset
from bench.models.backbones import BACKBONES, MLPBackbone, apply_cifar_stem, build_backbone
from bench.models.projector import build_projector


class Encoder(nn.Module):
    """forward(x) -> (h, z): h = backbone features (for evaluation), z = projector(h) (for the loss)."""

    def __init__(
        self, backbone: nn.Module, feature_dim: int, projector: nn.Module, embed_dim: int
    ) -> None:
        super().__init__()
        self.backbone, self.projector = backbone, projector
        self.feature_dim, self.embed_dim = feature_dim, embed_dim

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.backbone(x)
        return h, self.projector(h)


def build_encoder(cfg: TrialConfig, dataset: Dataset) -> Encoder:
    """The trial's encoder; an unknown or unsuitable backbone is a one-sentence ConfigError."""
    if cfg.backbone not in BACKBONES:
        raise ConfigError(
            f"config key 'backbone' has value {cfg.backbone!r}; it must be one of "
            f"{', '.join(BACKBONES)}."
        )
    if cfg.backbone != "mlp" and dataset.kind != "image":
        raise ConfigError(
            f"config key 'backbone' has value {cfg.backbone!r}, which needs images, "
            f"but dataset {dataset.name!r} is vector data; use 'mlp'."
        )
    backbone, feature_dim = build_backbone(
        cfg.backbone, dataset.input_shape, cifar_stem=cfg.cifar_stem, mlp_hidden=cfg.mlp_hidden
    )
    projector, embed_dim = build_projector(feature_dim, cfg.projector)
    return Encoder(backbone, feature_dim, projector, embed_dim)


__all__ = [
    "BACKBONES",
    "Encoder",
    "MLPBackbone",
    "apply_cifar_stem",
    "build_backbone",
    "build_encoder",
    "build_projector",
]
