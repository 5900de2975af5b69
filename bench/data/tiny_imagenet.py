"""Tiny-ImageNet-200 from its standard folder layout (64 x 64 JPEGs, 200 classes).

Layout (as unzipped from `tiny-imagenet-200.zip`, Stanford CS231n):
    tiny-imagenet-200/wnids.txt                    one WordNet id per line (200)
    tiny-imagenet-200/words.txt                    wnid <tab> names (not needed here)
    tiny-imagenet-200/train/<wnid>/images/*.JPEG   500 per class
    tiny-imagenet-200/val/images/*.JPEG            10,000
    tiny-imagenet-200/val/val_annotations.txt      file <tab> wnid <tab> x0 y0 x1 y1
The labelled `val` split is used as the test split (the official test split has no labels).
Class index = position in the *sorted* wnids, as torchvision's ImageFolder would number them.

Decoding 110k JPEGs takes tens of seconds, so the decoded uint8 arrays are cached next to the data
(`bench-cache-v1.pt`, written atomically, memory-mapped on load) unless `cache=False`; delete the
file to force decoding again. A read-only data folder just skips the cache.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from bench.data import DataError, Dataset, register_dataset

FOLDER = "tiny-imagenet-200"
CACHE = "bench-cache-v1.pt"
SIZE = 64
# Per-channel statistics of the Tiny-ImageNet train split (commonly used values).
MEAN = (0.4802, 0.4481, 0.3975)
STD = (0.2302, 0.2265, 0.2262)


def _decode(paths: list[Path]) -> torch.Tensor:
    """Decode JPEGs to one N x 3 x 64 x 64 uint8 tensor; PIL releases the GIL, so threads help."""
    from PIL import Image

    def one(path: Path) -> np.ndarray:
        with Image.open(path) as im:
            arr = np.asarray(im.convert("RGB"))  # a few Tiny-ImageNet images are grayscale
        if arr.shape != (SIZE, SIZE, 3):
            raise DataError(f"image {path} is {arr.shape[1]}x{arr.shape[0]}, not {SIZE}x{SIZE}.")
        return arr

    out = np.empty((len(paths), SIZE, SIZE, 3), dtype=np.uint8)
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        for i, arr in enumerate(pool.map(one, paths, chunksize=256)):
            out[i] = arr
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()


def _scan(base: Path, wnids: list[str]) -> tuple[list[Path], list[int], list[Path], list[int]]:
    index = {w: i for i, w in enumerate(wnids)}
    train_paths: list[Path] = []
    train_y: list[int] = []
    for w in wnids:
        files = sorted((base / "train" / w / "images").glob("*.JPEG"))
        if not files:
            raise DataError(
                f"dataset 'tiny_imagenet' has no images in {base / 'train' / w / 'images'}."
            )
        train_paths += files
        train_y += [index[w]] * len(files)
    ann = base / "val" / "val_annotations.txt"
    if not ann.is_file():
        raise DataError(f"dataset 'tiny_imagenet' is missing {ann}; unzip the full archive again.")
    val_paths: list[Path] = []
    val_y: list[int] = []
    for line_no, line in enumerate(ann.read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) < 2 or parts[1] not in index:
            raise DataError(f"{ann} line {line_no} does not name a known wnid: {line!r}.")
        val_paths.append(base / "val" / "images" / parts[0])
        val_y.append(index[parts[1]])
    return train_paths, train_y, val_paths, val_y


@register_dataset("tiny_imagenet", kind="image")
def load_tiny_imagenet(root: Path, download: bool, *, cache: bool = True) -> Dataset:
    """Tiny-ImageNet-200 (100k/10k 64x64 images, 200 classes) from the standard folder layout."""
    base = root / FOLDER
    wnids_file = base / "wnids.txt"
    if not wnids_file.is_file():
        raise DataError(
            f"dataset 'tiny_imagenet' was not found at {base} (no wnids.txt there); download "
            f"tiny-imagenet-200.zip from the Stanford CS231n course page and unzip it into {root} "
            f"(bench does not download it, even with --download)."
        )
    wnids = sorted(w.strip() for w in wnids_file.read_text().split() if w.strip())
    cache_file = base / CACHE
    if cache and cache_file.is_file():
        blob = torch.load(cache_file, mmap=True, weights_only=True)
        if blob.get("wnids") == wnids:
            return _dataset(
                blob["train_x"], blob["train_y"], blob["test_x"], blob["test_y"], len(wnids), cache
            )

    train_paths, train_y, val_paths, val_y = _scan(base, wnids)
    train_x, test_x = _decode(train_paths), _decode(val_paths)
    tr_y, te_y = torch.tensor(train_y, dtype=torch.int64), torch.tensor(val_y, dtype=torch.int64)
    if cache:
        tmp = cache_file.with_name(f"{CACHE}.{os.getpid()}.tmp")
        try:  # temporary name then rename: concurrent trials never read a half-written cache
            blob = dict(wnids=wnids, train_x=train_x, train_y=tr_y, test_x=test_x, test_y=te_y)
            torch.save(blob, tmp)
            os.replace(tmp, cache_file)
        except OSError:
            tmp.unlink(missing_ok=True)  # a read-only data folder: just do without the cache
    return _dataset(train_x, tr_y, test_x, te_y, len(wnids), cache)


def _dataset(
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    test_x: torch.Tensor,
    test_y: torch.Tensor,
    num_classes: int,
    cache: bool,
) -> Dataset:
    return Dataset(
        "tiny_imagenet",
        "image",
        train_x,
        train_y,
        test_x,
        test_y,
        num_classes,
        mean=MEAN,
        std=STD,
        params=dict(cache=cache),
    )
