"""Dataset registry and loaders: synthetic, digits, and CIFAR/Tiny-ImageNet from true-format files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from fixtures import (
    TINY_WNIDS,
    accept_any_cifar_checksum,
    tiny_colour,
    write_cifar10,
    write_cifar100,
    write_tiny_imagenet,
)

from bench.config import ConfigError
from bench.data import DataError, list_datasets, load_dataset, resolve_root
from bench.data.loader import DeviceBatches


def test_registry_lists_the_builtin_datasets():
    assert list_datasets() == ["cifar10", "cifar100", "digits", "synthetic_images",
                               "synthetic_subspaces", "tiny_imagenet"]


def test_unknown_dataset_and_param_are_config_errors():
    with pytest.raises(ConfigError, match=r"'dataset' has value 'mnist'.*cifar10"):
        load_dataset("mnist")
    with pytest.raises(ConfigError, match=r"'dataset_params' has unknown key 'kk'.*known keys: k, m"):
        load_dataset("synthetic_subspaces", kk=3)
    with pytest.raises(ConfigError, match=r"'dataset_params.k' has value 0"):
        load_dataset("synthetic_subspaces", k=0)


def test_resolve_root_argument_env_default(monkeypatch, tmp_path):
    monkeypatch.setenv("BENCH_DATA", str(tmp_path / "env"))
    assert resolve_root(tmp_path / "arg") == (tmp_path / "arg").resolve()
    assert resolve_root(None) == (tmp_path / "env").resolve()
    monkeypatch.delenv("BENCH_DATA")
    monkeypatch.chdir(tmp_path)
    assert resolve_root(None) == (tmp_path / "data").resolve()
    assert resolve_root("rel").is_absolute()


def test_synthetic_subspaces_are_noisy_lines_fixed_by_the_data_seed():
    d = load_dataset("synthetic_subspaces", k=3, m=3, noise=0.01, n_train=600, n_test=90)
    assert d.kind == "vector" and d.num_classes == 3 and d.mean == ()
    assert d.train_x.shape == (600, 3) and d.train_x.dtype == torch.float32
    assert d.test_x.shape == (90, 3) and torch.bincount(d.train_y).tolist() == [200, 200, 200]
    # Each class lies on a line through the origin: its second singular value is ~ the noise.
    for c in range(3):
        sv = torch.linalg.svdvals(d.train_x[d.train_y == c])
        assert sv[1] / sv[0] < 0.05
    again = load_dataset("synthetic_subspaces", k=3, m=3, noise=0.01, n_train=600, n_test=90)
    assert torch.equal(again.train_x, d.train_x) and torch.equal(again.test_y, d.test_y)
    other = load_dataset("synthetic_subspaces", k=3, m=3, noise=0.01, n_train=600, n_test=90, seed=1)
    assert not torch.equal(other.train_x, d.train_x)
    assert d.params["view_noise"] == 0.1


def test_synthetic_images_are_seeded_cifar_shaped_and_class_dependent():
    d = load_dataset("synthetic_images", n_train=200, n_test=100)
    assert d.kind == "image" and d.num_classes == 10 and len(d.mean) == len(d.std) == 3
    assert d.train_x.shape == (200, 3, 32, 32) and d.test_x.shape == (100, 3, 32, 32)
    assert d.train_x.dtype == torch.uint8 and torch.bincount(d.train_y).tolist() == [20] * 10
    again = load_dataset("synthetic_images", n_train=200, n_test=100)
    assert torch.equal(again.train_x, d.train_x) and torch.equal(again.test_y, d.test_y)
    assert not torch.equal(load_dataset("synthetic_images", n_train=200, n_test=100, seed=1).train_x,
                           d.train_x)
    # Class-dependent: the nearest class mean of the training images names most test images.
    means = torch.stack([d.train_x[d.train_y == c].float().mean(0) for c in range(10)])
    dist = torch.cdist(d.test_x.float().flatten(1), means.flatten(1))
    assert (dist.argmin(1) == d.test_y).float().mean() > 0.9
    gray = load_dataset("synthetic_images", n_train=20, n_test=10, channels=1, size=8, num_classes=2)
    assert gray.train_x.shape == (20, 1, 8, 8) and gray.params["size"] == 8
    with pytest.raises(ConfigError, match=r"'dataset_params.channels' has value 2"):
        load_dataset("synthetic_images", channels=2)


def test_digits_is_a_fixed_stratified_uint8_image_split():
    d = load_dataset("digits")
    assert d.kind == "image" and d.num_classes == 10
    assert d.train_x.shape == (1437, 1, 8, 8) and d.test_x.shape == (360, 1, 8, 8)
    assert d.train_x.dtype == torch.uint8 and int(d.train_x.max()) == 255
    train_share = torch.bincount(d.train_y, minlength=10) / len(d.train_y)
    test_share = torch.bincount(d.test_y, minlength=10) / len(d.test_y)
    assert (train_share - test_share).abs().max() < 0.01
    assert torch.equal(load_dataset("digits").test_x, d.test_x)
    assert len(d.mean) == 1 and 0 < d.mean[0] < 1


def test_cifar10_from_the_true_pickle_format(tmp_path, monkeypatch):
    accept_any_cifar_checksum(monkeypatch)
    written = write_cifar10(tmp_path)
    d = load_dataset("cifar10", root=tmp_path)
    assert d.kind == "image" and d.num_classes == 10 and len(d.mean) == 3
    assert d.train_x.shape == (40, 3, 32, 32) and d.train_x.dtype == torch.uint8
    assert np.array_equal(d.train_x.numpy(), written["train_x"])
    assert np.array_equal(d.test_x.numpy(), written["test_x"])
    assert d.train_y.tolist() == written["train_y"] and d.test_y.tolist() == written["test_y"]


def test_cifar100_from_the_true_pickle_format(tmp_path, monkeypatch):
    accept_any_cifar_checksum(monkeypatch)
    written = write_cifar100(tmp_path)
    d = load_dataset("cifar100", root=tmp_path)
    assert d.num_classes == 100 and d.train_x.shape == (30, 3, 32, 32)
    assert np.array_equal(d.train_x.numpy(), written["train_x"])
    assert d.train_y.tolist() == written["train_y"] and d.test_y.tolist() == written["test_y"]


@pytest.mark.parametrize("name, folder", [("cifar10", "cifar-10-batches-py"),
                                          ("cifar100", "cifar-100-python")])
def test_cifar_missing_names_the_folder_and_download(tmp_path, name, folder):
    with pytest.raises(DataError) as err:
        load_dataset(name, root=tmp_path)
    msg = str(err.value)
    assert str(tmp_path.resolve() / folder) in msg and "--download" in msg
    assert msg.count(". ") == 0  # one sentence


def test_cifar_files_failing_torchvision_md5_are_reported_as_corrupted(tmp_path):
    write_cifar10(tmp_path)  # real md5 check on: small files cannot match the real archive
    with pytest.raises(DataError, match="incomplete or corrupted"):
        load_dataset("cifar10", root=tmp_path)


def test_tiny_imagenet_from_the_folder_layout_with_cache(tmp_path):
    written = write_tiny_imagenet(tmp_path)
    d = load_dataset("tiny_imagenet", root=tmp_path)
    assert d.num_classes == 3 and d.train_x.shape == (9, 3, 64, 64) and d.test_x.shape == (6, 3, 64, 64)
    assert d.train_y.tolist() == written["train_y"] and d.test_y.tolist() == written["test_y"]
    order = sorted(TINY_WNIDS)
    # Flat-colour JPEGs decode to (almost) their colour; index 0 was saved as grayscale (L).
    for i in range(1, 9):
        want = torch.tensor(tiny_colour(order[int(d.train_y[i])]), dtype=torch.float32)
        assert (d.train_x[i].float().mean(dim=(1, 2)) - want).abs().max() < 3
    g = d.train_x[0].float()
    assert (g[0] - g[1]).abs().max() == 0 and (g[1] - g[2]).abs().max() == 0
    cache = tmp_path / "tiny-imagenet-200" / "bench-cache-v1.pt"
    assert cache.is_file()
    again = load_dataset("tiny_imagenet", root=tmp_path)
    assert torch.equal(again.train_x, d.train_x) and torch.equal(again.test_y, d.test_y)


def test_tiny_imagenet_without_cache_writes_none(tmp_path):
    write_tiny_imagenet(tmp_path, per_class=1, n_val=3)
    load_dataset("tiny_imagenet", root=tmp_path, cache=False)
    assert not (tmp_path / "tiny-imagenet-200" / "bench-cache-v1.pt").exists()


def test_tiny_imagenet_missing_says_where_and_how(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_DATA", str(tmp_path))
    with pytest.raises(DataError) as err:
        load_dataset("tiny_imagenet", download=True)
    msg = str(err.value)
    assert str(Path(tmp_path).resolve() / "tiny-imagenet-200") in msg
    assert "tiny-imagenet-200.zip" in msg and "CS231n" in msg


def test_device_batches_cover_a_seeded_permutation():
    g = torch.Generator().manual_seed(0)
    batches = DeviceBatches(10, 3, "cpu", g)
    assert len(batches) == 3
    first = list(batches)
    assert [len(b) for b in first] == [3, 3, 3] and len(set(torch.cat(first).tolist())) == 9
    second = torch.cat(list(batches))
    assert not torch.equal(torch.cat(first), second)  # a new permutation each epoch
    again = list(DeviceBatches(10, 3, "cpu", torch.Generator().manual_seed(0)))
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert len(DeviceBatches(10, 3, "cpu", g, drop_last=False)) == 4
    assert sorted(torch.cat(list(DeviceBatches(10, 3, "cpu", g, drop_last=False))).tolist()) == list(range(10))
    with pytest.raises(ConfigError, match=r"'batch_size' has value 11; it must be at most .* \(10\)"):
        DeviceBatches(10, 11, "cpu", g)
