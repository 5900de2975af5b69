"""Full training step throughput: resnet18 (CIFAR stem) on 32x32 images, batch 256, in views/s.

Two feeds of the same model, loss and optimizer in the same process:
  - bench: the trial's own loop (`Trial.train_epoch`): data resident on the device, both views
    made by batched tensor ops on the device;
  - torchvision: a DataLoader with `--workers` worker processes applying torchvision v2
    per-sample transforms (the SimCLR CIFAR recipe) twice per image, batches copied to the device.
Prints views/s for both and the ratio, and writes benchmarks/results/pipeline-<device>.json.
Goal (issue 3): >= 80k views/s for CIFAR resnet18 with bf16 on an H100.

    .venv/bin/python benchmarks/pipeline.py [--device cpu|cuda] [--n 1024] [--epochs 2] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch
import torchvision.transforms.v2 as T

from bench.config import TrialConfig
from bench.data import Dataset
from bench.train import prepare_trial

RESULTS = Path(__file__).parent / "results"


def random_cifar(n: int, seed: int = 0, size: int = 32) -> Dataset:
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=g)
    y = torch.randint(0, 10, (n,), generator=g)
    return Dataset(name="cifar10", kind="image", train_x=x, train_y=y, test_x=x[:256],
                   test_y=y[:256], num_classes=10, mean=(0.49, 0.48, 0.45), std=(0.25, 0.24, 0.26))


def bench_loop(trial, epochs: int) -> float:
    trial.train_epoch(None)  # warm-up (allocator, cudnn autotune)
    start = time.perf_counter()
    steps = 0
    for _ in range(epochs):
        trial.train_epoch(None)
        steps += len(trial.batches)
    _sync(trial.device)
    return 2 * steps * trial.cfg.batch_size / (time.perf_counter() - start)


class TwoViews(torch.utils.data.Dataset):
    def __init__(self, images: torch.Tensor) -> None:
        self.images = images
        self.t = T.Compose([
            T.RandomResizedCrop(images.shape[-1], scale=(0.08, 1.0), antialias=True),
            T.RandomHorizontalFlip(),
            T.RandomApply([T.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
            T.RandomGrayscale(p=0.2),
            T.ToDtype(torch.float32, scale=True),
            T.Normalize((0.49, 0.48, 0.45), (0.25, 0.24, 0.26)),
        ])

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        img = self.images[i]
        return self.t(img), self.t(img)


def dataloader_loop(trial, images: torch.Tensor, epochs: int, workers: int) -> float:
    loader = torch.utils.data.DataLoader(TwoViews(images), batch_size=trial.cfg.batch_size,
                                         shuffle=True, drop_last=True, num_workers=workers,
                                         persistent_workers=workers > 0,
                                         pin_memory=trial.device.type == "cuda")
    enc, loss_fn, opt, dev = trial.encoder, trial.loss_fn, trial.optimizer, trial.device
    labels = torch.full((trial.cfg.batch_size,), -1, dtype=torch.long, device=dev)

    def one_epoch() -> int:
        n = 0
        for v1, v2 in loader:
            views = torch.cat([v1, v2]).to(dev, non_blocking=True)
            if trial.amp:
                views = views.contiguous(memory_format=torch.channels_last)
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=trial.amp):
                _, z = enc(views)
                loss = loss_fn(*z.chunk(2), labels)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            n += 1
        return n

    one_epoch()
    start = time.perf_counter()
    steps = sum(one_epoch() for _ in range(epochs))
    _sync(dev)
    return 2 * steps * trial.cfg.batch_size / (time.perf_counter() - start)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--n", type=int, default=1024, help="training images (CPU: keep small)")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--out", type=Path, help="JSON file (default: results/pipeline-<device>.json)")
    ap.add_argument("--size", type=int, default=32, help="image side (smaller: a quick CPU check)")
    args = ap.parse_args()
    cfg = TrialConfig(dataset="cifar10", backbone="resnet18", cifar_stem=True, projector=(512, 128),
                      loss="infonce", batch_size=args.batch, lr=0.3, epochs=10**6,
                      device=args.device, compile=args.compile, probe_epochs=0)
    data = random_cifar(args.n, size=args.size)
    ours = bench_loop(prepare_trial(cfg, dataset=data), args.epochs)
    theirs = dataloader_loop(prepare_trial(cfg, dataset=data), data.train_x, args.epochs,
                             args.workers)
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
    result = {
        "benchmark": "pipeline", "device": args.device, "device_name": name,
        "cpu_count": os.cpu_count(), "torch": torch.__version__, "batch_size": args.batch,
        "images": args.n, "image_size": args.size, "epochs": args.epochs, "workers": args.workers,
        "bf16": device.type == "cuda", "compile": args.compile,
        "views_per_s_bench": ours, "views_per_s_torchvision_dataloader": theirs,
        "ratio": ours / theirs, "load_average": os.getloadavg(),
    }
    print(f"resnet18 CIFAR step, batch {args.batch}, {args.device}: bench {ours:,.0f} views/s, "
          f"torchvision DataLoader ({args.workers} workers) {theirs:,.0f} views/s, "
          f"ratio {ours / theirs:.2f}x")
    out = args.out or RESULTS / f"pipeline-{args.device}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
