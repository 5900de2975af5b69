"""What a `bench tune` trial is scored on: the objective(s) of a `search:` section, the runs one
search trial makes, and their scores (pure: the worker and the driver both use these).

An objective is a final-epoch metric (`{metric: knn_top1, mode: max}`) or its mean over fixed
lrs (`{stability: {metric: knn_top1, lrs: [0.01, 0.1, 1]}}`); a list of both is a Pareto
search. A metric is named with or without its `m_` prefix; `mode` defaults to `max` for
accuracies and is required otherwise; `label_fraction` defaults to the largest evaluated one.
Nothing is selected on the test split: an accuracy objective is scored on its validation
column (`knn_top1` means `m_val_knn_top1`).

Scores: Optuna is told the LAST reported value, and NaN is not a value, so a diverged run (or a
metric that could not be computed) scores 0 on a maximised metric, and 1 (accuracies) or 1e6
(anything else) on a minimised one. A stability objective runs `run_trial` once per lr of the
set, one after the other; each epoch's report carries the objective "so far" (finished lrs at
their final value, the running one at its latest), which equals the score at the end.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bench import metrics
from bench.config import ConfigError, TrialConfig, did_you_mean, is_number, show_value
from bench.record import metric_columns
from bench.space import registries
from bench.space.checks import reject_unknown

BIG = 1e6  # the score of a diverged run on a minimised metric that is not an accuracy
_STABILITY_KEYS = ("metric", "mode", "label_fraction", "lrs")


@dataclass(frozen=True)
class Objective:
    """A final-epoch metric (`kind="metric"`) or its mean over fixed lrs (`kind="stability"`)."""

    kind: str
    metric: str
    mode: str
    label_fraction: float
    lrs: tuple[float, ...] = ()

    @property
    def key(self) -> str:
        """The key of the objective's value in every Tune result (and in per-run scores)."""
        kind = "stability_" if self.kind == "stability" else ""
        return f"obj_{kind}{self.metric}_lf{self.label_fraction:g}"

    @property
    def worst(self) -> float:
        """The score of a diverged run or of a metric that could not be computed."""
        if self.mode == "max":
            return 0.0
        return 1.0 if is_accuracy(self.metric) else BIG

    def describe(self) -> str:
        what = (
            f"mean {self.metric} over lr {', '.join(show_value(x) for x in self.lrs)}"
            if self.kind == "stability"
            else f"{self.metric} at the final epoch"
        )
        return f"{what}, label fraction {show_value(self.label_fraction)} ({self.mode})"

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "metric": self.metric,
            "mode": self.mode,
            "label_fraction": self.label_fraction,
            "lrs": list(self.lrs),
        }


def is_accuracy(metric: str) -> bool:
    return metric.endswith(("_top1", "_top5"))


def reported_metrics(base: TrialConfig) -> tuple[str, ...]:
    """The metrics a trial's records carry values for: every declared metric column (those of a
    family the config turns off left out, e.g. the probes with `probe_epochs: 0`) and the
    loss's logged terms."""
    known = metric_columns(base)
    terms = tuple(f"m_loss_{t}" for t in registries.loss_terms(base.loss))
    return known + tuple(t for t in terms if t not in known)


def parse_objectives(
    src: str, raw: Any, base: TrialConfig, searched: Sequence[str]
) -> tuple[Objective, ...]:
    """`search.objective`: one objective or a list of them (`searched`: the searched keys)."""
    items = raw if isinstance(raw, list) else [raw]
    if raw is None or not items:
        raise ConfigError(
            f"{src}: key 'search.objective' is missing; give {{metric: knn_top1, "
            "mode: max}, {stability: {metric: knn_top1, lrs: [0.01, 0.1, 1]}}, or "
            "a list of both."
        )
    out: list[Objective] = []
    for i, item in enumerate(items):
        where = "search.objective" if not isinstance(raw, list) else f"search.objective[{i}]"
        if not isinstance(item, Mapping):
            raise ConfigError(
                f"{src}: key {where!r} has value {show_value(item)}; it must be a "
                "mapping like {metric: knn_top1, mode: max}."
            )
        if "stability" in item:
            reject_unknown(src, where, item, ("stability",))
            where, spec, kind = f"{where}.stability", item["stability"], "stability"
            if not isinstance(spec, Mapping):
                raise ConfigError(
                    f"{src}: key {where!r} has value {show_value(spec)}; it must be "
                    "a mapping like {metric: knn_top1, lrs: [0.01, 0.1, 1]}."
                )
            reject_unknown(src, where, spec, _STABILITY_KEYS)
        else:
            spec, kind = item, "metric"
            reject_unknown(src, where, spec, _STABILITY_KEYS[:3])
        out.append(_parse_objective(src, where, kind, spec, base))
    stability = [o for o in out if o.kind == "stability"]
    if len(stability) > 1:
        raise ConfigError(
            f"{src}: key 'search.objective' has {len(stability)} stability "
            "objectives; use at most one (it fixes the lrs every trial runs)."
        )
    if len({(o.kind, o.metric, o.label_fraction) for o in out}) < len(out):
        raise ConfigError(f"{src}: key 'search.objective' lists the same objective twice.")
    if stability and len(out) == 1 and "lr" in searched:
        raise ConfigError(
            f"{src}: key 'search.params.lr' is searched, but the stability "
            "objective runs every trial at the lrs in its 'lrs'; remove one of "
            "them (or add a final-metric objective that uses the searched lr)."
        )
    return tuple(out)


