"""Pieces shared by several subcommands: the --plugin option and plugin loading."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from bench.commands import UsageError


def add_plugin_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--plugin", action="append", default=[], metavar="FILE", type=Path,
                   help="a Python file that registers a loss with @register_loss (repeatable)")


def load_plugins(paths: Sequence[Path]) -> None:
    """Entry-point plugins (`bench.losses` group) first, then each --plugin file."""
    from bench.losses import load_entry_point_plugins, load_plugin

    try:
        load_entry_point_plugins()
        for path in paths:
            load_plugin(path.absolute())
    except (ValueError, KeyError, ImportError, SyntaxError, FileNotFoundError) as exc:
        raise UsageError(str(exc.args[0] if isinstance(exc, KeyError) else exc)) from None
