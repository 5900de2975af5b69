"""Synthetic but realistic sweep results, for tests, report development and store benchmarks.

A test fixture (tests import it as `synthetic_results`; benchmarks/report.py and
benchmarks/store.py put tests/ on their path). No torch, no Ray: trainer-format records
(`bench.record`) are generated from a simple stability
model, then turned into store rows by the real `bench.store.make_rows`, so the output has exactly
the store's schema. The model encodes the qualitative claims of the seed papers, so reports built
on it look like real ones: base losses collapse (embedding variance -> 0, accuracy -> chance,
CLOA Figs. 1-2) and then diverge as lr grows, sooner at small batch sizes (CLOP's
claim of stability across learning rates and batch sizes); a CLOA/CLOP add-on moves that edge
about one decade higher; fewer labels lower accuracy. The numbers are made up: use them to test
code, never as results.

`validation=True` writes the metrics of the validation protocol as well: `m_val_*` accuracies (the
same model measured on a held-out split: an independent noisy measurement), the normalised
variance `m_{h,z}_nvar` and dead-unit share `m_{h,z}_dead`, `m_num_classes`, and (in
`synthetic_rows`) the `p_val_fraction` and `p_probe_*` settings. Without it the rows look like a
store written before that protocol. Metrics the store schema does not name yet travel in
`m_extra` (as `make_rows` keeps them); `synthetic_rows` expands them into columns, as `bench
report` does.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from bench.config import TrialConfig
from bench.metrics import declared
from bench.store import make_rows, split_loss

GEOMETRY_KEYS = next(f.keys for f in declared() if f.module == "geometry")

LABEL_LOSSES = frozenset({"supcon", "simo"})  # plus every add-on variant ("cloa+...", "clop+...")
_PEAK = {
    "infonce": 0.86,
    "dcl": 0.87,
    "barlow_twins": 0.85,
    "vicreg": 0.85,
    "supcon": 0.91,
    "simo": 0.89,
}
_T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
VAL_NOISE = 0.01  # the validation split is smaller than test: its accuracy is a noisier measurement
# p_* settings of the validation protocol, for stores whose TrialConfig does not have them yet.
PROTOCOL_PARAMS = {
    "p_val_fraction": 0.1,
    "p_probe_features": "standardized",
    "p_probe_optimizer": "adamw",
    "p_probe_lr": None,
    "p_probe_batch_size": 256,
}
PROVENANCE = {
    "git_sha": "synthetic", "bench_version": "0.0.0", "torch_version": None, "ray_version": None,
    "device_name": "synthetic", "hostname": "synthetic",
}  # fmt: skip


def uses_labels(loss: str) -> bool:
    base, addon = split_loss(loss)
    return addon is not None or base in LABEL_LOSSES


def synthetic_configs(
    n_trials: int | None = None,
    n_epochs: int = 10,
    *,
    losses: Sequence[str] = ("infonce", "cloa+infonce", "vicreg", "clop+vicreg"),
    lrs: Sequence[float] = (1e-3, 1e-2, 1e-1, 1.0, 3.0),
    batch_sizes: Sequence[int] = (64, 256),
    label_fractions: Sequence[float] = (0.1, 1.0),
    seeds: Sequence[int] = (0, 1),
    dataset: str = "cifar10",
    backbone: str = "resnet18",
) -> list[TrialConfig]:
    """The grid as trials, grouped like `bench.space.expand`: a loss that uses labels gets one
    trial per label fraction, others one trial evaluated at every fraction. With `n_trials`,
    seeds continue past `seeds` until there are that many trials (then the list is cut)."""
    cells = []
    for loss, lr, bs in itertools.product(losses, lrs, batch_sizes):
        groups = [(f,) for f in label_fractions] if uses_labels(loss) else [tuple(label_fractions)]
        cells += [(loss, lr, bs, g) for g in groups]
    seed_iter = itertools.chain(seeds, itertools.count(max(seeds, default=-1) + 1))
    configs: list[TrialConfig] = []
    for seed in seed_iter:
        if n_trials is None and seed not in seeds:
            break
        for loss, lr, bs, fractions in cells:
            configs.append(TrialConfig(
                loss=loss, lr=lr, batch_size=bs, seed=seed, label_fractions=fractions,
                epochs=n_epochs, dataset=dataset, backbone=backbone,
            ))  # fmt: skip
        if n_trials is not None and len(configs) >= n_trials:
            return configs[:n_trials]
    return configs


def synthetic_records(
    cfg: TrialConfig, index: int = 0, running: bool = False, validation: bool = False
) -> list[dict[str, Any]]:
    """Trainer records of one trial (`on_epoch` calls, `bench.record`), reproducible from `index`;
    with the validation protocol's metrics when `validation`."""
    rng = np.random.default_rng([index, cfg.seed])
    val_rng = np.random.default_rng([index, cfg.seed, 1])  # leaves the other numbers unchanged
    base, addon = split_loss(cfg.loss)
    num_classes, n_train, dim = 10, 50_000, 128
    # Stability edge: the lr above which training collapses, then diverges; larger batches and an
    # orthogonality add-on push it up.
    edge = 0.5 * math.sqrt(cfg.batch_size / 256) * (10.0 if addon else 1.0) * rng.uniform(0.7, 1.4)
    strain = math.log10(cfg.lr / edge)  # > 0: beyond the edge
    collapse = 1 / (1 + math.exp(-4 * (strain + 0.3)))  # 0 healthy .. 1 collapsed
    diverge_at = int(rng.integers(1, cfg.epochs + 1)) if strain > 0.4 else None
    last = cfg.epochs if not running else int(rng.integers(1, cfg.epochs))
    peak = (
        _PEAK.get(base, 0.85)
        + (0.01 if addon else 0.0)
        - 0.04 * abs(math.log10(cfg.lr / (edge / 5)))
    )
    steps = n_train // cfg.batch_size
    ips = 4000.0 * rng.uniform(0.9, 1.1)
    records = []
    for epoch in range(1, last + 1):
        diverged = diverge_at is not None and epoch >= diverge_at
        done = epoch == cfg.epochs or diverged
        status = "diverged" if diverged else ("done" if done else "running")
        progress = 1 - math.exp(-3 * epoch / cfg.epochs)
        for fraction in cfg.label_fractions:
            acc = 1 / num_classes + (peak * (0.8 + 0.2 * fraction**0.3) - 0.1) * progress * (
                1 - collapse
            )
            acc = (
                float(np.clip(acc + rng.normal(0, 0.005), 0, 1))
                if not diverged
                else 1 / num_classes
            )
            record: dict[str, Any] = {
                "epoch": epoch, "step": epoch * steps, "time_s": epoch * n_train / ips,
                "label_fraction": fraction, "status": status, "final": done,
                "m_loss": math.nan if diverged else 5.0 * (1 - 0.5 * progress) + rng.normal(0, 0.05),
                "m_lr": cfg.lr * 0.5 * (1 + math.cos(math.pi * epoch / cfg.epochs)),
                "m_grad_norm": float(rng.lognormal(0, 0.3) * (1 + 10 * collapse)),
                "m_images_per_s": ips, "m_epoch_time_s": n_train / ips, "m_peak_mem_mb": 2000.0,
                "m_knn_top1": acc, "m_knn_top5": min(1.0, acc + 0.25 * (1 - acc)),
            }  # fmt: skip
            if done:
                linear = min(1.0, acc + 0.02) if not diverged else math.nan
                record.update(m_linear_top1=linear, m_linear_top5=min(1.0, linear + 0.1),
                              m_ffn_top1=min(1.0, linear + 0.01), m_ffn_top5=min(1.0, linear + 0.11))  # fmt: skip
            if validation:
                record["m_num_classes"] = float(num_classes)
                for key in (
                    "knn_top1",
                    "knn_top5",
                    *(("linear_top1", "linear_top5", "ffn_top1", "ffn_top5") if done else ()),
                ):
                    test = record[f"m_{key}"]
                    noisy = test + val_rng.normal(0, VAL_NOISE)
                    record[f"m_val_{key}"] = (
                        math.nan if diverged or math.isnan(test) else float(np.clip(noisy, 0, 1))
                    )
            if base == "vicreg":
                record.update(
                    m_loss_invariance=0.5, m_loss_variance=0.2 + collapse, m_loss_covariance=0.1
                )
            if addon:
                record.update(
                    m_loss_base=record["m_loss"] * 0.8, m_loss_addon=record["m_loss"] * 0.2
                )
            for space, width in (("h", 512), ("z", dim)):
                record.update(
                    _geometry(space, width, collapse, progress, diverged, rng, validation)
                )
            records.append(record)
    return records