def _parse_objective(
    src: str, where: str, kind: str, spec: Mapping[str, Any], base: TrialConfig
) -> Objective:
    metric = spec.get("metric")
    if not isinstance(metric, str) or not metric:
        raise ConfigError(
            f"{src}: key '{where}.metric' has value {show_value(metric)}; name a "
            "metric such as knn_top1."
        )
    name = metric if metric.startswith("m_") else f"m_{metric}"
    # Nothing is selected on test: an accuracy objective is scored on its validation column.
    if is_accuracy(name) and not name.startswith("m_val_"):
        name = "m_val_" + name[len("m_") :]
    if name.startswith("m_val_") and base.val_fraction <= 0:
        raise ConfigError(
            f"{src}: key '{where}.metric' has value {metric!r}, an accuracy, which "
            "is scored on the validation split, but base.val_fraction is 0; set "
            "val_fraction > 0 (e.g. 0.1)."
        )
    known = reported_metrics(base)
    if name not in known:
        off = [f for f in metrics.declared() if not f.is_on(base) and name in f.columns]
        if off:
            why = (
                f" because base.{off[0].needs} is 0 (the {off[0].module} metrics are not "
                f"computed); set {off[0].needs} > 0."
            )
        else:
            close = did_you_mean(name, known, n=2, cutoff=0.6)
            why = f"; {close}" if close else f"; the metrics are {', '.join(known)}."
        raise ConfigError(
            f"{src}: key '{where}.metric' has value {metric!r}, which trials do not report{why}"
        )
    mode = spec.get("mode", "max" if is_accuracy(name) else None)
    if mode not in ("max", "min"):
        raise ConfigError(
            f"{src}: key '{where}.mode' has value {show_value(mode)}; it must be "
            "'max' or 'min' (only accuracies default to max)."
        )
    fractions = base.label_fractions
    lf = spec.get("label_fraction", max(fractions))
    if not is_number(lf) or float(lf) not in fractions:
        raise ConfigError(
            f"{src}: key '{where}.label_fraction' has value {show_value(lf)}, "
            "which trials do not evaluate; use one of "
            f"{', '.join(map(show_value, fractions))} (set them in "
            "base.label_fraction)."
        )
    lrs: tuple[float, ...] = ()
    if kind == "stability":
        raw = spec.get("lrs")
        ok = (
            isinstance(raw, list)
            and len(raw) >= 2
            and all(is_number(x) and x > 0 for x in raw)
            and len(set(raw)) == len(raw)
        )
        if not ok or raw is None:
            raise ConfigError(
                f"{src}: key '{where}.lrs' has value {show_value(raw)}; it must "
                "list at least two different positive learning rates."
            )
        lrs = tuple(float(x) for x in raw)
    return Objective(kind, name, mode, float(lf), lrs)


# --- the runs of one search trial and their scores ------------------------------------------


def plan_runs(cfg: TrialConfig, objectives: Sequence[Objective]) -> list[TrialConfig]:
    """The `run_trial` configs one Tune trial runs: the trial's own lr (for final-metric
    objectives, and for a grid trial, which has none) and each lr of a stability objective, in
    that order, without repeats."""
    lrs: list[float] = []
    if not objectives or any(o.kind == "metric" for o in objectives):
        lrs.append(cfg.lr)
    for o in objectives:
        lrs += [lr for lr in o.lrs if lr not in lrs]
    return [cfg if lr == cfg.lr else cfg.replace(lr=lr) for lr in lrs]


def run_suffix(cfg: TrialConfig, run: TrialConfig, objectives: Sequence[Objective]) -> str:
    """Store trial-id suffix of a run: none for the single run, `-lr<value>` otherwise."""
    return "" if len(plan_runs(cfg, objectives)) == 1 else f"-lr{run.lr:g}"


def record_value(
    records: Sequence[Mapping[str, Any]], objective: Objective, last: float | None = None
) -> float | None:
    """The objective metric in one epoch's records (its label fraction), or `last` if the epoch
    has no finite value; a diverged record scores `objective.worst`."""
    for r in records:
        if float(r["label_fraction"]) != objective.label_fraction:
            continue
        if r.get("status") == "diverged":
            return objective.worst
        value = r.get(objective.metric)
        if isinstance(value, (int, float)) and math.isfinite(value):
            return float(value)
    return last


def objective_values(
    objectives: Sequence[Objective],
    lrs: Sequence[float],
    scores: Sequence[Mapping[str, float | None]],
    trial_lr: float,
) -> dict[str, float]:
    """Each objective's value from per-run scores (`Objective.key` -> value so far, None = none
    yet).

    A final-metric objective reads the run at the trial's lr; a stability objective averages its
    lrs' runs that have started. Missing values score `worst`.
    """
    out = {}
    for o in objectives:
        if o.kind == "metric":
            runs = [s for lr, s in zip(lrs, scores) if lr == trial_lr]
        else:
            runs = [s for lr, s in zip(lrs, scores) if lr in o.lrs]
        values = [o.worst if (v := s.get(o.key)) is None else v for s in runs]
        out[o.key] = sum(values) / len(values) if values else o.worst
    return out
