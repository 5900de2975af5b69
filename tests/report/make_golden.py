"""Writes the golden results store under tests/report/data/store/ (run by hand, output committed).

    .venv/bin/python tests/report/make_golden.py

A 3-loss sweep on digits (10 classes: chance 0.1) with accuracies simple enough to check by hand
(see `accuracy`): infonce, cloa+infonce (one trial per label fraction: the add-on uses labels)
and vicreg; lr 0.01/0.1/1, batch 64/256, label fractions 0.1/1, seeds 0-2, 2 epochs. Every
metric of the validation protocol is there: validation accuracies (`VAL_SHAPE`: the same as test
except that vicreg's validation prefers lr 0.01, where its test accuracy is lower), normalised
variance and dead-unit share, the class count, and the p_val_fraction / p_probe_* settings.
Special cells:
- infonce lr=1 batch=64: every seed diverges at epoch 2 (final row, NaN accuracy);
- infonce lr=1 batch=256: finishes but collapsed (nvar 0.01, 95% dead units, RankMe 1.5);
- vicreg lr=0.01 batch=64 seed=2: still running (epoch 1 only, no final row);
- sweep.json plans one more trial (clop+vicreg) that has no rows yet.
Rows go through the store's own `make_rows`, so the file has the store schema; metrics and
settings that schema does not name yet are written both in `m_extra` (as make_rows keeps them;
`bench report` expands it) and as columns of their own (which a store schema that names them
reads), so the file reads the same before and after the schema gains them.
"""

from __future__ import annotations

import itertools
import json
import math
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from bench.config import TrialConfig
from bench.store import SCHEMA, make_rows

SWEEP = "golden"
ROOT = Path(__file__).parent / "data" / "store"
LRS = (0.01, 0.1, 1.0)
BATCHES = (64, 256)
FRACTIONS = (0.1, 1.0)
SEEDS = (0, 1, 2)
SHAPE = {  # test accuracy at (lr) before the label-fraction, batch and seed offsets
    "infonce": {0.01: 0.50, 0.1: 0.60, 1.0: 0.30},
    "cloa+infonce": {0.01: 0.55, 0.1: 0.65, 1.0: 0.70},
    "vicreg": {0.01: 0.52, 0.1: 0.58, 1.0: 0.40},
}
VAL_SHAPE = {**SHAPE, "vicreg": {0.01: 0.60, 0.1: 0.55, 1.0: 0.40}}  # validation accuracy
SEED_STEP = {"infonce": 0.01, "cloa+infonce": 0.02, "vicreg": 0.01}  # + step * seed
PROTOCOL = {"p_val_fraction": (0.1, pa.float64()), "p_probe_features": ("standardized", pa.string()),
            "p_probe_optimizer": ("adamw", pa.string()), "p_probe_lr": (None, pa.float64()),
            "p_probe_batch_size": (256, pa.int64())}
WRITTEN = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)
PROVENANCE = {"git_sha": "golden", "bench_version": "0.1.0", "device_name": "cpu",
              "hostname": "golden", "started_at": WRITTEN, "written_at": WRITTEN}


def accuracy(loss: str, lr: float, bs: int, lf: float, seed: int, val: bool = False) -> float:
    """Final linear top-1: +0.10 with all labels, +0.02 at batch 256, + SEED_STEP per seed
    (0.02 for cloa+infonce, so its difference to infonce varies by seed)."""
    shape = (VAL_SHAPE if val else SHAPE)[loss][lr]
    return round(shape + 0.10 * (lf == 1.0) + 0.02 * (bs == 256) + SEED_STEP[loss] * seed, 4)


def configs() -> list[TrialConfig]:
    out = []
    for loss, lr, bs, seed in itertools.product(SHAPE, LRS, BATCHES, SEEDS):
        groups = [(f,) for f in FRACTIONS] if "+" in loss else [FRACTIONS]
        for fractions in groups:
            out.append(TrialConfig(loss=loss, lr=lr, batch_size=bs, seed=seed,
                                   label_fractions=fractions, epochs=2, dataset="digits"))
    return out


