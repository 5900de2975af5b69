"""The subcommands of `bench`, one module each (`bench/commands/<name>.py`).

A command module exposes `HELP` (one line), `add_arguments(parser)` and `run(args) -> int`.
Bad input raises `UsageError` (or a library error marked as the user's, see `bench.cli`); the CLI
prints it as one sentence and exits 2.
"""

from __future__ import annotations


class UsageError(Exception):
    """Bad input from the command line; the message is one sentence naming what to fix."""
