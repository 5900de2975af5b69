"""Loading user losses from a file (``--plugin FILE``) or the ``bench.losses`` entry points.

A plugin is one Python file that defines an ``nn.Module`` decorated with
``@bench.losses.register_loss("name", ...)``; importing it registers the loss. Loading is
idempotent per file (Ray workers and the CLI may both load the same file), and a plugin that
fails half-way leaves the registry as it was.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.losses import _registry

ENTRY_POINT_GROUP = "bench.losses"
_LOADED: dict[str, list[str]] = {}  # resolved file path or entry-point value -> names it added


class PluginError(ValueError):
    """A plugin file or entry point could not be loaded; the message says why and what to do."""


def _load(key: str, label: str, run: Callable[[], Any]) -> list[str]:
    """Run ``run()`` (an import); return the loss names it registered, rolling back on error."""
    if key in _LOADED:
        return list(_LOADED[key])
    before = _registry.registered_names()
    try:
        run()
    except _registry.DuplicateLossError as exc:
        _rollback(before)
        owner = (
            "the built-in loss"
            if exc.existing.source == "built-in"
            else f"the loss from {exc.existing.source}"
        )
        raise PluginError(
            f"{label} registers the loss name '{exc.name}', which clashes with "
            f"{owner} of that name; rename it in @register_loss(...)."
        ) from None
    except SyntaxError as exc:
        _rollback(before)
        raise PluginError(
            f"{label} has a syntax error in {exc.filename} at line {exc.lineno}: {exc.msg}."
        ) from None
    except Exception as exc:
        _rollback(before)
        raise PluginError(f"{label} failed to import: {type(exc).__name__}: {exc}") from exc
    added = sorted(_registry.registered_names() - before)
    _LOADED[key] = added
    return list(added)


def _rollback(before: set[str]) -> None:
    for name in _registry.registered_names() - before:
        _registry.unregister(name)


def load_plugin(path: str | Path) -> list[str]:
    """Import a user's ``.py`` file so that its ``@register_loss`` classes register.

    Returns:
        The names the file registered (the same list again if it was already loaded).

    Raises:
        PluginError (a ValueError): the file is missing or not ``.py``, has a syntax error (file
            and line named), fails to import, registers no loss, or registers a name that is
            already taken (e.g. a built-in loss).
    """
    file = Path(path).expanduser().resolve()
    if not file.is_file():
        raise PluginError(
            f"Plugin file {file} does not exist; pass the path of a .py file that "
            "defines a loss with @register_loss."
        )
    if file.suffix != ".py":
        raise PluginError(f"Plugin file {file} must be a Python file ending in .py.")
    digest = hashlib.sha1(str(file).encode()).hexdigest()[:10]
    module_name = f"bench_plugin_{re.sub(r'[^0-9a-zA-Z_]', '_', file.stem)}_{digest}"

    def run() -> None:
        spec = importlib.util.spec_from_file_location(module_name, file)
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot create an import spec for {file}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[module_name]
            raise

    names = _load(str(file), f"Plugin file {file}", run)
    if not names:
        _LOADED.pop(str(file), None)
        sys.modules.pop(module_name, None)
        raise PluginError(
            f"Plugin file {file} registers no loss; decorate an nn.Module class "
            "with @bench.losses.register_loss('my_loss', uses_labels=False)."
        )
    return names


def load_entry_point_plugins() -> list[str]:
    """Load every entry point of the ``bench.losses`` group; return the names they registered.

    An entry point names a module (``my_pkg.my_loss``) or an object in it
    (``my_pkg.my_loss:MyLoss``); importing it registers the loss.

    Raises:
        PluginError (a ValueError): an entry point fails to import or clashes with a taken name.
    """
    names: list[str] = []
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        label = f"Entry point '{ep.name} = {ep.value}' (group {ENTRY_POINT_GROUP})"
        names += _load(f"entry-point:{ep.value}", label, ep.load)
    return sorted(set(names))
