"""CLOA section 3's synthetic data: k rank-1 subspaces in R^m plus Gaussian noise.

Source: Li et al., "CLOA" (seeds/002), section 3 and Table 2: "three clusters of points within a 3D
unit ball", each cluster a line through the origin (a rank-1 linear subspace) perturbed by Gaussian
noise; two points of one cluster pointing in opposite directions are still "close". Views are made
by a sign flip plus Gaussian noise (see `bench.data.augment.VectorTwoViews`; `sign_flip` says
whether every view is flipped, as the paper writes, or each at random).

The paper gives neither the noise level nor the sample count; the defaults here are ours and are
recorded in every trial's `dataset_params`. Each sample is `a * u_c + noise * eps` with `u_c` the
unit direction of its class c (Gaussian, normalised, drawn from `seed`), `a ~ U(-1, 1)` (so the
clean points fill the diameter of the unit ball along u_c) and `eps ~ N(0, I_m)`. Classes are
balanced. The data depends on `seed` only, never on the trial seed, so every trial sees the same
points.
"""

from __future__ import annotations

from pathlib import Path

import torch

from bench.data import Dataset, check_param, register_dataset


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


@register_dataset("synthetic_subspaces", kind="vector")
def load_synthetic_subspaces(
    root: Path,
    download: bool,
    *,
    k: int = 3,
    m: int = 3,
    noise: float = 0.05,
    view_noise: float = 0.1,
    sign_flip: str = "random",
    n_train: int = 3000,
    n_test: int = 1000,
    seed: int = 0,
) -> Dataset:
    """k rank-1 subspaces in R^m plus Gaussian noise (CLOA section 3); views: sign flip + noise."""
    name = "synthetic_subspaces"
    check_param(name, "k", k, _is_int(k) and k >= 1, "an integer >= 1")
    check_param(name, "m", m, _is_int(m) and m >= 1, "an integer >= 1")
    for key, v in (("noise", noise), ("view_noise", view_noise)):
        ok = isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0
        check_param(name, key, v, ok, "a number >= 0")
    for key, v in (("n_train", n_train), ("n_test", n_test)):
        check_param(name, key, v, _is_int(v) and v >= k, f"an integer >= k ({k})")
    check_param(name, "seed", seed, _is_int(seed), "an integer")
    check_param(
        name,
        "sign_flip",
        sign_flip,
        sign_flip in ("random", "always"),
        "'random' (each view's sign drawn at random) or 'always' (CLOA: -x + noise)",
    )

    g = torch.Generator().manual_seed(seed)
    directions = torch.randn(k, m, generator=g, dtype=torch.float64)
    directions /= directions.norm(dim=1, keepdim=True)

    def draw(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        labels = (torch.arange(n) % k)[torch.randperm(n, generator=g)]
        coef = torch.rand(n, 1, generator=g, dtype=torch.float64) * 2 - 1
        eps = torch.randn(n, m, generator=g, dtype=torch.float64)
        x = coef * directions[labels] + noise * eps
        return x.float(), labels.long()

    train_x, train_y = draw(n_train)
    test_x, test_y = draw(n_test)
    params = dict(
        k=k,
        m=m,
        noise=noise,
        view_noise=view_noise,
        sign_flip=sign_flip,
        n_train=n_train,
        n_test=n_test,
        seed=seed,
    )
    return Dataset(name, "vector", train_x, train_y, test_x, test_y, num_classes=k, params=params)
