"""`make reproduce` in miniature: one collapse space, one seed, a few epochs, through `bench sweep`
on the embedded local Ray, then `bench report` and reports/findings_tables.py on its store."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import yaml

from bench.cli import main
from bench.space import expand, load_space
from bench.store import read_results

pytestmark = pytest.mark.ray

ROOT = Path(__file__).resolve().parents[1]


def smoke_space(tmp_path: Path) -> Path:
    """cloa_collapse_synthetic.yaml with its protocol kept and its size cut to seconds."""
    data = yaml.safe_load((ROOT / "search_spaces" / "cloa_collapse_synthetic.yaml").read_text())
    data["base"].update(epochs=2, eval_every=1, probe_epochs=2, geometry_samples=128, knn_k=10)
    data["base"]["dataset_params"].update(n_train=600, n_test=200)
    data["grid"].update(loss=["infonce", "cloa+infonce", "ce"], lr=[1.0, 1000.0], seed=[0])
    path = tmp_path / "cloa_collapse_smoke.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_a_collapse_space_runs_end_to_end_through_bench_sweep(tmp_path, capsys):
    space = smoke_space(tmp_path)
    trials = expand(load_space(space))
    assert len(trials) == 6  # 3 losses x 2 lrs, both label fractions in one trial each
    results, out = tmp_path / "results", tmp_path / "report"
    assert main(["sweep", str(space), "--storage", str(results), "--num-cpus", "2",
                 "--progress-every", "0"]) == 0
    df = read_results(results)
    final = df[df["final"]]
    assert len(final) == 12 and set(final["status"]) <= {"done", "diverged"}
    done = final[final["status"] == "done"]
    assert done["m_val_ffn_top1"].notna().all() and done["m_h_nvar"].between(0, 1).all()
    assert done["p_dataset_params"].str.contains('"sign_flip": "always"').all()
    sweep_id = df["sweep_id"].iloc[0]
    assert main(["report", str(results), "--sweep-id", sweep_id, "--metric", "m_ffn_top1",
                 "--out", str(out)]) == 0
    text = (out / "README.md").read_text()
    assert "chosen on the validation split" in text and "cloa+infonce" in text
    # the numbers behind FINDINGS.md come from the same store
    spec = importlib.util.spec_from_file_location("findings", ROOT / "reports" / "findings_tables.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    capsys.readouterr()
    module.main(str(results), [space])
    tables = capsys.readouterr().out
    assert f"## cloa_collapse_smoke (sweep {sweep_id})" in tables
    assert "| cloa+infonce vs infonce | 1 | 1 |" in tables  # one seed: estimate, no interval
    assert "| ce | 1000 | 1 |" in tables
