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

The searched keys and their distributions: `bench.space.params`; the objectives:
`bench.space.objective`. `best_sweep` is the sweep YAML the winner is benchmarked with; it is
checked to expand when the plan is loaded.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bench.config import (
    ConfigError,
    TrialConfig,
    is_int,
    is_number,
    show_value,
    with_overrides,
)
from bench.space.checks import reject_unknown
from bench.space.grid import grid_points
from bench.space.load import load_space, parse_space
from bench.space.objective import Objective, parse_objectives, plan_runs
from bench.space.params import Param, parse_params
from bench.space.sections import Space

SEARCH_KEYS = (
    "params",
    "objective",
    "num_samples",
    "sampler_seed",
    "startup_trials",
    "population_size",
    "asha",
    "sweep",
)
ASHA_KEYS = ("grace_period", "reduction_factor", "max_t")
# The grid the winner is benchmarked on when `search.sweep` is absent: the demo's axes.
DEFAULT_SWEEP_GRID = {
    "lr": [0.001, 0.03, 1, 3],
    "batch_size": [64, 256],
    "label_fraction": [0.1, 1.0],
    "seed": [0, 1, 2],
}


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
        raise ConfigError(
            f"{src}: key 'grid' is not used by bench tune; put fixed settings in "
            "'base' and what the search varies in 'search.params'."
        )
    if space.search is None:
        raise ConfigError(
            f"{src}: there is no 'search' section, which bench tune needs (see "
            "search_spaces/tune_example.yaml); run a grid with bench sweep instead."
        )
    for loss, fixed in space.loss_params.items():
        for pname, values in fixed:
            if len(values) != 1:
                raise ConfigError(
                    f"{src}: key 'loss_params.{loss}.{pname}' has several values; "
                    "in a tune YAML loss parameters are fixed values, search them "
                    f"under 'search.params' as loss_params.{pname}."
                )
    raw = space.search
    reject_unknown(src, "search", raw, SEARCH_KEYS)
    (base,) = grid_points(space)
    params = parse_params(src, raw.get("params"), space, base)
    objectives = parse_objectives(src, raw.get("objective"), base, [p.name for p in params])
    num_samples = _int(src, "search.num_samples", raw.get("num_samples", 10), 1)
    seed = _int(src, "search.sampler_seed", raw.get("sampler_seed", 0), 0)
    startup = _int(src, "search.startup_trials", raw.get("startup_trials", 10), 0)
    population = _int(src, "search.population_size", raw.get("population_size", 50), 2)
    asha = _parse_asha(src, raw.get("asha"), objectives, base)
    grid, per_dataset = _parse_sweep(src, raw.get("sweep"))
    plan = TunePlan(
        space,
        params,
        objectives,
        base,
        num_samples,
        seed,
        startup,
        population,
        asha,
        grid,
        per_dataset,
    )
    # The YAML written at the end must expand: try it now with the ranges' lower ends.
    probe = {p.name: p.extremes()[0] for p in params}
    parse_space(best_sweep(plan, probe), source=f"{src} (search.sweep)")
    return plan


def _parse_asha(
    src: str, raw: Any, objectives: Sequence[Objective], base: TrialConfig
) -> Asha | None:
    from bench.record import final_only_columns

    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        raise ConfigError(
            f"{src}: key 'search.asha' has value {show_value(raw)}; it must be a "
            "mapping like {grace_period: 1, reduction_factor: 2} (or be left out)."
        )
    (objective, *others) = objectives
    if others or objective.kind == "stability":
        raise ConfigError(
            f"{src}: key 'search.asha' cannot be used with a "
            f"{'multi-objective' if others else 'stability'} search: ASHA compares "
            "trials epoch by epoch on one final-metric objective; remove it (trials "
            "then run to the end)."
        )
    if objective.metric in final_only_columns():
        raise ConfigError(
            f"{src}: key 'search.asha' needs a metric reported every epoch, but "
            f"{objective.metric} is computed only at the final epoch; use knn_top1 "
            "or remove 'search.asha'."
        )
    reject_unknown(src, "search.asha", raw, ASHA_KEYS)
    grace = _int(src, "search.asha.grace_period", raw.get("grace_period", 1), 1)
    factor = raw.get("reduction_factor", 4)
    if not (is_number(factor) and factor > 1):
        raise ConfigError(
            f"{src}: key 'search.asha.reduction_factor' has value "
            f"{show_value(factor)}; it must be a number > 1."
        )
    max_t = _int(src, "search.asha.max_t", raw.get("max_t", base.epochs), grace)
    return Asha(grace, factor, max_t)


