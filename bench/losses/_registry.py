"""The loss registry: ``register_loss``, ``list_losses``, ``loss_info`` and ``build_loss``.

The two dicts below are the package's only global state. They are filled at import time by the
``@register_loss`` decorators of the built-in loss modules and later by plugins.
"""

from __future__ import annotations

import fnmatch
import inspect
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from torch import nn

from bench.config import did_you_mean

_C = TypeVar("_C", bound=type[nn.Module])

_LOSSES: dict[str, LossInfo] = {}
_ADDONS: dict[str, LossInfo] = {}
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
# Build-time context handed to constructors that accept it; never listed as a parameter.
CONTEXT = ("num_classes", "dim", "seed")
ADDON_WEIGHT = 1.0  # default weight of an add-on term in "ADDON+BASE"


class LossLookupError(KeyError):
    """Unknown loss or parameter name; ``str()`` is the plain sentence (no KeyError quotes)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class DuplicateLossError(ValueError):
    """A name is registered twice; ``name`` and ``existing`` (the earlier LossInfo) are kept."""

    def __init__(self, name: str, existing: LossInfo) -> None:
        where = "built-in" if existing.source == "built-in" else f"from {existing.source}"
        super().__init__(
            f"loss name '{name}' is already registered ({where} {existing.cls.__name__}); "
            "choose another name."
        )
        self.name, self.existing = name, existing


@dataclass(frozen=True)
class LossInfo:
    """Registry metadata of a loss, an add-on term or an ``ADDON+BASE`` composite.

    Attributes:
        name: registry key (``"infonce"``, ``"cloa+infonce"``).
        cls: the ``nn.Module`` class that ``build_loss`` instantiates.
        uses_labels: whether ``forward`` reads ``labels`` (``-1`` = unlabelled).
        paper: the paper citation.
        reference: the reference implementation the tests compare against.
        params: constructor parameters and their defaults (from the ``__init__`` signature).
        terms: names of the scalars that ``forward`` stores in ``module.last_terms``.
        kind: ``"loss"``, ``"addon"`` or ``"composite"``.
        source: ``"built-in"`` or the module/file of the plugin that registered it.
    """

    name: str
    cls: type[nn.Module]
    uses_labels: bool
    paper: str
    reference: str
    params: dict[str, Any] = field(default_factory=dict)
    terms: tuple[str, ...] = ()
    kind: str = "loss"
    source: str = "built-in"


def _source(cls: type) -> str:
    module = cls.__module__
    if module.startswith("bench.losses."):
        return "built-in"
    return str(getattr(sys.modules.get(module), "__file__", None) or module)


def _params(name: str, cls: type) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for p in inspect.signature(cls).parameters.values():  # the __init__ parameters but self
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) or p.name in CONTEXT:
            continue
        if p.default is p.empty:
            raise ValueError(
                f"loss '{name}': every __init__ parameter needs a default, '{p.name}' has none."
            )
        params[p.name] = p.default
    return params


def _register(table: dict[str, LossInfo], name: str, **meta: Any) -> Callable[[_C], _C]:
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(
            f"loss name must be lowercase letters, digits and '_' starting with a "
            f"letter (e.g. 'my_loss'), got {name!r}."
        )

    def decorator(cls: _C) -> _C:
        if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
            raise ValueError(
                f"@register_loss('{name}') must decorate an nn.Module subclass, got {cls!r}."
            )
        existing = _LOSSES.get(name) or _ADDONS.get(name)
        if existing is not None:
            raise DuplicateLossError(name, existing)
        table[name] = LossInfo(name, cls, params=_params(name, cls), source=_source(cls), **meta)
        return cls

    return decorator


def register_loss(
    name: str,
    *,
    uses_labels: bool = False,
    paper: str = "",
    reference: str = "",
    terms: tuple[str, ...] = (),
) -> Callable[[_C], _C]:
    """Class decorator registering a loss under ``name``.

    The class is an ``nn.Module`` whose ``forward(z1, z2, labels=None)`` returns a scalar and
    whose ``__init__`` parameters all have defaults (they become ``LossInfo.params``). A
    constructor that accepts ``num_classes``, ``dim`` or ``seed`` receives them from
    ``build_loss``.

    Raises:
        ValueError: bad name, not an ``nn.Module`` subclass, or the name is already taken.
    """
    meta = {"paper": paper, "reference": reference, "terms": tuple(terms)}
    return _register(_LOSSES, name, uses_labels=bool(uses_labels), kind="loss", **meta)


def register_addon(name: str, *, paper: str = "", reference: str = "") -> Callable[[_C], _C]:
    """Register an add-on term (composable as ``"<name>+<base>"``); it always uses labels."""
    return _register(
        _ADDONS, name, uses_labels=True, paper=paper, reference=reference, kind="addon"
    )


def unregister(name: str) -> None:
    """Remove ``name`` (used to roll back a plugin that failed half-way)."""
    _LOSSES.pop(name, None)
    _ADDONS.pop(name, None)


def registered_names() -> set[str]:
    return set(_LOSSES) | set(_ADDONS)


def list_losses(pattern: str | None = None) -> list[str]:
    """Sorted names of the registered base losses (no add-ons, no composites), fnmatch-filtered."""
    names = sorted(_LOSSES)
    return [n for n in names if fnmatch.fnmatchcase(n, pattern)] if pattern else names


def list_addons() -> list[str]:
    """Sorted names of the add-on terms, composable with any base loss as ``ADDON+BASE``."""
    return sorted(_ADDONS)


def _sentence(hint: str) -> str:
    """A suggestion as a sentence of its own: " Did you mean 'x'?" ("" for none)."""
    return f" {hint[:1].upper()}{hint[1:]}" if hint else ""


def _unknown(what: str, name: str, choices: list[str], known: str) -> LossLookupError:
    hint = _sentence(did_you_mean(name, choices, n=3, cutoff=0.5))
    return LossLookupError(f"Unknown {what} {name!r}.{hint} {known}")


def _lookup(name: str, composites: bool = True) -> LossInfo:
    if name in _LOSSES:
        return _LOSSES[name]
    if name in _ADDONS:
        raise LossLookupError(
            f"{name!r} is an add-on term, not a loss: compose it with a base "
            f"loss as '{name}+BASE', e.g. '{name}+infonce'."
        )
    choices = sorted(_LOSSES)
    if composites:
        choices += [f"{a}+{b}" for a in _ADDONS for b in _LOSSES]
    known = f"Known losses: {', '.join(sorted(_LOSSES))}"
    if _ADDONS:
        known += f"; add-on terms {', '.join(sorted(_ADDONS))} compose with them as ADDON+BASE"
    raise _unknown("loss", name, choices, known + ".")


def loss_info(name: str) -> LossInfo:
    """Metadata of a registered loss, add-on term, or composite ``"ADDON+BASE"``.

    Raises:
        KeyError: unknown name; the message lists close matches.
    """
    if not isinstance(name, str):
        raise LossLookupError(f"loss name must be a string, got {type(name).__name__}.")
    name = name.strip()
    if name in _ADDONS:
        return _ADDONS[name]
    if "+" not in name:
        return _lookup(name)
    addon, _, base = name.partition("+")
    if addon not in _ADDONS:
        if base in _ADDONS and addon in _LOSSES:
            raise LossLookupError(
                f"Composite losses are written ADDON+BASE: use '{base}+{addon}', not {name!r}."
            )
        known = f"Known add-on terms: {', '.join(list_addons())}."
        raise _unknown("add-on term", addon, list_addons(), known)
    base_info = _lookup(base, composites=False)
    from bench.losses.composite import CompositeLoss

    params = dict(base_info.params)
    extra = {"addon_weight": ADDON_WEIGHT, **_ADDONS[addon].params}
    clash = sorted(set(params) & set(extra))
    if clash:
        raise ValueError(
            f"loss {name!r}: parameter names {clash} exist in both {addon!r} and {base!r}."
        )
    params.update(extra)
    a = _ADDONS[addon]
    return LossInfo(
        f"{addon}+{base}",
        CompositeLoss,
        True,
        f"{base_info.paper}; {a.paper}",
        f"{base_info.reference}; {a.reference}",
        params,
        ("base", "addon", *base_info.terms),
        "composite",
        base_info.source,
    )


def _construct(info: LossInfo, params: dict[str, Any], context: dict[str, Any]) -> nn.Module:
    accepted = inspect.signature(info.cls.__init__).parameters
    kwargs = {k: v for k, v in context.items() if k in accepted}
    return info.cls(**kwargs, **params)


def build_loss(
    name: str,
    *,
    num_classes: int | None = None,
    dim: int | None = None,
    seed: int = 0,
    **params: Any,
) -> nn.Module:
    """Instantiate a loss by name, e.g. ``build_loss("infonce", temperature=0.2)``.

    Composites ``"ADDON+BASE"`` (``"cloa+infonce"``) need the dataset's ``num_classes`` and the
    embedding ``dim``; their add-on targets are drawn from ``seed``. Parameters given as ``None``
    are dropped so that the loss default applies.

    Raises:
        KeyError: unknown loss name (close matches listed) or unknown parameter name.
        ValueError: parameter out of range, or a composite without valid num_classes/dim.
    """
    info = loss_info(name)
    if info.kind == "addon":
        _lookup(info.name)  # raises the "compose it with a base loss" error
    params = {k: v for k, v in params.items() if v is not None}
    unknown = sorted(set(params) - set(info.params))
    if unknown:
        allowed = ", ".join(f"{k}={v!r}" for k, v in info.params.items()) or "none"
        hint = "".join(_sentence(did_you_mean(u, info.params)) for u in unknown)
        raise LossLookupError(
            f"Unknown parameter(s) {', '.join(unknown)} for loss {info.name!r}."
            f"{hint} Allowed parameters (defaults): {allowed}."
        )
    context = {"num_classes": num_classes, "dim": dim, "seed": seed}
    if info.kind != "composite":
        return _construct(info, params, {k: v for k, v in context.items() if v is not None})
    addon_name, _, base_name = info.name.partition("+")
    base_info, addon_info = _LOSSES[base_name], _ADDONS[addon_name]
    from bench.losses.composite import CompositeLoss, check_target_shape

    check_target_shape(info.name, num_classes, dim)
    weight = params.pop("addon_weight", ADDON_WEIGHT)
    base = _construct(
        base_info, {k: v for k, v in params.items() if k in base_info.params}, context
    )
    addon = _construct(
        addon_info, {k: v for k, v in params.items() if k in addon_info.params}, context
    )
    return CompositeLoss(base, addon, addon_weight=weight, name=info.name)
