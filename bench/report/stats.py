"""Uncertainty over seeds: percentile bootstrap intervals and seed-resampling indices.

Seeds are the only replication unit a sweep has, so every interval in a report resamples seeds
(Efron & Tibshirani, "An Introduction to the Bootstrap", 1993, ch. 13 percentile intervals).
Randomness comes from a numpy Generator seeded from fixed integers and the row's name, so the
same Parquet gives the same numbers whatever else is in the report.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

N_BOOT = 2000
BOOT_SEED = 20240327  # fixed: reports are deterministic


def rng_for(*names: object, seed: int = BOOT_SEED) -> np.random.Generator:
    """A Generator that depends only on `seed` and the given names (stable across runs)."""
    tag = zlib.crc32("\x1f".join(str(n) for n in names).encode())
    return np.random.default_rng([seed, tag])


@dataclass(frozen=True)
class Diff:
    """Difference of means (a - b) with its bootstrap interval."""

    diff: float
    low: float
    high: float
    paired: bool
    n_a: int
    n_b: int

    @property
    def significant(self) -> bool:
        """True when the interval excludes 0 (never with fewer than 2 seeds per side)."""
        return bool(np.isfinite(self.low) and (self.low > 0 or self.high < 0))


def bootstrap_diff(a: dict[int, float], b: dict[int, float], *, rng: np.random.Generator,
                   n_boot: int = N_BOOT, level: float = 0.95) -> Diff:
    """Bootstrap interval for mean(a) - mean(b), where a and b map seed -> value.

    Paired (resample seeds, mean of per-seed differences) when both sides have the same seeds,
    since the seed fixes the initialisation and the data order for both losses; otherwise the two
    sides are resampled independently. Fewer than 2 seeds on a side gives a NaN interval: one
    seed says nothing about spread.
    """
    va = np.array([a[k] for k in sorted(a)], dtype=float)
    vb = np.array([b[k] for k in sorted(b)], dtype=float)
    paired = sorted(a) == sorted(b)
    diff = float(va.mean() - vb.mean()) if len(va) and len(vb) else float("nan")
    if len(va) < 2 or len(vb) < 2:
        return Diff(diff, float("nan"), float("nan"), paired, len(va), len(vb))
    if paired:
        d = va - vb
        boot = d[rng.integers(0, len(d), size=(n_boot, len(d)))].mean(axis=1)
    else:
        boot = (va[rng.integers(0, len(va), size=(n_boot, len(va)))].mean(axis=1)
                - vb[rng.integers(0, len(vb), size=(n_boot, len(vb)))].mean(axis=1))
    alpha = (1 - level) / 2
    low, high = np.quantile(boot, [alpha, 1 - alpha])
    return Diff(diff, float(low), float(high), paired, len(va), len(vb))


def seed_resamples(n_seeds: int, *, rng: np.random.Generator, n_boot: int = N_BOOT) -> np.ndarray:
    """(n_boot, n_seeds) indices drawing seeds with replacement, for statistics over a grid."""
    return rng.integers(0, n_seeds, size=(n_boot, n_seeds))
