"""The sections of a search-space YAML -> a `Space` (pure: no registry, no Ray, no files).

A search space names fixed settings (`base`), a full-factorial `grid` over any `TrialConfig` key,
per-loss parameter grids (`loss_params`), per-dataset settings (`per_dataset`) and how each trial
runs (`resources`, `retries`, `time_budget_s`, `max_concurrent`, `storage`). Example:

    name: demo                       # sweep id prefix
    description: every loss on CPU in minutes
    base: {backbone: mlp, epochs: 5, optimizer: sgd}
    grid:
      dataset: [digits, synthetic_subspaces]
      loss: [infonce, vicreg, cloa+infonce]
      lr: [1e-3, 0.1, 3]
      batch_size: [64, 256]
      label_fraction: [0.1, 1.0]
      seed: [0]
    loss_params:                     # a grid here multiplies only that loss's cells
      infonce: {temperature: [0.1, 0.5]}
    per_dataset:                     # fixed settings for the cells of one dataset
      synthetic_subspaces: {dataset_params: {k: 3, m: 3}}
    resources: {cpu: 1, gpu: 0.25}   # per trial; a fractional GPU also caps CUDA memory
    retries: 2                       # attempts after the first, resumed from the last checkpoint
    time_budget_s: 600               # per trial; the trial ends with status "timeout"

This module checks the shape of each section and the run settings; the values of config keys
are `TrialConfig`'s to check (`bench.space.grid` builds every grid point) and the names of
losses, datasets and backbones the registries' (`bench.space.registries`). Every error is a
`ConfigError` whose message is one sentence naming the file, the key and the value.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from bench.config import ConfigError, TrialConfig, is_int, is_number, show_value
from bench.space.checks import need, reject_unknown
from bench.space.resources import Resources, parse_resources

TOP_LEVEL_KEYS = (
    "name",
    "description",
    "base",
    "grid",
    "loss_params",
    "per_dataset",
    "resources",
    "retries",
    "time_budget_s",
    "max_concurrent",
    "checkpoint_every",
    "storage",
    "search",
)
# YAML keys that differ from the TrialConfig field they set.
ALIASES = {"label_fraction": "label_fractions"}
# Keys a `base`/`grid`/`per_dataset` section may set, as the user writes them.
SETTABLE = tuple(
    sorted({*TrialConfig.keys(), *ALIASES} - {"label_fractions", "loss_params", "time_budget_s"})
)
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
Grid = tuple[tuple[str, tuple[Any, ...]], ...]  # (key, values) in the YAML's order


@dataclass(frozen=True)
class Space:
    """A parsed, validated search space. `grid` and each loss's params keep the YAML order."""

    name: str
    source: str
    description: str = ""
    base: Mapping[str, Any] = field(default_factory=dict)
    grid: Grid = ()
    loss_params: Mapping[str, Grid] = field(default_factory=dict)
    per_dataset: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    resources: Resources = field(default_factory=Resources)
    retries: int = 2
    time_budget_s: float | None = None
    max_concurrent: int | None = None
    checkpoint_every: int = 1
    storage: str | None = None
    search: Mapping[str, Any] | None = None  # read by `bench tune`, ignored by `expand`
    warnings: tuple[str, ...] = ()

    @property
    def sweep_id(self) -> str:
        from bench.space.grid import expand, sweep_id

        return sweep_id(self, expand(self))

    def where(self, key: str, dataset: str | None = None) -> str:
        """The section that sets `key` (of a cell of `dataset`), for error messages: the grid,
        that dataset's `per_dataset` section, or `base`."""
        if key in dict(self.grid):
            return f"grid.{key}"
        sections = [dataset] if dataset is not None else list(self.per_dataset)
        for ds in sections:
            if key in self.per_dataset.get(ds, {}):
                return f"per_dataset.{ds}.{key}"
        return f"base.{key}"

    def values_of(self, key: str) -> list[Any]:
        """Every value the space gives `key`: the grid's, else base's (or the default) and the
        `per_dataset` sections'."""
        if key in dict(self.grid):
            return list(dict(self.grid)[key])
        values = [self.base.get(key, getattr(TrialConfig(), key))]
        return values + [s[key] for s in self.per_dataset.values() if key in s]


