"""`bench tune`: a persisted Optuna search over one loss's settings, run by Ray Tune.

A tune YAML is a sweep YAML without a `grid` (`base`, fixed `loss_params`, `per_dataset`,
`resources`, `retries`, `time_budget_s`, `max_concurrent`, `storage`) plus a `search` section:

    name: tune_example               # the Optuna study name and the results folder
    base: {loss: infonce_ortho, dataset: digits, epochs: 6, ...}
    search:
      params:                        # what the search varies: any scalar config key,
        lr: {dist: loguniform, low: 1.0e-3, high: 3}        # or loss_params.P / dataset_params.P
        batch_size: {dist: choice, values: [64, 256]}
        loss_params.temperature: {dist: uniform, low: 0.05, high: 1.0}
        loss_params.ortho_weight: {dist: loguniform, low: 1.0e-3, high: 1.0}
      objective: {metric: knn_top1, mode: max}              # (a) final-epoch metric
      # objective: {stability: {metric: knn_top1, lrs: [0.01, 0.1, 1]}}   (b) mean over fixed lrs
      # objective: [{metric: knn_top1}, {stability: {...}}]             (a)+(b): Pareto front
      num_samples: 20                # trials the study should have finished (complete or pruned)
      sampler_seed: 0
      startup_trials: 10             # TPE: random trials before the model kicks in
      population_size: 50            # NSGA-II generation size (multi-objective only)
      asha: {grace_period: 1, reduction_factor: 2, max_t: 6}   # single metric objective only
      sweep:                         # the grid the winner is benchmarked on (written YAML)
        grid: {lr: [1.0e-3, 0.03, 1, 3], batch_size: [64, 256], label_fraction: [0.1, 1.0]}

Distributions: `loguniform {low, high}` (0 < low < high), `uniform {low, high, step?}`,
`int {low, high, step?, log?}` (inclusive), `choice {values}` (numbers, strings or booleans).
An objective names a metric trials report (`m_` prefix optional), `mode` (default `max` for
accuracies, required otherwise) and `label_fraction` (default: the largest evaluated one).
Accuracies are scored on the validation hold-out: `knn_top1` means `m_val_knn_top1` (for the
objective, for ASHA's pruning and for the best trial), so the test split is never searched on.

How the pieces fit (reference/ray-and-storage.md B.4, B.5, B.6, B.10):
- OptunaSearch with a seeded `TPESampler` (one objective) or `NSGAIISampler` (several; metric and
  mode lists go to the searcher, not to TuneConfig), wrapped so each suggestion becomes a full
  `TrialConfig`; `max_concurrent_trials` is always set (else one trial is pending at a time).
- The study lives in an Optuna RDB database (default `sqlite:///<results>/<name>.db`) created
  with the study name from the YAML. `--resume` reloads it and runs the trials still missing to
  reach `num_samples`; trials a dead driver left RUNNING are marked FAIL first. The sampler is
  seeded with `sampler_seed + trials already in the study`, so a resumed study does not replay
  its first suggestions. `optuna-dashboard <storage URL>` opens the database.
- ASHA (`time_attr="epoch"`) stops weak trials early for a single final-metric objective. A
  scheduler takes one metric, so multi-objective searches run FIFO; so do stability searches,
  whose score exists only once every lr has run (early stopping on a partial mean would compare
  unlike quantities). Trials stopped by ASHA are told to Optuna as PRUNED (their last reported
  value kept as intermediate), never as complete trials scored at an early epoch.
- OptunaSearch tells the LAST reported value, and NaN is not a value: a diverged run (or a
  metric that could not be computed) scores 0 on a maximised metric, and 1 (accuracies) or 1e6
  (anything else) on a minimised one.
- Stability objective: one Tune trial runs `run_trial` once per lr of the set, one after the
  other, each with its own store trial id (`<study>-t0007-lr0.1`); a diverged lr scores 0 and the
  trial goes on with the next lr. Each epoch's report carries the objective "so far" (finished
  lrs at their final value, the running one at its latest), which equals the score at the end.
- Every epoch of every run streams to the Parquet store `<results>/<name>/` through the sweep's
  `StoreCallback`, rows tagged with the study (`study` column), ids from the Optuna trial number.
- At the end the best trial (or the Pareto front) is printed and written as a sweep YAML
  (`<results>/<name>-best.yaml`) that benchmarks the winner over `search.sweep`'s grid.
"""

from __future__ import annotations

import difflib
import math
import os
import socket
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
import ray
import yaml
from optuna.trial import TrialState
from ray import tune
from ray.tune.schedulers import ASHAScheduler
from ray.tune.search.optuna import OptunaSearch

from bench.config import ConfigError, TrialConfig
from bench.space import (
    Resources,
    Space,
    grid_points,
    is_int,
    load_space,
    parse_space,
    show_value,
)
from bench.sweep import (
    PerTrialResources,
    ProgressCallback,
    QuietTune,
    StoreCallback,
    TrialStates,
    current_node_id,
    format_clock,
    init_ray,
    ray_resources,
    trial_dirname,
)

DISTRIBUTIONS = ("loguniform", "uniform", "int", "choice")
_DIST_KEYS = {
    "loguniform": ("dist", "low", "high"),
    "uniform": ("dist", "low", "high", "step"),
    "int": ("dist", "low", "high", "step", "log"),
    "choice": ("dist", "values"),
}
SEARCH_KEYS = ("params", "objective", "num_samples", "sampler_seed", "startup_trials",
               "population_size", "asha", "sweep")
ASHA_KEYS = ("grace_period", "reduction_factor", "max_t")
# Config keys the search may not vary: it tunes one loss on one dataset on one device.
_FIXED = ("loss", "dataset", "data_root", "download", "device", "compile", "label_fractions",
          "loss_params", "dataset_params", "mlp_hidden", "projector", "ffn_hidden", "time_budget_s")
# The grid the winner is benchmarked on when `search.sweep` is absent: the demo's axes.
DEFAULT_SWEEP_GRID = {"lr": [0.001, 0.03, 1, 3], "batch_size": [64, 256],
                      "label_fraction": [0.1, 1.0], "seed": [0, 1, 2]}
BIG = 1e6  # the score of a diverged run on a minimised metric that is not an accuracy


class StudyError(ValueError):
    """The study database cannot be used as asked (the CLI exits 2, nothing is changed)."""

    user_error = True


# --- the search section -----------------------------------------------------------------------


