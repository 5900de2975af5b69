"""CIFAR-shaped synthetic images: seeded, class-dependent, 32x32 uint8, nothing to download.

For throughput checks of the image path (ResNets, the on-device augmentation, bf16,
channels_last, `torch.compile`) on a machine without datasets or network, e.g.
`benchmarks/gpu.sh`; not for accuracy claims. Each class c has a smooth colour template: uniform
noise on a `grid x grid` lattice per channel, upsampled bilinearly to `size x size` (drawn from
`seed`); a sample is its class template plus Gaussian pixel noise of std `noise` (in [0, 1] units),
clipped and rounded to uint8. Classes are balanced. The images depend on the parameters only,
never on the trial seed, so every trial sees the same pixels.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from bench.data import Dataset, check_param, register_dataset

_CHUNK = 4096  # samples generated at once (bounds the float32 working memory to ~50 MB)


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


@register_dataset("synthetic_images", kind="image")
def load_synthetic_images(
    root: Path,
    download: bool,
    *,
    num_classes: int = 10,
    n_train: int = 50000,
    n_test: int = 10000,
    size: int = 32,
    channels: int = 3,
    grid: int = 4,
    noise: float = 0.1,
    seed: int = 0,
) -> Dataset:
    """Seeded class-dependent 32x32 colour images (CIFAR-10's shape and split sizes), no download."""
    name = "synthetic_images"
    check_param(
        name,
        "num_classes",
        num_classes,
        _is_int(num_classes) and num_classes >= 2,
        "an integer >= 2",
    )
    for key, v in (("n_train", n_train), ("n_test", n_test)):
        check_param(
            name,
            key,
            v,
            _is_int(v) and v >= num_classes,
            f"an integer >= num_classes ({num_classes})",
        )
    check_param(name, "size", size, _is_int(size) and size >= 8, "an integer >= 8")
    check_param(name, "channels", channels, channels in (1, 3), "1 or 3")
    check_param(
        name, "grid", grid, _is_int(grid) and 1 <= grid <= size, f"an integer in 1..size ({size})"
    )
    ok = isinstance(noise, (int, float)) and not isinstance(noise, bool) and noise >= 0
    check_param(name, "noise", noise, ok, "a number >= 0")
    check_param(name, "seed", seed, _is_int(seed), "an integer")

    g = torch.Generator().manual_seed(seed)
    lattice = torch.rand(num_classes, channels, grid, grid, generator=g)
    templates = F.interpolate(lattice, size=(size, size), mode="bilinear", align_corners=False)

    def draw(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        labels = (torch.arange(n) % num_classes)[torch.randperm(n, generator=g)]
        images = torch.empty(n, channels, size, size, dtype=torch.uint8)
        for start in range(0, n, _CHUNK):
            part = labels[start : start + _CHUNK]
            pixels = templates[part] + noise * torch.randn(
                len(part), channels, size, size, generator=g
            )
            images[start : start + _CHUNK] = pixels.clamp_(0, 1).mul_(255).round_().to(torch.uint8)
        return images, labels.long()

    train_x, train_y = draw(n_train)
    test_x, test_y = draw(n_test)
    sample = train_x[:1024].double() / 255.0  # normalisation statistics from a fixed subset
    mean = tuple(float(v) for v in sample.mean(dim=(0, 2, 3)))
    std = tuple(float(v) for v in sample.std(dim=(0, 2, 3)))
    params = dict(
        num_classes=num_classes,
        n_train=n_train,
        n_test=n_test,
        size=size,
        channels=channels,
        grid=grid,
        noise=noise,
        seed=seed,
    )
    return Dataset(
        name,
        "image",
        train_x,
        train_y,
        test_x,
        test_y,
        num_classes=num_classes,
        mean=mean,
        std=std,
        params=params,
    )
