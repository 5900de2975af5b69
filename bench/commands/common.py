"""Options and checks shared by several subcommands, so that each means the same everywhere.

- `--plugin FILE` (losses, run, sweep, tune) and plugin loading;
- `--storage PATH|URI` (sweep, tune): the results root, a local path or a pyarrow filesystem URI;
- `RESULTS` (results, report): a results store to read, a root or one sweep folder;
- `--address`, `--num-cpus`, `--progress-every`, `--verbose` (sweep, tune): the Ray session.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path

from bench.commands import UsageError

DEFAULT_STORAGE = "results"


def add_plugin_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--plugin",
        action="append",
        default=[],
        metavar="FILE",
        type=Path,
        help="a Python file that registers a loss with @register_loss (repeatable)",
    )


def load_plugins(paths: Sequence[Path]) -> None:
    """Entry-point plugins (`bench.losses` group) first, then each --plugin file."""
    from bench.losses import load_entry_point_plugins, load_plugin

    try:
        load_entry_point_plugins()
        for path in paths:
            load_plugin(path.absolute())
    except (ValueError, KeyError, ImportError, SyntaxError, FileNotFoundError) as exc:
        raise UsageError(str(exc.args[0] if isinstance(exc, KeyError) else exc)) from None


def add_storage_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--storage",
        metavar="PATH|URI",
        help="results root: a local path or a pyarrow filesystem URI such as "
        "s3://bucket/prefix (default: the YAML's `storage`, else ./results)",
    )


def results_root(storage: str | None, space_storage: str | None, check: bool = True) -> str:
    """The results root to write to: a URI unchanged (with `check`, checked to be usable by
    pyarrow), a local path made absolute (trials chdir)."""
    from bench.store import StoreError, resolve_storage

    chosen = storage or space_storage or DEFAULT_STORAGE
    if "://" not in chosen:
        return os.path.abspath(os.path.expanduser(chosen))
    if not check:
        return chosen
    try:
        resolve_storage(chosen)
    except StoreError as exc:
        raise UsageError(str(exc)) from None
    return chosen


def add_results_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "results",
        metavar="RESULTS",
        help="a results store: a storage root holding sweep folders, or one sweep "
        "folder (local path or pyarrow filesystem URI such as s3://bucket/prefix)",
    )


def add_ray_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--address",
        metavar="ADDR",
        help="Ray cluster to join ('auto' inside `ray job submit`); default: start an "
        "embedded local Ray",
    )
    p.add_argument(
        "--num-cpus",
        type=int,
        metavar="N",
        help="CPUs of the embedded local Ray (default: all of this machine's)",
    )
    p.add_argument(
        "--progress-every",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="seconds between progress lines (0: none)",
    )
    p.add_argument(
        "--verbose", action="store_true", help="show Ray's (and Optuna's) and the trials' own logs"
    )


def check_ray_arguments(args: argparse.Namespace) -> None:
    if args.num_cpus is not None and (args.num_cpus < 1 or args.address):
        raise UsageError(
            f"--num-cpus {args.num_cpus} is invalid: give a positive count, and only "
            "for the embedded local Ray (not with --address)."
        )
    if args.progress_every < 0:
        raise UsageError(f"--progress-every {args.progress_every} must be >= 0 seconds.")