@dataclass(frozen=True)
class Param:
    """One searched key and its distribution (`name` is a config key or `loss_params.P`)."""

    name: str
    dist: str
    low: float | int | None = None
    high: float | int | None = None
    step: float | int | None = None
    log: bool = False
    values: tuple[Any, ...] = ()

    def distribution(self) -> optuna.distributions.BaseDistribution:
        d = optuna.distributions
        if self.dist == "choice":
            return d.CategoricalDistribution(self.values)
        if self.dist == "int":
            return d.IntDistribution(int(self.low), int(self.high), log=self.log, step=self.step or 1)
        return d.FloatDistribution(float(self.low), float(self.high), log=self.dist == "loguniform",
                                   step=self.step)

    def extremes(self) -> tuple[Any, ...]:
        """The values that validation tries: both ends of a range, every choice."""
        return self.values if self.dist == "choice" else (self.low, self.high)

    def describe(self) -> str:
        if self.dist == "choice":
            return f"choice of {', '.join(show_value(v) for v in self.values)}"
        extra = f", step {show_value(self.step)}" if self.step else ""
        kind = "log-int" if self.dist == "int" and self.log else self.dist
        return f"{kind} [{show_value(self.low)}, {show_value(self.high)}]{extra}"


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
        return 1.0 if _is_accuracy(self.metric) else BIG

    def describe(self) -> str:
        what = (f"mean {self.metric} over lr {', '.join(show_value(x) for x in self.lrs)}"
                if self.kind == "stability" else f"{self.metric} at the final epoch")
        return f"{what}, label fraction {show_value(self.label_fraction)} ({self.mode})"

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "metric": self.metric, "mode": self.mode,
                "label_fraction": self.label_fraction, "lrs": list(self.lrs)}


@dataclass(frozen=True)
class Asha:
    grace_period: int = 1
    reduction_factor: float = 4
    max_t: int = 1


@dataclass(frozen=True)
class TunePlan:
    """A validated tune YAML: the space (base settings), the search, the base trial config."""

    space: Space
    params: tuple[Param, ...]
    objectives: tuple[Objective, ...]
    base: TrialConfig
    num_samples: int = 10
    sampler_seed: int = 0
    startup_trials: int = 10
    population_size: int = 50
    asha: Asha | None = None
    sweep_grid: Mapping[str, Any] = field(default_factory=dict)
    sweep_per_dataset: Mapping[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.space.name

    @property
    def multi(self) -> bool:
        return len(self.objectives) > 1


def load_plan(path: str | Path) -> TunePlan:
    """Read and validate a tune YAML; every problem is a one-sentence ConfigError."""
    return plan_from_space(load_space(path))


def plan_from_space(space: Space) -> TunePlan:
    src = space.source
    if space.grid:
        raise ConfigError(f"{src}: key 'grid' is not used by bench tune; put fixed settings in "
                          "'base' and what the search varies in 'search.params'.")
    if space.search is None:
        raise ConfigError(f"{src}: there is no 'search' section, which bench tune needs (see "
                          "search_spaces/tune_example.yaml); run a grid with bench sweep instead.")
    for loss, params in space.loss_params.items():
        for pname, values in params:
            if len(values) != 1:
                raise ConfigError(f"{src}: key 'loss_params.{loss}.{pname}' has several values; "
                                  "in a tune YAML loss parameters are fixed values, search them "
                                  f"under 'search.params' as loss_params.{pname}.")
    raw = space.search
    _reject_unknown(src, "search", raw, SEARCH_KEYS)
    (base,) = grid_points(space)
    params = _parse_params(src, raw.get("params"), space, base)
    objectives = _parse_objectives(src, raw.get("objective"), base, params)
    num_samples = _int(src, "search.num_samples", raw.get("num_samples", 10), 1)
    seed = _int(src, "search.sampler_seed", raw.get("sampler_seed", 0), 0)
    startup = _int(src, "search.startup_trials", raw.get("startup_trials", 10), 0)
    population = _int(src, "search.population_size", raw.get("population_size", 50), 2)
    asha = _parse_asha(src, raw.get("asha"), objectives, base)
    grid, per_dataset = _parse_sweep(src, raw.get("sweep"))
    plan = TunePlan(space, params, objectives, base, num_samples, seed, startup, population, asha,
                    grid, per_dataset)
    # The YAML written at the end must expand: try it now with the ranges' lower ends.
    probe = {p.name: p.extremes()[0] for p in params}
    parse_space(best_sweep(plan, probe), source=f"{src} (search.sweep)")
    return plan


def _parse_params(src: str, raw: Any, space: Space, base: TrialConfig) -> tuple[Param, ...]:
    if not isinstance(raw, Mapping) or not raw:
        raise ConfigError(f"{src}: key 'search.params' has value {show_value(raw)}; it must map the "
                          "keys to search to distributions, e.g. {lr: {dist: loguniform, low: "
                          "1.0e-3, high: 1}}.")
    params = []
    for name, spec in raw.items():
        name = str(name)
        where = f"search.params.{name}"
        _check_param_name(src, name, space, base)
        if not isinstance(spec, Mapping):
            raise ConfigError(f"{src}: key {where!r} has value {show_value(spec)}; it must be a mapping "
                              "like {dist: uniform, low: 0.1, high: 1.0}.")
        param = _parse_distribution(src, where, name, spec)
        for value in param.extremes():
            _check_param_value(src, where, param, value, base)
        params.append(param)
    return tuple(params)


def _check_param_name(src: str, name: str, space: Space, base: TrialConfig) -> None:
    where = f"search.params.{name}"
    head, dot, tail = name.partition(".")
    if dot:
        if head == "loss_params":
            from bench.losses import loss_info

            known = dict(loss_info(base.loss).params)
            if tail not in known:
                close = difflib.get_close_matches(tail, list(known), n=1)
                hint = f"did you mean 'loss_params.{close[0]}'?" if close else (
                    f"its parameters are {', '.join(sorted(known)) or 'none'}")
                raise ConfigError(f"{src}: key {where!r} is not a parameter of loss "
                                  f"{base.loss!r}; {hint}")
            if tail in base.loss_params:
                raise ConfigError(f"{src}: key {where!r} is also fixed in "
                                  f"'loss_params.{base.loss}.{tail}'; keep it in one place.")
            return
        if head == "dataset_params":
            from bench.data import dataset_info

            known = dataset_info(base.dataset).params
            if tail not in known:
                raise ConfigError(f"{src}: key {where!r} is not a parameter of dataset "
                                  f"{base.dataset!r}; its parameters are "
                                  f"{', '.join(sorted(known)) or 'none'}.")
            if tail in base.dataset_params:
                raise ConfigError(f"{src}: key {where!r} is also fixed in 'base.dataset_params'; "
                                  "keep it in one place.")
            return
    fields = set(TrialConfig.__dataclass_fields__)
    if name not in fields:
        close = difflib.get_close_matches(name, sorted(fields - set(_FIXED)), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"{src}: key {where!r} names no config key{hint} (loss parameters are "
                          "searched as loss_params.NAME).")
    if name in _FIXED:
        raise ConfigError(f"{src}: key {where!r} cannot be searched; bench tune tunes one loss on "
                          "one dataset, so set it in 'base' (compare losses with bench sweep).")
    if name in space.base:
        raise ConfigError(f"{src}: key {where!r} is also set in 'base.{name}'; keep it in one "
                          "place.")


def _parse_distribution(src: str, where: str, name: str, spec: Mapping) -> Param:
    dist = spec.get("dist")
    if dist not in DISTRIBUTIONS:
        close = difflib.get_close_matches(str(dist), DISTRIBUTIONS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"{src}: key '{where}.dist' has value {show_value(dist)}, which is not a "
                          f"distribution; use one of {', '.join(DISTRIBUTIONS)}{hint}.")
    _reject_unknown(src, where, spec, _DIST_KEYS[dist])
    if dist == "choice":
        values = spec.get("values")
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{src}: key '{where}.values' has value {show_value(values)}; a choice "
                              "needs a non-empty list of values.")
        for v in values:
            if not isinstance(v, (bool, int, float, str)):
                raise ConfigError(f"{src}: key '{where}.values' holds {show_value(v)}; choices must be "
                                  "numbers, strings or booleans.")
            if values.count(v) > 1:
                raise ConfigError(f"{src}: key '{where}.values' lists {show_value(v)} twice.")
        return Param(name, dist, values=tuple(values))
    for k in ("low", "high"):
        if k not in spec:
            raise ConfigError(f"{src}: key {where!r} has no '{k}'; a {dist} distribution needs "
                              "both 'low' and 'high'.")
        ok = is_int(spec[k]) if dist == "int" else _is_num(spec[k])
        if not ok:
            kind = "an integer" if dist == "int" else "a number"
            raise ConfigError(f"{src}: key '{where}.{k}' has value {show_value(spec[k])}; it must be "
                              f"{kind}.")
    low, high = spec["low"], spec["high"]
    if low >= high:
        raise ConfigError(f"{src}: key {where!r} has low {show_value(low)} >= high {show_value(high)}; "
                          "low must be below high.")
    log = dist == "loguniform" or bool(spec.get("log", False))
    if "log" in spec and not isinstance(spec["log"], bool):
        raise ConfigError(f"{src}: key '{where}.log' has value {show_value(spec['log'])}; it must be "
                          "true or false.")
    if log and low <= 0:
        raise ConfigError(f"{src}: key '{where}.low' has value {show_value(low)}; a log range must "
                          "stay above 0 (log 0 is undefined), e.g. low: 1.0e-4.")
    step = spec.get("step")
    if step is not None:
        ok = (is_int(step) if dist == "int" else _is_num(step)) and step > 0
        if not ok or (log and dist == "int" and step != 1):
            raise ConfigError(f"{src}: key '{where}.step' has value {show_value(step)}; it must be a "
                              "positive number (and 1 with log: true).")
    return Param(name, dist, low, high, step, log and dist == "int")


