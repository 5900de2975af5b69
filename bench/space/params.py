"""The `params` of a `search:` section: which config keys a search varies, and how.

Each entry maps a searched key (any scalar `TrialConfig` key, or `loss_params.P` /
`dataset_params.P`) to a distribution: `loguniform {low, high}` (0 < low < high),
`uniform {low, high, step?}`, `int {low, high, step?, log?}` (inclusive), `choice {values}`
(numbers, strings or booleans). Every range is checked at both ends (and every choice) by building
the trial config, and for a loss parameter the loss, so a search never starts with a value a trial
would reject. Optuna's distributions are made from these in `bench.sweep.study`.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

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
from bench.space.checks import reject_unknown
from bench.space.sections import Space

DISTRIBUTIONS = ("loguniform", "uniform", "int", "choice")
_DIST_KEYS = {
    "loguniform": ("dist", "low", "high"),
    "uniform": ("dist", "low", "high", "step"),
    "int": ("dist", "low", "high", "step", "log"),
    "choice": ("dist", "values"),
}
# Config keys the search may not vary: it tunes one loss on one dataset on one device.
_FIXED = (
    "loss",
    "dataset",
    "data_root",
    "download",
    "device",
    "compile",
    "label_fractions",
    "loss_params",
    "dataset_params",
    "mlp_hidden",
    "projector",
    "ffn_hidden",
    "time_budget_s",
)


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
        """The values that validation tries: both ends of a range, every choice. With a `step`
        the upper end is the last value the search can reach (`low + k * step`, as Optuna
        lowers `high`), not `high` itself."""
        if self.dist == "choice":
            return self.values
        assert self.low is not None and self.high is not None  # ranges have both ends
        high = self.high
        if self.step:
            high = self.low + ((self.high - self.low) // self.step) * self.step
            high = type(self.low)(high) if self.dist == "int" else float(high)
        return (self.low, high)

    def describe(self) -> str:
        if self.dist == "choice":
            return f"choice of {', '.join(show_value(v) for v in self.values)}"
        extra = f", step {show_value(self.step)}" if self.step else ""
        kind = "log-int" if self.dist == "int" and self.log else self.dist
        return f"{kind} [{show_value(self.low)}, {show_value(self.high)}]{extra}"


def parse_params(src: str, raw: Any, space: Space, base: TrialConfig) -> tuple[Param, ...]:
    if not isinstance(raw, Mapping) or not raw:
        raise ConfigError(
            f"{src}: key 'search.params' has value {show_value(raw)}; it must map "
            "the keys to search to distributions, e.g. {lr: {dist: loguniform, "
            "low: 1.0e-3, high: 1}}."
        )
    params = []
    for name, spec in raw.items():
        name = str(name)
        where = f"search.params.{name}"
        _check_param_name(src, name, space, base)
        if not isinstance(spec, Mapping):
            raise ConfigError(
                f"{src}: key {where!r} has value {show_value(spec)}; it must be a "
                "mapping like {dist: uniform, low: 0.1, high: 1.0}."
            )
        param = _parse_distribution(src, where, name, spec)
        for value in param.extremes():
            _check_param_value(src, where, param, value, base)
        _check_class_batches(src, where, param, base)
        params.append(param)
    return tuple(params)


def corners(base: TrialConfig, params: Sequence[Param]) -> list[TrialConfig]:
    """`base` with `params` at every combination of their extremes: what the search can reach
    at its edges (the preflight builds these before Ray starts)."""
    names = [p.name for p in params]
    return [
        apply_params(base, dict(zip(names, combo)))
        for combo in itertools.product(*(p.extremes() for p in params))
    ]


def _check_class_batches(src: str, where: str, param: Param, base: TrialConfig) -> None:
    """A searched batch size with class-structured batches must stay a multiple of
    classes_per_batch between its ends too (the ends are checked by building them)."""
    p = base.classes_per_batch
    if param.name != "batch_size" or base.batch_sampler != "class" or p is None:
        return
    if param.dist == "choice" or (param.step and param.step % p == 0 and not param.log):
        return
    raise ConfigError(
        f"{src}: key {where!r} searches batch_size with batch_sampler 'class' and "
        f"classes_per_batch {p}; give it as a choice of multiples of {p}, or as an int range "
        f"with low a multiple of {p} and step: {p}."
    )


def _check_param_name(src: str, name: str, space: Space, base: TrialConfig) -> None:
    where = f"search.params.{name}"
    head, dot, tail = name.partition(".")
    if dot and head in NESTED_KEYS:
        owner = base.loss if head == "loss_params" else base.dataset
        known = (
            registries.loss_parameters(owner)
            if head == "loss_params"
            else registries.dataset_parameters(owner)
        )
        kind = "loss" if head == "loss_params" else "dataset"
        if tail not in known:
            hint = registries.suggest_param(tail, known, prefix=f"{head}.")
            raise ConfigError(
                f"{src}: key {where!r} is not a parameter of {kind} {owner!r}; {hint}"
            )
        if tail in getattr(base, head):
            fixed = (
                f"loss_params.{base.loss}.{tail}"
                if head == "loss_params"
                else ("base.dataset_params")
            )
            raise ConfigError(
                f"{src}: key {where!r} is also fixed in '{fixed}'; keep it in one place."
            )
        return
    fields = set(TrialConfig.keys())
    if name not in fields:
        hint = did_you_mean(name, sorted(fields - set(_FIXED)))
        raise ConfigError(
            f"{src}: key {where!r} names no config key{'; ' + hint if hint else ''}"
            " (loss parameters are searched as loss_params.NAME)."
        )
    if name in _FIXED:
        raise ConfigError(
            f"{src}: key {where!r} cannot be searched; bench tune tunes one loss on "
            "one dataset, so set it in 'base' (compare losses with bench sweep)."
        )
    if name in space.base:
        raise ConfigError(
            f"{src}: key {where!r} is also set in 'base.{name}'; keep it in one place."
        )


def _parse_distribution(src: str, where: str, name: str, spec: Mapping[str, Any]) -> Param:
    dist = spec.get("dist")
    if dist not in DISTRIBUTIONS:
        hint = did_you_mean(dist, DISTRIBUTIONS)
        raise ConfigError(
            f"{src}: key '{where}.dist' has value {show_value(dist)}, which is not "
            f"a distribution; use one of {', '.join(DISTRIBUTIONS)}"
            f"{f' ({hint})' if hint else ''}."
        )
    reject_unknown(src, where, spec, _DIST_KEYS[dist])
    if dist == "choice":
        values = spec.get("values")
        if not isinstance(values, list) or not values:
            raise ConfigError(
                f"{src}: key '{where}.values' has value {show_value(values)}; a "
                "choice needs a non-empty list of values."
            )
        for v in values:
            if not isinstance(v, (bool, int, float, str)):
                raise ConfigError(
                    f"{src}: key '{where}.values' holds {show_value(v)}; choices "
                    "must be numbers, strings or booleans."
                )
            if values.count(v) > 1:
                raise ConfigError(f"{src}: key '{where}.values' lists {show_value(v)} twice.")
        return Param(name, dist, values=tuple(values))
    for k in ("low", "high"):
        if k not in spec:
            raise ConfigError(
                f"{src}: key {where!r} has no '{k}'; a {dist} distribution needs "
                "both 'low' and 'high'."
            )
        if not (is_int(spec[k]) if dist == "int" else is_number(spec[k])):
            kind = "an integer" if dist == "int" else "a number"
            raise ConfigError(
                f"{src}: key '{where}.{k}' has value {show_value(spec[k])}; it must be {kind}."
            )
    low, high = spec["low"], spec["high"]
    if low >= high:
        raise ConfigError(
            f"{src}: key {where!r} has low {show_value(low)} >= high "
            f"{show_value(high)}; low must be below high."
        )
    log = dist == "loguniform" or bool(spec.get("log", False))
    if "log" in spec and not isinstance(spec["log"], bool):
        raise ConfigError(
            f"{src}: key '{where}.log' has value {show_value(spec['log'])}; it must "
            "be true or false."
        )
    if log and low <= 0:
        raise ConfigError(
            f"{src}: key '{where}.low' has value {show_value(low)}; a log range "
            "must stay above 0 (log 0 is undefined), e.g. low: 1.0e-4."
        )
    step = spec.get("step")
    if step is not None:
        ok = (is_int(step) if dist == "int" else is_number(step)) and step > 0
        if not ok or (log and dist == "int" and step != 1):
            raise ConfigError(
                f"{src}: key '{where}.step' has value {show_value(step)}; it must "
                "be a positive number (and 1 with log: true)."
            )
    return Param(name, dist, low, high, step, log and dist == "int")


def _check_param_value(src: str, where: str, param: Param, value: Any, base: TrialConfig) -> None:
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
    raise ConfigError(
        f"{src}: key {where!r} reaches the value {show_value(value)}, which "
        f"{param.name} cannot take ({reason})."
    )


def apply_params(base: TrialConfig, params: Mapping[str, Any]) -> TrialConfig:
    """The trial config of one suggestion: `base` with each searched key set."""
    return TrialConfig.from_flat(with_overrides(base.to_flat(), params), source="tune trial")
