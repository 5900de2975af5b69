"""Search-space YAML -> validated, grouped list of `TrialConfig` (pure; no Ray, no files written).

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

`expand(space)` is the full factorial product, except that grid points which differ only in
`label_fraction` and pretrain identically become ONE trial evaluated at all of those fractions
(DESIGN.md "One trial"): a loss that sees no labels pretrains the same whatever the fraction, and
a loss that does see labels pretrains the same when `pretrain_label_fraction` caps its labels at
the same fraction. Seeds never merge. The sweep id is the space's name plus a hash of the trial
list, so the same YAML always maps to the same sweep (resume, dedup).

Every error is a `ConfigError` whose message is one sentence naming the file, the key and the
value.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import itertools
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bench.config import ConfigError, TrialConfig

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
RESOURCE_KEYS = ("cpu", "gpu", "gpu_from_batch_size")
# YAML keys that differ from the TrialConfig field they set.
_ALIASES = {"label_fraction": "label_fractions"}
_TRIAL_FIELDS = tuple(f.name for f in dataclasses.fields(TrialConfig))
# Keys a `base`/`grid`/`per_dataset` section may set, as the user writes them.
_SETTABLE = tuple(
    sorted({*_TRIAL_FIELDS, *_ALIASES} - {"label_fractions", "loss_params", "time_budget_s"})
)
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class Resources:
    """What one trial asks Ray for. `gpu_from_batch_size` maps a batch-size threshold to the GPU
    share of trials with at least that batch size (large batches need more memory)."""

    cpu: float = 1.0
    gpu: float = 0.0
    gpu_from_batch_size: tuple[tuple[int, float], ...] = ()

    def for_trial(self, cfg: TrialConfig) -> dict[str, float]:
        gpu = self.gpu
        for threshold, share in sorted(self.gpu_from_batch_size):
            if cfg.batch_size >= threshold:
                gpu = share
        return {"cpu": self.cpu, "gpu": gpu}


@dataclass(frozen=True)
class Space:
    """A parsed, validated search space. `grid` and each loss's params keep the YAML order."""

    name: str
    source: str
    description: str = ""
    base: Mapping[str, Any] = field(default_factory=dict)
    grid: tuple[tuple[str, tuple[Any, ...]], ...] = ()
    loss_params: Mapping[str, tuple[tuple[str, tuple[Any, ...]], ...]] = field(default_factory=dict)
    per_dataset: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    resources: Resources = Resources()
    retries: int = 2
    time_budget_s: float | None = None
    max_concurrent: int | None = None
    checkpoint_every: int = 1
    storage: str | None = None
    search: Mapping[str, Any] | None = None  # read by `bench tune`, ignored by `expand`
    warnings: tuple[str, ...] = ()

    @property
    def sweep_id(self) -> str:
        return sweep_id(self, expand(self))


# --- loading ----------------------------------------------------------------------------------


