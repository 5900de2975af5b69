"""benchmarks/gpu.sh, the GPU check written for the first GPU machine: its bash syntax, and its CPU
fallback (`--cpu-smoke`: every step but the GPU-only ones, with tiny sizes) run end to end where
Ray and Optuna cannot be imported, as on the machine it is written for."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu.sh"


def test_gpu_script_is_valid_bash():
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True)


def test_gpu_script_cpu_smoke_run_without_ray_or_optuna(tmp_path):
    blocked = tmp_path / "blocked"
    for name in ("ray", "optuna"):  # importing either fails, as where they are not installed
        (blocked / name).mkdir(parents=True)
        (blocked / name / "__init__.py").write_text(
            f"raise ImportError('benchmarks/gpu.sh must run without {name}')\n"
        )
    env = {
        **os.environ,
        "PYTHON": sys.executable,
        "PYTHONPATH": os.pathsep.join(p for p in (str(blocked), os.environ.get("PYTHONPATH")) if p),
    }
    out = tmp_path / "out"
    run = subprocess.run(
        ["bash", str(SCRIPT), "--cpu-smoke", str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    steps = {s["step"]: s for s in summary["steps"]}
    assert set(steps) == {"environment", "tests", "eager", "compiled", "pipeline", "share"}
    assert all(s["rc"] == 0 for s in steps.values() if "rc" in s)
    assert "skipped" in steps["tests"] and "skipped" in steps["compiled"]  # need CUDA
    environment = summary["environment"]
    assert environment["mode"] == "cpu"
    assert not environment["ray_installed"] and not environment["optuna_installed"]
    eager = summary["eager"]
    assert eager["status"] == "done" and eager["views_per_s_last_epoch"] > 0
    assert summary["pipeline"]["views_per_s_bench"] > 0
    assert summary["pipeline"]["views_per_s_torchvision_dataloader"] > 0
    share = summary["share"]
    assert share["shared"]["errors"] == 0 and len(share["shared"]["processes"]) == 2
    assert share["shared"]["aggregate_views_per_s"] > 0 and share["alone"]["sum_views_per_s"] > 0
    assert "== summary" in run.stdout
