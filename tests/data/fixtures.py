"""Writers of small data sets in their TRUE on-disk formats, for loader tests.

- CIFAR-10: `cifar-10-batches-py/data_batch_1..5`, `test_batch`, `batches.meta`: pickled dicts
  with `data` (N x 3072 uint8, rows = R plane, G plane, B plane of a 32 x 32 image, row-major),
  `labels` (list of int), `batch_label`, `filenames`; meta with `label_names`,
  `num_cases_per_batch`, `num_vis` (https://www.cs.toronto.edu/~kriz/cifar.html).
- CIFAR-100: `cifar-100-python/train`, `test`, `meta`: `data`, `fine_labels`, `coarse_labels`,
  `filenames`, `batch_label`; meta with `fine_label_names`, `coarse_label_names`.
- Tiny-ImageNet: `tiny-imagenet-200/{wnids.txt, words.txt, train/<wnid>/images/<wnid>_<i>.JPEG,
  train/<wnid>/<wnid>_boxes.txt, val/images/val_<i>.JPEG, val/val_annotations.txt}`.

torchvision checks the md5 of every CIFAR file against the real archive's, which small files
cannot match: `accept_any_cifar_checksum(monkeypatch)` relaxes that one check to "file exists", so
the rest of torchvision's real loading code (pickle parsing, reshape, meta) runs unchanged.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest


def _cifar_batch(rng: np.random.Generator, n: int, num_classes: int, fine: bool, tag: str) -> dict:
    data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
    labels = rng.integers(0, num_classes, size=n).tolist()
    batch = {"batch_label": tag, "data": data,
             "filenames": [f"{tag.replace(' ', '_')}_{i}.png" for i in range(n)]}
    if fine:
        batch["fine_labels"] = labels
        batch["coarse_labels"] = [y // 5 for y in labels]
    else:
        batch["labels"] = labels
    return batch


def _dump(path: Path, obj: dict) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


def write_cifar10(root: Path, per_batch: int = 8, n_test: int = 10, seed: int = 0) -> dict:
    """Write CIFAR-10 python batches under root; returns the NHWC arrays and labels written."""
    rng = np.random.default_rng(seed)
    base = root / "cifar-10-batches-py"
    base.mkdir(parents=True)
    train = [_cifar_batch(rng, per_batch, 10, False, f"training batch {i} of 5") for i in range(1, 6)]
    for i, b in enumerate(train, 1):
        _dump(base / f"data_batch_{i}", b)
    test = _cifar_batch(rng, n_test, 10, False, "testing batch 1 of 1")
    _dump(base / "test_batch", test)
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    _dump(base / "batches.meta", {"label_names": names, "num_cases_per_batch": per_batch, "num_vis": 3072})
    return {
        "train_x": np.concatenate([b["data"] for b in train]).reshape(-1, 3, 32, 32),
        "train_y": [y for b in train for y in b["labels"]],
        "test_x": test["data"].reshape(-1, 3, 32, 32), "test_y": test["labels"],
    }


def write_cifar100(root: Path, n_train: int = 30, n_test: int = 12, seed: int = 1) -> dict:
    """Write CIFAR-100 python files under root; returns the NCHW arrays and fine labels written."""
    rng = np.random.default_rng(seed)
    base = root / "cifar-100-python"
    base.mkdir(parents=True)
    train = _cifar_batch(rng, n_train, 100, True, "training batch 1 of 1")
    test = _cifar_batch(rng, n_test, 100, True, "testing batch 1 of 1")
    _dump(base / "train", train)
    _dump(base / "test", test)
    _dump(base / "meta", {"fine_label_names": [f"class_{i}" for i in range(100)],
                          "coarse_label_names": [f"super_{i}" for i in range(20)]})
    return {"train_x": train["data"].reshape(-1, 3, 32, 32), "train_y": train["fine_labels"],
            "test_x": test["data"].reshape(-1, 3, 32, 32), "test_y": test["fine_labels"]}


# wnids deliberately not in sorted order in wnids.txt: the class index is the sorted position.
TINY_WNIDS = ["n09256479", "n01443537", "n02124075"]


def tiny_colour(wnid: str) -> tuple[int, int, int]:
    """A flat colour per class, so JPEG-decoded pixels can be checked against it."""
    i = sorted(TINY_WNIDS).index(wnid)
    return ((40 + 90 * i) % 256, (200 - 60 * i) % 256, (90 + 50 * i) % 256)


def write_tiny_imagenet(root: Path, per_class: int = 3, n_val: int = 6, grayscale_one: bool = True) -> dict:
    """Write a 3-class Tiny-ImageNet under root; returns expected labels (sorted-wnid indices)."""
    from PIL import Image

    base = root / "tiny-imagenet-200"
    (base / "val" / "images").mkdir(parents=True)
    (base / "wnids.txt").write_text("\n".join(TINY_WNIDS) + "\n")
    (base / "words.txt").write_text("".join(f"{w}\tthing {w}\n" for w in TINY_WNIDS))
    order = sorted(TINY_WNIDS)
    train_y = []
    for w in order:
        folder = base / "train" / w / "images"
        folder.mkdir(parents=True)
        boxes = []
        for i in range(per_class):
            img = Image.new("RGB", (64, 64), tiny_colour(w))
            if grayscale_one and i == 0 and w == order[0]:
                img = img.convert("L")  # the real data set has a few grayscale JPEGs
            img.save(folder / f"{w}_{i}.JPEG", quality=95)
            boxes.append(f"{w}_{i}.JPEG\t0\t0\t63\t63\n")
            train_y.append(order.index(w))
        (base / "train" / w / f"{w}_boxes.txt").write_text("".join(boxes))
    lines, test_y = [], []
    for i in range(n_val):
        w = TINY_WNIDS[i % len(TINY_WNIDS)]
        Image.new("RGB", (64, 64), tiny_colour(w)).save(base / "val" / "images" / f"val_{i}.JPEG")
        lines.append(f"val_{i}.JPEG\t{w}\t1\t2\t60\t61\n")
        test_y.append(order.index(w))
    (base / "val" / "val_annotations.txt").write_text("".join(lines))
    return {"train_y": train_y, "test_y": test_y}


def accept_any_cifar_checksum(monkeypatch: pytest.MonkeyPatch) -> None:
    """Let torchvision accept our small CIFAR files (its md5 list is the real archive's)."""
    import torchvision.datasets.cifar as tv_cifar

    monkeypatch.setattr(tv_cifar, "check_integrity", lambda fpath, md5=None: os.path.isfile(fpath))
