"""The one gateway from the space layer to the loss, dataset and backbone registries.

The registries live with their torch code (`bench.losses`, `bench.data`, `bench.models`), so
each function here imports them when it runs, never when `bench.space` is imported: the space
layer stays importable without torch (the import contract in pyproject.toml lists these three
imports as its only exceptions). Everything a search space or a `search:` section needs to know
about a name it mentions goes through here: whether it exists (with a suggestion), its
parameters, whether a loss uses labels, the terms it logs, whether a parameter value builds.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from bench.config import ConfigError, TrialConfig, did_you_mean, show_value
from bench.space.checks import need
from bench.space.sections import Grid, Space

# What `build_loss` needs besides the parameters, for a value check away from any dataset.
_STAND_IN = {"num_classes": 2, "dim": 2, "seed": 0}


def uses_labels(loss: str) -> bool:
    from bench.losses import loss_info

    return loss_info(loss).uses_labels


def loss_parameters(loss: str) -> dict[str, Any]:
    """A loss's parameters and their defaults."""
    from bench.losses import loss_info

    return dict(loss_info(loss).params)


def loss_terms(loss: str) -> tuple[str, ...]:
    """The terms a loss logs (each a metric `m_loss_<term>`)."""
    from bench.losses import loss_info

    return tuple(loss_info(loss).terms)


def dataset_parameters(dataset: str) -> dict[str, Any]:
    from bench.data import dataset_info

    return dict(dataset_info(dataset).params)


def loss_value_problem(loss: str, params: Mapping[str, Any], dim: int = 2) -> str | None:
    """Why the loss does not build with `params` (other parameters at their defaults), or None.

    A loss that does not build even with its defaults in this stand-in context (a plugin that
    needs the real dataset) is left to the trial's own check: None.
    """
    from bench.losses import LossParamError, build_loss

    context = {**_STAND_IN, "dim": max(dim, 2)}
    try:
        build_loss(loss, **context)
    except Exception:  # any failure here is not about the values being checked
        return None
    try:
        build_loss(loss, **context, **params)
    except LossParamError as exc:
        return f"it must be {exc.must}."
    except (ValueError, TypeError, KeyError) as exc:
        return str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
    return None


def suggest_param(name: str, known: Iterable[str], prefix: str = "") -> str:
    """The close match of a misspelt parameter name, else the list of the real ones (a
    sentence's end: it ends with "?" or ".")."""
    known = sorted(known)
    return did_you_mean(name, known, prefix=prefix) or (
        f"its parameters are {', '.join(known) or 'none'}."
    )


def check_names(space: Space) -> None:
    """Every loss, loss parameter, dataset and backbone the space names is registered."""
    src = space.source
    losses = space.values_of("loss")
    for loss in losses:
        check_loss(src, space.where("loss"), loss)
    for loss, params in space.loss_params.items():
        if loss not in losses:
            hint = did_you_mean(loss, losses) or f"losses in this sweep: {', '.join(losses)}."
            raise ConfigError(
                f"{src}: key 'loss_params.{loss}' names a loss that is not in the sweep; {hint}"
            )
        _check_loss_params(src, loss, params)
    datasets = space.values_of("dataset")
    for ds in datasets:
        check_dataset(src, space.where("dataset"), ds)
    from bench.models import BACKBONES

    for bb in space.values_of("backbone"):
        need(src, space.where("backbone"), bb, bb in BACKBONES, f"one of {', '.join(BACKBONES)}")
    for ds in space.per_dataset:
        if ds not in datasets:
            raise ConfigError(
                f"{src}: key 'per_dataset.{ds}' names a dataset that is not in the "
                f"sweep (datasets: {', '.join(datasets)})."
            )


def check_loss(src: str, where: str, loss: Any) -> None:
    from bench.losses import list_addons, list_losses, loss_info

    if not isinstance(loss, str):
        raise ConfigError(
            f"{src}: key {where!r} has value {show_value(loss)}; it must be a loss name."
        )
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
            hint = did_you_mean(loss, known, n=2, cutoff=0.5) or (
                f"the losses are {', '.join(bases)}, each also as "
                f"{' or '.join(repr(a + '+') for a in addons)}."
            )
    raise ConfigError(
        f"{src}: key {where!r} has value {loss!r}, which is not a known loss "
        f"(`bench losses` lists them); {hint}"
    )


def _check_loss_params(src: str, loss: str, params: Grid) -> None:
    known = loss_parameters(loss)
    for pname, _values in params:
        if pname not in known:
            raise ConfigError(
                f"{src}: key 'loss_params.{loss}.{pname}' is not a parameter of "
                f"loss {loss!r}; {suggest_param(pname, known)}"
            )
    # Build the loss once per value, so that a value the loss rejects (an unknown reduction, a
    # temperature <= 0) stops the sweep here, before Ray starts.
    for pname, values in params:
        for value in values:
            problem = loss_value_problem(loss, {pname: value})
            if problem is not None:
                raise ConfigError(
                    f"{src}: key 'loss_params.{loss}.{pname}' has value {show_value(value)}; "
                    f"{problem}"
                )


def check_dataset(src: str, where: str, ds: Any) -> None:
    from bench.data import list_datasets

    known = list_datasets()
    if ds not in known:
        hint = did_you_mean(ds, known) or f"known datasets: {', '.join(known)}."
        raise ConfigError(
            f"{src}: key {where!r} has value {show_value(ds)}, which is not a known dataset; {hint}"
        )


def check_points(space: Space, points: Sequence[TrialConfig]) -> None:
    """What only a whole config can show: dataset parameters the loader does not take, image
    augmentations on vector data, class-structured batches for a loss that uses no labels."""
    from bench.data import dataset_info

    src, seen = space.source, set()
    for cfg in points:
        key = (cfg.dataset, tuple(sorted(cfg.dataset_params)), cfg.augment)
        if key in seen:
            continue
        seen.add(key)
        info = dataset_info(cfg.dataset)
        if info.kind == "vector" and cfg.augment not in ("auto", "none"):
            raise ConfigError(
                f"{src}: key {space.where('augment', cfg.dataset)!r} has value {cfg.augment!r}, "
                f"an image augmentation, but dataset {cfg.dataset!r} holds vectors; use "
                "'auto' (sign flip + noise) or 'none'."
            )
        for pname in cfg.dataset_params:
            if pname not in info.params:
                raise ConfigError(
                    f"{src}: key '{space.where('dataset_params', cfg.dataset)}.{pname}' is not a "
                    f"parameter of dataset {cfg.dataset!r}; {suggest_param(pname, info.params)}"
                )
    for loss in dict.fromkeys(c.loss for c in points if c.batch_sampler == "class"):
        if not uses_labels(loss):
            raise ConfigError(
                f"{src}: key {space.where('batch_sampler')!r} has value 'class', but "
                f"loss {loss!r} uses no labels; class-structured batches need a loss that does "
                "(put such losses in a sweep of their own)."
            )
