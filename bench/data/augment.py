"""Two views per sample with batched tensor ops on the data's device, independent per sample.

Images follow SimCLR's recipe (Chen et al. 2020, appendix A; the torchvision pipeline
RandomResizedCrop -> RandomHorizontalFlip -> RandomApply(ColorJitter, p) -> RandomGrayscale ->
Normalize), but every random parameter is drawn per sample for the whole batch at once, which
torchvision cannot do on a batch (pytorch/vision#2929; benchmarks/augment.py measures both):
- crop + flip: the affine grid of one per-sample `theta` (scale and shift, the flip a negative
  x scale; built separably since theta has no shear) and one `grid_sample` (bilinear,
  align_corners=False) with the sampling points clamped to the box, which is exactly what
  `torchvision.transforms.v2.functional.resized_crop` computes for an integer box when it
  upsamples (crop <= output, always the case here since the output keeps the input size);
- the crop box follows `RandomResizedCrop.make_params` exactly, vectorised: 10 attempts of
  (area ~ U(scale) * H * W, log-aspect ~ U(log ratio)), sides rounded to pixels, the first attempt
  that fits wins, else torchvision's central fallback crop; offsets uniform over valid positions;
- colour jitter: the torchvision v2 functional ops (brightness, contrast, saturation, HSV hue
  rotation) with per-sample factors, applied in a per-sample random order like `ColorJitter`
  (brightness/contrast/saturation are all "blend with something" so one step of the order is one
  blend; the hue rotation runs once per sample at its position), gated per sample with prob. p;
- random grayscale: a masked replacement by the luma (0.2989, 0.587, 0.114), 3 channels kept.
All colour ops work on float images in [0, 1] and clamp like torchvision's. One-channel images skip
saturation, hue and grayscale, as torchvision (and PIL) do. Vector data (CLOA section 3) gets a
random sign flip plus Gaussian noise per sample.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple, Protocol

import torch
import torch.nn.functional as F

from bench.config import AUGMENT_PRESETS, ConfigError
from bench.data import Dataset

GRAY_WEIGHTS = (0.2989, 0.587, 0.114)  # torchvision's rgb_to_grayscale (ITU-R 601-2 luma)


@dataclass(frozen=True)
class ImageAugment:
    """Strengths of the image pipeline (defaults: SimCLR's CIFAR recipe)."""

    crop_scale: tuple[float, float] = (0.08, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip_p: float = 0.5
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.4
    hue: float = 0.1
    jitter_p: float = 0.8
    grayscale_p: float = 0.2


# CLOA section 5: ColorJitter(0.2, 0.2, 0.2, 0.1) and a crop scale of 0.8-1.0 "following SimCLR";
# the paper gives no jitter probability or grayscale, so p = 0.8 (SimCLR's) and no grayscale.
PRESETS = {
    "simclr": ImageAugment(),
    "cloa": ImageAugment(
        crop_scale=(0.8, 1.0),
        brightness=0.2,
        contrast=0.2,
        saturation=0.2,
        hue=0.1,
        grayscale_p=0.0,
    ),
}


class CropParams(NamedTuple):
    """Per-sample integer crop boxes (int64 tensors of shape (n,)), as torchvision's."""

    top: torch.Tensor
    left: torch.Tensor
    height: torch.Tensor
    width: torch.Tensor


class JitterParams(NamedTuple):
    """Per-sample colour-jitter draws; `order` rows are permutations of 0=b, 1=c, 2=s, 3=h."""

    brightness: torch.Tensor
    contrast: torch.Tensor
    saturation: torch.Tensor
    hue: torch.Tensor
    order: torch.Tensor  # (n, 4) int64
    apply: torch.Tensor  # (n,) bool: jitter applied at all (RandomApply's p)


def _rand(n: int, g: torch.Generator, *shape: int) -> torch.Tensor:
    return torch.rand(n, *shape, generator=g, device=g.device, dtype=torch.float64)


def _uniform(n: int, g: torch.Generator, lo: float, hi: float) -> torch.Tensor:
    return (lo + (hi - lo) * _rand(n, g)).float()


def sample_crop_params(
    n: int,
    height: int,
    width: int,
    scale: tuple[float, float],
    ratio: tuple[float, float],
    generator: torch.Generator,
    attempts: int = 10,
) -> CropParams:
    """`RandomResizedCrop.make_params` for n samples at once, on the generator's device."""
    g = generator
    area = height * width
    target = area * (scale[0] + (scale[1] - scale[0]) * _rand(n, g, attempts))
    lo, hi = math.log(ratio[0]), math.log(ratio[1])
    aspect = torch.exp(lo + (hi - lo) * _rand(n, g, attempts))
    w = torch.round(torch.sqrt(target * aspect))
    h = torch.round(torch.sqrt(target / aspect))
    fits = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = fits.to(torch.uint8).argmax(dim=1, keepdim=True)  # first attempt that fits
    found = fits.any(dim=1)
    w, h = w.gather(1, first).squeeze(1), h.gather(1, first).squeeze(1)
    # torchvision's fallback: the largest central crop whose aspect ratio is within `ratio`.
    in_ratio = width / height
    if in_ratio < min(ratio):
        fw, fh = width, round(width / min(ratio))
    elif in_ratio > max(ratio):
        fw, fh = round(height * max(ratio)), height
    else:
        fw, fh = width, height
    w = torch.where(found, w, torch.full_like(w, fw)).long()
    h = torch.where(found, h, torch.full_like(h, fh)).long()
    top = torch.floor(_rand(n, g) * (height - h + 1)).long().clamp_max_(height - h)
    left = torch.floor(_rand(n, g) * (width - w + 1)).long().clamp_max_(width - w)
    top = torch.where(found, top, (height - h) // 2)
    left = torch.where(found, left, (width - w) // 2)
    return CropParams(top, left, h, w)


def resized_crop(
    x: torch.Tensor, box: CropParams, flip: torch.Tensor | None = None
) -> torch.Tensor:
    """Crop each float image to its box, resize back to H x W (bilinear), mirror where `flip`."""
    n, _, height, width = x.shape
    top, left, h, w = (t.to(x.device, x.dtype).view(n, 1) for t in box)
    # The affine grid of theta = [[w/W, 0, (2 left + w)/W - 1], [0, h/H, (2 top + h)/H - 1]]:
    # output pixel centre u in [-1, 1] maps to input column left + (j + .5) w / W - .5, in the
    # normalised coordinates of align_corners=False. theta has no shear, so the grid is built
    # separably (n x W and n x H values) instead of by affine_grid's n x H x W x 3 matmul.
    u = torch.linspace(-1 + 1 / width, 1 - 1 / width, width, device=x.device, dtype=x.dtype)
    v = torch.linspace(-1 + 1 / height, 1 - 1 / height, height, device=x.device, dtype=x.dtype)
    if flip is not None:  # mirroring the crop = negating the x scale
        u = torch.where(flip.to(x.device).view(n, 1), -u, u)
    gx = u * (w / width) + ((2 * left + w) / width - 1)
    gy = v * (h / height) + ((2 * top + h) / height - 1)
    # torchvision resizes the *cropped* image, so its bilinear taps never leave the box: clamping
    # the sampling points to the centres of the box's edge pixels reproduces that exactly.
    gx = torch.minimum(
        torch.maximum(gx, (2 * left + 1) / width - 1), (2 * (left + w) - 1) / width - 1
    )
    gy = torch.minimum(
        torch.maximum(gy, (2 * top + 1) / height - 1), (2 * (top + h) - 1) / height - 1
    )
    grid = torch.stack(
        [
            gx.view(n, 1, width).expand(n, height, width),
            gy.view(n, height, 1).expand(n, height, width),
        ],
        dim=3,
    )
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def sample_jitter_params(
    n: int,
    brightness: float,
    contrast: float,
    saturation: float,
    hue: float,
    p: float,
    generator: torch.Generator,
) -> JitterParams:
    """`ColorJitter.make_params` (and RandomApply's coin) for n samples at once."""
    g = generator
    b = _uniform(n, g, max(0.0, 1 - brightness), 1 + brightness)
    c = _uniform(n, g, max(0.0, 1 - contrast), 1 + contrast)
    s = _uniform(n, g, max(0.0, 1 - saturation), 1 + saturation)
    h = _uniform(n, g, -hue, hue)
    order = torch.argsort(_rand(n, g, 4), dim=1)  # uniform random permutations, like randperm(4)
    return JitterParams(b, c, s, h, order, _rand(n, g) < p)


def _col(f: torch.Tensor) -> torch.Tensor:
    return f.view(-1, 1, 1, 1)


def rgb_to_grayscale(x: torch.Tensor) -> torch.Tensor:
    """Luma, N x 1 x H x W (identity for one channel), with torchvision's exact op sequence."""
    if x.shape[1] == 1:
        return x
    r, g, b = x.unbind(dim=1)
    return (
        r.mul(GRAY_WEIGHTS[0])
        .add_(g, alpha=GRAY_WEIGHTS[1])
        .add_(b, alpha=GRAY_WEIGHTS[2])
        .unsqueeze(1)
    )


def _blend(x: torch.Tensor, other: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """torchvision's _blend, f * x + (1 - f) * other clamped to [0, 1], with per-sample f."""
    return x.mul(_col(f)).add_(other * _col(1 - f)).clamp_(0, 1)


def adjust_brightness(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    return x.mul(_col(f)).clamp_(0, 1)


def adjust_contrast(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    return _blend(x, rgb_to_grayscale(x).mean(dim=(1, 2, 3), keepdim=True), f)


def adjust_saturation(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    return x if x.shape[1] == 1 else _blend(x, rgb_to_grayscale(x), f)


def adjust_hue(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """Rotate the HSV hue of each image by f (in [-0.5, 0.5] turns), as torchvision's adjust_hue.

    Same maths as torchvision's _rgb_to_hsv / _hsv_to_rgb (after Pillow's Convert.c), in fewer
    passes: the hue in sixths of a turn is h6 = (g - b)/range (max = r), 2 + (b - r)/range
    (max = g) or 4 + (r - g)/range (max = b); V = max and V * S = range are unchanged by the
    rotation, and HSV -> RGB in closed form gives channel n in (5, 3, 1) as
    max - range * clamp(min(k, 4 - k), 0, 1) with k = (n + h6 + 6 f) mod 6.
    """
    if x.shape[1] == 1:
        return x
    r, g, b = x.unbind(dim=1)
    maxc = torch.maximum(torch.maximum(r, g), b)
    crange = maxc - torch.minimum(torch.minimum(r, g), b)
    is_r, is_g = maxc == r, maxc == g
    # Grey pixels (range 0) get hue 0 like torchvision's; their output is max whatever the hue.
    num = torch.where(
        is_r,
        g - b,
        torch.where(is_g, (b - r).add_(crange, alpha=2.0), (r - g).add_(crange, alpha=4.0)),
    )
    h6 = num.div_(torch.where(crange == 0, 1.0, crange)).add_(_col(f * 6.0).squeeze(1))
    # (5, 3, 1) made on the device: a tensor from a Python list would be a synchronous copy.
    sectors = torch.arange(5.0, 0.0, -2.0, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    k = (h6.unsqueeze(1) + sectors).remainder_(6.0)
    ramp = torch.minimum(k, 4.0 - k).clamp_(0, 1)
    return torch.addcmul(maxc.unsqueeze(1), crange.unsqueeze(1), ramp, value=-1.0)


def color_jitter(x: torch.Tensor, p: JitterParams, sync_free: bool | None = None) -> torch.Tensor:
    """Per-sample ColorJitter in each sample's own random order; samples with apply=False pass.

    The hue rotation of the samples whose turn it is runs on that subset (CPU) or on the whole
    batch followed by a masked select (`sync_free`, the default on accelerators, where the subset's
    size would force a host synchronisation; 4x the hue work, but no stall).
    """
    if sync_free is None:
        sync_free = x.device.type != "cpu"
    rgb = x.shape[1] == 3
    one = torch.ones_like(p.brightness)
    # Blend factor for each op id at each sample; samples not jittered get the identity (1).
    factors = torch.stack([p.brightness, p.contrast, p.saturation if rgb else one, one], dim=1)
    factors = torch.where(p.apply.unsqueeze(1), factors, one.unsqueeze(1))
    for step in range(4):
        op = p.order[:, step]
        gray = rgb_to_grayscale(x)
        is_con, is_sat = _col(op == 1).to(x.dtype), _col(op == 2).to(x.dtype)
        # brightness blends with 0, contrast with the mean luma, saturation with the luma image:
        # one lerp other + f (x - other) for the whole batch (the hue's turn has f = 1).
        other = torch.addcmul(gray.mean(dim=(1, 2, 3), keepdim=True) * is_con, gray, is_sat)
        x = torch.lerp(other, x, _col(factors.gather(1, op.unsqueeze(1)))).clamp_(0, 1)
        if rgb:
            x = _masked_hue(x, p.hue, p.apply & (op == 3), sync_free)
    return x


def _masked_hue(
    x: torch.Tensor, f: torch.Tensor, mask: torch.Tensor, sync_free: bool
) -> torch.Tensor:
    if sync_free:
        return torch.where(_col(mask), adjust_hue(x, f), x)
    idx = mask.nonzero().squeeze(1)
    if len(idx):
        x = x.index_copy_(0, idx, adjust_hue(x.index_select(0, idx), f.index_select(0, idx)))
    return x


def grayscale(x: torch.Tensor, coin: torch.Tensor, sync_free: bool | None = None) -> torch.Tensor:
    """Replace the images where `coin` by their luma (kept as 3 channels): RandomGrayscale."""
    if x.shape[1] == 1:
        return x
    if sync_free if sync_free is not None else x.device.type != "cpu":
        return torch.where(_col(coin), rgb_to_grayscale(x).expand_as(x), x)
    idx = coin.nonzero().squeeze(1)
    return x.index_copy(0, idx, rgb_to_grayscale(x.index_select(0, idx)).expand(-1, 3, -1, -1))


class TwoViews(Protocol):
    def __call__(
        self, x: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]: ...


def _check_generator(x: torch.Tensor, g: torch.Generator) -> None:
    if g.device.type != x.device.type:
        raise ValueError(
            f"the augmentation generator is on {g.device} but the data is on "
            f"{x.device}; create it with torch.Generator(device=x.device)."
        )


class _Normalizer:
    """(x / 255 - mean) / std with the constants cached per device (no copy per batch)."""

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        self.mean, self.std = mean, std
        self._cache: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}

    def __call__(self, x: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
        if not self.mean:
            return x if out is None else out.copy_(x)
        if x.device not in self._cache:
            shape = (1, len(self.mean), 1, 1)
            mean = torch.tensor(self.mean, dtype=torch.float64).view(shape)
            std = torch.tensor(self.std, dtype=torch.float64).view(shape)
            self._cache[x.device] = (
                (-mean / std).float().to(x.device),
                (1 / std).float().to(x.device),
            )
        shift, scale = self._cache[x.device]
        return torch.addcmul(shift, x, scale, out=out)  # (x - mean) / std in one pass


class ViewParams(NamedTuple):
    """Every random draw for a batch of views (so chunked processing cannot change the result)."""

    box: CropParams
    flip: torch.Tensor
    jitter: JitterParams | None
    gray: torch.Tensor | None

    def slice(self, a: int, b: int) -> ViewParams:
        box = CropParams(*(f[a:b] for f in self.box))
        jitter = None if self.jitter is None else JitterParams(*(f[a:b] for f in self.jitter))
        gray = None if self.gray is None else self.gray[a:b]
        return ViewParams(box, self.flip[a:b], jitter, gray)


class ImageTwoViews:
    """Both views of a uint8 (or [0, 1] float) N x C x H x W batch; output float32, normalised.

    The 2N views are one batch (half the kernel launches of two calls). On CPU they are processed
    in chunks of about `chunk_elems` floats, which keeps each op's operands in cache (2-3x faster
    per element than whole-batch ops on the 2-core machine); on accelerators in one piece.
    """

    def __init__(
        self,
        spec: ImageAugment,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        chunk_elems: int = 64 * 3 * 32 * 32,
    ) -> None:
        self.spec, self.normalize, self.chunk_elems = spec, _Normalizer(mean, std), chunk_elems

    def sample(self, m: int, height: int, width: int, g: torch.Generator) -> ViewParams:
        s = self.spec
        box = sample_crop_params(m, height, width, s.crop_scale, s.crop_ratio, g)
        flip = _rand(m, g) < s.flip_p
        jitter = (
            None
            if s.jitter_p <= 0
            else sample_jitter_params(
                m, s.brightness, s.contrast, s.saturation, s.hue, s.jitter_p, g
            )
        )
        gray = None if s.grayscale_p <= 0 else _rand(m, g) < s.grayscale_p
        return ViewParams(box, flip, jitter, gray)

    def apply(
        self, x: torch.Tensor, p: ViewParams, out: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Augment float images in [0, 1] with given parameters, normalise (into `out`)."""
        v = resized_crop(x, p.box, p.flip)
        if p.jitter is not None:
            v = color_jitter(v, p.jitter)
        if p.gray is not None:
            v = grayscale(v, p.gray)
        return self.normalize(v, out=out)

    def __call__(
        self, x: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        _check_generator(x, generator)
        n, c, height, width = x.shape
        params = self.sample(2 * n, height, width, generator)
        out = torch.empty((2 * n, c, height, width), device=x.device)
        step = 2 * n if x.device.type != "cpu" else max(1, self.chunk_elems // (c * height * width))
        for a in range(0, 2 * n, step):
            b = min(a + step, 2 * n)
            src = torch.arange(a, b, device=x.device) % n  # view i is made from image i mod n
            chunk = x.index_select(0, src).float()
            if x.dtype == torch.uint8:
                chunk = chunk.div_(255.0)
            self.apply(chunk, params.slice(a, b), out=out[a:b])
        return out[:n], out[n:]


SIGN_FLIPS = ("random", "always")


class VectorTwoViews:
    """CLOA section 3: each view is the vector times a sign plus N(0, noise^2) noise.

    `sign_flip="always"` is the paper's wording ("each vector is processed by multiplying by -1
    and adding random Gaussian noise", CLOA section 3): both views are -x + noise, so a positive
    pair never straddles the origin. `"random"` (the harness's earlier default) draws the sign of
    each view independently, so half of the positive pairs are x and -x: a harder task whose
    solution is a representation that ignores the sign (the rank-1 lines the paper describes).
    """

    def __init__(self, noise: float, sign_flip: str = "random") -> None:
        if sign_flip not in SIGN_FLIPS:
            raise ConfigError(
                f"config key 'dataset_params.sign_flip' has value {sign_flip!r}; it "
                f"must be one of {SIGN_FLIPS}."
            )
        self.noise, self.sign_flip = noise, sign_flip

    def __call__(
        self, x: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        _check_generator(x, generator)
        n = len(x)
        x = torch.cat([x.float(), x.float()])
        if self.sign_flip == "always":
            sign = torch.full((2 * n,), -1.0, device=x.device, dtype=x.dtype)
        else:
            sign = torch.where(_rand(2 * n, generator) < 0.5, -1.0, 1.0).to(x.dtype)
        noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        v = sign.view(-1, *([1] * (x.dim() - 1))) * x + self.noise * noise
        return v[:n], v[n:]


class NoAugment:
    """Preset "none": both views are the normalised input."""

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        self.normalize = _Normalizer(mean, std)

    def __call__(
        self, x: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        v = self.normalize(x)
        return v, v


def build_augment(preset: str | ImageAugment, dataset: Dataset) -> TwoViews:
    """The two-view maker for `dataset`: "auto" = simclr for images, sign flip + noise for vectors."""
    if isinstance(preset, ImageAugment):
        spec = preset
    elif preset not in AUGMENT_PRESETS:
        raise ConfigError(
            f"config key 'augment' has value {preset!r}; it must be one of {AUGMENT_PRESETS}."
        )
    elif preset == "none":
        return NoAugment(dataset.mean, dataset.std)
    elif dataset.kind == "vector":
        if preset != "auto":
            raise ConfigError(
                f"config key 'augment' has value {preset!r}, an image preset, but "
                f"dataset {dataset.name!r} is vector data; use 'auto' or 'none'."
            )
        return VectorTwoViews(
            float(dataset.params.get("view_noise", 0.1)),
            str(dataset.params.get("sign_flip", "random")),
        )
    else:
        spec = PRESETS["simclr" if preset == "auto" else preset]
    if dataset.kind != "image":
        raise ConfigError(f"an image augmentation was given for vector dataset {dataset.name!r}.")
    return ImageTwoViews(spec, dataset.mean, dataset.std)


def normalize(x: torch.Tensor, dataset: Dataset) -> torch.Tensor:
    """Evaluation input: images to float (x / 255 - mean) / std, vectors to float32 as they are."""
    return _Normalizer(dataset.mean, dataset.std)(x)
