"""Batched two-view augmentation against torchvision v2: parameter distributions and the ops.

Tolerances: the colour ops and the crop are compared on float32 images in [0, 1]. Brightness,
contrast, saturation and grayscale follow torchvision's op sequence (differences <= 1e-6, float
rounding of lerp vs mul/add); the hue rotation is the same maths in a closed form (<= 1e-5); the
resized crop samples the same bilinear taps as torchvision's crop-then-resize for an integer box
(<= 1e-5). Distributions are compared with two-sample Kolmogorov-Smirnov tests on fixed seeds
(p > 1e-3 for the same distribution; a power check shows p < 1e-6 for a wrong crop scale).
"""

from __future__ import annotations

import itertools

import pytest
import torch
from scipy.stats import chisquare, ks_2samp
from torchvision.transforms import v2 as T
from torchvision.transforms.v2 import functional as TF

from bench.config import ConfigError
from bench.data import Dataset, load_dataset
from bench.data.augment import (
    PRESETS,
    CropParams,
    ImageTwoViews,
    adjust_brightness,
    adjust_contrast,
    adjust_hue,
    adjust_saturation,
    build_augment,
    color_jitter,
    grayscale,
    normalize,
    resized_crop,
    rgb_to_grayscale,
    sample_crop_params,
    sample_jitter_params,
)


def _images(n: int, c: int = 3, h: int = 12, w: int = 15, seed: int = 0) -> torch.Tensor:
    x = torch.rand(n, c, h, w, generator=torch.Generator().manual_seed(seed))
    x[0] = 0.5  # flat grey: hue undefined, contrast mean = value
    x[1, :, :2] = 1.0  # saturated white band
    x[2, 0] = x[2, 1]  # r == g ties in the hue's max channel
    x[3, 2, :3] = 0.0
    return x


def _torchvision_crop_params(n: int, h: int, w: int, scale, ratio) -> torch.Tensor:
    torch.manual_seed(0)
    t = T.RandomResizedCrop((h, w), scale=scale, ratio=ratio)
    img = torch.zeros(3, h, w)
    rows = [t.make_params([img]) for _ in range(n)]
    return torch.tensor([[r["top"], r["left"], r["height"], r["width"]] for r in rows], dtype=torch.float64)


def _crop_stats(p: torch.Tensor, h: int, w: int) -> dict[str, torch.Tensor]:
    top, left, ch, cw = p.unbind(1)
    return {"area": ch * cw / (h * w), "aspect": cw / ch,
            "top": (top + 0.5) / (h - ch + 1), "left": (left + 0.5) / (w - cw + 1)}


@pytest.mark.parametrize("preset, h, w", [("simclr", 32, 32), ("cloa", 32, 32), ("simclr", 24, 40)])
def test_crop_parameters_match_torchvision_distribution(preset, h, w):
    spec = PRESETS[preset]
    n = 8000
    ours = sample_crop_params(n, h, w, spec.crop_scale, spec.crop_ratio, torch.Generator().manual_seed(1))
    ours = torch.stack(list(ours), dim=1).double()
    ref = _torchvision_crop_params(n, h, w, spec.crop_scale, spec.crop_ratio)
    assert bool((ours[:, 2] <= h).all() and (ours[:, 3] <= w).all() and (ours[:, :2] >= 0).all())
    assert bool((ours[:, 0] + ours[:, 2] <= h).all() and (ours[:, 1] + ours[:, 3] <= w).all())
    a, b = _crop_stats(ours, h, w), _crop_stats(ref, h, w)
    for key in a:
        assert ks_2samp(a[key].numpy(), b[key].numpy()).pvalue > 1e-3, key
    # The central fallback (all 10 attempts rejected) is frequent for cloa's scale 0.8-1.
    full = lambda p: float(((p[:, 2] == h) & (p[:, 3] == w)).double().mean())  # noqa: E731
    assert abs(full(ours) - full(ref)) < 0.02


def test_crop_distribution_test_has_power():
    ours = sample_crop_params(8000, 32, 32, (0.2, 1.0), (3 / 4, 4 / 3), torch.Generator().manual_seed(1))
    ref = _torchvision_crop_params(8000, 32, 32, (0.08, 1.0), (3 / 4, 4 / 3))
    a = _crop_stats(torch.stack(list(ours), 1).double(), 32, 32)["area"]
    assert ks_2samp(a.numpy(), _crop_stats(ref, 32, 32)["area"].numpy()).pvalue < 1e-6