def _check_param_value(src: str, where: str, param: Param, value: Any, base: TrialConfig) -> None:
    """Build the trial config (and for a loss parameter, the loss) at `value`."""
    try:
        cfg = apply_params(base, {param.name: value})
        if param.name.startswith("loss_params."):
            from bench.losses import build_loss

            dim = cfg.projector[-1] if cfg.projector else 2
            build_loss(cfg.loss, num_classes=2, dim=max(dim, 2), seed=0, **cfg.loss_params)
    except (ConfigError, ValueError, KeyError) as exc:
        reason = str(exc.args[0] if isinstance(exc, KeyError) and exc.args else exc)
        reason = reason.split("; ", 1)[-1].rstrip(".")
        raise ConfigError(f"{src}: key {where!r} reaches the value {show_value(value)}, which "
                          f"{param.name} cannot take ({reason}).") from None


def reported_metrics(base: TrialConfig) -> tuple[str, ...]:
    """The metrics a trial's records carry values for (bench/evaluation.py, bench/train.py)."""
    from bench.losses import loss_info
    from bench.store import METRIC_COLUMNS

    terms = tuple(f"m_loss_{t}" for t in loss_info(base.loss).terms)
    probes = {f"m_{split}{p}_top{k}" for split in ("", "val_") for p in ("linear", "ffn")
              for k in (1, 5)}
    known = tuple(m for m in METRIC_COLUMNS if base.probe_epochs > 0 or m not in probes)
    return known + tuple(t for t in terms if t not in known)


def _parse_objectives(src: str, raw: Any, base: TrialConfig,
                      params: Sequence[Param]) -> tuple[Objective, ...]:
    items = raw if isinstance(raw, list) else [raw]
    if raw is None or not items:
        raise ConfigError(f"{src}: key 'search.objective' is missing; give {{metric: knn_top1, "
                          "mode: max}, {stability: {metric: knn_top1, lrs: [0.01, 0.1, 1]}}, or "
                          "a list of both.")
    out: list[Objective] = []
    for i, item in enumerate(items):
        where = "search.objective" if not isinstance(raw, list) else f"search.objective[{i}]"
        if not isinstance(item, Mapping):
            raise ConfigError(f"{src}: key {where!r} has value {show_value(item)}; it must be a mapping "
                              "like {metric: knn_top1, mode: max}.")
        if "stability" in item:
            _reject_unknown(src, where, item, ("stability",))
            where, spec, kind = f"{where}.stability", item["stability"], "stability"
            if not isinstance(spec, Mapping):
                raise ConfigError(f"{src}: key {where!r} has value {show_value(spec)}; it must be a "
                                  "mapping like {metric: knn_top1, lrs: [0.01, 0.1, 1]}.")
            _reject_unknown(src, where, spec, ("metric", "mode", "label_fraction", "lrs"))
        else:
            spec, kind = item, "metric"
            _reject_unknown(src, where, spec, ("metric", "mode", "label_fraction"))
        out.append(_parse_objective(src, where, kind, spec, base))
    stability = [o for o in out if o.kind == "stability"]
    if len(stability) > 1:
        raise ConfigError(f"{src}: key 'search.objective' has {len(stability)} stability "
                          "objectives; use at most one (it fixes the lrs every trial runs).")
    if len({(o.kind, o.metric, o.label_fraction) for o in out}) < len(out):
        raise ConfigError(f"{src}: key 'search.objective' lists the same objective twice.")
    if stability and len(out) == 1 and any(p.name == "lr" for p in params):
        raise ConfigError(f"{src}: key 'search.params.lr' is searched, but the stability "
                          "objective runs every trial at the lrs in its 'lrs'; remove one of "
                          "them (or add a final-metric objective that uses the searched lr).")
    return tuple(out)


def _parse_objective(src: str, where: str, kind: str, spec: Mapping,
                     base: TrialConfig) -> Objective:
    metric = spec.get("metric")
    if not isinstance(metric, str) or not metric:
        raise ConfigError(f"{src}: key '{where}.metric' has value {show_value(metric)}; name a metric "
                          "such as knn_top1.")
    name = metric if metric.startswith("m_") else f"m_{metric}"
    # Nothing is selected on test: an accuracy objective is scored on its validation column.
    if _is_accuracy(name) and not name.startswith("m_val_"):
        name = "m_val_" + name[len("m_"):]
    if name.startswith("m_val_") and base.val_fraction <= 0:
        raise ConfigError(f"{src}: key '{where}.metric' has value {metric!r}, an accuracy, which "
                          "is scored on the validation split, but base.val_fraction is 0; set "
                          "val_fraction > 0 (e.g. 0.1).")
    known = reported_metrics(base)
    if name not in known:
        if name.startswith(("m_linear_", "m_ffn_", "m_val_linear_", "m_val_ffn_")):
            why = " because base.probe_epochs is 0 (no probe is trained); set probe_epochs > 0."
        else:
            close = difflib.get_close_matches(name, known, n=2)
            why = (f"; did you mean {' or '.join(map(repr, close))}?" if close
                   else f"; the metrics are {', '.join(known)}.")
        raise ConfigError(f"{src}: key '{where}.metric' has value {metric!r}, which trials do not "
                          f"report{why}")
    mode = spec.get("mode", "max" if _is_accuracy(name) else None)
    if mode not in ("max", "min"):
        raise ConfigError(f"{src}: key '{where}.mode' has value {show_value(mode)}; it must be 'max' or "
                          "'min' (only accuracies default to max).")
    fractions = base.label_fractions
    lf = spec.get("label_fraction", max(fractions))
    if not _is_num(lf) or float(lf) not in fractions:
        raise ConfigError(f"{src}: key '{where}.label_fraction' has value {show_value(lf)}, which trials "
                          f"do not evaluate; use one of {', '.join(map(show_value, fractions))} (set "
                          "them in base.label_fraction).")
    lrs: tuple[float, ...] = ()
    if kind == "stability":
        raw = spec.get("lrs")
        ok = (isinstance(raw, list) and len(raw) >= 2
              and all(_is_num(x) and x > 0 for x in raw) and len(set(raw)) == len(raw))
        if not ok:
            raise ConfigError(f"{src}: key '{where}.lrs' has value {show_value(raw)}; it must list at "
                              "least two different positive learning rates.")
        lrs = tuple(float(x) for x in raw)
    return Objective(kind, name, mode, float(lf), lrs)


