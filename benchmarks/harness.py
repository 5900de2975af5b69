"""Benchmark of the sweep machinery: what Ray Tune + the Parquet store add to each trial.

The same short `synthetic_subspaces` trials run (a) in a plain loop of `run_trial` in this
process, the baseline, and (b) through `bench.sweep.run_sweep` on an embedded local Ray with one
trial at a time (`max_concurrent: 1`), so both do the same work and the difference is overhead:
Tune scheduling, the trial actor (reused between trials: `reuse_actors=True`), a checkpoint per
epoch, one result per epoch and the driver-side callback that writes one Parquet fragment per
result and compacts each finished trial.

Fixed costs (starting Ray, the first trial actor importing torch) are separated from per-trial
costs by running two sweeps of N and 2N trials: per-trial time in the sweep is the slope
(T(2N) - T(N)) / N. Goals (issue 4): <= 0.3 s of overhead per trial, <= 1 ms of store cost per
result row. The store alone at 1,000 trials x 50 epochs is benchmarks/store.py.

    .venv/bin/python benchmarks/harness.py [--trials 12] [--epochs 3] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import torch
from machine import cpu_model  # benchmarks/machine.py (scripts run from benchmarks/)

from bench.space import expand, parse_space
from bench.store import FragmentWriter
from bench.train import run_trial

OUT = Path(__file__).resolve().parent / "results" / "harness-cpu.json"


def space(n_trials: int, epochs: int, name: str):
    """n tiny trials that differ only in seed; two label fractions: two rows per result."""
    return parse_space({
        "name": name,
        "base": {
            "dataset": "synthetic_subspaces", "dataset_params": {"n_train": 512, "n_test": 256},
            "backbone": "mlp", "mlp_hidden": [64, 64], "projector": [64, 16], "epochs": epochs,
            "batch_size": 128, "probe_epochs": 10, "geometry_samples": 256, "knn_k": 20,
            "device": "cpu", "loss": "infonce", "lr": 0.1,
        },
        "grid": {"seed": list(range(n_trials)), "label_fraction": [0.1, 1.0]},
        "resources": {"cpu": 1}, "retries": 0, "max_concurrent": 1,
    }, source=f"{name}.yaml")  # fmt: skip


class StoreTimer:
    """Wraps FragmentWriter.write_records / compact (run by the driver's callback) with timers."""

    def __init__(self) -> None:
        self.write_s = self.compact_s = 0.0
        self.rows = self.results = self.compactions = 0
        self._write, self._compact = FragmentWriter.write_records, FragmentWriter.compact

    def __enter__(self) -> StoreTimer:
        timer = self

        def write_records(self, records, **kw):
            t = time.perf_counter()
            out = timer._write(self, records, **kw)
            timer.write_s += time.perf_counter() - t
            timer.rows += len(records)
            timer.results += 1
            return out

        def compact(self, trial_id):
            t = time.perf_counter()
            out = timer._compact(self, trial_id)
            timer.compact_s += time.perf_counter() - t
            timer.compactions += 1
            return out

        FragmentWriter.write_records, FragmentWriter.compact = write_records, compact
        return self

    def __exit__(self, *exc: object) -> None:
        FragmentWriter.write_records, FragmentWriter.compact = self._write, self._compact


def plain_loop(trials) -> list[float]:
    run_trial(trials[0])  # warm-up: first-call costs (lazy imports, allocator) are not per trial
    times = []
    for cfg in trials:
        t = time.perf_counter()
        summary = run_trial(cfg)
        times.append(time.perf_counter() - t)
        assert summary.status == "done", summary
    return times


def machine() -> dict:
    model = cpu_model()
    import ray

    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "ray": ray.__version__,
        "load_average_at_start": list(os.getloadavg()),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=12, help="N (the second sweep runs 2N)")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    info = machine()
    torch.set_num_threads(1)  # as a sweep trial with cpu: 1 does

    small = space(args.trials, args.epochs, "harness-n")
    large = space(2 * args.trials, args.epochs, "harness-2n")
    loop = plain_loop(expand(small))
    loop_per_trial = statistics.mean(loop)
    print(f"plain loop: {loop_per_trial:.3f} s per trial ({args.trials} trials)", flush=True)

    import ray

    from bench.sweep.grid import run_sweep

    t = time.perf_counter()
    ray.init(
        num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING
    )
    ray_init_s = time.perf_counter() - t
    walls, stores = {}, {}
    try:
        with tempfile.TemporaryDirectory(prefix="bench-harness-") as tmp:
            for label, sp in (("n", small), ("2n", large)):
                with StoreTimer() as timer:
                    t = time.perf_counter()
                    outcome = run_sweep(sp, storage=tmp, progress_every=0)
                    walls[label] = time.perf_counter() - t
                assert outcome.exit_code == 0, outcome.report()
                stores[label] = timer
                print(f"sweep of {len(outcome.trials)} trials: {walls[label]:.2f} s", flush=True)
    finally:
        ray.shutdown()

    sweep_per_trial = (walls["2n"] - walls["n"]) / args.trials
    overhead = sweep_per_trial - loop_per_trial
    fixed = walls["n"] - args.trials * sweep_per_trial
    timer = stores["2n"]
    store_ms_per_row = 1e3 * timer.write_s / timer.rows
    result = {
        "benchmark": "harness", "device": "cpu",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": info,
        "workload": {"trials": [args.trials, 2 * args.trials], "epochs": args.epochs,
                     "dataset": "synthetic_subspaces", "backbone": "mlp [64, 64]",
                     "max_concurrent": 1, "reuse_actors": True, "checkpoint_every": 1},
        "loop_s_per_trial": loop_per_trial,
        "ray_init_s": ray_init_s,
        "sweep_wall_s": walls,
        "sweep_s_per_trial": sweep_per_trial,
        "sweep_fixed_s": fixed,
        "overhead_s_per_trial": overhead,
        "ratio_sweep_vs_loop_per_trial": sweep_per_trial / loop_per_trial,
        "store_rows": timer.rows, "store_results": timer.results,
        "store_ms_per_row": store_ms_per_row,
        "store_compaction_ms_per_trial": 1e3 * timer.compact_s / max(timer.compactions, 1),
        "goals": {"overhead_s_per_trial_le_0.3": overhead <= 0.3,
                  "store_ms_per_row_le_1": store_ms_per_row <= 1.0},
    }  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"ray.init {ray_init_s:.2f} s; sweep fixed cost {fixed:.2f} s; per trial: loop "
        f"{loop_per_trial:.3f} s, sweep {sweep_per_trial:.3f} s (x{sweep_per_trial / loop_per_trial:.2f}), "
        f"overhead {overhead:.3f} s; store {store_ms_per_row:.2f} ms/row, compaction "
        f"{result['store_compaction_ms_per_trial']:.1f} ms/trial -> {args.out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
