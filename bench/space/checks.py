"""The two sentences every YAML error of the space layer is made of: an unknown key (with where
it belongs, or the close matches, or the known keys) and a key whose value is not allowed."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from bench.config import ConfigError, did_you_mean, show_value


def reject_unknown(
    source: str,
    where: str,
    raw: Mapping[Any, Any],
    known: Iterable[str],
    hint: Callable[[str], str] | None = None,
) -> None:
    """A ConfigError for the first key of `raw` not in `known`: `hint(key)` says where a key
    that is valid elsewhere belongs, else the close matches, else the known keys."""
    known = tuple(known)
    for key in raw:
        if key in known:
            continue
        extra = hint(str(key)) if hint is not None else ""
        if not extra:
            close = did_you_mean(key, known, n=3)
            extra = f"; {close}" if close else f"; known keys are {', '.join(known)}"
        label = (
            f"top-level key {key!r}" if where == "top-level" else f"key {where + '.' + str(key)!r}"
        )
        msg = f"{source}: unknown {label}{extra}"
        raise ConfigError(msg if msg.endswith(("?", ".")) else msg + ".")


def need(source: str, key: str, value: Any, ok: bool, allowed: str) -> None:
    """A ConfigError naming `key` and `value` unless `ok`."""
    if not ok:
        raise ConfigError(
            f"{source}: key {key!r} has value {show_value(value)}; it must be {allowed}."
        )
