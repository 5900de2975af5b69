"""Benchmark: two-view augmentation throughput, batched device pipeline vs torchvision v2.

Issue 3, benchmark part (a). Both sides make SimCLR's two views of CIFAR-sized images
(RandomResizedCrop(32, scale 0.08-1), horizontal flip, ColorJitter(0.4, 0.4, 0.4, 0.1) with p=0.8,
grayscale with p=0.2, normalisation) for N random uint8 32x32x3 images in batches of 256:
- ours: `bench.data.augment` on one resident uint8 tensor, batches drawn by `DeviceBatches`,
  `torch.set_num_threads(workers)` (CPU) or on the GPU (`--device cuda`);
- baseline: the same torchvision v2 transforms applied per image, twice per image, inside a torch
  DataLoader with `num_workers=workers` (the usual SimCLR loader), collated into batches and, with
  `--device cuda`, copied to the GPU.
Same process, same cores (the DataLoader workers get the cores, the main process waits). The two
sides alternate for `--rounds` rounds (a busy neighbour on a shared machine hits both alike);
the medians and their ratio are printed and written to `benchmarks/results/augment-<device>.json`
with the machine description and the load average.

    python benchmarks/augment.py                 # CPU, 2 cores, N=10000
    python benchmarks/augment.py --device cuda --workers 8

On a CPU shared with other jobs, run it with OMP_WAIT_POLICY=PASSIVE: OpenMP's default spin-wait
makes every multi-threaded op wait for a descheduled thread (20x slower at a load of 10 on 2
cores); the DataLoader baseline's workers are single-threaded and do not care.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import torch
import torchvision
from machine import cpu_model  # benchmarks/machine.py (scripts run from benchmarks/)
from torchvision.transforms import v2 as T

from bench.data import Dataset
from bench.data.augment import build_augment
from bench.data.cifar import CIFAR10_MEAN, CIFAR10_STD
from bench.data.loader import DeviceBatches

RESULTS = Path(__file__).resolve().parent / "results"


class TwoViewDataset(torch.utils.data.Dataset):
    """Per-sample baseline: each item is the transform applied twice to one uint8 image."""

    def __init__(self, images: torch.Tensor, transform: T.Transform) -> None:
        self.images, self.transform = images, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        img = self.images[i]
        return self.transform(img), self.transform(img)


def torchvision_transform() -> T.Transform:
    return T.Compose([
        T.RandomResizedCrop(32, scale=(0.08, 1.0), antialias=True),
        T.RandomHorizontalFlip(),
        T.RandomApply([T.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
        T.RandomGrayscale(p=0.2),
        T.ToDtype(torch.float32, scale=True),
        T.Normalize(CIFAR10_MEAN, CIFAR10_STD),
    ])


def make_ours(images: torch.Tensor, batch: int, device: torch.device) -> Callable[[int], float]:
    """A runner of `epochs` over the resident images with our batched pipeline -> images/s."""
    x = images.to(device)
    y = torch.zeros(len(images), dtype=torch.long)
    ds = Dataset("bench", "image", images, y, images[:1], y[:1], 10, CIFAR10_MEAN, CIFAR10_STD)
    aug = build_augment("simclr", ds)
    g = torch.Generator(device=device).manual_seed(0)
    batches = DeviceBatches(len(x), batch, device, g)
    for idx in list(batches)[:3]:  # warm-up (allocator, kernels)
        aug(x[idx], g)

    def run(epochs: int) -> float:
        _sync(device)
        done, start = 0, time.perf_counter()
        for _ in range(epochs):
            for idx in batches:
                aug(x[idx], g)
                done += len(idx)
        _sync(device)
        return done / (time.perf_counter() - start)

    return run


def make_torchvision(images: torch.Tensor, batch: int, device: torch.device,
                     workers: int) -> Callable[[int], float]:
    """A runner of `epochs` of the per-sample torchvision DataLoader (two views) -> images/s."""
    loader = torch.utils.data.DataLoader(
        TwoViewDataset(images, torchvision_transform()), batch_size=batch, shuffle=True,
        num_workers=workers, drop_last=True, persistent_workers=workers > 0,
        pin_memory=device.type == "cuda",
    )
    next(iter(loader))  # warm-up: worker start-up is not counted

    def run(epochs: int) -> float:
        done, start = 0, time.perf_counter()
        for _ in range(epochs):
            for v1, v2 in loader:
                v1.to(device, non_blocking=True), v2.to(device, non_blocking=True)
                done += len(v1)
        _sync(device)
        return done / (time.perf_counter() - start)

    return run


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def machine(device: torch.device, workers: int) -> dict:
    cpu = cpu_model()
    return {
        "cpu": cpu, "cpu_count": os.cpu_count(), "cores_used": workers,
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "python": platform.python_version(), "torch": torch.__version__,
        "torchvision": torchvision.__version__, "platform": platform.platform(),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    ap.add_argument("--workers", type=int, default=2, help="cores: DataLoader workers / threads")
    ap.add_argument("-n", type=int, default=10_000, help="number of random 32x32x3 images")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--epochs", type=int, default=1, help="passes over the images per round")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds; medians reported")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    device = torch.device(args.device)
    torch.set_num_threads(args.workers)
    images = torch.randint(0, 256, (args.n, 3, 32, 32), dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(0))

    tv_run = make_torchvision(images, args.batch, device, args.workers)
    ours_run = make_ours(images, args.batch, device)
    tvs, ourss = [], []
    for r in range(args.rounds):  # interleaved rounds: a busy neighbour hits both sides alike
        tvs.append(tv_run(args.epochs))
        ourss.append(ours_run(args.epochs))
        print(f"round {r + 1}: torchvision {tvs[-1]:8.0f} images/s   ours {ourss[-1]:8.0f} images/s")
    tv, ours = statistics.median(tvs), statistics.median(ourss)
    ratio = ours / tv
    print(f"torchvision v2 per-sample, DataLoader({args.workers} workers): {tv:10.0f} images/s")
    print(f"bench batched pipeline on {args.device} ({args.workers} threads): {ours:10.0f} images/s")
    print(f"ratio (medians of {args.rounds} rounds): {ratio:.1f}x (goal >= 5x on CPU)")

    result = {
        "benchmark": "two-view augmentation throughput (SimCLR CIFAR recipe)",
        "device": args.device, "n_images": args.n, "batch_size": args.batch,
        "epochs": args.epochs, "workers": args.workers, "unit": "images/s (two views each)",
        "rounds": args.rounds, "torchvision_images_per_s": round(tv, 1),
        "ours_images_per_s": round(ours, 1),
        "torchvision_rounds": [round(v, 1) for v in tvs], "ours_rounds": [round(v, 1) for v in ourss],
        "ratio": round(ratio, 2), "goal_ratio_cpu": 5.0,
        "machine": machine(device, args.workers),
        "load_average_1min_at_end": os.getloadavg()[0],
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "(unset: OpenMP default, spinning)"),
        "written_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    out = args.out or RESULTS / f"augment-{args.device}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
