"""Benchmark of `bench report` on synthetic stores of 10^4, 10^5 and 10^6 rows (issue 5).

Each store is a synthetic sweep (`tests/synthetic_results.py`: 4 losses x 5 lrs x 2 batch sizes x 2
label fractions, 100 epochs, 5% of trials still running; more rows = more seeds), written twice:
compacted one Parquet file per trial (as `FragmentWriter.compact` leaves it) and merged into one
file. Timed separately, as the CLI runs them: read (`bench.commands.report.read`, i.e.
`read_results` with the report's columns) of each layout, build (every table, the leaderboard
with its bootstrap, the figures) and write (PNG/SVG, Markdown, HTML, CSV, atomic rename).
Baseline in the same process: reading the merged file whole plus one 4-key groupby-mean.
Goal: time grows at most linearly with rows and 10^6 rows take <= 10 s (read + build + write).
Reading thousands of per-trial files is the store's cost (bench/store, benchmarks/store.py),
so it is reported beside, not inside, the goal.

    .venv/bin/python benchmarks/report.py [--sizes 10000 100000 1000000] [--out FILE]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from machine import cpu_model  # benchmarks/machine.py (scripts run from benchmarks/)

from bench.commands.report import read
from bench.report.build import build_report
from bench.report.columns import report_columns
from bench.report.render import report_files, write_atomically

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the fixture
from synthetic_results import synthetic_table

EPOCHS = 100
ROWS_PER_SEED = 8000  # 60 trials per seed: 20 label-free x 200 rows + 40 label-using x 100
TRIALS_PER_SEED = 60


def machine() -> dict:
    model = cpu_model()
    return {"cpu": model, "cores": os.cpu_count(), "python": platform.python_version(),
            "pandas": pd.__version__, "pyarrow": pa.__version__, "platform": platform.platform()}


def timed(fn, cpu: dict | None = None, key: str = ""):
    """(result, wall seconds); with `cpu`, also records this process's CPU seconds under `key`
    (less sensitive than wall time to other jobs sharing the machine)."""
    start, start_cpu = time.perf_counter(), time.process_time()
    out = fn()
    if cpu is not None:
        cpu[key] = time.process_time() - start_cpu
    return out, time.perf_counter() - start


def write_store(root: Path, n_rows: int) -> tuple[Path, Path, int]:
    """The sweep as per-trial files (one store) and as one merged file (another store);
    returns (per-trial store, merged store, number of trial files)."""
    sweep = f"bench{n_rows}"
    n_trials = max(1, round(n_rows / ROWS_PER_SEED * TRIALS_PER_SEED))
    table = synthetic_table(n_trials, EPOCHS, sweep_id=sweep, running_fraction=0.05)
    per_trial = root / "per_trial" / sweep / "trials"
    merged = root / "merged" / sweep / "trials"
    per_trial.mkdir(parents=True)
    merged.mkdir(parents=True)
    ids = table.column("trial_id").to_numpy(zero_copy_only=False)
    starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])  # each trial's rows are contiguous
    ends = np.r_[starts[1:], len(ids)]
    for start, end in zip(starts, ends):
        pq.write_table(table.slice(start, end - start), per_trial / f"{ids[start]}.parquet")
    pq.write_table(table, merged / "all.parquet")
    return root / "per_trial", root / "merged", len(starts)


def baseline(single: Path) -> float:
    def run() -> pd.Series:
        df = pq.read_table(single).to_pandas()
        return df.groupby(["loss", "p_lr", "p_batch_size", "label_fraction"])["m_knn_top1"].mean()

    return timed(run)[1]


def bench_size(n_rows: int) -> dict:
    root = Path(tempfile.mkdtemp(prefix="bench-report-"))
    cols = report_columns(None)
    cpu: dict[str, float] = {}
    try:
        (per_trial, merged, n_files), t_make = timed(lambda: write_store(root, n_rows))
        _, t_read_files = timed(lambda: read(str(per_trial), None, cols), cpu, "read_files")
        (rows, _), t_read = timed(lambda: read(str(merged), None, cols), cpu, "read")
        report, t_build = timed(lambda: build_report(rows), cpu, "build")
        _, t_write = timed(lambda: write_atomically(root / "out", report_files(report)), cpu,
                           "write")
        t_base = baseline(next(merged.rglob("*.parquet")))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    total = t_read + t_build + t_write
    return {"rows": len(rows), "trial_files": n_files, "make_store_s": t_make,
            "read_per_trial_files_s": t_read_files, "read_s": t_read, "build_s": t_build,
            "write_s": t_write, "total_s": total, "total_with_per_trial_read_s":
            t_read_files + t_build + t_write,
            "baseline_single_file_read_groupby_s": t_base, "ratio_vs_baseline": total / t_base,
            "cpu_s": cpu, "load_average_1min": os.getloadavg()[0]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "report-cpu.json"))
    args = parser.parse_args(argv)
    # One warm-up report, so matplotlib's one-time font loading is not charged to the first size.
    warm = build_report(synthetic_table(60, 2, sweep_id="warmup").to_pandas())
    report_files(warm)
    runs = [bench_size(n) for n in args.sizes]
    for prev, cur in itertools.pairwise(runs):
        cur["growth_total_vs_previous"] = cur["total_s"] / prev["total_s"]
        cur["growth_rows_vs_previous"] = cur["rows"] / prev["rows"]
    big = max(runs, key=lambda r: r["rows"])
    result = {"benchmark": "report", "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "machine": machine(), "runs": runs,
              "goal": {"total_s_at_1e6_rows": 10.0, "growth": "at most linear in rows"},
              "goal_met": bool(big["rows"] >= 900_000 and big["total_s"] <= 10.0
                               and all(r.get("growth_total_vs_previous", 0)
                                       <= r.get("growth_rows_vs_previous", 1) for r in runs))}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"report benchmark on {result['machine']['cpu']} ({result['machine']['cores']} cores)")
    head = ("rows", "read s", "build s", "write s", "total s", "x baseline", "growth",
            "cpu b+w s", "files", "read files s")
    print("  ".join(h.rjust(11) for h in head))
    for r in runs:
        growth = (f"{r['growth_total_vs_previous']:.2f}x/{r['growth_rows_vs_previous']:.0f}x"
                  if "growth_total_vs_previous" in r else "")
        cells = (f"{r['rows']:,}", f"{r['read_s']:.2f}", f"{r['build_s']:.2f}",
                 f"{r['write_s']:.2f}", f"{r['total_s']:.2f}", f"{r['ratio_vs_baseline']:.1f}",
                 growth, f"{r['cpu_s']['build'] + r['cpu_s']['write']:.2f}",
                 str(r["trial_files"]), f"{r['read_per_trial_files_s']:.2f}")
        print("  ".join(c.rjust(11) for c in cells))
    print("read/total: the merged one-file store; growth: total time ratio / row ratio vs the "
          "previous size; baseline: reading that file whole + one groupby; files / read files: "
          "the same rows as compacted per-trial files (the store's read cost); cpu b+w: CPU seconds "
          "of build + write (wall times include other jobs on a shared machine: load average "
          f"{os.getloadavg()[0]:.1f})")
    print(f"goal (10^6 rows <= 10 s, at most linear growth): "
          f"{'met' if result['goal_met'] else 'NOT met'}; wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
