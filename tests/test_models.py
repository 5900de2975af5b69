"""Encoders: output shapes for every backbone, the CIFAR stem, the MLP and projector layouts."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from bench.config import ConfigError, TrialConfig
from bench.data import Dataset, load_dataset
from bench.models import BACKBONES, Encoder, build_encoder


def _images(c: int, size: int, n: int = 4) -> Dataset:
    x = torch.randint(0, 256, (n, c, size, size), dtype=torch.uint8)
    y = torch.arange(n) % 2
    return Dataset("toy", "image", x, y, x, y, 2, (0.5,) * c, (0.25,) * c)


@pytest.fixture(scope="module")
def vectors() -> Dataset:
    return load_dataset("synthetic_subspaces", n_train=30, n_test=30)


def test_mlp_backbone_is_cloas_dense_bn_relu_stack(vectors):
    cfg = TrialConfig(backbone="mlp", mlp_hidden=(32, 16, 8), projector=(12, 6))
    enc = build_encoder(cfg, vectors)
    assert isinstance(enc, Encoder) and enc.feature_dim == 8 and enc.embed_dim == 6
    kinds = [type(m) for m in enc.backbone.layers]
    assert kinds == [nn.Linear, nn.BatchNorm1d, nn.ReLU] * 3
    assert enc.backbone.layers[0].in_features == 3
    # Projector: Linear -> BN -> ReLU -> Linear, no activation at the end (SimCLR).
    assert [type(m) for m in enc.projector] == [nn.Linear, nn.BatchNorm1d, nn.ReLU, nn.Linear]
    h, z = enc(vectors.train_x[:5])
    assert h.shape == (5, 8) and z.shape == (5, 6)
    assert bool((h >= 0).all()) and bool((z < 0).any())


def test_mlp_flattens_images_and_accepts_channels_last():
    d = _images(3, 8)
    enc = build_encoder(TrialConfig(backbone="mlp", mlp_hidden=(16,), projector=()), d).eval()
    x = torch.randn(4, 3, 8, 8)
    h, z = enc(x)
    assert enc.backbone.layers[0].in_features == 192 and h.shape == (4, 16)
    assert z is h or torch.equal(z, h)  # () = no projector
    h2, _ = enc(x.to(memory_format=torch.channels_last))
    assert torch.allclose(h, h2)


@pytest.mark.parametrize("backbone, c, size, feat", [("resnet18", 1, 8, 512), ("resnet50", 3, 16, 2048)])
def test_resnet_output_shapes(backbone, c, size, feat):
    enc = build_encoder(TrialConfig(backbone=backbone, projector=(64, 16)), _images(c, size))
    assert enc.feature_dim == feat and enc.embed_dim == 16
    h, z = enc(torch.randn(2, c, size, size).to(memory_format=torch.channels_last))
    assert h.shape == (2, feat) and z.shape == (2, 16)


def test_cifar_stem_replaces_conv1_and_maxpool():
    d = _images(3, 32)
    cifar = build_encoder(TrialConfig(backbone="resnet18", cifar_stem=True), d).backbone.eval()
    imagenet = build_encoder(TrialConfig(backbone="resnet18", cifar_stem=False), d).backbone.eval()
    assert cifar.conv1.kernel_size == (3, 3) and cifar.conv1.stride == (1, 1)
    assert isinstance(cifar.maxpool, nn.Identity)
    assert imagenet.conv1.kernel_size == (7, 7) and imagenet.conv1.stride == (2, 2)
    assert isinstance(imagenet.maxpool, nn.MaxPool2d)
    x = torch.randn(1, 3, 32, 32)
    # 32x32 input: the CIFAR stem keeps a 4x4 final map, the ImageNet stem shrinks it to 1x1.
    assert cifar.forward_features(x).shape[-2:] == (4, 4)
    assert imagenet.forward_features(x).shape[-2:] == (1, 1)


def test_unknown_or_unsuitable_backbone_is_a_config_error(vectors):
    with pytest.raises(ConfigError, match=r"'backbone' has value 'vgg11'.*mlp, resnet18, resnet50"):
        build_encoder(TrialConfig(backbone="vgg11"), vectors)
    with pytest.raises(ConfigError, match=r"'backbone' has value 'resnet18'.*vector data"):
        build_encoder(TrialConfig(backbone="resnet18"), vectors)
    assert BACKBONES == ("mlp", "resnet18", "resnet50")
