"""Hand-built store-like rows for the report tests (a uniquely named module: tests/ has no
__init__.py, so pytest imports test helpers by their bare name)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

DATA = Path(__file__).parent / "data"
GOLDEN = DATA / "store"
EXPECTED = DATA / "expected"


def store_table(frame: pd.DataFrame):
    """Rows as a store-schema table: metrics the schema does not name go into m_extra (as
    make_rows keeps them), other unknown columns are dropped."""
    import json

    import pyarrow as pa

    from bench.store import SCHEMA, conform

    extra = [c for c in frame.columns if c.startswith("m_") and c not in SCHEMA.names]
    out = frame[[c for c in frame.columns if c in SCHEMA.names]].copy()
    if extra:
        out["m_extra"] = [json.dumps({k: (None if pd.isna(v) else float(v))
                                      for k, v in zip(extra, row)})
                          for row in frame[extra].itertuples(index=False, name=None)]
    return conform(pa.Table.from_pandas(out, preserve_index=False))


def cell_rows(specs: list[dict]) -> pd.DataFrame:
    """Store-like rows from short specs; defaults make a finished 'done' cell."""
    rows = []
    for i, spec in enumerate(specs):
        row = {"sweep_id": "s", "trial_id": f"t{i}", "attempt": 0, "loss": "infonce",
               "base_loss": "infonce", "addon": None, "seed": 0, "status": "done",
               "final": True, "epoch": 2, "step": 20, "label_fraction": 1.0, "p_lr": 0.1,
               "p_batch_size": 64, "p_loss_params": "{}", "p_dataset": "digits", "m_linear_top1": 0.5,
               "m_knn_top1": 0.4, "m_h_rankme": 50.0}
        row.update(spec)
        rows.append(row)
    frame = pd.DataFrame(rows)
    frame["m_linear_top1"] = frame["m_linear_top1"].astype(float)
    return frame


def grid_rows(acc: dict[float, list[float]], **common) -> pd.DataFrame:
    """Rows of one loss: lr -> per-seed accuracies (NaN = diverged)."""
    specs = []
    for lr, values in acc.items():
        for seed, v in enumerate(values):
            specs.append({"p_lr": lr, "seed": seed, "m_linear_top1": v,
                          "status": "diverged" if np.isnan(v) else "done",
                          "trial_id": f"{lr}-{seed}-{common.get('p_batch_size', 64)}", **common})
    return cell_rows(specs)
