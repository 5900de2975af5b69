"""CIFAR-10 and CIFAR-100 through torchvision's own loaders (`torchvision.datasets.CIFAR10/100`).

Source: Krizhevsky, "Learning Multiple Layers of Features from Tiny Images" (2009); the python
pickle batches read by torchvision (`cifar-10-batches-py/`, `cifar-100-python/`). torchvision's
`.data` is N x H x W x C uint8; it is returned as N x C x H x W. Nothing is downloaded unless the
caller passes `download=True` (`--download` on the command line).

Normalisation statistics are the usual per-channel train-set values (as in solo-learn and lightly).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from bench.data import DataError, Dataset, register_dataset

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
CIFAR100_MEAN = (0.5071, 0.4865, 0.4409)
CIFAR100_STD = (0.2673, 0.2564, 0.2762)


def _load(
    name: str,
    cls_name: str,
    root: Path,
    download: bool,
    num_classes: int,
    mean: tuple[float, ...],
    std: tuple[float, ...],
) -> Dataset:
    from torchvision import datasets

    cls = getattr(datasets, cls_name)
    folder = root / cls.base_folder
    if not download and not folder.is_dir():
        raise DataError(
            f"dataset {name!r} was not found at {folder}; pass --download (download=True) to "
            f"fetch it there, or point --data-root/$BENCH_DATA at the folder that contains "
            f"{cls.base_folder}."
        )
    try:
        train = cls(str(root), train=True, download=download)
        test = cls(str(root), train=False, download=False)
    except RuntimeError as exc:  # torchvision's "not found or corrupted" (an md5 mismatch)
        raise DataError(
            f"dataset {name!r} at {folder} is incomplete or corrupted ({exc}); delete that folder "
            f"and pass --download (download=True) to fetch it again."
        ) from exc
    except OSError as exc:  # a failed download (no network, disk full)
        raise DataError(f"dataset {name!r} could not be downloaded into {root}: {exc}.") from exc

    def to_nchw(data: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(data.transpose(0, 3, 1, 2)))

    return Dataset(
        name,
        "image",
        to_nchw(train.data),
        torch.as_tensor(train.targets, dtype=torch.int64),
        to_nchw(test.data),
        torch.as_tensor(test.targets, dtype=torch.int64),
        num_classes=num_classes,
        mean=mean,
        std=std,
    )


@register_dataset("cifar10", kind="image")
def load_cifar10(root: Path, download: bool) -> Dataset:
    """CIFAR-10 (50k/10k 32x32 colour images, 10 classes) via torchvision, from the data root."""
    return _load("cifar10", "CIFAR10", root, download, 10, CIFAR10_MEAN, CIFAR10_STD)


@register_dataset("cifar100", kind="image")
def load_cifar100(root: Path, download: bool) -> Dataset:
    """CIFAR-100 (50k/10k 32x32 colour images, 100 fine classes) via torchvision, from the data root."""
    return _load("cifar100", "CIFAR100", root, download, 100, CIFAR100_MEAN, CIFAR100_STD)
