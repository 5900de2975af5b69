"""scikit-learn's handwritten digits as a 1 x 8 x 8 uint8 image dataset (the offline default).

Source: `sklearn.datasets.load_digits` (1797 samples of the UCI optical digits, 8 x 8 pixels with
values 0..16, 10 classes); it ships inside scikit-learn, so no download is ever needed.

Decision: `digits` is an *image* dataset (kind "image"). Pixels are rescaled to uint8 0..255 so
that the image augmentation (resized crop, flip, brightness/contrast jitter; saturation, hue and
grayscale are no-ops on one channel, as in torchvision) and the ResNets apply unchanged; the MLP
backbone flattens it to 64 inputs. The train/test split is fixed and stratified: 80/20 from
`train_test_split(..., stratify=y, random_state=split_random_state)`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from bench.data import Dataset, check_param, register_dataset


@register_dataset("digits", kind="image")
def load_digits(
    root: Path, download: bool, *, test_fraction: float = 0.2, split_random_state: int = 0
) -> Dataset:
    """scikit-learn's 8x8 handwritten digits (1797 images, 10 classes), fixed stratified split."""
    from sklearn.datasets import load_digits as sk_load_digits
    from sklearn.model_selection import train_test_split

    ok = isinstance(test_fraction, float) and 0 < test_fraction < 1
    check_param("digits", "test_fraction", test_fraction, ok, "a number in (0, 1)")
    ok = isinstance(split_random_state, int) and not isinstance(split_random_state, bool)
    check_param("digits", "split_random_state", split_random_state, ok, "an integer")

    bunch = sk_load_digits()
    # 0..16 -> 0..255, rounded: the image pipeline expects uint8 like every other image dataset.
    images = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)[:, None, :, :]
    labels = bunch.target.astype(np.int64)
    tr_x, te_x, tr_y, te_y = train_test_split(
        images, labels, test_size=test_fraction, stratify=labels, random_state=split_random_state
    )
    train_x = torch.from_numpy(np.ascontiguousarray(tr_x))
    scaled = train_x.double() / 255.0
    mean, std = (float(scaled.mean()),), (float(scaled.std()),)
    return Dataset(
        "digits",
        "image",
        train_x,
        torch.from_numpy(tr_y),
        torch.from_numpy(np.ascontiguousarray(te_x)),
        torch.from_numpy(te_y),
        num_classes=10,
        mean=mean,
        std=std,
        params=dict(test_fraction=test_fraction, split_random_state=split_random_state),
    )
