"""Dataset registry: `name -> loader(root, download, **params) -> Dataset`.

Every dataset is returned as whole CPU tensors (images uint8 N x C x H x W, vectors float32 N x D,
labels int64); `run_trial` moves them to the trial's device once and never touches a DataLoader
(the airbench pattern: no DataLoader, no per-batch host-to-device copy).

Built in: `synthetic_subspaces` (CLOA section 3), `digits` (scikit-learn, ships with the package:
the offline default), `synthetic_images` (CIFAR-shaped, seeded, no download: throughput checks),
`cifar10`, `cifar100` (torchvision) and `tiny_imagenet` (standard folder layout). Importing this
package imports every module in it, and each dataset module registers its loader with
`@register_dataset`: adding a dataset is one new file here (plus its test). Heavy imports
(torchvision, scikit-learn, PIL) happen inside the loaders so that importing `bench.data` stays
cheap.
"""

from __future__ import annotations

import importlib
import inspect
import os
import pkgutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from bench.config import ConfigError

KINDS = ("image", "vector")


class DataError(ValueError):
    """The data a config asks for is not where it was looked for (one sentence: where and how)."""

    user_error = True  # the CLI prints it as one line and exits 2


@dataclass(frozen=True, eq=False)
class Dataset:
    """A loaded dataset: whole train/test splits as CPU tensors.

    `mean`/`std` are per-channel statistics in [0, 1] units used to normalise images (empty for
    vector data, which is used as is). `params` are the loader parameters that produced it (the
    vector augmentation reads `view_noise` from there).
    """

    name: str
    kind: str  # "image" | "vector"
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    num_classes: int
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    params: Mapping[str, Any] = field(default_factory=dict)
    # The validation hold-out carved from train by `bench.data.split.carve_validation` (empty
    # until then): loaders return train and test only.
    val_x: torch.Tensor | None = None
    val_y: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"dataset {self.name!r}: kind {self.kind!r} must be one of {KINDS}.")
        want = torch.uint8 if self.kind == "image" else torch.float32
        splits = [("train", self.train_x, self.train_y), ("test", self.test_x, self.test_y)]
        if self.val_x is not None and self.val_y is not None:
            splits.append(("val", self.val_x, self.val_y))
        for split, x, y in splits:
            if x.dtype != want or y.dtype != torch.int64 or len(x) != len(y):
                raise ValueError(
                    f"dataset {self.name!r}: {split} split must be {want} data with as many int64 "
                    f"labels, got {x.dtype} x {tuple(x.shape)} and {y.dtype} x {tuple(y.shape)}."
                )
            if self.kind == "image" and x.dim() != 4:
                raise ValueError(f"dataset {self.name!r}: images must be N x C x H x W.")

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one sample: (C, H, W) for images, (D,) for vectors."""
        return tuple(self.train_x.shape[1:])


@dataclass(frozen=True)
class DatasetInfo:
    """Registry entry: the loader and what the CLI shows about it."""

    name: str
    loader: Callable[..., Dataset]
    kind: str
    description: str
    params: dict[str, Any]  # keyword parameters and their defaults


_REGISTRY: dict[str, DatasetInfo] = {}


def register_dataset(
    name: str, *, kind: str, description: str = ""
) -> Callable[[Callable[..., Dataset]], Callable[..., Dataset]]:
    """Decorator: register `loader(root: Path, download: bool, **params) -> Dataset` as `name`."""

    def wrap(loader: Callable[..., Dataset]) -> Callable[..., Dataset]:
        if name in _REGISTRY:
            raise ValueError(f"dataset {name!r} is registered twice.")
        sig = inspect.signature(loader)
        params = {
            p.name: p.default
            for p in sig.parameters.values()
            if p.kind is inspect.Parameter.KEYWORD_ONLY
        }
        doc = description or (inspect.getdoc(loader) or "").split("\n")[0]
        _REGISTRY[name] = DatasetInfo(name, loader, kind, doc, params)
        return loader

    return wrap


def list_datasets() -> list[str]:
    return sorted(_REGISTRY)


def dataset_info(name: str) -> DatasetInfo:
    if name not in _REGISTRY:
        raise ConfigError(
            f"config key 'dataset' has value {name!r}; it must be one of {', '.join(list_datasets())}."
        )
    return _REGISTRY[name]


def resolve_root(root: str | os.PathLike[str] | None = None) -> Path:
    """Absolute data root: the argument, else $BENCH_DATA, else ./data.

    Absolute because Ray trials chdir into their own directory: resolve it in the driver.
    """
    chosen = root if root not in (None, "") else os.environ.get("BENCH_DATA") or "data"
    return Path(chosen).expanduser().resolve()


def load_dataset(
    name: str, root: str | os.PathLike[str] | None = None, download: bool = False, **params: Any
) -> Dataset:
    """Load a registered dataset; unknown names/params are a ConfigError, missing data a DataError."""
    info = dataset_info(name)
    unknown = sorted(set(params) - set(info.params))
    if unknown:
        known = ", ".join(sorted(info.params)) or "none"
        raise ConfigError(
            f"config key 'dataset_params' has unknown key {unknown[0]!r} for dataset {name!r}; "
            f"known keys: {known}."
        )
    return info.loader(resolve_root(root), bool(download), **params)


def check_param(name: str, key: str, value: Any, ok: bool, allowed: str) -> None:
    """One-sentence ConfigError for a bad dataset parameter."""
    if not ok:
        raise ConfigError(
            f"config key 'dataset_params.{key}' has value {value!r} for dataset {name!r}; "
            f"it must be {allowed}."
        )


# The built-in datasets register themselves on import (after the registry above exists).
for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

__all__ = [
    "DataError",
    "Dataset",
    "DatasetInfo",
    "dataset_info",
    "list_datasets",
    "load_dataset",
    "register_dataset",
    "resolve_root",
]