def _parse_sweep(src: str, raw: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    if raw is None:
        return dict(DEFAULT_SWEEP_GRID), {}
    if not isinstance(raw, Mapping):
        raise ConfigError(
            f"{src}: key 'search.sweep' has value {show_value(raw)}; it must be a "
            "mapping with a 'grid' (and optionally 'per_dataset') for the written "
            "sweep."
        )
    reject_unknown(src, "search.sweep", raw, ("grid", "per_dataset"))
    grid = raw.get("grid", DEFAULT_SWEEP_GRID)
    per_dataset = raw.get("per_dataset") or {}
    for key, value in (("grid", grid), ("per_dataset", per_dataset)):
        if not isinstance(value, Mapping):
            raise ConfigError(
                f"{src}: key 'search.sweep.{key}' has value {show_value(value)}; "
                "it must be a mapping."
            )
    return dict(grid), dict(per_dataset)


def _int(src: str, key: str, value: Any, minimum: int) -> int:
    if not (is_int(value) and value >= minimum):
        raise ConfigError(
            f"{src}: key {key!r} has value {show_value(value)}; it must be an integer >= {minimum}."
        )
    return int(value)


def describe_plan(plan: TunePlan, results: str, study_db: str) -> str:
    """What `bench tune --dry-run` prints (`study_db`: the database URL, password masked)."""
    b = plan.base
    searched = {p.name for p in plan.params}
    fixed = [
        f"loss {b.loss}",
        f"dataset {b.dataset}",
        f"backbone {b.backbone}",
        f"{b.epochs} epochs",
    ]
    fixed += [
        f"{k.replace('_', ' ')} {show_value(getattr(b, k))}"
        for k in ("lr", "batch_size")
        if k not in searched
    ]
    fixed.append(f"label fractions {', '.join(map(show_value, b.label_fractions))}")
    if b.loss_params:
        fixed.append(f"loss params {dict(b.loss_params)}")
    lines = [
        f"tune {plan.space.source}: study {plan.name!r}",
        "base: " + ", ".join(fixed),
        "search:",
    ]
    width = max(len(p.name) for p in plan.params)
    lines += [f"  {p.name:<{width}}  {p.describe()}" for p in plan.params]
    kind = (
        "NSGA-II (multi-objective)"
        if plan.multi
        else (f"TPE ({plan.startup_trials} random start-up trials)")
    )
    lines.append(f"objective{'s' if plan.multi else ''}:")
    lines += [f"  {o.describe()}" for o in plan.objectives]
    runs = plan_runs(b, plan.objectives)
    if len(runs) > 1:
        lines.append(
            f"each trial runs {len(runs)} lrs: {', '.join(show_value(r.lr) for r in runs)}"
        )
    a = plan.asha
    lines.append(
        f"sampler {kind}, seed {plan.sampler_seed}; {plan.num_samples} trials; "
        + (
            f"ASHA on epoch (grace {a.grace_period}, reduction "
            f"{show_value(a.reduction_factor)}, max_t {a.max_t})"
            if a
            else "no early stopping (FIFO)"
        )
    )
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
    out: dict[str, Any] = {
        "name": f"{plan.name}-best",
        "description": note or f"the best configuration of study {plan.name}",
        "base": base,
        "grid": grid,
    }
    if loss_params:
        out["loss_params"] = loss_params
    per_dataset = {**{k: dict(v) for k, v in space.per_dataset.items()}, **plan.sweep_per_dataset}
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


def best_yaml(
    plan: TunePlan,
    number: int,
    params: Mapping[str, Any],
    values: Sequence[float],
    path: str | Path,
    n_trials: int,
    study_db: str,
) -> str:
    """The text of the sweep YAML benchmarking trial `number` (its `params` and objective
    `values`), with a header saying where it came from; checked to expand as written."""
    scores = "; ".join(f"{o.describe()} = {v:.4g}" for o, v in zip(plan.objectives, values))
    data = best_sweep(plan, params, note=f"trial {number} of study {plan.name}: {scores}")
    gridded = ", ".join(f"{k}={show_value(v)}" for k, v in params.items() if k in plan.sweep_grid)
    text = (
        f"# Written by `bench tune {plan.space.source}` from trial {number} of study "
        f"{plan.name}\n# ({n_trials} trials in {study_db}).\n"
        f"# {scores}\n"
        + (f"# The trial's {gridded} are replaced by the grid below.\n" if gridded else "")
        + f"# Benchmark it over the full grid: bench sweep {path}\n"
        + yaml.safe_dump(data, sort_keys=False, default_flow_style=None, width=100)
    )
    parse_space(yaml.safe_load(text), source=str(path))  # it must expand as written
    return text
