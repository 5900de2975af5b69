"""The layering contract, checked where it matters: what each layer imports at import time, and
the commands that must run without Ray (and, for `bench report`, without torch).

The static side (which module may import which, function-level imports included) is
import-linter's, run by `make test` (contracts in pyproject.toml). This file checks the running
programs: a fresh interpreter imports a layer and lists what came with it, and `bench tune
--dry-run` and `bench report` run with Ray (and torch) made unimportable.
"""

from __future__ import annotations

import ast
import importlib
import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import bench

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "report" / "data" / "store"  # a small store (tests/report/)
HEAVY = ("torch", "ray", "optuna")


def submodules(package: str) -> list[str]:
    """`package` and every module under it, by name (found without importing them)."""
    path = ROOT.joinpath(*package.split("."))
    return [package, *(f"{package}.{m.name}" for m in pkgutil.walk_packages([str(path)]))]


def imported_with(modules: list[str]) -> set[str]:
    """The heavy packages a fresh interpreter has loaded after importing `modules`."""
    code = ("import importlib, json, sys\n"
            f"for m in {modules!r}: importlib.import_module(m)\n"
            f"print(json.dumps([h for h in {HEAVY!r} if h in sys.modules]))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    return set(json.loads(done.stdout))


def test_the_pure_layers_import_neither_torch_nor_ray_nor_optuna():
    pure = ["bench.config", "bench.record", "bench.metrics", "bench.cli", "bench.commands",
            *submodules("bench.space"), *submodules("bench.store"), *submodules("bench.report"),
            *(f"bench.commands.{name}" for name in ("results", "report", "sweep", "tune", "run"))]
    assert imported_with(pure) == set()


def test_the_study_module_and_the_sweep_package_do_not_start_ray_at_import():
    assert imported_with(["bench.sweep", "bench.sweep.study"]) == {"optuna"}


def block(*names: str) -> str:
    """Python code making `names` unimportable (as on a machine without them)."""
    return "import sys\n" + "".join(f"sys.modules[{n!r}] = None\n" for n in names)


def run_blocked(blocked: tuple[str, ...], argv: list[str]) -> subprocess.CompletedProcess[str]:
    code = block(*blocked) + f"from bench.cli import main\nraise SystemExit(main({argv!r}))\n"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                          timeout=600)


def test_tune_dry_run_needs_no_ray(tmp_path):
    done = run_blocked(("ray",), ["tune", str(ROOT / "search_spaces" / "tune_example.yaml"),
                                  "--plugin", str(ROOT / "examples" / "my_loss.py"),
                                  "--storage", str(tmp_path / "results"), "--dry-run"])
    assert done.returncode == 0, done.stderr
    assert "search:" in done.stdout and "study database: sqlite:///" in done.stdout
    assert not (tmp_path / "results").exists()


def test_report_needs_neither_ray_nor_torch(tmp_path):
    out = tmp_path / "report"
    done = run_blocked(("ray", "torch"), ["report", str(GOLDEN), "--out", str(out)])
    assert done.returncode == 0, done.stderr
    assert (out / "index.html").is_file() and (out / "README.md").is_file()


def test_bad_input_without_ray_is_still_one_line(tmp_path):
    done = run_blocked(("ray", "torch"), ["results", str(tmp_path / "missing")])
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr


# --- the metric families: declared once, read without importing torch -----------------------


def test_every_metric_family_declares_a_literal_and_the_store_has_its_columns():
    from bench import metrics
    from bench.evaluation import EVAL_KEYS
    from bench.store import METRIC_COLUMNS

    families = metrics.declared()
    assert {"geometry", "knn", "probes"} <= {f.module for f in families}
    for family in families:
        module = importlib.import_module(f"bench.metrics.{family.module}")
        assert module.FAMILY["keys"] == family.keys  # what the store read is what runs
        entry = "measure" if family.scope == "embedding" else "scores"
        assert callable(getattr(module, entry)), (family.module, entry)
        assert set(family.columns) <= set(METRIC_COLUMNS) & set(EVAL_KEYS)


def test_a_metric_family_that_is_not_a_literal_is_refused():
    from bench.metrics import _family_literal

    assert _family_literal("FAMILY = {'scope': 'accuracy', 'keys': ('a',)}\n", "m") == {
        "scope": "accuracy", "keys": ("a",)}
    with pytest.raises(TypeError, match="literal"):
        _family_literal("KEYS = ('a',)\nFAMILY = {'scope': 'accuracy', 'keys': KEYS}\n", "m")


def test_every_figure_module_declares_its_order_and_columns():
    from bench.report import figures
    from bench.store import SCHEMA

    names = [m.__name__.rsplit(".", 1)[1] for m in figures.modules()]
    built_in = ["score_vs_lr", "accuracy_vs_lr", "geometry_vs_lr", "accuracy_vs_batch_size",
                "epoch_curves", "heatmaps"]
    assert [n for n in names if n in built_in] == built_in  # the headline first, in ORDER
    for module in figures.modules():
        assert isinstance(module.ORDER, int) and callable(module.draw), module.__name__
    assert set(figures.columns()) <= set(SCHEMA.names)


def test_the_store_columns_of_loss_terms_are_terms_built_in_losses_log():
    from bench.losses import list_losses, loss_info
    from bench.record import LOSS_TERMS

    terms = {t for name in list_losses() for t in loss_info(name).terms
             if loss_info(name).source == "built-in"}
    # composites log base and addon; terms without a column (simo_pairs') go to m_extra
    assert set(LOSS_TERMS) <= terms | {"base", "addon"}


def test_no_docstring_cites_a_document_outside_the_repository():
    cited = ("DESIGN.md", "CONTRACTS.md", "reference/", "losses.md", "performance.md",
             "ray-and-storage.md", "style.md")
    for path in sorted(Path(bench.__file__).parent.rglob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef,
                                 ast.AsyncFunctionDef)):
                doc = ast.get_docstring(node) or ""
                hits = [c for c in cited if c in doc]
                assert not hits, f"{path.relative_to(ROOT)}: {hits}"


def test_no_cluster_file_or_benchmark_cites_a_document_outside_the_repository():
    cited = ("DESIGN.md", "CONTRACTS.md", "reference/", "ray-and-storage.md", "performance.md")
    files = [ROOT / "cluster.yaml", *sorted((ROOT / "cluster").iterdir()),
             *sorted((ROOT / "benchmarks").glob("*.py")), *sorted((ROOT / "benchmarks").glob("*.sh"))]
    for path in files:
        hits = [c for c in cited if c in path.read_text()]
        assert not hits, f"{path.relative_to(ROOT)}: {hits}"