def records(cfg: TrialConfig) -> list[dict]:
    diverges = cfg.loss == "infonce" and cfg.lr == 1.0 and cfg.batch_size == 64
    collapsed = cfg.loss == "infonce" and cfg.lr == 1.0 and cfg.batch_size == 256
    running = cfg.loss == "vicreg" and cfg.lr == 0.01 and cfg.batch_size == 64 and cfg.seed == 2
    out = []
    for epoch in (1,) if running else (1, 2):
        final = epoch == 2
        status = "running" if not final else ("diverged" if diverges else "done")
        for lf in cfg.label_fractions:
            acc = accuracy(cfg.loss, cfg.lr, cfg.batch_size, lf, cfg.seed)
            val = accuracy(cfg.loss, cfg.lr, cfg.batch_size, lf, cfg.seed, val=True)
            dead = diverges and final

            def m(x: float) -> float:
                return math.nan if dead else x  # noqa: B023 (used at once)

            rec = {"epoch": epoch, "step": epoch * 10, "time_s": float(epoch),
                   "label_fraction": lf, "status": status, "final": final,
                   "m_loss": m(1.0 / epoch),
                   "m_knn_top1": m(round(acc - 0.02 - 0.1 * (2 - epoch), 4)),
                   "m_val_knn_top1": m(round(val - 0.02 - 0.1 * (2 - epoch), 4)),
                   "m_h_rankme": m(1.5 if collapsed else 40.0),
                   "m_h_total_var": m(0.01 if collapsed else 0.5 * epoch),
                   "m_h_nvar": m(0.01 if collapsed else 0.4),
                   "m_h_dead": m(0.95 if collapsed else 0.0),
                   "m_num_classes": 10.0}
            if final:
                rec["m_linear_top1"] = m(acc)
                rec["m_linear_top5"] = m(round(acc + 0.15, 4))
                rec["m_val_linear_top1"] = m(val)
                rec["m_val_linear_top5"] = m(round(val + 0.15, 4))
            out.append(rec)
    return out


NEW_METRICS = ("m_h_dead", "m_h_nvar", "m_num_classes", "m_val_knn_top1", "m_val_linear_top1",
               "m_val_linear_top5")


def with_new_columns(table: pa.Table, recs: list[dict]) -> pa.Table:
    """Add, as columns of their own, the record metrics and protocol settings that SCHEMA does
    not name yet (make_rows keeps such metrics in m_extra only)."""
    for key in NEW_METRICS:
        if SCHEMA.get_field_index(key) < 0:
            table = table.append_column(pa.field(key, pa.float64()),
                                        pa.array([r.get(key) for r in recs], pa.float64()))
    for key, (value, kind) in PROTOCOL.items():
        if SCHEMA.get_field_index(key) < 0:
            table = table.append_column(pa.field(key, kind), pa.array([value] * len(recs), kind))
    return table


def main() -> None:
    trials = configs()
    table = pa.concat_tables([
        with_new_columns(make_rows(records(c), sweep_id=SWEEP, cfg=c, attempt=0,
                                   provenance=PROVENANCE), records(c)) for c in trials])
    sweep_dir = ROOT / SWEEP
    (sweep_dir / "trials").mkdir(parents=True, exist_ok=True)
    pq.write_table(table, sweep_dir / "trials" / "golden.parquet")
    planned = [*trials, TrialConfig(loss="clop+vicreg", lr=0.1, batch_size=64, epochs=2)]
    meta = {"sweep_id": SWEEP, "name": SWEEP, "n_trials": len(planned),
            "trials": [{"trial_id": t.trial_id(), **t.to_flat()} for t in planned]}
    (sweep_dir / "sweep.json").write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
    print(f"wrote {table.num_rows} rows of {len(trials)} trials to {sweep_dir}")


if __name__ == "__main__":
    main()
