"""Forward+backward time of every loss vs lightly's implementation of the same loss.

    .venv/bin/python benchmarks/losses.py            # full grid, CPU (and CUDA if present)
    .venv/bin/python benchmarks/losses.py --quick    # B in {256, 1024}, d = 128 only

For each device, batch size B in {256, 1024, 4096} and dimension d in {128, 2048}, times
``loss(z1, z2, labels).backward()`` of every registered loss plus one composite, and of lightly's
loss where lightly has one (NTXent, DCL, DCLW, BarlowTwins, VICReg), interleaving ours and
lightly's runs so that load changes hit both alike; reports median times and the median over
rounds of the paired ratio ours/lightly (robust to a CPU shared with other jobs).
Also times infonce at B=4096, d=128 against its two (2B x d) @ (d x 2B) matmuls (the
forward similarity matmul and one backward matmul: the least any implementation must do).
Writes benchmarks/results/losses-<device>.json with a machine description. Goals: every ratio
vs lightly <= 1.0; infonce <= 2x the two matmuls.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from lightly.loss import BarlowTwinsLoss, DCLLoss, DCLWLoss, NTXentLoss, VICRegLoss
from machine import cpu_model  # benchmarks/machine.py (scripts run from benchmarks/)
from torch import Tensor

from bench.losses import build_loss, list_losses

warnings.filterwarnings("ignore", module="lightly")  # DCLW's torch.tensor(tensor) warning
COMPOSITE = "cloa+infonce"
NUM_CLASSES = 10
LIGHTLY: dict[str, Callable[[], torch.nn.Module]] = {
    "infonce": lambda: NTXentLoss(temperature=0.5, gather_distributed=False),
    "dcl": lambda: DCLLoss(temperature=0.1, gather_distributed=False),
    "dclw": lambda: DCLWLoss(temperature=0.1, sigma=0.5, gather_distributed=False),
    "barlow_twins": lambda: BarlowTwinsLoss(lambda_param=5e-3, gather_distributed=False),
    "vicreg": lambda: VICRegLoss(gather_distributed=False),
}
# CPU cells that cost minutes on a small CPU (2B x 2B x d matmuls at B=4096, d=2048 take
# several seconds each); they are skipped with a note. Every other cell runs.
CPU_SKIP = {
    # ~10 s per call on one core: the SimO losses' 2B x 2B pair terms are transcendental
    (4096, 128): {"simo", "simo_pairs"},
    (4096, 2048): {"infonce", "dcl", "dclw", "supcon", "simo", "simo_pairs", COMPOSITE},
}


def machine(device: torch.device) -> dict[str, object]:
    cpu = cpu_model()
    info: dict[str, object] = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average_at_start": os.getloadavg() if hasattr(os, "getloadavg") else None,
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def step_fn(
    loss: torch.nn.Module, z1: Tensor, z2: Tensor, labels: Tensor | None
) -> Callable[[], None]:
    def step() -> None:
        z1.grad = z2.grad = None
        value = loss(z1, z2) if labels is None else loss(z1, z2, labels)
        value.backward()

    return step


def time_interleaved(
    fns: dict[str, Callable[[], None]], device: torch.device, budget_s: float, max_runs: int
) -> dict[str, list[float]]:
    """Seconds per call of each fn, runs interleaved in alternating order after one warm-up.

    Rounds are paired: round i runs every fn once, back to back, so a ratio taken within a round
    sees the same machine load (this CPU may be shared).
    """
    first = {}
    for name, fn in fns.items():
        t0 = time.perf_counter()
        fn()
        sync(device)
        first[name] = time.perf_counter() - t0
    per_round = sum(first.values())
    runs = max(3, min(max_runs, int(budget_s / max(per_round, 1e-6))))
    times: dict[str, list[float]] = {name: [] for name in fns}
    order = list(fns.items())
    for i in range(runs):
        for name, fn in order if i % 2 == 0 else order[::-1]:  # alternate: no first-run bias
            sync(device)
            t0 = time.perf_counter()
            fn()
            sync(device)
            times[name].append(time.perf_counter() - t0)
    return times


def summarize(times: dict[str, list[float]], ours: str, other: str) -> dict[str, float]:
    """Median times (ms) and the median over rounds of the paired ratio ours/other."""
    ratio = statistics.median(a / b for a, b in zip(times[ours], times[other]))
    return {
        f"{ours}_ms": 1e3 * statistics.median(times[ours]),
        f"{other}_ms": 1e3 * statistics.median(times[other]),
        "ratio": ratio,
    }


def inputs(b: int, d: int, device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
    g = torch.Generator().manual_seed(b + d)
    z1 = torch.randn(b, d, generator=g)
    z2 = z1 + 0.5 * torch.randn(b, d, generator=g)
    labels = torch.randint(0, NUM_CLASSES, (b,), generator=g)
    labels[torch.rand(b, generator=g) < 0.5] = -1
    return (
        z1.to(device).requires_grad_(True),
        z2.to(device).requires_grad_(True),
        labels.to(device),
    )


def bench_device(device: torch.device, sizes: list[tuple[int, int]], budget_s: float) -> dict:
    names = [*list_losses(), COMPOSITE]
    rows, skipped = [], []
    for b, d in sizes:
        z1, z2, labels = inputs(b, d, device)
        for name in names:
            if device.type == "cpu" and name in CPU_SKIP.get((b, d), ()):
                skipped.append({"loss": name, "B": b, "d": d})
                continue
            ours = build_loss(name, num_classes=NUM_CLASSES, dim=d, seed=0).to(device)
            fns = {"ours": step_fn(ours, z1, z2, labels)}
            if name in LIGHTLY:
                fns["lightly"] = step_fn(LIGHTLY[name]().to(device), z1, z2, None)
            t = time_interleaved(fns, device, budget_s, max_runs=50)
            row = {"loss": name, "B": b, "d": d, "runs": len(t["ours"])}
            if "lightly" in t:
                row.update(summarize(t, "ours", "lightly"))
            else:
                row["ours_ms"] = 1e3 * statistics.median(t["ours"])
            rows.append(row)
            print(format_row(row), flush=True)
    return {"rows": rows, "skipped": skipped}


def matmul_reference(device: torch.device, b: int = 4096, d: int = 128, budget_s: float = 8.0):
    z1, z2, _ = inputs(b, d, device)
    u = torch.nn.functional.normalize(torch.cat([z1, z2]).detach(), dim=1)

    def two_matmuls() -> None:
        torch.mm(u, u.T)
        torch.mm(u, u.T)

    ours = step_fn(build_loss("infonce").to(device), z1, z2, None)
    t = time_interleaved({"infonce": ours, "two_matmuls": two_matmuls}, device, budget_s, 15)
    return {"B": b, "d": d, "runs": len(t["infonce"]), **summarize(t, "infonce", "two_matmuls")}


def format_row(row: dict) -> str:
    light = (
        f"{row['lightly_ms']:10.1f} {row['ratio']:7.2f}"
        if "ratio" in row
        else f"{'-':>10} {'-':>7}"
    )
    return f"{row['loss']:>14} {row['B']:>5} {row['d']:>5} {row['ours_ms']:10.1f} {light}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="B in {256, 1024}, d = 128 only")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--budget", type=float, default=2.0, help="seconds of timed runs per cell")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument(
        "--threads",
        type=int,
        default=0,
        help="torch CPU threads (0: torch's default); 1 is steadier on a shared CPU",
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    sizes = (
        [(256, 128), (1024, 128)]
        if args.quick
        else [(b, d) for b in (256, 1024, 4096) for d in (128, 2048)]
    )
    devices = ["cpu", "cuda"] if args.device == "auto" else [args.device]
    for name in devices:
        if name == "cuda" and not torch.cuda.is_available():
            continue
        device = torch.device(name)
        print(f"\n{name}: {machine(device)}")
        print(f"{'loss':>14} {'B':>5} {'d':>5} {'ours_ms':>10} {'lightly_ms':>10} {'ratio':>7}")
        result = {
            "command": "benchmarks/losses.py " + " ".join(sys.argv[1:]),
            "device": name,
            "machine": machine(device),
            "quick": args.quick,
            **bench_device(device, sizes, args.budget),
        }
        if not args.quick:
            ref = matmul_reference(device)
            result["infonce_vs_two_matmuls"] = ref
            print(
                f"infonce B=4096 d=128: {ref['infonce_ms']:.1f} ms = {ref['ratio']:.2f} x "
                f"two (2B x d)@(d x 2B) matmuls ({ref['two_matmuls_ms']:.1f} ms)"
            )
        if result["skipped"]:
            result["skipped_note"] = (
                "cells skipped on CPU to keep the run within minutes: each 2B x 2B x d matmul at "
                "B=4096, d=2048 takes seconds on a small CPU, and the SimO losses' 2B x 2B pair terms "
                "(pow/reciprocal per pair) take ~10 s per call at B=4096; run on CUDA for them"
            )
        result["load_average_at_end"] = os.getloadavg() if hasattr(os, "getloadavg") else None
        ratios = [r["ratio"] for r in result["rows"] if "ratio" in r]
        result["max_ratio_vs_lightly"] = max(ratios) if ratios else None
        args.out.mkdir(parents=True, exist_ok=True)
        path = args.out / f"losses-{name}{'-quick' if args.quick else ''}.json"
        path.write_text(json.dumps(result, indent=2) + "\n")
        print(f"max ratio vs lightly: {result['max_ratio_vs_lightly']:.2f}; wrote {path}")


if __name__ == "__main__":
    main()