@pytest.mark.parametrize("preset", ["simclr", "cloa"])
def test_jitter_parameters_match_torchvision_distribution(preset):
    s = PRESETS[preset]
    n = 5000
    ours = sample_jitter_params(n, s.brightness, s.contrast, s.saturation, s.hue, s.jitter_p,
                                torch.Generator().manual_seed(2))
    torch.manual_seed(0)
    cj = T.ColorJitter(s.brightness, s.contrast, s.saturation, s.hue)
    ref = [cj.make_params([torch.zeros(3, 4, 4)]) for _ in range(n)]
    for field, key in [("brightness", "brightness_factor"), ("contrast", "contrast_factor"),
                       ("saturation", "saturation_factor"), ("hue", "hue_factor")]:
        theirs = [r[key] for r in ref]
        assert ks_2samp(getattr(ours, field).numpy(), theirs).pvalue > 1e-3, field
    # Orders: every one of the 24 permutations equally likely, like torch.randperm(4).
    perms = {p: i for i, p in enumerate(itertools.permutations(range(4)))}
    counts = torch.bincount(torch.tensor([perms[tuple(r)] for r in ours.order.tolist()]), minlength=24)
    assert chisquare(counts.numpy()).pvalue > 1e-3
    assert abs(float(ours.apply.double().mean()) - s.jitter_p) < 0.02


@pytest.mark.parametrize("ours, theirs, lo, hi, tol", [
    (adjust_brightness, TF.adjust_brightness, 0.5, 1.5, 1e-6),
    (adjust_contrast, TF.adjust_contrast, 0.5, 1.5, 1e-6),
    (adjust_saturation, TF.adjust_saturation, 0.0, 2.0, 1e-6),
    (adjust_hue, TF.adjust_hue, -0.5, 0.5, 1e-5),
])
def test_colour_ops_match_torchvision_functional(ours, theirs, lo, hi, tol):
    x = _images(16)
    f = lo + (hi - lo) * torch.rand(16, generator=torch.Generator().manual_seed(3))
    f[0] = hi
    want = torch.stack([theirs(x[i], float(f[i])) for i in range(16)])
    assert (ours(x, f) - want).abs().max() <= tol
    one = x[:, :1]  # one channel: torchvision's behaviour (saturation and hue are no-ops)
    want1 = torch.stack([theirs(one[i], float(f[i])) for i in range(16)])
    assert (ours(one, f) - want1).abs().max() <= tol


def test_grayscale_matches_torchvision():
    x = _images(6)
    assert (rgb_to_grayscale(x) - TF.rgb_to_grayscale(x)).abs().max() <= 1e-6
    coin = torch.tensor([True, False, True, False, False, True])
    for sync_free in (False, True):
        out = grayscale(x.clone(), coin, sync_free=sync_free)
        assert torch.allclose(out[coin], TF.rgb_to_grayscale(x[coin], num_output_channels=3))
        assert torch.equal(out[~coin], x[~coin])


def test_resized_crop_matches_torchvision_resized_crop():
    x = _images(40, h=12, w=15)
    box = sample_crop_params(40, 12, 15, (0.02, 1.0), (0.5, 2.0), torch.Generator().manual_seed(4))
    flip = torch.arange(40) % 3 == 0
    out = resized_crop(x, box, flip)
    for i in range(40):
        top, left, h, w = (int(t[i]) for t in box)
        want = TF.resized_crop(x[i], top, left, h, w, [12, 15], antialias=True)
        want = TF.horizontal_flip(want) if flip[i] else want
        assert (out[i] - want).abs().max() <= 1e-5, (top, left, h, w)
    full = CropParams(*(torch.tensor([v]) for v in (0, 0, 12, 15)))
    assert (resized_crop(x[:1], full) - x[:1]).abs().max() <= 1e-6


def test_colour_jitter_applies_each_samples_own_order():
    x = _images(24)
    g = torch.Generator().manual_seed(5)
    p = sample_jitter_params(24, 0.4, 0.4, 0.4, 0.1, 0.75, g)
    orders = torch.tensor(list(itertools.permutations(range(4))))  # all 24 orders appear
    p = p._replace(order=orders)
    ops = [TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation, TF.adjust_hue]
    factors = [p.brightness, p.contrast, p.saturation, p.hue]
    want = []
    for i in range(24):
        img = x[i]
        if p.apply[i]:
            for k in p.order[i].tolist():
                img = ops[k](img, float(factors[k][i]))
        want.append(img)
    for sync_free in (False, True):
        out = color_jitter(x, p, sync_free=sync_free)
        assert (out - torch.stack(want)).abs().max() <= 1e-5
    assert torch.equal(color_jitter(x, p)[~p.apply], x[~p.apply])


def _image_dataset(x: torch.Tensor) -> Dataset:
    y = torch.zeros(len(x), dtype=torch.long)
    return Dataset("toy", "image", x, y, x, y, 1, (0.5, 0.4, 0.3), (0.2, 0.25, 0.3))