def _geometry(
    space: str,
    width: int,
    collapse: float,
    progress: float,
    diverged: bool,
    rng,
    new_metrics: bool = False,
) -> dict:
    """Geometry metrics of one space; the normalised variance and dead-unit share only with
    `new_metrics`."""
    healthy = 1 - collapse
    values = {
        "total_var": healthy * (0.2 + 0.8 * progress) + 1e-4, "rankme": 1 + (width - 1) * healthy * 0.6,
        "rank95": 1 + (width - 1) * healthy * 0.4, "align": 0.3 + 0.5 * collapse,
        "uniform": -3.5 * healthy, "nc1": 2.0 - 1.5 * progress * healthy,
        "class_cos": 0.2 + 0.7 * collapse, "class_cos_centered": 0.1 + 0.3 * collapse,
        "std": healthy / math.sqrt(width),
    }  # fmt: skip
    assert set(GEOMETRY_KEYS) <= set(values) | {"nvar", "dead"}, GEOMETRY_KEYS
    # post-ReLU backbone features share a direction (nvar well below 1 even when healthy)
    extra = {
        "nvar": 0.01 + (0.4 if space == "h" else 0.9) * healthy,
        "dead": min(1.0, (0.05 if space == "h" else 0.0) + 0.95 * collapse),
    }
    out = {
        f"m_{space}_{k}": (math.nan if diverged else v * rng.uniform(0.97, 1.03))
        for k, v in values.items()
    }
    # no draws from `rng` here, so the other numbers match a store without these metrics
    out |= {
        f"m_{space}_{k}": (math.nan if diverged else v)
        for k, v in extra.items()
        if new_metrics
    }
    return out