class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads `1e-3` as a float: YAML 1.1 wants `1.0e-3`, and an lr grid
    silently turning into strings is the most common sweep-file mistake."""


_FLOAT = re.compile(
    r"^[-+]?(?:\d[\d_]*(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?$"
    r"|^[-+]?\.(?:inf|Inf|INF)$|^\.(?:nan|NaN|NAN)$"
)
_Loader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT, list("-+0123456789."))


def _construct_float(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    text = loader.construct_scalar(node).replace("_", "")
    if re.fullmatch(r"[-+]?\d+", text):  # the resolver above also matches plain integers
        return int(text)
    return yaml.SafeLoader.construct_yaml_float(loader, node)


_Loader.add_constructor("tag:yaml.org,2002:float", _construct_float)


def load_space(path: str | Path) -> Space:
    """Read and validate a search-space YAML; every problem is a one-sentence ConfigError."""
    source = str(path)
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        raise ConfigError(f"{source}: no such search-space file.") from None
    except OSError as exc:
        raise ConfigError(f"{source}: cannot read the file ({exc.strerror}).") from None
    try:
        data = yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{source}{where}: cannot parse the YAML ({problem}).") from None
    default_name = Path(path).stem
    return parse_space(data, source=source, default_name=default_name)


def parse_space(data: Any, source: str = "search space", default_name: str = "sweep") -> Space:
    """Validate an already-parsed YAML document (a mapping) into a `Space`."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: the file must be a YAML mapping of keys, got {show_value(data)}.")
    _reject_unknown(source, "top-level", data, TOP_LEVEL_KEYS)
    name = data.get("name", default_name)
    _need(
        source,
        "name",
        name,
        isinstance(name, str) and bool(_NAME_RE.match(name)),
        "a name of letters, digits, '_', '.' or '-'",
    )
    description = data.get("description") or ""
    _need(source, "description", description, isinstance(description, str), "a string")

    base = _section(source, "base", data.get("base"))
    if "label_fraction" in base:
        base["label_fraction"] = _as_list(base["label_fraction"])
    grid = _parse_grid(source, data.get("grid", _MISSING))
    _no_overlap(source, "base", base, grid)
    loss_params = _parse_loss_params(source, data.get("loss_params"))
    per_dataset = _parse_per_dataset(source, data.get("per_dataset"), grid)

    resources, warnings = _parse_resources(source, data.get("resources"))
    retries = data.get("retries", 2)
    _need(source, "retries", retries, is_int(retries) and retries >= 0, "an integer >= 0")
    budget = data.get("time_budget_s")
    _need(
        source,
        "time_budget_s",
        budget,
        budget is None or (_is_num(budget) and budget > 0),
        "a positive number of seconds (per trial) or null",
    )
    max_conc = data.get("max_concurrent")
    _need(
        source,
        "max_concurrent",
        max_conc,
        max_conc is None or (is_int(max_conc) and max_conc >= 1),
        "an integer >= 1 or null",
    )
    every = data.get("checkpoint_every", 1)
    _need(source, "checkpoint_every", every, is_int(every) and every >= 1, "an integer >= 1")
    storage = data.get("storage")
    _need(
        source,
        "storage",
        storage,
        storage is None or (isinstance(storage, str) and storage != ""),
        "a path or URI",
    )
    search = data.get("search")
    _need(source, "search", search, search is None or isinstance(search, Mapping), "a mapping")

    space = Space(
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
    _validate_values(space)
    # Build every TrialConfig: any remaining bad value surfaces here, named with its cell.
    points = grid_points(space)
    _check_dataset_params(space, points)
    _check_batch_sampler(space, points)
    return space


_MISSING = object()


def _parse_grid(source: str, raw: Any) -> tuple[tuple[str, tuple[Any, ...]], ...]:
    if raw is _MISSING:
        return ()
    if not isinstance(raw, Mapping) or not raw:
        raise ConfigError(
            f"{source}: key 'grid' has value {show_value(raw)}; it must be a non-empty "
            "mapping of key -> list of values (or be left out for a single trial)."
        )
    _reject_unknown(source, "grid", raw, _SETTABLE, hint=_hint)
    out = []
    for key, values in raw.items():
        if not isinstance(values, list):
            values = [values]
        if not values:
            raise ConfigError(f"{source}: grid key {key!r} has value []; list at least one value.")
        seen = []
        for v in values:
            if v in seen:
                raise ConfigError(f"{source}: grid key {key!r} lists the value {show_value(v)} twice.")
            seen.append(v)
        out.append((key, tuple(values)))
    return tuple(out)


def _parse_loss_params(source: str, raw: Any) -> dict[str, tuple[tuple[str, tuple[Any, ...]], ...]]:
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


def _parse_per_dataset(source: str, raw: Any, grid: Sequence[tuple[str, tuple]]) -> dict[str, dict]:
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


def _parse_resources(source: str, raw: Any) -> tuple[Resources, list[str]]:
    if raw is None:
        return Resources(), []
    if not isinstance(raw, Mapping):
        raise ConfigError(
            f"{source}: key 'resources' has value {show_value(raw)}; it must be a mapping "
            "like {cpu: 1, gpu: 0.25}."
        )
    _reject_unknown(source, "resources", raw, RESOURCE_KEYS)
    cpu, gpu = raw.get("cpu", 1), raw.get("gpu", 0)
    _need(source, "resources.cpu", cpu, _is_num(cpu) and cpu >= 0, "a number of CPUs >= 0")
    shares = {"resources.gpu": gpu}
    steps = raw.get("gpu_from_batch_size") or {}
    _need(
        source,
        "resources.gpu_from_batch_size",
        steps,
        isinstance(steps, Mapping),
        "a mapping of batch size -> GPU share",
    )
    for bs, share in steps.items():
        _need(
            source,
            "resources.gpu_from_batch_size",
            bs,
            is_int(bs) and bs >= 1,
            "keyed by integer batch sizes",
        )
        shares[f"resources.gpu_from_batch_size.{bs}"] = share
    warnings = []
    for key, share in shares.items():
        _need(
            source,
            key,
            share,
            _is_num(share) and 0 <= share <= 1,
            "a GPU share in [0, 1] (one trial per GPU at most; fractions share a GPU)",
        )
        if 0 < share < 1 and not math.isclose(1 / share, round(1 / share), rel_tol=1e-9):
            warnings.append(
                f"{source}: {key} is {share}, which does not divide one GPU evenly; Ray counts "
                f"shares against the cluster total, so use 1/n (0.5, 0.25, 0.125) to avoid idle "
                f"slivers of GPU."
            )
    if cpu == 0 and all(s == 0 for s in shares.values()):
        raise ConfigError(
            f"{source}: key 'resources' has value {show_value(dict(raw))}; a trial must "
            "ask for some CPU or GPU, or Ray would start every trial at once."
        )
    ladder = tuple(sorted((int(bs), float(s)) for bs, s in steps.items()))
    return Resources(cpu=float(cpu), gpu=float(gpu), gpu_from_batch_size=ladder), warnings


def _section(source: str, where: str, raw: Any) -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise ConfigError(
            f"{source}: key {where!r} has value {show_value(raw)}; it must be a mapping "
            "of config keys to values."
        )
    _reject_unknown(source, where, raw, _SETTABLE, hint=_hint)
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


def _reject_unknown(
    source: str, where: str, raw: Mapping, known: Iterable[str], hint: Any = None
) -> None:
    known = tuple(known)
    for key in raw:
        if key in known:
            continue
        extra = hint(key) if hint is not None else ""
        if not extra:
            close = difflib.get_close_matches(str(key), known, n=3, cutoff=0.6)
            extra = (
                f"; did you mean {' or '.join(map(repr, close))}?"
                if close
                else f"; known keys are {', '.join(known)}"
            )
        label = (
            f"top-level key {key!r}" if where == "top-level" else f"key {where + '.' + str(key)!r}"
        )
        msg = f"{source}: unknown {label}{extra}"
        raise ConfigError(msg if msg.endswith(("?", ".")) else msg + ".")


def _no_overlap(
    source: str,
    where: str,
    section: Mapping,
    grid: Sequence[tuple[str, tuple]],
    allow: Sequence[str] = (),
) -> None:
    grid_keys = {k for k, _ in grid} - set(allow)
    both = sorted(grid_keys & set(section))
    if both:
        raise ConfigError(
            f"{source}: key {both[0]!r} is set both in {where!r} and in 'grid'; "
            "keep it in one place."
        )


# --- value checks that deserve their own sentence ---------------------------------------------


def _validate_values(space: Space) -> None:
    src = space.source
    values = {k: vs for k, vs in space.grid}
    sections = [("base", space.base)] + [
        (f"per_dataset.{d}", s) for d, s in space.per_dataset.items()
    ]
    for where, section in sections:
        for k, v in section.items():
            values.setdefault(k, ())
            _check_value(src, f"{where}.{k}", k, v)
    for k, vs in space.grid:
        for v in vs:
            _check_value(src, f"grid.{k}", k, v)
    losses = _collect(space, "loss", TrialConfig().loss)
    for loss in losses:
        _check_loss(src, "grid.loss" if "loss" in dict(space.grid) else "base.loss", loss)
    for loss, params in space.loss_params.items():
        if loss not in losses:
            close = difflib.get_close_matches(loss, losses, n=1)
            extra = (
                f"; did you mean {close[0]!r}?"
                if close
                else f"; losses in this sweep: {', '.join(losses)}"
            )
            raise ConfigError(
                f"{src}: key 'loss_params.{loss}' names a loss that is not in the sweep{extra}."
            )
        _check_loss_params(src, loss, params)
    datasets = _collect(space, "dataset", TrialConfig().dataset)
    for ds in datasets:
        _check_dataset(src, "grid.dataset" if "dataset" in dict(space.grid) else "base.dataset", ds)
    from bench.models import BACKBONES

    for bb in _collect(space, "backbone", TrialConfig().backbone):
        _need(src, _where(space, "backbone"), bb, bb in BACKBONES, f"one of {', '.join(BACKBONES)}")
    for ds in space.per_dataset:
        if ds not in datasets:
            raise ConfigError(
                f"{src}: key 'per_dataset.{ds}' names a dataset that is not in the "
                f"sweep (datasets: {', '.join(datasets)})."
            )


def _where(space: Space, key: str) -> str:
    """The section that sets `key`, for error messages: grid, a per_dataset section, or base."""
    if key in dict(space.grid):
        return f"grid.{key}"
    for ds, section in space.per_dataset.items():
        if key in section:
            return f"per_dataset.{ds}.{key}"
    return f"base.{key}"


def _collect(space: Space, key: str, default: Any) -> list[Any]:
    grid = dict(space.grid)
    if key in grid:
        return list(grid[key])
    return [space.base.get(key, default)]


def _check_value(src: str, where: str, key: str, value: Any) -> None:
    if key == "lr":
        _need(src, where, value, _is_num(value) and value > 0, "a positive number")
    elif key == "label_fraction":
        for f in _as_list(value):
            _need(src, where, f, _is_num(f) and 0 < f <= 1, "a fraction in (0, 1]")
    elif key in ("batch_size", "epochs", "seed") and not is_int(value):
        _need(src, where, value, False, "an integer")


def _check_loss(src: str, where: str, loss: Any) -> None:
    from bench.losses import list_addons, list_losses, loss_info

    if not isinstance(loss, str):
        raise ConfigError(f"{src}: key {where!r} has value {show_value(loss)}; it must be a loss name.")
    addons, bases = list_addons(), list_losses()
    if loss in addons:
        hint = (
            f"it is an add-on term: compose it with a base loss as '{loss}+BASE', "
            f"e.g. '{loss}+infonce'."
        )
    else:
        try:
            loss_info(loss)
            return
        except (KeyError, ValueError):
            pass
        first, plus, second = loss.partition("+")
        if plus and first in bases and second in addons:
            hint = f"composites are written ADDON+BASE: '{second}+{first}'."
        else:
            known = bases + [f"{a}+{b}" for a in addons for b in bases]
            close = difflib.get_close_matches(loss, known, n=2, cutoff=0.5)
            hint = (
                f"did you mean {' or '.join(map(repr, close))}?"
                if close
                else f"the losses are {', '.join(bases)}, each also as "
                f"{' or '.join(repr(a + '+') for a in addons)}."
            )
    raise ConfigError(
        f"{src}: key {where!r} has value {loss!r}, which is not a known loss "
        f"(`bench losses` lists them); {hint}"
    )


def _param_suggestion(name: str, known: Iterable[str]) -> str:
    """The close match of a misspelt parameter name, else the list of the real ones."""
    known = sorted(known)
    close = difflib.get_close_matches(name, known, n=1)
    return f"did you mean {close[0]!r}?" if close else f"its parameters are {', '.join(known) or 'none'}"


def _check_loss_params(src: str, loss: str, params: Sequence[tuple[str, tuple]]) -> None:
    from bench.losses import build_loss, loss_info

    known = dict(loss_info(loss).params)
    for pname, _values in params:
        if pname not in known:
            extra = _param_suggestion(pname, known)
            raise ConfigError(
                f"{src}: key 'loss_params.{loss}.{pname}' is not a parameter of "
                f"loss {loss!r}; {extra}."
            )
    # Values: build the loss once per value (the other parameters at their defaults), so that a
    # value the loss rejects (an unknown reduction, a temperature <= 0) stops the sweep here,
    # before Ray starts. A loss that does not build even with its defaults in this stand-in
    # context (a plugin that needs the real dataset) is left to the trial's own check.
    context = {"num_classes": 2, "dim": 2, "seed": 0}
    try:
        build_loss(loss, **context)
    except Exception:  # any failure here is not about the values being checked
        return
    for pname, values in params:
        for value in values:
            try:
                build_loss(loss, **context, **{pname: value})
            except (ValueError, TypeError) as exc:
                reason = re.sub(r"^[\w+]+: ", "", str(exc))
                raise ConfigError(
                    f"{src}: key 'loss_params.{loss}.{pname}' has value {show_value(value)}; "
                    f"{reason}"
                ) from None


def _check_dataset(src: str, where: str, ds: Any) -> None:
    from bench.data import list_datasets

    known = list_datasets()
    if ds not in known:
        close = difflib.get_close_matches(str(ds), known, n=1)
        extra = f"did you mean {close[0]!r}?" if close else f"known datasets: {', '.join(known)}"
        raise ConfigError(
            f"{src}: key {where!r} has value {show_value(ds)}, which is not a known dataset; {extra}."
        )


def _check_batch_sampler(space: Space, points: Sequence[TrialConfig]) -> None:
    """Class-structured batches draw labelled samples: a loss that uses no labels cannot have them."""
    from bench.losses import loss_info

    for loss in dict.fromkeys(c.loss for c in points if c.batch_sampler == "class"):
        if not loss_info(loss).uses_labels:
            raise ConfigError(
                f"{space.source}: key {_where(space, 'batch_sampler')!r} has value 'class', but "
                f"loss {loss!r} uses no labels; class-structured batches need a loss that does "
                "(put such losses in a sweep of their own)."
            )


def _check_dataset_params(space: Space, points: Sequence[TrialConfig]) -> None:
    """Dataset parameters the loader does not take, and image augmentations on vector data."""
    from bench.data import dataset_info

    seen = set()
    for cfg in points:
        key = (cfg.dataset, tuple(sorted(cfg.dataset_params)), cfg.augment)
        if key in seen:
            continue
        seen.add(key)
        info, src = dataset_info(cfg.dataset), space.source
        if info.kind == "vector" and cfg.augment not in ("auto", "none"):
            raise ConfigError(
                f"{src}: key {_where(space, 'augment')!r} has value {cfg.augment!r}, an image "
                f"augmentation, but dataset {cfg.dataset!r} holds vectors; use "
                "'auto' (sign flip + noise) or 'none'."
            )
        known = info.params
        for pname in cfg.dataset_params:
            if pname not in known:
                extra = _param_suggestion(pname, known)
                raise ConfigError(
                    f"{src}: key '{_where(space, 'dataset_params')}.{pname}' is not a parameter of "
                    f"dataset {cfg.dataset!r}; {extra}."
                )


# --- expansion --------------------------------------------------------------------------------


def grid_points(space: Space) -> list[TrialConfig]:
    """The full factorial product, one TrialConfig per grid point (one label fraction each)."""
    keys = [k for k, _ in space.grid]
    points = []
    for combo in itertools.product(*(vs for _, vs in space.grid)):
        cell = {**space.base, **dict(zip(keys, combo))}
        dataset = cell.get("dataset", TrialConfig().dataset)
        cell = {**space.base, **space.per_dataset.get(dataset, {}), **dict(zip(keys, combo))}
        loss = cell.get("loss", TrialConfig().loss)
        lp = space.loss_params.get(loss, ())
        for pcombo in itertools.product(*(vs for _, vs in lp)):
            flat = {_ALIASES.get(k, k): v for k, v in cell.items()}
            flat["loss_params"] = dict(zip((n for n, _ in lp), pcombo))
            if space.time_budget_s is not None:
                flat["time_budget_s"] = space.time_budget_s
            points.append(_build(space, flat))
    return points


def _build(space: Space, flat: dict[str, Any]) -> TrialConfig:
    """TrialConfig.from_flat, its error re-worded to name the file and the section of the key."""
    try:
        return TrialConfig.from_flat(flat, source=space.source)
    except ConfigError as exc:
        msg = str(exc)
        m = re.match(r"config key '([^']+)' (.*)", msg)
        if m:
            key = "label_fraction" if m.group(1) == "label_fractions" else m.group(1)
            msg = f"{space.source}: key {_where(space, key)!r} {m.group(2)}"
        raise ConfigError(msg) from None


def _pretrain_key(cfg: TrialConfig) -> float | None:
    """What pretraining depends on besides the config: the fraction of labels the loss sees."""
    from bench.losses import loss_info

    if not loss_info(cfg.loss).uses_labels:
        return None
    return cfg.pretrain_fraction


def expand(space: Space) -> list[TrialConfig]:
    """The sweep's trials: grid points grouped so that label fractions sharing one pretraining
    are evaluated by one trial (`label_fractions` sorted). Order follows the YAML."""
    groups: dict[tuple, list[TrialConfig]] = {}
    for cfg in grid_points(space):
        blank = cfg.replace(label_fractions=(1.0,))
        key = (blank.trial_id(), _pretrain_key(cfg))
        groups.setdefault(key, []).append(cfg)
    trials = []
    for members in groups.values():
        fractions = tuple(sorted({f for c in members for f in c.label_fractions}))
        trials.append(members[0].replace(label_fractions=fractions))
    return trials


def sweep_id(space: Space, trials: Sequence[TrialConfig]) -> str:
    """`<name>-<8 hex>`: the hash covers the trial list, not the file's wording or resources."""
    blob = "\n".join(sorted(t.trial_id() for t in trials))
    return f"{space.name}-{hashlib.sha1(blob.encode()).hexdigest()[:8]}"


@dataclass(frozen=True)
class Expansion:
    """What `bench sweep --dry-run` reports."""

    grid_points: int
    trials: int
    merged_label_free: int  # grid points saved because the loss sees no labels
    merged_capped: int  # grid points saved because pretrain_label_fraction caps the labels


def expansion_stats(space: Space, trials: Sequence[TrialConfig] | None = None) -> Expansion:
    from bench.losses import loss_info

    points = len(grid_points(space))
    trials = expand(space) if trials is None else trials
    free = capped = 0
    for t in trials:
        extra = len(t.label_fractions) - 1
        if loss_info(t.loss).uses_labels:
            capped += extra
        else:
            free += extra
    return Expansion(points, len(trials), free, capped)


def describe(space: Space, trials: Sequence[TrialConfig] | None = None) -> str:
    """Human summary of a space: grid, per-loss grids, resources, and what grouping saved."""
    trials = expand(space) if trials is None else trials
    stats = expansion_stats(space, trials)
    lines = [f"search space {space.source}: sweep id {sweep_id(space, trials)}"]
    if space.description:
        lines.append(f"  {space.description.strip()}")
    if space.base:
        lines.append("base: " + ", ".join(f"{k}={show_value(v)}" for k, v in space.base.items()))
    lines.append("grid:")
    width = max((len(k) for k, _ in space.grid), default=0)
    for k, vs in space.grid:
        lines.append(f"  {k:<{width}}  {', '.join(show_value(v) for v in vs)}  ({len(vs)})")
    if not space.grid:
        lines.append("  (none: a single trial)")
    for loss, params in space.loss_params.items():
        shown = "; ".join(f"{p}: {', '.join(show_value(v) for v in vs)}" for p, vs in params)
        lines.append(f"loss_params {loss}: {shown}")
    for ds, settings in space.per_dataset.items():
        lines.append(
            f"per_dataset {ds}: " + ", ".join(f"{k}={show_value(v)}" for k, v in settings.items())
        )
    r = space.resources
    res = f"cpu {r.cpu:g}, gpu {r.gpu:g}" + "".join(
        f", gpu {s:g} from batch size {bs}" for bs, s in r.gpu_from_batch_size
    )
    budget = "none" if space.time_budget_s is None else f"{space.time_budget_s:g} s"
    lines.append(
        f"per trial: {res}; retries {space.retries}; time budget {budget}; "
        f"checkpoint every {space.checkpoint_every} epoch(s)"
        + (f"; at most {space.max_concurrent} at once" if space.max_concurrent else "")
    )
    epochs = sum(t.epochs for t in trials)
    lines.append(
        f"{stats.grid_points} grid points -> {stats.trials} trials "
        f"({_saved(stats)}); {epochs} trial-epochs in all"
    )
    return "\n".join(lines)


def _saved(s: Expansion) -> str:
    saved = s.grid_points - s.trials
    if saved == 0:
        return "no grid points share a pretraining"
    parts = []
    if s.merged_label_free:
        parts.append(
            f"{s.merged_label_free} by evaluating label fractions of label-free losses in one trial"
        )
    if s.merged_capped:
        parts.append(f"{s.merged_capped} where pretrain_label_fraction caps the labels a loss sees")
    return f"{saved} saved: " + "; ".join(parts)


# --- small helpers ----------------------------------------------------------------------------


def _need(source: str, key: str, value: Any, ok: bool, allowed: str) -> None:
    if not ok:
        raise ConfigError(f"{source}: key {key!r} has value {show_value(value)}; it must be {allowed}.")


def _is_num(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _as_list(v: Any) -> list[Any]:
    return list(v) if isinstance(v, (list, tuple)) else [v]


def show_value(v: Any) -> str:
    """A config value as the error messages quote it: 1e-3 not 0.001, strings quoted."""
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, str):
        return repr(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(show_value(x) for x in v) + "]"
    if isinstance(v, Mapping):
        return "{" + ", ".join(f"{k}: {show_value(x)}" for k, x in v.items()) + "}"
    return repr(v)
