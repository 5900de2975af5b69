"""The `resources` section: what one trial asks Ray for.

    resources: {cpu: 1, gpu: 0.25}                  # per trial; a GPU share also caps CUDA memory
    resources: {cpu: 2, gpu: 0.25, gpu_from_batch_size: {1024: 0.5, 2048: 1.0}}

A fractional GPU share lets several trials share a GPU; it should divide one GPU evenly (1/n),
since Ray counts shares against the cluster total (anything else leaves idle slivers: a warning).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bench.config import ConfigError, TrialConfig, is_int, is_number, show_value
from bench.space.checks import need, reject_unknown

RESOURCE_KEYS = ("cpu", "gpu", "gpu_from_batch_size")


@dataclass(frozen=True)
class Resources:
    """What one trial asks Ray for. `gpu_from_batch_size` maps a batch-size threshold to the GPU
    share of trials with at least that batch size (large batches need more memory)."""

    cpu: float = 1.0
    gpu: float = 0.0
    gpu_from_batch_size: tuple[tuple[int, float], ...] = ()

    def for_trial(self, cfg: TrialConfig) -> dict[str, float]:
        gpu = self.gpu
        for threshold, share in sorted(self.gpu_from_batch_size):
            if cfg.batch_size >= threshold:
                gpu = share
        return {"cpu": self.cpu, "gpu": gpu}


def parse_resources(source: str, raw: Any) -> tuple[Resources, list[str]]:
    if raw is None:
        return Resources(), []
    if not isinstance(raw, Mapping):
        raise ConfigError(
            f"{source}: key 'resources' has value {show_value(raw)}; it must be a mapping "
            "like {cpu: 1, gpu: 0.25}."
        )
    reject_unknown(source, "resources", raw, RESOURCE_KEYS)
    cpu, gpu = raw.get("cpu", 1), raw.get("gpu", 0)
    need(source, "resources.cpu", cpu, is_number(cpu) and cpu >= 0, "a number of CPUs >= 0")
    shares = {"resources.gpu": gpu}
    steps = raw.get("gpu_from_batch_size") or {}
    need(
        source,
        "resources.gpu_from_batch_size",
        steps,
        isinstance(steps, Mapping),
        "a mapping of batch size -> GPU share",
    )
    for bs, share in steps.items():
        need(
            source,
            "resources.gpu_from_batch_size",
            bs,
            is_int(bs) and bs >= 1,
            "keyed by integer batch sizes",
        )
        shares[f"resources.gpu_from_batch_size.{bs}"] = share
    warnings = []
    for key, share in shares.items():
        need(
            source,
            key,
            share,
            is_number(share) and 0 <= share <= 1,
            "a GPU share in [0, 1] (one trial per GPU at most; fractions share a GPU)",
        )
        if 0 < share < 1 and not math.isclose(1 / share, round(1 / share), rel_tol=1e-9):
            warnings.append(
                f"{source}: {key} is {share}, which does not divide one GPU evenly; Ray counts "
                f"shares against the cluster total, so use 1/n (0.5, 0.25, 0.125) to avoid idle "
                f"slivers of GPU."
            )
    if cpu == 0 and all(s == 0 for s in shares.values()):
        raise ConfigError(
            f"{source}: key 'resources' has value {show_value(dict(raw))}; a trial must "
            "ask for some CPU or GPU, or Ray would start every trial at once."
        )
    ladder = tuple(sorted((int(bs), float(s)) for bs, s in steps.items()))
    return Resources(cpu=float(cpu), gpu=float(gpu), gpu_from_batch_size=ladder), warnings
