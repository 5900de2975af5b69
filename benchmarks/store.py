"""Benchmark of the results store alone (no Ray, no training): write, compact, read.

Workload (issue 4): 1,000 synthetic trials x 50 epochs written as the sweep callback writes them,
one fragment per (trial, epoch) holding that epoch's label fractions; then every trial compacted;
then `compact_sweep` (all trials merged into one file); a read after each step. Baselines in the
same process: the same rows as ONE Parquet file with `pq.write_table` / `pq.read_table`, so the
ratios show what immutability (many small files, atomic rename) costs. Goal: <= 1 ms of store
cost per result row (issue 4). A second read test scales to 10^6 rows (1,000 compacted trial
files of 1,000 rows, then merged; goal, issue 13: the merged sweep reads in <= 1 s). Timings:
best of 3 for reads, garbage collector off; the merged 10^6 rows are also read once in a fresh
process ("cold": the memory of a new process is faulted in on first touch), as `bench report`
does. The machine's other load is recorded (`uptime` before and after): wall times on a shared
2-core machine move with it, CPU seconds much less.

    .venv/bin/python benchmarks/store.py [--trials 1000] [--epochs 50] [--out FILE]
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from machine import cpu_model  # benchmarks/machine.py (scripts run from benchmarks/)

from bench.store import FragmentWriter, make_rows, read_results
from bench.store.dedup import dedup

try:  # the same script measures the store before issue 13 (no marks, Parquet fragments)
    from bench.store.dedup import mark_sorted
    from bench.store.layout import FRAGMENT_SUFFIX
except ImportError:
    mark_sorted, FRAGMENT_SUFFIX = (lambda table: table), ".parquet"
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the fixture
from synthetic_results import PROVENANCE, synthetic_table, synthetic_trials

FRACTIONS = (0.1, 0.5, 1.0)  # CLOA Table 3's label fractions


def machine() -> dict:
    model = cpu_model()
    return {
        "cpu": model, "cores": os.cpu_count(), "python": platform.python_version(),
        "pyarrow": pa.__version__, "pandas": pd.__version__, "platform": platform.platform(),
    }  # fmt: skip


CPU_S: dict[str, float] = {}  # process CPU seconds per phase (all threads), next to wall time


def timed(fn, name: str, repeat: int = 1):
    """Best wall seconds of `repeat` runs of fn() (its CPU seconds go to CPU_S[name]).

    As in `timeit`, the garbage collector is off while timing: the process holds millions of
    Python objects (the synthetic records), and a full collection landing in one phase would be
    charged to it. Other load on the machine inflates wall time more than CPU time, so both are
    recorded."""
    best, out = math.inf, None
    for _ in range(repeat):
        out = None  # free the previous run's result first
        gc.collect()
        gc.disable()
        try:
            cpu, start = time.process_time(), time.perf_counter()
            out = fn()
            wall, used = time.perf_counter() - start, time.process_time() - cpu
        finally:
            gc.enable()
        if wall < best:
            best, CPU_S[name] = wall, used
    return out, best


def bench_sweep(root: Path, n_trials: int, n_epochs: int) -> dict:
    trials = synthetic_trials(n_trials, n_epochs, label_fractions=FRACTIONS)
    # One trainer result = the records of one epoch (all its label fractions).
    results = []
    for cfg, records in trials:
        by_epoch: dict[int, list] = {}
        for rec in records:
            by_epoch.setdefault(rec["epoch"], []).append(rec)
        results += [(cfg, batch) for batch in by_epoch.values()]
    rows = sum(len(b) for _, b in results)

    def build():
        return [
            make_rows(b, sweep_id="bench", cfg=c, attempt=0, provenance=PROVENANCE)
            for c, b in results
        ]

    tables, t_rows = timed(build, "make_rows")
    writer = FragmentWriter(root / "store", "bench")

    def write_all():
        for cfg, batch in results:
            writer.write_records(batch, cfg=cfg, attempt=0, provenance=PROVENANCE)

    _, t_write = timed(write_all, "write")
    whole = pa.concat_tables(tables)
    _, t_base_write = timed(
        lambda: pq.write_table(whole, root / "baseline.parquet"), "baseline_write"
    )
    n_frag = len(results)
    frag_df, t_read_frag = timed(lambda: read_results(root / "store"), "read_fragments")
    _, t_compact = timed(
        lambda: [writer.compact(cfg.trial_id()) for cfg, _ in trials], "compaction"
    )
    df, t_read = timed(lambda: read_results(root / "store"), "read_compacted", repeat=3)
    _, t_base_read = timed(
        lambda: pq.read_table(root / "baseline.parquet").to_pandas(), "baseline_read", repeat=3
    )
    _, t_merge = timed(writer.compact_sweep, "merge")
    merged_df, t_read_merged = timed(lambda: read_results(root / "store"), "read_merged", repeat=3)
    assert len(df) == len(frag_df) == len(merged_df) == rows, (len(df), len(frag_df), rows)
    return {
        "trials": len(trials), "epochs": n_epochs, "rows": rows, "fragments": n_frag,
        "make_rows_ms_per_row": 1e3 * t_rows / rows,
        "write_ms_per_row": 1e3 * t_write / rows,
        "write_ms_per_fragment": 1e3 * t_write / n_frag,
        "baseline_single_file_write_ms_per_row": 1e3 * t_base_write / rows,
        "write_ratio_vs_single_file": t_write / t_base_write,
        "read_fragments_s": t_read_frag,
        "compaction_s": t_compact, "compaction_ms_per_trial": 1e3 * t_compact / len(trials),
        "read_compacted_s": t_read, "baseline_single_file_read_s": t_base_read,
        "read_ratio_vs_single_file": t_read / t_base_read,
        "merge_s": t_merge, "read_merged_s": t_read_merged,
        "read_merged_ratio_vs_single_file": t_read_merged / t_base_read,
    }  # fmt: skip


def bench_read_scale(root: Path, n_trials: int = 1000, n_epochs: int = 200) -> dict:
    """10^6 rows: 1,000 trials x 200 epochs x 5 fractions, as compacted trial files."""
    table = synthetic_table(
        n_trials, n_epochs, sweep_id="big", losses=("infonce", "vicreg"),
        label_fractions=(0.01, 0.05, 0.1, 0.5, 1.0),
    )  # fmt: skip
    trials_dir = root / "big" / "big" / "trials"
    trials_dir.mkdir(parents=True)
    ids = table.column("trial_id")
    for trial_id in ids.unique().to_pylist():
        part = table.filter(pc.equal(ids, trial_id))
        # Sorted, deduplicated and marked so, as compact() writes a trial.
        pq.write_table(mark_sorted(dedup(part)), trials_dir / f"{trial_id}.parquet")
    pq.write_table(table, root / "big.parquet")
    del table, ids
    df, t_read = timed(lambda: read_results(root / "big"), "read_1e6", repeat=3)
    _, t_cols = timed(
        lambda: read_results(root / "big", columns=["m_knn_top1", "p_lr", "status"]),
        "read_1e6_3_columns",
        repeat=3,
    )
    _, t_base = timed(
        lambda: pq.read_table(root / "big.parquet").to_pandas(), "baseline_read_1e6", repeat=3
    )
    del df
    _, t_merge = timed(FragmentWriter(root / "big", "big").compact_sweep, "merge_1e6")
    merged, t_merged = timed(lambda: read_results(root / "big"), "read_1e6_merged", repeat=3)
    rows = len(merged)
    del merged
    # A new process per read: its wall time swings with what else the machine does (page faults
    # are the kernel's work), so the median of five, with every run kept.
    colds = [cold_read(root / "big") for _ in range(5)]
    cold = sorted(colds, key=lambda c: c["wall_s"])[len(colds) // 2]
    return {
        "rows": rows, "files": n_trials, "read_s": t_read, "read_3_columns_s": t_cols,
        "merge_s": t_merge, "read_merged_s": t_merged, "read_merged_cold_s": cold["wall_s"],
        "read_merged_cold_user_s": cold["user_s"], "read_merged_cold_sys_s": cold["sys_s"],
        "read_merged_cold_runs_s": [c["wall_s"] for c in colds],
        "read_merged_ratio_vs_single_file": t_merged / t_base,
        "baseline_single_file_read_s": t_base, "read_ratio_vs_single_file": t_read / t_base,
    }  # fmt: skip


def cold_read(path: Path) -> dict[str, float]:
    """One `read_results(path)` in a new interpreter (imports not counted): wall, user and system
    CPU seconds. System time is the kernel handing the new process its memory (page faults)."""
    code = (
        "import resource, sys, time; from bench.store import read_results; "
        "r = resource.getrusage(resource.RUSAGE_SELF); t = time.perf_counter(); "
        "read_results(sys.argv[1]); w = time.perf_counter() - t; "
        "e = resource.getrusage(resource.RUSAGE_SELF); "
        "print(w, e.ru_utime - r.ru_utime, e.ru_stime - r.ru_stime)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )  # fmt: skip
    wall, user, system = (float(x) for x in out.stdout.split()[-3:])
    return {"wall_s": wall, "user_s": user, "sys_s": system}


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return f"load average {os.getloadavg()}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--skip-scale", action="store_true", help="skip the 10^6-row read")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "store-cpu.json"))
    args = parser.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="bench-store-"))
    load_start, uptime_start = os.getloadavg()[0], uptime()
    try:
        sweep = bench_sweep(root, args.trials, args.epochs)
        scale = None if args.skip_scale else bench_read_scale(root)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    result = {
        "benchmark": "store", "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(), "load_average_1min": {"start": load_start, "end": os.getloadavg()[0]},
        "uptime": {"start": uptime_start, "end": uptime()},
        "fragment_format": FRAGMENT_SUFFIX.lstrip("."),
        "sweep": sweep, "read_scale": scale, "cpu_s": CPU_S,
        "goal": {"write_ms_per_row": 1.0, "read_1e6_merged_s": 1.0},
    }  # fmt: skip
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    s = sweep
    s["write_cpu_ms_per_row"] = 1e3 * CPU_S["write"] / s["rows"]
    print(
        f"store benchmark on {result['machine']['cpu']} ({result['machine']['cores']} cores), "
        f"load average {load_start:.1f} -> {result['load_average_1min']['end']:.1f}"
    )
    print(
        f"{s['trials']} trials x {s['epochs']} epochs = {s['rows']} rows in {s['fragments']} fragments"
    )
    lines = [
        ("make_rows per row", f"{s['make_rows_ms_per_row']:.3f} ms", ""),
        ("write per row (make_rows + fragment)", f"{s['write_ms_per_row']:.3f} ms", "goal <= 1 ms"),
        ("write per row, CPU time", f"{s['write_cpu_ms_per_row']:.3f} ms", ""),
        ("write per fragment", f"{s['write_ms_per_fragment']:.3f} ms", ""),
        ("single-file write per row (baseline)", f"{s['baseline_single_file_write_ms_per_row']:.4f} ms",
         f"fragments are {s['write_ratio_vs_single_file']:.0f}x slower"),
        ("read before compaction", f"{s['read_fragments_s']:.2f} s", ""),
        ("compaction, all trials", f"{s['compaction_s']:.2f} s", f"{s['compaction_ms_per_trial']:.1f} ms per trial"),
        ("read after compaction", f"{s['read_compacted_s']:.3f} s",
         f"{s['read_ratio_vs_single_file']:.1f}x single file ({s['baseline_single_file_read_s']:.3f} s)"),
        ("merge into one file (compact_sweep)", f"{s['merge_s']:.2f} s", ""),
        ("read after merge", f"{s['read_merged_s']:.3f} s",
         f"{s['read_merged_ratio_vs_single_file']:.1f}x single file"),
    ]  # fmt: skip
    if scale:
        lines += [
            (f"read {scale['rows']:,} rows ({scale['files']} files)", f"{scale['read_s']:.2f} s",
             f"{scale['read_ratio_vs_single_file']:.1f}x single file ({scale['baseline_single_file_read_s']:.2f} s)"),
            ("  same, 3 columns", f"{scale['read_3_columns_s']:.2f} s", ""),
            ("  merge into one file", f"{scale['merge_s']:.2f} s", ""),
            ("  read after merge", f"{scale['read_merged_s']:.2f} s",
             f"{scale['read_merged_ratio_vs_single_file']:.1f}x single file; goal <= 1 s"),
            ("  same, first read in a new process", f"{scale['read_merged_cold_s']:.2f} s",
             "median of 5; "
             f"CPU: {scale['read_merged_cold_user_s']:.2f} s user, "
             f"{scale['read_merged_cold_sys_s']:.2f} s system (page faults)"),
        ]  # fmt: skip
    width = max(len(a) for a, _, _ in lines)
    for name, value, note in lines:
        print(f"  {name.ljust(width)}  {value.rjust(10)}  {note}")
    print("CPU seconds per phase: " + ", ".join(f"{k} {v:.2f}" for k, v in CPU_S.items()))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