def synthetic_trials(
    n_trials: int | None = None,
    n_epochs: int = 10,
    *,
    running_fraction: float = 0.0,
    validation: bool = False,
    **grid: Any,
) -> list[tuple[TrialConfig, list[dict[str, Any]]]]:
    """(config, records) per trial; `running_fraction` of trials stop early as still running."""
    configs = synthetic_configs(n_trials, n_epochs, **grid)
    cut = np.random.default_rng(12345).random(len(configs)) < running_fraction
    return [
        (cfg, synthetic_records(cfg, i, bool(cut[i]), validation)) for i, cfg in enumerate(configs)
    ]


def synthetic_table(
    n_trials: int | None = None,
    n_epochs: int = 10,
    *,
    sweep_id: str = "synthetic",
    running_fraction: float = 0.0,
    validation: bool = False,
    **grid: Any,
) -> pa.Table:
    """All rows of a synthetic sweep as one store-schema table (deterministic timestamps)."""
    tables = []
    for i, (cfg, records) in enumerate(
        synthetic_trials(
            n_trials, n_epochs, running_fraction=running_fraction, validation=validation, **grid
        )
    ):
        started = _T0 + timedelta(minutes=i)
        prov = {**PROVENANCE, "started_at": started, "written_at": started + timedelta(hours=1)}
        tables.append(make_rows(records, sweep_id=sweep_id, cfg=cfg, attempt=0, provenance=prov))
    return pa.concat_tables(tables)


def synthetic_rows(
    n_trials: int | None = None,
    n_epochs: int = 10,
    *,
    sweep_id: str = "synthetic",
    running_fraction: float = 0.0,
    validation: bool = False,
    **grid: Any,
) -> pd.DataFrame:
    """What `read_results` returns for a synthetic sweep: same columns, dtypes and row order
    (with `validation`, plus the protocol's columns the store schema may not have yet, as
    `bench report` reads them).

    Grid keywords: losses, lrs, batch_sizes, label_fractions, seeds, dataset, backbone.
    """
    from bench.store import expand_extra
    from bench.store.dedup import dedup  # the reader's own ordering, so frames compare equal

    table = synthetic_table(
        n_trials,
        n_epochs,
        sweep_id=sweep_id,
        running_fraction=running_fraction,
        validation=validation,
        **grid,
    )
    df = dedup(table).to_pandas()
    if not validation:
        return df
    df = expand_extra(df)
    for col, value in PROTOCOL_PARAMS.items():
        if col not in df.columns:
            df[col] = value
    return df
