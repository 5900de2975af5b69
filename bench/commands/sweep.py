"""`bench sweep SPACE`: run a search-space YAML as a Ray Tune sweep streamed to Parquet.

Everything is validated (the YAML, every trial config, the storage path) before Ray starts or
anything is written; `--dry-run` stops there and prints the grid and the trial count.
"""

from __future__ import annotations

import argparse
import os
import sys

from bench.commands.common import add_plugin_argument, load_plugins

HELP = "run a search-space YAML as a sweep on Ray Tune, streamed to Parquet"
DEFAULT_STORAGE = "results"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("space", metavar="SPACE", help="search-space YAML (see search_spaces/)")
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="print the grid, the number of trials and what grouping saved; run nothing",
    )
    p.add_argument(
        "--print-id",
        action="store_true",
        help="print only the sweep id (for scripts: bench report RESULTS --sweep-id ...)",
    )
    p.add_argument(
        "--storage",
        metavar="PATH|URI",
        help="results root: a local path or a pyarrow filesystem URI such as "
        "s3://bucket/prefix (default: the YAML's `storage`, else ./results)",
    )
    p.add_argument(
        "--address",
        metavar="ADDR",
        help="Ray cluster to join ('auto' inside `ray job submit`); default: start an "
        "embedded local Ray",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue this sweep (its driver died, or trials errored): finished "
        "trials are kept, unfinished and errored ones resume from their last "
        "finished epoch; a sweep that never ran starts",
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
    p.add_argument("--verbose", action="store_true", help="show Ray's and the trials' own logs")
    add_plugin_argument(p)


def resolve_storage_arg(storage: str | None, space_storage: str | None) -> str:
    """The results root: a URI unchanged, a local path made absolute (trials chdir)."""
    chosen = storage or space_storage or DEFAULT_STORAGE
    return chosen if "://" in chosen else os.path.abspath(os.path.expanduser(chosen))


def run(args: argparse.Namespace) -> int:
    from bench.commands import UsageError
    from bench.space import describe, expand, load_space

    load_plugins(args.plugin)
    space = load_space(args.space)
    for warning in space.warnings:
        print(f"bench: warning: {warning}", file=sys.stderr)
    trials = expand(space)
    if args.print_id:
        print(space.sweep_id)
        return 0
    if args.dry_run:
        print(describe(space, trials))
        return 0
    if args.num_cpus is not None and (args.num_cpus < 1 or args.address):
        raise UsageError(
            f"--num-cpus {args.num_cpus} is invalid: give a positive count, and only "
            "for the embedded local Ray (not with --address)."
        )
    if args.progress_every < 0:
        raise UsageError(f"--progress-every {args.progress_every} must be >= 0 seconds.")
    storage = resolve_storage_arg(args.storage, space.storage)
    from bench.store import StoreError, resolve_storage

    try:
        resolve_storage(storage)  # a bad URI fails here, before Ray starts
    except StoreError as exc:
        raise UsageError(str(exc)) from None

    from bench.sweep import run_sweep

    outcome = run_sweep(
        space, storage=storage, address=args.address, resume=args.resume,
        num_cpus=args.num_cpus, progress_every=args.progress_every, verbose=args.verbose,
        plugins=[str(p.absolute()) for p in args.plugin], trials=trials,
    )  # fmt: skip
    print(outcome.report())
    return outcome.exit_code
