"""The record: what `run_trial` reports for each evaluated label fraction after each epoch.

`run_trial(cfg, on_epoch)` calls `on_epoch(record)` with a flat dict (the store turns each into
one row, `bench.store.make_rows`; the search scores objectives from it):

- `epoch` (1-based), `step`, `time_s` (wall seconds since the trial started, over resumes),
  `label_fraction` (the fraction this record's evaluation used);
- `status`: one of `STATUSES` ("running" until the last record; "diverged" when the loss went
  non-finite, "timeout" when the time budget ran out), and `final` (the trial's last epoch);
- `m_*` metric floats (NaN when not computed at this epoch): the training measurements
  (`m_loss`, `m_lr`, ...), the loss's logged terms (`m_loss_<term>`), the evaluation's
  bookkeeping (`m_num_classes`, `m_eval_epoch`: the epoch whose model the metrics describe) and
  every metric family's columns (`bench.metrics`).

`metric_columns()` is the list the store's schema declares, in its order. A metric a record
carries that is not in it (a plugin loss's own terms) is kept by the store in `m_extra`.
"""

from __future__ import annotations

from typing import Any

from bench import metrics

STATUSES = ("running", "done", "diverged", "error", "timeout")
FINISHED = ("done", "diverged", "timeout")  # a trial that ended so is a result, not a failure
REQUIRED_KEYS = ("epoch", "label_fraction", "status")
CURVE_KEYS = ("epoch", "step", "time_s", "label_fraction")
TRAINING_METRICS = ("lr", "grad_norm", "images_per_s", "epoch_time_s", "peak_mem_mb")
# Terms of built-in losses with a column of their own (`LossInfo.terms`; tests/test_architecture
# .py checks each is one); other terms, a plugin's too, are kept in `m_extra`.
LOSS_TERMS = ("invariance", "variance", "covariance", "base", "addon", "same", "diff", "means")
BOOKKEEPING = ("m_num_classes", "m_eval_epoch")


def metric_columns(cfg: Any = None) -> tuple[str, ...]:
    """Every metric column, in the schema's order; given a config, without the columns of the
    metric families it turns off (`Family.needs`)."""
    evaluation = [f for f in metrics.declared() if cfg is None or f.is_on(cfg)]
    return (
        "m_loss",
        *(f"m_loss_{t}" for t in LOSS_TERMS),
        *(f"m_{k}" for k in TRAINING_METRICS),
        *(c for c in metrics.columns("accuracy") if any(c in f.columns for f in evaluation)),
        *BOOKKEEPING,
        *(c for c in metrics.columns("embedding") if any(c in f.columns for f in evaluation)),
    )


def final_only_columns() -> tuple[str, ...]:
    """The metric columns a trial fills at its final epoch only (ASHA cannot prune on them)."""
    return tuple(c for f in metrics.declared() if f.final_only for c in f.columns)
