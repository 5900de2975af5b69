"""`bench` command line: each subcommand lives in `bench/commands/<name>.py` and is imported only
when chosen, so `bench report` never pays for importing torch or Ray.

A command module exposes `HELP` (one line), `add_arguments(parser)` and `run(args) -> int`.
Bad input raises `bench.commands.UsageError` (or a `ValueError`/`KeyError` subclass from the
library); it is printed as one sentence and the exit status is 2. `python -m bench` runs `main`.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from bench.commands import UsageError

COMMANDS = ("losses", "run", "sweep", "results", "report", "tune")
_HELP = {
    "losses": "list every loss (plugins included) with its parameters, defaults and paper",
    "run": "run one trial without Ray, from flags or a YAML plus key=value overrides",
    "sweep": "run a search-space YAML as a sweep on Ray Tune, streamed to Parquet",
    "results": "print a per-loss summary of a results store",
    "report": "write tables, stability curves and the leaderboard from a results store",
    "tune": "hyperparameter search for a loss with Optuna on Ray Tune",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bench",
        description="contrastive-bench: which contrastive loss stays stable, and how well does it "
        "learn, across learning rate x batch size x label fraction?",
    )
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        p = sub.add_parser(name, help=_HELP[name], description=_HELP[name])
        p.set_defaults(_module=f"bench.commands.{name}")
    return parser


def _version() -> str:
    from bench import __version__

    return f"bench {__version__}"


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    # Parse the command name first, then let the chosen module add its own arguments, so only
    # that module is imported.
    name = next((a for a in argv if not a.startswith("-")), None)
    if name in COMMANDS:
        module = importlib.import_module(f"bench.commands.{name}")
        sub_action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        module.add_arguments(sub_action.choices[name])
    args = parser.parse_args(argv)
    module = importlib.import_module(args._module)
    try:
        return int(module.run(args) or 0)
    except UsageError as exc:
        return _fail(str(exc))
    except (ValueError, KeyError, FileNotFoundError) as exc:
        if not _is_user_error(exc):
            raise
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
        return _fail(str(msg))


def _is_user_error(exc: BaseException) -> bool:
    """Library errors that describe bad input carry a `user_error` marker or are one of ours."""
    from bench.config import ConfigError

    if isinstance(exc, (ConfigError, FileNotFoundError)) or getattr(exc, "user_error", False):
        return True
    return type(exc).__module__.startswith("bench.")


def _fail(message: str) -> int:
    print(f"bench: error: {message}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