def _parse_asha(src: str, raw: Any, objectives: Sequence[Objective],
                base: TrialConfig) -> Asha | None:
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{src}: key 'search.asha' has value {show_value(raw)}; it must be a mapping "
                          "like {grace_period: 1, reduction_factor: 2} (or be left out).")
    (objective, *others) = objectives
    if others or objective.kind == "stability":
        raise ConfigError(f"{src}: key 'search.asha' cannot be used with a "
                          f"{'multi-objective' if others else 'stability'} search: ASHA compares "
                          "trials epoch by epoch on one final-metric objective; remove it (trials "
                          "then run to the end).")
    if objective.metric in ("m_linear_top1", "m_linear_top5", "m_ffn_top1", "m_ffn_top5"):
        raise ConfigError(f"{src}: key 'search.asha' needs a metric reported every epoch, but "
                          f"{objective.metric} is computed only at the final epoch; use knn_top1 "
                          "or remove 'search.asha'.")
    _reject_unknown(src, "search.asha", raw, ASHA_KEYS)
    grace = _int(src, "search.asha.grace_period", raw.get("grace_period", 1), 1)
    factor = raw.get("reduction_factor", 4)
    if not (_is_num(factor) and factor > 1):
        raise ConfigError(f"{src}: key 'search.asha.reduction_factor' has value {show_value(factor)}; "
                          "it must be a number > 1.")
    max_t = _int(src, "search.asha.max_t", raw.get("max_t", base.epochs), grace)
    return Asha(grace, factor, max_t)


def _parse_sweep(src: str, raw: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    if raw is None:
        return dict(DEFAULT_SWEEP_GRID), {}
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{src}: key 'search.sweep' has value {show_value(raw)}; it must be a mapping "
                          "with a 'grid' (and optionally 'per_dataset') for the written sweep.")
    _reject_unknown(src, "search.sweep", raw, ("grid", "per_dataset"))
    grid = raw.get("grid", DEFAULT_SWEEP_GRID)
    per_dataset = raw.get("per_dataset") or {}
    for key, value in (("grid", grid), ("per_dataset", per_dataset)):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{src}: key 'search.sweep.{key}' has value {show_value(value)}; it must "
                              "be a mapping.")
    return dict(grid), dict(per_dataset)


def apply_params(base: TrialConfig, params: Mapping[str, Any]) -> TrialConfig:
    """The trial config of one suggestion: `base` with each searched key set."""
    flat = base.to_flat()
    nested = {"loss_params": dict(flat["loss_params"]),
              "dataset_params": dict(flat["dataset_params"])}
    for name, value in params.items():
        head, dot, tail = name.partition(".")
        if dot and head in nested:
            nested[head][tail] = value
        else:
            flat[name] = value
    return TrialConfig.from_flat({**flat, **nested}, source="tune trial")


def describe_plan(plan: TunePlan, results: str, storage_url: str) -> str:
    """What `bench tune --dry-run` prints."""
    b = plan.base
    searched = {p.name for p in plan.params}
    fixed = [f"loss {b.loss}", f"dataset {b.dataset}", f"backbone {b.backbone}",
             f"{b.epochs} epochs"]
    fixed += [f"{k.replace('_', ' ')} {show_value(getattr(b, k))}" for k in ("lr", "batch_size")
              if k not in searched]
    fixed.append(f"label fractions {', '.join(map(show_value, b.label_fractions))}")
    if b.loss_params:
        fixed.append(f"loss params {dict(b.loss_params)}")
    lines = [f"tune {plan.space.source}: study {plan.name!r}", "base: " + ", ".join(fixed),
             "search:"]
    width = max(len(p.name) for p in plan.params)
    lines += [f"  {p.name:<{width}}  {p.describe()}" for p in plan.params]
    kind = "NSGA-II (multi-objective)" if plan.multi else (
        f"TPE ({plan.startup_trials} random start-up trials)")
    lines.append(f"objective{'s' if plan.multi else ''}:")
    lines += [f"  {o.describe()}" for o in plan.objectives]
    runs = plan_runs(b, plan.objectives)
    if len(runs) > 1:
        lines.append(f"each trial runs {len(runs)} lrs: {', '.join(show_value(r.lr) for r in runs)}")
    a = plan.asha
    lines.append(f"sampler {kind}, seed {plan.sampler_seed}; {plan.num_samples} trials; "
                 + (f"ASHA on epoch (grace {a.grace_period}, reduction {show_value(a.reduction_factor)},"
                    f" max_t {a.max_t})" if a else "no early stopping (FIFO)"))
    lines.append(f"study database: {shown_url(storage_url)}")
    lines.append(f"results: {results.rstrip('/')}/{plan.name} (rows tagged study={plan.name})")
    grid = ", ".join(f"{k} {show_value(v)}" for k, v in plan.sweep_grid.items())
    lines.append(f"the winner's sweep YAML will run the grid: {grid}")
    return "\n".join(lines)


# --- the objective: runs of one trial and their scores -------------------------------------


def plan_runs(cfg: TrialConfig, objectives: Sequence[Objective]) -> list[TrialConfig]:
    """The `run_trial` configs one Tune trial runs: the trial's own lr (for final-metric
    objectives) and each lr of a stability objective, in that order, without repeats."""
    lrs: list[float] = []
    if any(o.kind == "metric" for o in objectives):
        lrs.append(cfg.lr)
    for o in objectives:
        lrs += [lr for lr in o.lrs if lr not in lrs]
    return [cfg if lr == cfg.lr else cfg.replace(lr=lr) for lr in lrs]


def run_suffix(cfg: TrialConfig, run: TrialConfig, objectives: Sequence[Objective]) -> str:
    """Store trial-id suffix of a run: none for the single run, `-lr<value>` otherwise."""
    return "" if len(plan_runs(cfg, objectives)) == 1 else f"-lr{run.lr:g}"


def record_value(records: Sequence[Mapping[str, Any]], objective: Objective,
                 last: float | None = None) -> float | None:
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


def objective_values(objectives: Sequence[Objective], lrs: Sequence[float],
                     scores: Sequence[Mapping[str, float | None]], trial_lr: float) -> dict[str, float]:
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
        values = [s.get(o.key) for s in runs]
        values = [o.worst if v is None else v for v in values]
        out[o.key] = sum(values) / len(values) if values else o.worst
    return out


