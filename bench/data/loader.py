"""Index batches from a device-side permutation: the whole data set stays on the device.

This replaces a DataLoader (the pattern of airbench's and hlb-CIFAR10's loaders, see
`shared/reference/performance.md` section 1.1): each epoch draws `torch.randperm(n)` on the device
from the trial's generator and yields slices of it, which the trainer uses to index the resident
tensors. No worker process, no host-to-device copy, no synchronisation.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from bench.config import ConfigError


class DeviceBatches:
    """Iterate `len(self)` index batches (int64 tensors on `device`) of one random permutation.

    `generator` must live on `device` (`torch.Generator(device=device)`); each `iter()` draws a
    fresh permutation from it, so a seeded generator gives the same epochs on every run.
    """

    def __init__(self, n: int, batch_size: int, device: torch.device | str,
                 generator: torch.Generator, drop_last: bool = True) -> None:
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"config key 'batch_size' has value {batch_size!r}; it must be >= 1.")
        if drop_last and batch_size > n:
            raise ConfigError(
                f"config key 'batch_size' has value {batch_size}; it must be at most the training "
                f"set size ({n})."
            )
        self.n, self.batch_size, self.drop_last = n, batch_size, drop_last
        self.device = torch.device(device)
        self.generator = generator

    def __len__(self) -> int:
        full, rest = divmod(self.n, self.batch_size)
        return full + (1 if rest and not self.drop_last else 0)

    def __iter__(self) -> Iterator[torch.Tensor]:
        perm = torch.randperm(self.n, generator=self.generator, device=self.device)
        for i in range(len(self)):
            yield perm[i * self.batch_size : (i + 1) * self.batch_size]
