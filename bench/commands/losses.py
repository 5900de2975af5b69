"""`bench losses`: every registered loss (plugins included), its parameters, labels use and paper."""

from __future__ import annotations

import argparse

from bench.commands import UsageError
from bench.commands.common import add_plugin_argument, load_plugins

HELP = "list every loss (plugins included) with its parameters, defaults and paper"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_plugin_argument(p)
    p.add_argument("names", nargs="*", help="only these losses (composites like cloa+infonce too)")


def run(args: argparse.Namespace) -> int:
    load_plugins(args.plugin)
    from bench.losses import format_loss_table

    try:
        print(format_loss_table(args.names or None))
    except KeyError as exc:
        raise UsageError(str(exc.args[0])) from None
    return 0