# --- what runs in the Ray worker --------------------------------------------------------------


@dataclass(frozen=True)
class _TuneRuntime:
    """Driver-side settings every trial needs (passed with `tune.with_parameters`)."""

    study: str
    sweep_dir: str  # <results>/<study>: the store, and `_checkpoints/` for resumable states
    objectives: tuple[Objective, ...]
    resources: Resources
    checkpoint_every: int = 1
    plugins: tuple[str, ...] = ()


def tune_trial(config: dict[str, Any], runtime: _TuneRuntime) -> None:
    """One Tune trial: `run_trial` once per run (see `plan_runs`), one report per epoch with its
    records and the objective values so far.

    Resumable state is the sweep's `TrialStates` file (not a Tune checkpoint: no forced
    experiment snapshot per epoch, B.10), saved after the epoch's report, so a retry continues
    mid-run without skipping a row; it is deleted when the trial ends.
    """
    import torch

    from bench.train import run_trial

    # Ray chdirs into the trial directory; relative data roots mean the driver's working dir.
    os.chdir(os.environ.get("TUNE_ORIG_WORKING_DIR", os.getcwd()))
    if runtime.plugins:
        from bench.losses import load_plugin

        for path in runtime.plugins:
            load_plugin(path)
    cfg = TrialConfig.from_flat(config["trial"], source="tune trial")
    runs = plan_runs(cfg, runtime.objectives)
    share = runtime.resources.for_trial(cfg)
    torch.set_num_threads(max(1, int(share["cpu"])))
    cuda = torch.cuda.is_available() and cfg.device != "cpu"
    if cuda and 0 < share["gpu"] < 1:
        torch.cuda.set_per_process_memory_fraction(share["gpu"])
    prov = {"hostname": socket.gethostname(), "started_at": time.time(),
            "device_name": torch.cuda.get_device_name() if cuda else "cpu"}
    trial_id = f"{runtime.study}-t{int(config.get('number', 0)):04d}"
    states = TrialStates(runtime.sweep_dir)
    # Per finished run: objective key -> final score. A saved state holds these and the running
    # run's state.
    saved = states.load(trial_id)
    finished = [dict(s) for s in saved["finished"]] if saved else []
    resume_state = saved["state"] if saved and saved["run"] == len(finished) else None
    reporter = _Reporter(runtime, cfg, runs, finished, trial_id, prov, states)
    reporter.status = saved.get("trial_status", "done") if saved else "running"
    for index in range(len(finished), len(runs)):
        reporter.start(index)
        run_trial(runs[index], on_epoch=reporter.pending.append, resume_state=resume_state,
                  on_checkpoint=reporter.on_checkpoint)
        resume_state = None
        if reporter.pending:  # records after the last checkpoint: none with the current trainer
            reporter.absorb()
            reporter.report()
    if not reporter.reported:  # a retry after the last epoch of the last run: report the end
        reporter.report()
    states.delete(trial_id)


class _Reporter:
    """Turns one trial's runs into Tune reports and saved states; see `tune_trial`."""

    def __init__(self, runtime: _TuneRuntime, cfg: TrialConfig, runs: Sequence[TrialConfig],
                 finished: list[dict[str, float | None]], trial_id: str, prov: dict,
                 states: TrialStates) -> None:
        self.runtime, self.cfg, self.runs, self.finished = runtime, cfg, runs, finished
        self.trial_id, self.prov, self.states, self.node_id = trial_id, prov, states, current_node_id()
        self.pending: list[dict[str, Any]] = []
        # A retry after the last epoch of the last run reports the end of that run.
        self.index = min(len(finished), len(runs) - 1)
        self.latest: dict[str, float | None] = {}
        self.epoch = runs[self.index].epochs if len(finished) == len(runs) else 0
        self.reported = False
        self.status = "running"  # the trial's status in the last report

    def start(self, index: int) -> None:
        self.index, self.latest, self.epoch = index, {}, 0

    def absorb(self) -> None:
        """Update the running run's latest scores from the pending records."""
        for o in self.runtime.objectives:
            self.latest[o.key] = record_value(self.pending, o, self.latest.get(o.key))

    def on_checkpoint(self, state: dict[str, Any]) -> None:
        self.epoch = int(state["epoch"])
        self.absorb()
        final = any(r.get("final") for r in self.pending)
        if final:
            self.finished.append(dict(self.latest))
        self.report()  # returns once the driver has stored the rows
        if final or self.epoch % self.runtime.checkpoint_every == 0:
            self.states.save(self.trial_id, {"run": self.index, "state": state,
                                             "finished": self.finished,
                                             "trial_status": self.status})

    def report(self) -> None:
        done = len(self.finished)
        scores = self.finished + ([self.latest] if done <= self.index else [])
        lrs = [r.lr for r in self.runs[: len(scores)]]
        run = self.runs[self.index]
        last_run = done == len(self.runs)
        status = self.pending[-1].get("status", "running") if self.pending else self.status
        if len(self.runs) > 1 and last_run:
            status = "done"  # each run's own status is in its rows
        self.status = status if (last_run or status == "running") else "running"
        tune.report({
            "epoch": self.epoch, "run": self.index, "records": list(self.pending),
            "run_id": self.trial_id + run_suffix(self.cfg, run, self.runtime.objectives),
            "trial_status": self.status,
            "progress_epochs": sum(r.epochs for r in self.runs[: self.index]) + self.epoch,
            "provenance": self.prov, "node_id": self.node_id,
            **objective_values(self.runtime.objectives, lrs, scores, self.cfg.lr),
        })  # fmt: skip
        self.pending.clear()
        self.reported = True


# --- driver side: searcher and callbacks ------------------------------------------------------


class StudySearch(OptunaSearch):
    """OptunaSearch whose suggestions are whole trial configs, and which tells Optuna that a
    trial stopped early by ASHA was PRUNED rather than complete at an early epoch."""

    def __init__(self, *, plan_base: TrialConfig, objectives: Sequence[Objective],
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._plan_base = plan_base
        self._objectives = tuple(objectives)

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        params = super().suggest(trial_id)
        if params is None:
            return None
        cfg = apply_params(self._plan_base, params)
        runs = plan_runs(cfg, self._objectives)
        return {"trial": cfg.to_flat(), "params": dict(params),
                "number": self._ot_trials[trial_id].number,
                "total_epochs": sum(r.epochs for r in runs)}

    def on_trial_complete(self, trial_id: str, result: dict | None = None,
                          error: bool = False) -> None:
        stopped = (not error and result is not None and result.get("trial_status") == "running")
        if stopped and trial_id in self._ot_trials and trial_id not in self._completed_trials:
            self._ot_study.tell(self._ot_trials[trial_id], state=TrialState.PRUNED)
            self._completed_trials.add(trial_id)
            return
        super().on_trial_complete(trial_id, result, error)


class StudyStoreCallback(StoreCallback):
    """The sweep's store callback, writing each run under its own trial id, tagged with the
    study (the sweep's callback names trials by content hash, which a search can repeat)."""

    _transient = (*StoreCallback._transient, "_runs")

    def __init__(self, storage: str, study: str, objectives: Sequence[Objective]) -> None:
        super().__init__(storage, study)
        self.study, self.objectives = study, tuple(objectives)

    def setup(self, **info: Any) -> None:
        super().setup(**info)
        self._runs: dict[str, dict[str, TrialConfig]] = {}  # Ray id -> store id -> run config

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict,
                        **info: Any) -> None:
        records = result.get("records")
        if not records:
            return
        runs, run_id = self._runs.setdefault(trial.trial_id, {}), str(result["run_id"])
        if run_id not in runs:  # parse once per run, not per result
            cfg = TrialConfig.from_flat(trial.config["trial"], source="tune trial")
            runs[run_id] = plan_runs(cfg, self.objectives)[int(result["run"])]
        run = runs[run_id]
        prov = {**self._provenance, **(result.get("provenance") or {})}
        self._writer.write_records(records, cfg=run, attempt=trial.num_failures, provenance=prov,
                                   study=self.study, trial_id=run_id)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        for run_id in self._runs.pop(trial.trial_id, {}):
            self._writer.compact(run_id)

    on_trial_error = on_trial_complete


