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


# --- one meaning per option (bench run, bench tune, bench results / report) --------------------


def run_main(argv: list[str], capsys) -> tuple[int, str]:
    from bench.cli import main

    code = main(argv)
    return code, capsys.readouterr().err


def test_run_refuses_non_finite_values_and_stray_dots(capsys):
    code, err = run_main(["run", "lr=.inf", "--device", "cpu"], capsys)
    assert code == 2 and "'lr'" in err and "inf" in err and err.count("\n") == 1, err
    code, err = run_main(["run", "optim.lr=0.1", "--device", "cpu"], capsys)
    assert code == 2 and "'optim.lr'" in err and "loss_params.NAME" in err, err


TUNE_SPACE = str(ROOT / "search_spaces" / "tune_example.yaml")
PLUGIN = str(ROOT / "examples" / "my_loss.py")


def test_tune_storage_is_the_results_root_and_the_study_database_has_its_own_option(tmp_path,
                                                                                  capsys):
    db = f"sqlite:///{tmp_path / 'study.db'}"
    code, err = run_main(["tune", TUNE_SPACE, "--plugin", PLUGIN, "--storage", db, "--dry-run"],
                         capsys)
    assert code == 2 and "--study-db" in err, err
    code, err = run_main(["tune", TUNE_SPACE, "--plugin", PLUGIN, "--out",
                          str(tmp_path / "best.yaml"), "--dry-run"], capsys)
    assert code == 2 and "--out" in err and "folder" in err, err
    assert not (tmp_path / "study.db").exists()


def test_tune_dry_run_shows_the_study_database_it_was_given(tmp_path, capsys):
    from bench.cli import main

    db = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    assert main(["tune", TUNE_SPACE, "--plugin", PLUGIN, "--storage", str(tmp_path / "r"),
                 "--study-db", db, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert f"study database: {db}" in out and f"results: {tmp_path / 'r'}/" in out


def test_results_and_report_name_their_store_the_same_way():
    from bench.cli import build_parser
    from bench.commands import report, results

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for module in (results, report):
        p = sub.choices[module.__name__.rsplit(".", 1)[1]]
        module.add_arguments(p)
        (positional,) = [a for a in p._actions if not a.option_strings]
        assert (positional.dest, positional.metavar) == ("results", "RESULTS")
