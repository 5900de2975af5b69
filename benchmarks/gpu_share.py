"""Trials sharing one GPU: N processes at a 1/N share each, as a Ray sweep packs `gpu: 1/N` trials.

Each process caps its CUDA memory with `torch.cuda.set_per_process_memory_fraction(share)`, what
the trial worker (bench/sweep/worker.py) does for a fractional `gpu` resource (Ray itself does not
isolate GPU memory), builds the same trial (ResNet-18 with the CIFAR
stem on `synthetic_images`, InfoNCE; bf16 autocast and channels_last on CUDA), trains one warm-up
epoch, waits for the others, then times `--epochs` epochs. Run first with one process at share 1,
then with `--trials` processes at 1/trials. Writes JSON: per-process views/s and peak memory
(allocated and reserved by PyTorch), the sum of the processes' views/s, the aggregate over the
common wall-clock window, and the ratio to the process alone. No Ray: it runs where Ray is not
installed (benchmarks/gpu.sh).

    python benchmarks/gpu_share.py --out OUT.json [--device cuda] [--trials 4] [--n 16384]
        [--batch 512] [--epochs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def worker(args: argparse.Namespace) -> dict:
    """One trial process: cap, build, warm up, barrier, time; returns its measurements."""
    import torch

    from bench.config import TrialConfig
    from bench.train import prepare_trial

    device = torch.device(args.device)
    cuda = device.type == "cuda"
    if cuda and 0 < args.share < 1:
        torch.cuda.set_per_process_memory_fraction(args.share)  # as bench/sweep.py's bench_trial
    torch.set_num_threads(max(1, args.threads))
    cfg = TrialConfig(
        dataset="synthetic_images", dataset_params={"n_train": args.n, "n_test": 64},
        backbone="resnet18", cifar_stem=True, projector=(512, 128), loss="infonce",
        batch_size=args.batch, lr=0.3, epochs=10**6, device=args.device, probe_epochs=0,
        val_fraction=0.0, seed=args.rank,
    )  # fmt: skip
    out: dict = {"rank": args.rank, "share": args.share}
    try:
        trial = prepare_trial(cfg)
        trial.train_epoch(None)  # warm-up: allocator, cudnn autotuning
        if cuda:
            torch.cuda.synchronize(device)
        barrier = Path(args.barrier)
        (barrier / f"ready-{args.rank}").touch()
        deadline = time.monotonic() + 600
        while len(list(barrier.glob("ready-*"))) < args.trials and time.monotonic() < deadline:
            time.sleep(0.01)
        start, steps = time.time(), 0
        for _ in range(args.epochs):
            trial.train_epoch(None)  # resets the peak-memory counter at its start
            steps += len(trial.batches)
        if cuda:
            torch.cuda.synchronize(device)
        end = time.time()
        views = 2 * steps * args.batch
        out.update(start=start, end=end, views=views, views_per_s=views / (end - start))
        if cuda:
            free, total = torch.cuda.mem_get_info(device)
            out.update(
                device_name=torch.cuda.get_device_name(device),
                peak_allocated_mb=torch.cuda.max_memory_allocated(device) / 2**20,
                peak_reserved_mb=torch.cuda.max_memory_reserved(device) / 2**20,
                cap_mb=args.share * total / 2**20, device_used_mb=(total - free) / 2**20,
            )  # fmt: skip
    except torch.cuda.OutOfMemoryError as err:  # the cap was too small for this batch size
        out["error"] = f"CUDA out of memory under a {args.share:g} share: {str(err)[:200]}"
    return out


def launch(args: argparse.Namespace, trials: int) -> list[dict]:
    """`trials` worker processes at 1/trials each, started together; their results."""
    # Intra-op threads per process: $OMP_NUM_THREADS if set, else the CPUs shared out.
    threads = os.environ.get("OMP_NUM_THREADS") or str(max(1, (os.cpu_count() or 1) // trials))
    with tempfile.TemporaryDirectory(prefix="gpu-share-") as barrier:
        common = [
            "--worker", "--device", args.device, "--trials", str(trials), "--n", str(args.n),
            "--batch", str(args.batch), "--epochs", str(args.epochs), "--barrier", barrier,
            "--share", str(1.0 / trials), "--threads", threads,
        ]  # fmt: skip
        procs = [
            subprocess.Popen(
                [sys.executable, __file__, *common, "--rank", str(rank)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for rank in range(trials)
        ]
        results = []
        for rank, proc in enumerate(procs):
            stdout, stderr = proc.communicate()
            lines = stdout.strip().splitlines()
            if proc.returncode != 0 or not lines:
                results.append({"rank": rank, "error": f"exit {proc.returncode}: {stderr[-500:]}"})
            else:
                results.append(json.loads(lines[-1]))
    return results


def summarize(results: list[dict]) -> dict:
    ok = [r for r in results if "error" not in r]
    out: dict = {"processes": results, "errors": len(results) - len(ok)}
    if ok:
        first_end, last_start = min(r["end"] for r in ok), max(r["start"] for r in ok)
        window = max(r["end"] for r in ok) - min(r["start"] for r in ok)
        out.update(
            sum_views_per_s=sum(r["views_per_s"] for r in ok),
            aggregate_views_per_s=sum(r["views"] for r in ok) / window,
            overlapped=last_start < first_end,  # the processes really ran at the same time
            peak_allocated_mb=max((r.get("peak_allocated_mb", 0.0) for r in ok), default=0.0),
            peak_reserved_mb=max((r.get("peak_reserved_mb", 0.0) for r in ok), default=0.0),
            device_used_mb=max((r.get("device_used_mb", 0.0) for r in ok), default=0.0),
        )  # fmt: skip
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--trials", type=int, default=4)
    ap.add_argument("--n", type=int, default=16384, help="training images per process")
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--epochs", type=int, default=3, help="timed epochs after one warm-up epoch")
    ap.add_argument("--size", type=int, default=32, help="image side (smaller: a quick CPU check)")
    ap.add_argument("--out", type=Path)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--rank", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--share", type=float, default=1.0, help=argparse.SUPPRESS)
    ap.add_argument("--barrier", help=argparse.SUPPRESS)
    ap.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args)))
        return 0
    # Stopped by a time limit (`timeout` signals the whole process group, workers included):
    # exit through the `with` blocks, so the barrier folder is removed.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    alone = summarize(launch(args, 1))
    shared = summarize(launch(args, args.trials))
    result = {
        "benchmark": "gpu_share", "device": args.device, "trials": args.trials,
        "share": 1.0 / args.trials, "images_per_process": args.n, "batch_size": args.batch,
        "timed_epochs": args.epochs, "alone": alone, "shared": shared,
    }  # fmt: skip
    if "aggregate_views_per_s" in alone and "aggregate_views_per_s" in shared:
        result["shared_vs_alone"] = shared["aggregate_views_per_s"] / alone["aggregate_views_per_s"]
        print(
            f"{args.trials} trials at {1 / args.trials:g} of the {args.device}: "
            f"{shared['aggregate_views_per_s']:,.0f} views/s together vs "
            f"{alone['aggregate_views_per_s']:,.0f} alone ({result['shared_vs_alone']:.2f}x)"
        )
        if shared["peak_reserved_mb"]:
            print(f"peak {shared['peak_reserved_mb']:,.0f} MiB reserved per process")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0 if not (alone["errors"] or shared["errors"]) else 1


if __name__ == "__main__":
    sys.exit(main())