class StudyProgress(ProgressCallback):
    """The sweep's progress line, counting every run of a trial and naming trials by number."""

    def __init__(self, every: float, study: str) -> None:
        super().__init__(every)
        self.study = study

    def line(self, trials: list, now: float) -> str:
        return super().line([_ProgressView(t) for t in trials], now)

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        print(f"trial {self._name(trial)} failed after epoch "
              f"{(trial.last_result or {}).get('epoch', 0)}; retry {trial.num_failures} resumes "
              "from its last checkpoint", flush=True)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        print(f"trial {self._name(trial)} failed for good (see {trial.error_file})", flush=True)

    def _name(self, trial: Any) -> str:
        return f"{self.study}-t{int(trial.config.get('number', 0)):04d}"


@dataclass(frozen=True)
class _ProgressView:
    """What `ProgressCallback.line` reads of a trial, with epochs counted over all its runs."""

    trial: Any

    @property
    def status(self) -> Any:
        return self.trial.status

    @property
    def last_result(self) -> dict[str, Any]:
        r = self.trial.last_result or {}
        return {**r, "epoch": r.get("progress_epochs", 0)} if r else r

    @property
    def config(self) -> dict[str, Any]:
        c = self.trial.config or {}
        return {"trial": {"epochs": c.get("total_epochs", (c.get("trial") or {}).get("epochs", 1))}}


# --- the study database -----------------------------------------------------------------------


def default_storage_url(results: str, study: str) -> str:
    """`sqlite:///<results>/<study>.db` (absolute) for a local results folder."""
    if "://" in results:
        raise StudyError(f"the results storage {results!r} is not a local folder, so the study "
                         "database cannot default to an SQLite file beside it; pass --storage "
                         "with an Optuna RDB URL (e.g. postgresql://user@host/optuna).")
    return "sqlite:///" + os.path.abspath(os.path.join(results, f"{study}.db"))


def _sqlite_file(url: str) -> Path | None:
    """The database file of an SQLite URL (None for other databases)."""
    if not url.startswith("sqlite:"):
        return None
    try:
        from sqlalchemy.engine import make_url

        database = make_url(url).database
    except Exception as exc:
        raise StudyError(f"storage URL {shown_url(url)!r} cannot be parsed ({_first_line(exc)}); write "
                         "sqlite:////abs/path/study.db.") from None
    if not database or database == ":memory:":
        raise StudyError(f"storage URL {shown_url(url)!r} names no database file; an in-memory study cannot "
                         "be resumed, so write sqlite:////abs/path/study.db.")
    return Path(database)


def open_storage(url: str, *, must_exist: bool = False) -> optuna.storages.RDBStorage:
    """Open (creating if needed) an Optuna RDB storage; every failure is one StudyError."""
    if not isinstance(url, str) or "://" not in url:
        raise StudyError(f"storage URL {shown_url(url)!r} is not a database URL; give an Optuna RDB URL such "
                         "as sqlite:////abs/path/study.db or postgresql://user@host/db.")
    path = _sqlite_file(url)
    if path is not None:
        if must_exist and not path.exists():
            raise StudyError(f"--resume was given but the study database {path} does not exist; "
                             "run without --resume to start the study.")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StudyError(f"storage URL {shown_url(url)!r} cannot be opened: the folder {path.parent} "
                             f"cannot be created ({exc.strerror}).") from None
    try:
        return optuna.storages.RDBStorage(url)
    except Exception as exc:
        raise StudyError(f"storage URL {shown_url(url)!r} cannot be opened as an Optuna database "
                         f"({type(exc).__name__}: {_first_line(exc)}); check the URL, the "
                         "database driver and that the server is reachable.") from None


