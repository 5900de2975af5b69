"""The `search:` section of a `bench tune` YAML -> a validated `TunePlan` (pure: no Optuna).

A tune YAML is a sweep YAML without a `grid` (`base`, fixed `loss_params`, `per_dataset`,
`resources`, `retries`, `time_budget_s`, `max_concurrent`, `storage`) plus a `search` section:

    name: tune_example               # the Optuna study name and the results folder
    base: {loss: infonce_ortho, dataset: digits, epochs: 6, ...}
    search:
      params:                        # what the search varies: any scalar config key,
        lr: {dist: loguniform, low: 1.0e-3, high: 3}        # or loss_params.P / dataset_params.P
        batch_size: {dist: choice, values: [64, 256]}
        loss_params.temperature: {dist: uniform, low: 0.05, high: 1.0}
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
Objectives: `bench.space.objective`. Every searched range is checked at both ends (and every
choice) by building the trial config, and for a loss parameter the loss, so a search never
starts with a value a trial would reject. `best_sweep` is the sweep YAML the winner is
benchmarked with; it is checked to expand when the plan is loaded.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bench.config import (
    NESTED_KEYS,
    ConfigError,
    TrialConfig,
    did_you_mean,
    is_int,
    is_number,
    show_value,
    with_overrides,
)
from bench.space import registries
from bench.space.grid import grid_points
from bench.space.load import load_space, parse_space
from bench.space.objective import Objective, parse_objectives, plan_runs
from bench.space.sections import Space, reject_unknown

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
    for loss, fixed in space.loss_params.items():
        for pname, values in fixed:
            if len(values) != 1:
                raise ConfigError(f"{src}: key 'loss_params.{loss}.{pname}' has several values; "
                                  "in a tune YAML loss parameters are fixed values, search them "
                                  f"under 'search.params' as loss_params.{pname}.")
    raw = space.search
    reject_unknown(src, "search", raw, SEARCH_KEYS)
    (base,) = grid_points(space)
    params = _parse_params(src, raw.get("params"), space, base)
    objectives = parse_objectives(src, raw.get("objective"), base, [p.name for p in params])
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
        raise ConfigError(f"{src}: key 'search.params' has value {show_value(raw)}; it must map "
                          "the keys to search to distributions, e.g. {lr: {dist: loguniform, "
                          "low: 1.0e-3, high: 1}}.")
    params = []
    for name, spec in raw.items():
        name = str(name)
        where = f"search.params.{name}"
        _check_param_name(src, name, space, base)
        if not isinstance(spec, Mapping):
            raise ConfigError(f"{src}: key {where!r} has value {show_value(spec)}; it must be a "
                              "mapping like {dist: uniform, low: 0.1, high: 1.0}.")
        param = _parse_distribution(src, where, name, spec)
        for value in param.extremes():
            _check_param_value(src, where, param, value, base)
        params.append(param)
    return tuple(params)


def _check_param_name(src: str, name: str, space: Space, base: TrialConfig) -> None:
    where = f"search.params.{name}"
    head, dot, tail = name.partition(".")
    if dot and head in NESTED_KEYS:
        owner = base.loss if head == "loss_params" else base.dataset
        known = (registries.loss_parameters(owner) if head == "loss_params"
                 else registries.dataset_parameters(owner))
        kind = "loss" if head == "loss_params" else "dataset"
        if tail not in known:
            hint = registries.suggest_param(tail, known, prefix=f"{head}.")
            raise ConfigError(f"{src}: key {where!r} is not a parameter of {kind} {owner!r}; "
                              f"{hint}")
        if tail in getattr(base, head):
            fixed = f"loss_params.{base.loss}.{tail}" if head == "loss_params" else (
                "base.dataset_params")
            raise ConfigError(f"{src}: key {where!r} is also fixed in '{fixed}'; keep it in "
                              "one place.")
        return
    fields = set(TrialConfig.keys())
    if name not in fields:
        hint = did_you_mean(name, sorted(fields - set(_FIXED)))
        raise ConfigError(f"{src}: key {where!r} names no config key{'; ' + hint if hint else ''}"
                          " (loss parameters are searched as loss_params.NAME).")
    if name in _FIXED:
        raise ConfigError(f"{src}: key {where!r} cannot be searched; bench tune tunes one loss on "
                          "one dataset, so set it in 'base' (compare losses with bench sweep).")
    if name in space.base:
        raise ConfigError(f"{src}: key {where!r} is also set in 'base.{name}'; keep it in one "
                          "place.")


def _parse_distribution(src: str, where: str, name: str, spec: Mapping[str, Any]) -> Param:
    dist = spec.get("dist")
    if dist not in DISTRIBUTIONS:
        hint = did_you_mean(dist, DISTRIBUTIONS)
        raise ConfigError(f"{src}: key '{where}.dist' has value {show_value(dist)}, which is not "
                          f"a distribution; use one of {', '.join(DISTRIBUTIONS)}"
                          f"{f' ({hint})' if hint else ''}.")
    reject_unknown(src, where, spec, _DIST_KEYS[dist])
    if dist == "choice":
        values = spec.get("values")
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{src}: key '{where}.values' has value {show_value(values)}; a "
                              "choice needs a non-empty list of values.")
        for v in values:
            if not isinstance(v, (bool, int, float, str)):
                raise ConfigError(f"{src}: key '{where}.values' holds {show_value(v)}; choices "
                                  "must be numbers, strings or booleans.")
            if values.count(v) > 1:
                raise ConfigError(f"{src}: key '{where}.values' lists {show_value(v)} twice.")
        return Param(name, dist, values=tuple(values))
    for k in ("low", "high"):
        if k not in spec:
            raise ConfigError(f"{src}: key {where!r} has no '{k}'; a {dist} distribution needs "
                              "both 'low' and 'high'.")
        if not (is_int(spec[k]) if dist == "int" else is_number(spec[k])):
            kind = "an integer" if dist == "int" else "a number"
            raise ConfigError(f"{src}: key '{where}.{k}' has value {show_value(spec[k])}; it must "
                              f"be {kind}.")
    low, high = spec["low"], spec["high"]
    if low >= high:
        raise ConfigError(f"{src}: key {where!r} has low {show_value(low)} >= high "
                          f"{show_value(high)}; low must be below high.")
    log = dist == "loguniform" or bool(spec.get("log", False))
    if "log" in spec and not isinstance(spec["log"], bool):
        raise ConfigError(f"{src}: key '{where}.log' has value {show_value(spec['log'])}; it must "
                          "be true or false.")
    if log and low <= 0:
        raise ConfigError(f"{src}: key '{where}.low' has value {show_value(low)}; a log range "
                          "must stay above 0 (log 0 is undefined), e.g. low: 1.0e-4.")
    step = spec.get("step")
    if step is not None:
        ok = (is_int(step) if dist == "int" else is_number(step)) and step > 0
        if not ok or (log and dist == "int" and step != 1):
            raise ConfigError(f"{src}: key '{where}.step' has value {show_value(step)}; it must "
                              "be a positive number (and 1 with log: true).")
    return Param(name, dist, low, high, step, log and dist == "int")


def _check_param_value(src: str, where: str, param: Param, value: Any,
                       base: TrialConfig) -> None:
    """Build the trial config (and for a loss parameter, the loss) at `value`."""
    try:
        cfg = apply_params(base, {param.name: value})
    except ConfigError as exc:
        reason = f"it must be {exc.must}" if exc.has_value else str(exc).rstrip(".")
    else:
        if not param.name.startswith("loss_params."):
            return
        dim = cfg.projector[-1] if cfg.projector else 2
        problem = registries.loss_value_problem(cfg.loss, dict(cfg.loss_params), dim)
        if problem is None:
            return
        reason = problem.rstrip(".")
    raise ConfigError(f"{src}: key {where!r} reaches the value {show_value(value)}, which "
                      f"{param.name} cannot take ({reason}).")


def _parse_asha(src: str, raw: Any, objectives: Sequence[Objective],
                base: TrialConfig) -> Asha | None:
    from bench.record import final_only_columns

    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{src}: key 'search.asha' has value {show_value(raw)}; it must be a "
                          "mapping like {grace_period: 1, reduction_factor: 2} (or be left out).")
    (objective, *others) = objectives
    if others or objective.kind == "stability":
        raise ConfigError(f"{src}: key 'search.asha' cannot be used with a "
                          f"{'multi-objective' if others else 'stability'} search: ASHA compares "
                          "trials epoch by epoch on one final-metric objective; remove it (trials "
                          "then run to the end).")
    if objective.metric in final_only_columns():
        raise ConfigError(f"{src}: key 'search.asha' needs a metric reported every epoch, but "
                          f"{objective.metric} is computed only at the final epoch; use knn_top1 "
                          "or remove 'search.asha'.")
    reject_unknown(src, "search.asha", raw, ASHA_KEYS)
    grace = _int(src, "search.asha.grace_period", raw.get("grace_period", 1), 1)
    factor = raw.get("reduction_factor", 4)
    if not (is_number(factor) and factor > 1):
        raise ConfigError(f"{src}: key 'search.asha.reduction_factor' has value "
                          f"{show_value(factor)}; it must be a number > 1.")
    max_t = _int(src, "search.asha.max_t", raw.get("max_t", base.epochs), grace)
    return Asha(grace, factor, max_t)


def _parse_sweep(src: str, raw: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    if raw is None:
        return dict(DEFAULT_SWEEP_GRID), {}
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{src}: key 'search.sweep' has value {show_value(raw)}; it must be a "
                          "mapping with a 'grid' (and optionally 'per_dataset') for the written "
                          "sweep.")
    reject_unknown(src, "search.sweep", raw, ("grid", "per_dataset"))
    grid = raw.get("grid", DEFAULT_SWEEP_GRID)
    per_dataset = raw.get("per_dataset") or {}
    for key, value in (("grid", grid), ("per_dataset", per_dataset)):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{src}: key 'search.sweep.{key}' has value {show_value(value)}; "
                              "it must be a mapping.")
    return dict(grid), dict(per_dataset)


def _int(src: str, key: str, value: Any, minimum: int) -> int:
    if not (is_int(value) and value >= minimum):
        raise ConfigError(f"{src}: key {key!r} has value {show_value(value)}; it must be an "
                          f"integer >= {minimum}.")
    return int(value)


def apply_params(base: TrialConfig, params: Mapping[str, Any]) -> TrialConfig:
    """The trial config of one suggestion: `base` with each searched key set."""
    return TrialConfig.from_flat(with_overrides(base.to_flat(), params), source="tune trial")


def describe_plan(plan: TunePlan, results: str, study_db: str) -> str:
    """What `bench tune --dry-run` prints (`study_db`: the database URL, password masked)."""
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
                 + (f"ASHA on epoch (grace {a.grace_period}, reduction "
                    f"{show_value(a.reduction_factor)}, max_t {a.max_t})" if a
                    else "no early stopping (FIFO)"))
    lines.append(f"study database: {study_db}")
    lines.append(f"results: {results.rstrip('/')}/{plan.name} (rows tagged study={plan.name})")
    grid = ", ".join(f"{k} {show_value(v)}" for k, v in plan.sweep_grid.items())
    lines.append(f"the winner's sweep YAML will run the grid: {grid}")
    return "\n".join(lines)


# --- the winner's sweep YAML -----------------------------------------------------------------


def best_sweep(plan: TunePlan, params: Mapping[str, Any], *, note: str = "") -> dict[str, Any]:
    """A sweep YAML (as a dict) benchmarking `params` over `search.sweep`'s grid."""
    space, grid = plan.space, dict(plan.sweep_grid)
    fixed = {loss: {p: vs[0] for p, vs in ps} for loss, ps in space.loss_params.items()}
    base = with_overrides({**space.base, "loss_params": fixed.get(plan.base.loss, {})}, params)
    loss_params = {**fixed, plan.base.loss: base.pop("loss_params")}
    loss_params = {loss: ps for loss, ps in loss_params.items() if ps}
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


def best_yaml(plan: TunePlan, number: int, params: Mapping[str, Any], values: Sequence[float],
              path: str | Path, n_trials: int, study_db: str) -> str:
    """The text of the sweep YAML benchmarking trial `number` (its `params` and objective
    `values`), with a header saying where it came from; checked to expand as written."""
    scores = "; ".join(f"{o.describe()} = {v:.4g}" for o, v in zip(plan.objectives, values))
    data = best_sweep(plan, params, note=f"trial {number} of study {plan.name}: {scores}")
    gridded = ", ".join(f"{k}={show_value(v)}" for k, v in params.items() if k in plan.sweep_grid)
    text = (f"# Written by `bench tune {plan.space.source}` from trial {number} of study "
            f"{plan.name}\n# ({n_trials} trials in {study_db}).\n"
            f"# {scores}\n"
            + (f"# The trial's {gridded} are replaced by the grid below.\n" if gridded else "")
            + f"# Benchmark it over the full grid: bench sweep {path}\n"
            + yaml.safe_dump(data, sort_keys=False, default_flow_style=None, width=100))
    parse_space(yaml.safe_load(text), source=str(path))  # it must expand as written
    return text
