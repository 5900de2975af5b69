"""Index batches from a device-side permutation: the whole data set stays on the device.

This replaces a DataLoader (the pattern of airbench's and hlb-CIFAR10's loaders): each epoch draws `torch.randperm(n)` on the device
from the trial's generator and yields slices of it, which the trainer uses to index the resident
tensors. No worker process, no host-to-device copy, no synchronisation. `ClassBatches` draws
class-structured batches (P classes x K samples) the same way, for losses that use labels.
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

    def __init__(
        self,
        n: int,
        batch_size: int,
        device: torch.device | str,
        generator: torch.Generator,
        drop_last: bool = True,
    ) -> None:
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


class ClassBatches:
    """Class-structured index batches: P classes x K samples each, drawn afresh every step.

    Each of the `steps` batches draws `classes_per_batch` (P) of the classes without
    replacement, then K = `batch_size` / P samples of each class without replacement, from the
    samples whose label is >= 0 (the labels the loss may see: -1 marks the others). The batch
    lists its classes in blocks of K. This is how the SimO authors build their batches
    (mlnomadpy/exp_vis `src/train.py` `create_simo2_batch_from_dataset`, lines 243-334 at
    104181c: classes without replacement, then samples of each class without replacement,
    independently at every step); any loss that uses labels may train on such batches.

    An epoch has `steps` batches: the trainer passes the random sampler's count (training set
    size // batch size), so that an epoch is the same number of optimizer steps whatever the
    sampler. Everything runs on the labels' device from `generator` (no host sync per batch).

    Raises:
        ConfigError: P does not divide the batch size, P exceeds the number of classes that have
            labelled samples, or a class has fewer than K labelled samples.
    """

    def __init__(
        self,
        labels: torch.Tensor,
        batch_size: int,
        classes_per_batch: int,
        steps: int,
        generator: torch.Generator,
        fraction: float | None = None,
    ) -> None:
        p = classes_per_batch
        if p < 1 or batch_size % p:
            raise ConfigError(
                f"config key 'classes_per_batch' has value {p!r}; it must be a divisor of "
                f"batch_size ({batch_size}), so that every class gets batch_size / "
                "classes_per_batch samples."
            )
        k = batch_size // p
        y = labels.detach().cpu()
        classes, counts = torch.unique(y[y >= 0], return_counts=True)
        seen = "" if fraction is None else f" (labels of {100 * fraction:g}% of the training set)"
        if p > len(classes):
            raise ConfigError(
                f"config key 'classes_per_batch' has value {p}, but only {len(classes)} classes "
                f"have labelled samples{seen}; use at most {len(classes)}."
            )
        smallest = int(counts.argmin())
        if int(counts[smallest]) < k:
            raise ConfigError(
                f"config key 'classes_per_batch' has value {p}, so every batch takes {k} samples "
                f"of each class, but class {int(classes[smallest])} has only "
                f"{int(counts[smallest])} labelled samples{seen}; use more classes per batch or a "
                "smaller batch_size."
            )
        pool = torch.zeros(len(classes), int(counts.max()), dtype=torch.long)
        for row, c in enumerate(classes.tolist()):
            members = torch.nonzero(y == c).squeeze(1)
            pool[row, : len(members)] = members
        device = labels.device
        self.pool, self.counts = pool.to(device), counts.to(device)
        self.classes_per_batch, self.per_class, self.steps = p, k, steps
        self.generator, self.device = generator, device

    def __len__(self) -> int:
        return self.steps

    def __iter__(self) -> Iterator[torch.Tensor]:
        n_classes, width = self.pool.shape
        slots = torch.arange(width, device=self.device)
        for _ in range(self.steps):
            chosen = torch.randperm(n_classes, generator=self.generator, device=self.device)
            chosen = chosen[: self.classes_per_batch]
            # K distinct members per class: the K smallest of one uniform key per member (the
            # padding slots beyond a class's count get key 2, never among the K smallest).
            keys = torch.rand(len(chosen), width, generator=self.generator, device=self.device)
            keys = keys.masked_fill(slots >= self.counts[chosen].unsqueeze(1), 2.0)
            slot = keys.topk(self.per_class, dim=1, largest=False).indices
            yield self.pool[chosen.unsqueeze(1), slot].reshape(-1)