def parse_sections(data: Any, source: str, default_name: str) -> Space:
    """Check the shape of every section of a parsed YAML document and make the `Space`."""
    if not isinstance(data, Mapping):
        raise ConfigError(
            f"{source}: the file must be a YAML mapping of keys, got {show_value(data)}."
        )
    reject_unknown(source, "top-level", data, TOP_LEVEL_KEYS)
    name = data.get("name", default_name)
    need(
        source,
        "name",
        name,
        isinstance(name, str) and bool(_NAME_RE.match(name)),
        "a name of letters, digits, '_', '.' or '-'",
    )
    description = data.get("description") or ""
    need(source, "description", description, isinstance(description, str), "a string")

    base = _section(source, "base", data.get("base"))
    if "label_fraction" in base:
        base["label_fraction"] = _as_list(base["label_fraction"])
    grid = _parse_grid(source, data.get("grid", _MISSING))
    _no_overlap(source, "base", base, grid)
    loss_params = _parse_loss_params(source, data.get("loss_params"))
    per_dataset = _parse_per_dataset(source, data.get("per_dataset"), grid)

    resources, warnings = parse_resources(source, data.get("resources"))
    retries = data.get("retries", 2)
    need(source, "retries", retries, is_int(retries) and retries >= 0, "an integer >= 0")
    budget = data.get("time_budget_s")
    need(
        source,
        "time_budget_s",
        budget,
        budget is None or (is_number(budget) and budget > 0),
        "a positive number of seconds (per trial) or null",
    )
    max_conc = data.get("max_concurrent")
    need(
        source,
        "max_concurrent",
        max_conc,
        max_conc is None or (is_int(max_conc) and max_conc >= 1),
        "an integer >= 1 or null",
    )
    every = data.get("checkpoint_every", 1)
    need(source, "checkpoint_every", every, is_int(every) and every >= 1, "an integer >= 1")
    storage = data.get("storage")
    need(
        source,
        "storage",
        storage,
        storage is None or (isinstance(storage, str) and storage != ""),
        "a path or URI",
    )
    search = data.get("search")
    need(source, "search", search, search is None or isinstance(search, Mapping), "a mapping")

    return Space(
        name=name,
        source=source,
        description=description,
        base=base,
        grid=grid,
        loss_params=loss_params,
        per_dataset=per_dataset,
        resources=resources,
        retries=retries,
        time_budget_s=None if budget is None else float(budget),
        max_concurrent=max_conc,
        checkpoint_every=every,
        storage=storage,
        search=search,
        warnings=tuple(warnings),
    )


_MISSING = object()


def _parse_grid(source: str, raw: Any) -> Grid:
    if raw is _MISSING:
        return ()
    if not isinstance(raw, Mapping) or not raw:
        raise ConfigError(
            f"{source}: key 'grid' has value {show_value(raw)}; it must be a non-empty "
            "mapping of key -> list of values (or be left out for a single trial)."
        )
    reject_unknown(source, "grid", raw, SETTABLE, hint=_hint)
    out = []
    for key, values in raw.items():
        if not isinstance(values, list):
            values = [values]
        if not values:
            raise ConfigError(f"{source}: grid key {key!r} has value []; list at least one value.")
        seen = []
        for v in values:
            if v in seen:
                raise ConfigError(
                    f"{source}: grid key {key!r} lists the value {show_value(v)} twice."
                )
            seen.append(v)
        out.append((key, tuple(values)))
    return tuple(out)


def _parse_loss_params(source: str, raw: Any) -> dict[str, Grid]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise ConfigError(
            f"{source}: key 'loss_params' has value {show_value(raw)}; it must map a loss "
            "name to its parameters, e.g. {infonce: {temperature: [0.1, 0.5]}}."
        )
    out = {}
    for loss, params in raw.items():
        where = f"loss_params.{loss}"
        if not isinstance(params, Mapping):
            raise ConfigError(
                f"{source}: key {where!r} has value {show_value(params)}; it must map "
                "parameter names to a value or a list of values."
            )
        grid = []
        for pname, values in params.items():
            values = values if isinstance(values, list) else [values]
            if not values:
                raise ConfigError(
                    f"{source}: key '{where}.{pname}' has value []; list at least one value."
                )
            grid.append((str(pname), tuple(values)))
        out[str(loss)] = tuple(grid)
    return out


def _parse_per_dataset(source: str, raw: Any, grid: Grid) -> dict[str, dict[str, Any]]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise ConfigError(
            f"{source}: key 'per_dataset' has value {show_value(raw)}; it must map a "
            "dataset name to settings."
        )
    out = {}
    for ds, settings in raw.items():
        section = _section(source, f"per_dataset.{ds}", settings)
        _no_overlap(source, f"per_dataset.{ds}", section, grid, allow=("dataset",))
        if "dataset" in section:
            raise ConfigError(
                f"{source}: key 'per_dataset.{ds}.dataset' cannot be set; the "
                "dataset is the section's name."
            )
        if "label_fraction" in section:
            section["label_fraction"] = _as_list(section["label_fraction"])
        out[str(ds)] = section
    return out


def _section(source: str, where: str, raw: Any) -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise ConfigError(
            f"{source}: key {where!r} has value {show_value(raw)}; it must be a mapping "
            "of config keys to values."
        )
    reject_unknown(source, where, raw, SETTABLE, hint=_hint)
    return dict(raw)


def _hint(key: str) -> str:
    """Where a key that is valid elsewhere belongs."""
    if key == "label_fractions":
        return "; write 'label_fraction' (grouping into one trial is automatic)"
    if key == "loss_params":
        return "; per-loss parameters go in the top-level 'loss_params: {loss: {param: values}}'"
    if key == "time_budget_s":
        return "; the per-trial time budget is the top-level key 'time_budget_s'"
    return ""


def _no_overlap(
    source: str,
    where: str,
    section: Mapping[str, Any],
    grid: Grid,
    allow: Sequence[str] = (),
) -> None:
    grid_keys = {k for k, _ in grid} - set(allow)
    both = sorted(grid_keys & set(section))
    if both:
        raise ConfigError(
            f"{source}: key {both[0]!r} is set both in {where!r} and in 'grid'; "
            "keep it in one place."
        )


def _as_list(v: Any) -> list[Any]:
    return list(v) if isinstance(v, (list, tuple)) else [v]