def test_two_views_are_per_sample_normalised_and_deterministic():
    x = torch.randint(0, 256, (10, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(6))
    aug = build_augment("auto", _image_dataset(x))
    assert isinstance(aug, ImageTwoViews) and aug.spec == PRESETS["simclr"]
    v1, v2 = aug(x, torch.Generator().manual_seed(0))
    assert v1.shape == v2.shape == (10, 3, 32, 32) and v1.dtype == torch.float32
    assert not torch.allclose(v1, v2)
    w1, w2 = aug(x, torch.Generator().manual_seed(0))
    assert torch.equal(v1, w1) and torch.equal(v2, w2)
    # Chunked processing (CPU) draws every parameter up front: the chunk size changes nothing.
    small = ImageTwoViews(PRESETS["simclr"], (0.5, 0.4, 0.3), (0.2, 0.25, 0.3), chunk_elems=3 * 32 * 32 * 3)
    s1, s2 = small(x, torch.Generator().manual_seed(0))
    assert torch.allclose(s1, v1, atol=1e-6) and torch.allclose(s2, v2, atol=1e-6)
    # Per-sample parameters: the 20 views get (almost surely) 20 different crop boxes.
    params = aug.sample(20, 32, 32, torch.Generator().manual_seed(0))
    assert len({tuple(int(t[i]) for t in params.box) for i in range(20)}) > 15
    # Normalisation: the "none" preset gives (x / 255 - mean) / std for both views.
    n1, n2 = build_augment("none", _image_dataset(x))(x, torch.Generator())
    want = (x.float() / 255 - torch.tensor([0.5, 0.4, 0.3]).view(1, 3, 1, 1)) / torch.tensor(
        [0.2, 0.25, 0.3]).view(1, 3, 1, 1)
    assert torch.allclose(n1, want, atol=1e-5) and torch.equal(n1, n2)
    assert torch.allclose(normalize(x, _image_dataset(x)), want, atol=1e-5)


def test_one_channel_digits_views():
    d = load_dataset("digits")
    v1, v2 = build_augment("cloa", d)(d.train_x[:64], torch.Generator().manual_seed(0))
    assert v1.shape == (64, 1, 8, 8) and torch.isfinite(v1).all() and not torch.allclose(v1, v2)


def test_vector_views_are_sign_flips_plus_noise():
    d = load_dataset("synthetic_subspaces", n_train=4000, n_test=10, view_noise=0.05)
    x = d.train_x
    v1, v2 = build_augment("auto", d)(x, torch.Generator().manual_seed(0))
    assert v1.shape == x.shape and v1.dtype == torch.float32
    # Each view is +x or -x plus N(0, 0.05^2): pick the nearer sign and look at the residual.
    for v in (v1, v2):
        plus = (v - x).norm(dim=1) < (v + x).norm(dim=1)
        assert abs(float(plus.double().mean()) - 0.5) < 0.03
        resid = torch.where(plus.unsqueeze(1), v - x, v + x)
        assert abs(float(resid.std()) - 0.05) < 0.005
    assert torch.equal(build_augment("none", d)(x, torch.Generator())[0], x)


def test_sign_flip_always_flips_every_view_as_the_paper_says():
    d = load_dataset("synthetic_subspaces", n_train=2000, n_test=10, view_noise=0.05,
                     sign_flip="always")
    x = d.train_x
    v1, v2 = build_augment("auto", d)(x, torch.Generator().manual_seed(0))
    for v in (v1, v2):
        resid = v + x  # -x + noise
        assert abs(float(resid.std()) - 0.05) < 0.005 and abs(float(resid.mean())) < 0.005
    with pytest.raises(ConfigError, match=r"'dataset_params.sign_flip' has value 'sometimes'"):
        load_dataset("synthetic_subspaces", n_train=10, n_test=10, sign_flip="sometimes")


def test_bad_presets_are_config_errors():
    d = load_dataset("synthetic_subspaces", n_train=10, n_test=10)
    with pytest.raises(ConfigError, match=r"'augment' has value 'simclr'.*vector data"):
        build_augment("simclr", d)
    with pytest.raises(ConfigError, match=r"'augment' has value 'heavy'"):
        build_augment("heavy", d)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_pipeline_matches_cpu_given_the_same_parameters():
    x = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(7))
    aug = build_augment("simclr", _image_dataset(x))
    params = aug.sample(64, 32, 32, torch.Generator().manual_seed(0))
    on_gpu = type(params)(*(None if t is None else type(t)(*(f.cuda() for f in t)) if isinstance(t, tuple)
                            else t.cuda() for t in params))
    cpu = aug.apply(x.float() / 255, params)
    gpu = aug.apply(x.cuda().float() / 255, on_gpu)
    assert (gpu.cpu() - cpu).abs().max() < 1e-4
    v1, _ = aug(x.cuda(), torch.Generator(device="cuda").manual_seed(0))
    assert v1.is_cuda and v1.shape == (64, 3, 32, 32)
