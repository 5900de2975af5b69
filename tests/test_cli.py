"""`bench` as a program: `python -m bench` and `python -m bench.cli` exit 2 on bad input with one
line on stderr (no traceback), 0 otherwise."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def bench(*args: str, module: str = "bench") -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)


@pytest.mark.parametrize("module", ["bench", "bench.cli"])
def test_a_missing_results_store_exits_2_with_one_line(module, tmp_path):
    done = bench("results", str(tmp_path / "nonexistent"), module=module)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("bench: error: ") and done.stderr.count("\n") == 1, done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""


def test_python_m_bench_prints_the_version_and_rejects_unknown_commands():
    version = bench("--version")
    assert version.returncode == 0 and version.stdout.startswith("bench ")
    unknown = bench("frobnicate")
    assert unknown.returncode == 2 and "invalid choice" in unknown.stderr