def shown_url(url: str) -> str:
    """The URL with any password masked, for messages, YAML headers and sweep.json."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url


def study_names(storage: optuna.storages.BaseStorage) -> list[str]:
    return [s.study_name for s in storage.get_all_studies()]


def _sampler(plan: TunePlan, seed: int) -> optuna.samplers.BaseSampler:
    if plan.multi:
        return optuna.samplers.NSGAIISampler(population_size=plan.population_size, seed=seed)
    return optuna.samplers.TPESampler(n_startup_trials=plan.startup_trials, seed=seed)


def _prepare_study(plan: TunePlan, storage: optuna.storages.RDBStorage, *, resume: bool,
                   results: str, has_results: bool) -> tuple[optuna.Study, int]:
    """Check the study against `resume` and the objectives (raising before any change), then
    create it or fail its stale trials. Returns the study and how many trials it had."""
    exists = plan.name in study_names(storage)
    objectives = [o.as_dict() for o in plan.objectives]
    if exists and not resume:
        raise StudyError(f"study {plan.name!r} already exists in {shown_url(storage.url)}; pass "
                         "--resume to continue it, or rename the YAML's 'name' (or use another "
                         "--storage).")
    if resume and not exists:
        raise StudyError(f"--resume was given but {shown_url(storage.url)} holds no study "
                         f"{plan.name!r}; run without --resume to start it.")
    if not exists and has_results:
        raise _results_exist(plan, results)
    if exists:
        study = optuna.load_study(study_name=plan.name, storage=storage)
        before = study.user_attrs.get("bench_objectives")
        if before is not None and before != objectives:
            raise StudyError(f"the objective in {plan.space.source} differs from the one study "
                             f"{plan.name!r} was created with ({before}); resume with that "
                             "objective or start a new study under another name.")
        stale = [t for t in study.trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
        for t in stale:  # one driver per study: RUNNING means an earlier driver died
            study.tell(t.number, state=TrialState.FAIL)
        if stale:
            print(f"marked {len(stale)} trial(s) left running by an earlier driver as failed",
                  flush=True)
        return study, len(study.trials)
    directions = ["maximize" if o.mode == "max" else "minimize" for o in plan.objectives]
    study = optuna.create_study(storage=storage, study_name=plan.name, directions=directions)
    study.set_user_attr("bench_objectives", objectives)
    study.set_user_attr("bench_space", os.path.abspath(plan.space.source))
    return study, 0


def _results_exist(plan: TunePlan, results: str) -> StudyError:
    return StudyError(f"results of an earlier study {plan.name!r} are already in "
                      f"{results.rstrip('/')}/{plan.name}; remove them, or use another --results "
                      "or another 'name'.")


def _exists(path: Path | None) -> bool:
    return path is None or path.exists()


def _finished(study: optuna.Study) -> int:
    return sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in study.trials)


# --- the driver -----------------------------------------------------------------------------


@dataclass(frozen=True)
class TuneOutcome:
    study: str
    storage_url: str
    results_dir: str
    new_trials: int
    counts: dict[str, int]
    best: tuple[optuna.trial.FrozenTrial, ...]
    written: tuple[str, ...]
    objectives: tuple[Objective, ...]
    study_counts: dict[str, int]
    wall_s: float
    plugins: tuple[str, ...] = ()

    @property
    def exit_code(self) -> int:
        """0 when the study has a best trial and no trial of this run errored."""
        return 1 if not self.best or self.counts.get("error") else 0

    def report(self) -> str:
        run = ", ".join(f"{n} {s}" for s, n in self.counts.items() if n) or "nothing to run"
        study = ", ".join(f"{n} {s}" for s, n in self.study_counts.items() if n)
        lines = [f"study {self.study}: {sum(self.study_counts.values())} trials ({study}); this "
                 f"run: {self.new_trials} trials ({run}) in {format_clock(self.wall_s)}"]
        if not self.best:
            lines.append("no trial has completed yet, so there is no best configuration.")
        elif len(self.objectives) > 1:
            lines.append(f"Pareto front: {len(self.best)} trial(s)")
        for t in self.best:
            values = ", ".join(f"{o.describe()} = {v:.4g}"
                               for o, v in zip(self.objectives, t.values))
            lines.append(f"{'  ' if len(self.objectives) > 1 else ''}best trial {t.number}: "
                         f"{values}")
            lines.append(f"    {', '.join(f'{k}={show_value(v)}' for k, v in t.params.items())}")
        plug = "".join(f" --plugin {p}" for p in self.plugins)
        for path in self.written:
            lines.append(f"wrote {path}; benchmark it with: bench sweep {path}{plug}")
        lines.append(f"results: {self.results_dir} (bench results {self.results_dir})")
        lines.append(f"study database: {self.storage_url} (optuna-dashboard {self.storage_url})")
        return "\n".join(lines)


def run_tune(
    plan: TunePlan,
    *,
    results: str,
    storage_url: str,
    resume: bool = False,
    address: str | None = None,
    num_cpus: int | None = None,
    num_samples: int | None = None,
    out: str | Path | None = None,
    progress_every: float = 5.0,
    verbose: bool = False,
    plugins: Sequence[str] = (),
) -> TuneOutcome:
    """Run (or with `resume`, continue) the study of `plan` until it has `num_samples` finished
    trials; print nothing but progress; write the winner's sweep YAML. `results` is an absolute
    local path or a pyarrow filesystem URI; raises StudyError on a study/storage mismatch."""
    from bench.store import StoreError, read_sweep_meta, write_sweep_meta

    t0 = time.monotonic()
    if not verbose:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        read_sweep_meta(results, plan.name)
        has_results = True
    except StoreError:
        has_results = False
    if has_results and not resume and not _exists(_sqlite_file(storage_url)):
        raise _results_exist(plan, results)  # checked before a new database file is created
    storage = open_storage(storage_url, must_exist=resume)
    study, before = _prepare_study(plan, storage, resume=resume, results=results,
                                   has_results=has_results)
    if not has_results:
        write_sweep_meta(results, plan.name, _meta(plan, shown_url(storage_url)))
    target = plan.num_samples if num_samples is None else num_samples
    todo = max(0, target - _finished(study))
    counts: dict[str, int] = {}
    if todo:
        counts = _search(plan, storage, before, todo, results=results, address=address,
                         num_cpus=num_cpus, progress_every=progress_every, verbose=verbose,
                         plugins=plugins)
    elif progress_every > 0:
        print(f"study {plan.name} already has {_finished(study)} finished trials (num_samples "
              f"{target}); pass --num-samples to run more", flush=True)
    study = optuna.load_study(study_name=plan.name, storage=storage)
    best = best_trials(study)
    written = (write_best(plan, study, best, out=out, results=results,
                          storage_url=shown_url(storage_url))
               if best else ())
    study_counts: dict[str, int] = {}
    for t in study.trials:
        name = t.state.name.lower()
        study_counts[name] = study_counts.get(name, 0) + 1
    return TuneOutcome(plan.name, shown_url(storage_url), f"{results.rstrip('/')}/{plan.name}",
                       todo, counts, tuple(best), tuple(written), plan.objectives, study_counts,
                       time.monotonic() - t0, tuple(plugins))


def _search(plan: TunePlan, storage: optuna.storages.BaseStorage, before: int, todo: int, *,
            results: str,
            address: str | None, num_cpus: int | None, progress_every: float, verbose: bool,
            plugins: Sequence[str]) -> dict[str, int]:
    """One Ray Tune experiment of `todo` trials on the study; returns the trials' end states."""
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")  # Parquet is the record
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if not verbose:
        os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    started = init_ray(address, num_cpus, verbose)
    try:
        with QuietTune(enabled=not verbose):
            concurrency = min(todo, plan.space.max_concurrent or _slots(plan))
            if progress_every > 0:
                print(f"{'resuming' if before else 'starting'} study {plan.name}: {todo} trials, "
                      f"{concurrency} at a time, on {'Ray at ' + address if address else 'local Ray'}"
                      f" -> {results.rstrip('/')}/{plan.name}", flush=True)
            tuner = _tuner(plan, storage, before, todo, concurrency, results, progress_every,
                           plugins)
            grid = tuner.fit()
        # No trial runs any more: drop every resumable state (a trial stopped by ASHA, or left
        # by a driver that died, never deletes its own).
        states = TrialStates(f"{results.rstrip('/')}/{plan.name}")
        states.fs.delete_dir_contents(states.root, missing_dir_ok=True)
    finally:
        if started:
            ray.shutdown()
    counts: dict[str, int] = {}
    for r in grid:
        state = "error" if r.error is not None else _end_state(r.metrics or {})
        counts[state] = counts.get(state, 0) + 1
    return counts


def _end_state(metrics: Mapping[str, Any]) -> str:
    status = metrics.get("trial_status")
    return "stopped early" if status == "running" else str(status or "unfinished")


def _slots(plan: TunePlan) -> int:
    """Trials that fit on the Ray cluster at once (the B.5 advice: as many as there are slots)."""
    have = ray.cluster_resources()
    share = plan.space.resources.for_trial(plan.base)
    if share["gpu"] > 0:
        return max(1, int(have.get("GPU", 0) / share["gpu"] + 1e-9))
    return max(1, int(have.get("CPU", 1) / max(share["cpu"], 1e-9) + 1e-9))


def _tuner(plan: TunePlan, storage: optuna.storages.BaseStorage, before: int, todo: int,
           concurrency: int,
           results: str, progress_every: float, plugins: Sequence[str]) -> tune.Tuner:
    objectives = plan.objectives
    searcher = StudySearch(
        plan_base=plan.base, objectives=objectives,
        space={p.name: p.distribution() for p in plan.params},
        metric=[o.key for o in objectives] if plan.multi else objectives[0].key,
        mode=[o.mode for o in objectives] if plan.multi else objectives[0].mode,
        # Seeded past the trials already in the study: a resumed study must not replay them.
        sampler=_sampler(plan, plan.sampler_seed + before),
        study_name=plan.name, storage=storage,
    )  # fmt: skip
    scheduler = None
    if plan.asha is not None:
        a = plan.asha
        scheduler = ASHAScheduler(time_attr="epoch", metric=objectives[0].key,
                                  mode=objectives[0].mode, max_t=a.max_t,
                                  grace_period=a.grace_period, reduction_factor=a.reduction_factor)
    runtime = _TuneRuntime(plan.name, f"{results.rstrip('/')}/{plan.name}", objectives,
                           plan.space.resources, plan.space.checkpoint_every, tuple(plugins))
    resources = plan.space.resources
    if resources.gpu_from_batch_size and any(p.name == "batch_size" for p in plan.params):
        res: Any = PerTrialResources(resources)
    else:
        res = ray_resources(resources.for_trial(plan.base))
    trainable = tune.with_resources(tune.with_parameters(tune_trial, runtime=runtime), res)
    run_name = f"run-{time.strftime('%Y%m%d-%H%M%S')}-{before}"
    return tune.Tuner(
        trainable,
        param_space={},  # the searcher's suggestion is the whole config
        tune_config=tune.TuneConfig(
            search_alg=searcher, scheduler=scheduler, num_samples=todo,
            max_concurrent_trials=concurrency, reuse_actors=True,
            trial_dirname_creator=trial_dirname,
        ),
        run_config=tune.RunConfig(
            name=run_name, storage_path=f"{results.rstrip('/')}/{plan.name}/_ray", verbose=0,
            failure_config=tune.FailureConfig(max_failures=plan.space.retries),
            callbacks=[StudyStoreCallback(results, plan.name, objectives),
                       StudyProgress(progress_every, plan.name)],
        ),
    )  # fmt: skip


def _meta(plan: TunePlan, storage_url: str) -> dict[str, Any]:
    try:
        text = Path(plan.space.source).read_text()
    except OSError:
        text = None
    return {"name": plan.name, "kind": "tune", "study": plan.name, "study_storage": storage_url,
            "source": os.path.abspath(plan.space.source), "space_yaml": text,
            "objectives": [o.as_dict() for o in plan.objectives]}


# --- the best configuration(s) ---------------------------------------------------------------


def best_trials(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """The best complete trial, or the Pareto front (sorted by trial number) of several
    objectives; [] when no trial has completed."""
    if not any(t.state == TrialState.COMPLETE for t in study.trials):
        return []
    if len(study.directions) > 1:
        return sorted(study.best_trials, key=lambda t: t.number)
    return [study.best_trial]


def best_sweep(plan: TunePlan, params: Mapping[str, Any], *, note: str = "") -> dict[str, Any]:
    """A sweep YAML (as a dict) benchmarking `params` over `search.sweep`'s grid."""
    space, grid = plan.space, dict(plan.sweep_grid)
    base = {k: v for k, v in space.base.items()}
    loss_params = {loss: {p: vs[0] for p, vs in ps} for loss, ps in space.loss_params.items()}
    for name, value in params.items():
        head, dot, tail = name.partition(".")
        if dot and head == "loss_params":
            loss_params.setdefault(plan.base.loss, {})[tail] = value
        elif dot and head == "dataset_params":
            base["dataset_params"] = {**dict(base.get("dataset_params") or {}), tail: value}
        else:
            base[name] = value
    for key in grid:
        base.pop(key, None)
    out: dict[str, Any] = {"name": f"{plan.name}-best",
                           "description": note or f"the best configuration of study {plan.name}",
                           "base": base, "grid": grid}
    if loss_params:
        out["loss_params"] = loss_params
    per_dataset = {**{k: dict(v) for k, v in space.per_dataset.items()},
                   **plan.sweep_per_dataset}
    if per_dataset:
        out["per_dataset"] = per_dataset
    r = space.resources
    resources: dict[str, Any] = {"cpu": r.cpu, "gpu": r.gpu}
    if r.gpu_from_batch_size:
        resources["gpu_from_batch_size"] = dict(r.gpu_from_batch_size)
    out["resources"] = resources
    out["retries"] = space.retries
    for key in ("time_budget_s", "max_concurrent", "storage"):
        if getattr(space, key) is not None:
            out[key] = getattr(space, key)
    if space.checkpoint_every != 1:
        out["checkpoint_every"] = space.checkpoint_every
    return out


def write_best(plan: TunePlan, study: optuna.Study, best: Sequence[optuna.trial.FrozenTrial], *,
               out: str | Path | None, results: str, storage_url: str) -> list[str]:
    """Write `<results>/<study>-best.yaml` (or `out`): the best trial, or for several objectives
    the front member best on the first one, plus `<stem>-pareto-tNNNN.yaml` per front member."""
    if out is None:
        folder = Path(results) if "://" not in results else Path.cwd()
        out = folder / f"{plan.name}-best.yaml"
    out = Path(out)
    first = plan.objectives[0]
    pick = (max if first.mode == "max" else min)(best, key=lambda t: t.values[0])
    targets = [(out, pick)]
    if plan.multi:
        targets += [(out.with_name(f"{out.stem}-pareto-t{t.number:04d}.yaml"), t) for t in best]
    written = []
    for path, trial in targets:
        values = "; ".join(f"{o.describe()} = {v:.4g}" for o, v in zip(plan.objectives, trial.values))
        note = f"trial {trial.number} of study {plan.name}: {values}"
        data = best_sweep(plan, trial.params, note=note)
        gridded = ", ".join(f"{k}={show_value(v)}" for k, v in trial.params.items()
                            if k in plan.sweep_grid)
        text = (f"# Written by `bench tune {plan.space.source}` from trial {trial.number} of study "
                f"{plan.name}\n# ({len(study.trials)} trials in {storage_url}).\n"
                f"# {values}\n"
                + (f"# The trial's {gridded} are replaced by the grid below.\n" if gridded else "")
                + f"# Benchmark it over the full grid: bench sweep {path}\n"
                + yaml.safe_dump(data, sort_keys=False, default_flow_style=None, width=100))
        parse_space(yaml.safe_load(text), source=str(path))  # it must expand as written
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        written.append(str(path))
    return written


# --- small helpers ----------------------------------------------------------------------------


def _is_accuracy(metric: str) -> bool:
    return metric.endswith(("_top1", "_top5"))


def _is_num(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _int(src: str, key: str, value: Any, minimum: int) -> int:
    if not (is_int(value) and value >= minimum):
        raise ConfigError(f"{src}: key {key!r} has value {show_value(value)}; it must be an integer "
                          f">= {minimum}.")
    return value


def _reject_unknown(src: str, where: str, raw: Mapping, known: Sequence[str]) -> None:
    for key in raw:
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"known keys are {', '.join(known)}."
            raise ConfigError(f"{src}: unknown key '{where}.{key}'; {hint}")


def _first_line(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return lines[0].rstrip(".") if lines else type(exc).__name__


