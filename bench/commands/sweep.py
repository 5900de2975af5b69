"""`bench sweep SPACE`: run a search-space YAML as a Ray Tune sweep streamed to Parquet.

Everything is validated (the YAML, every trial config, the storage path) before Ray starts or
anything is written; `--dry-run` stops there and prints the grid and the trial count.
"""

from __future__ import annotations

import argparse
import sys

from bench.commands import common

HELP = "run a search-space YAML as a sweep on Ray Tune, streamed to Parquet"


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
    common.add_storage_argument(p)
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue this sweep (its driver died, or trials errored): finished "
        "trials are kept, unfinished and errored ones resume from their last "
        "finished epoch; a sweep that never ran starts",
    )
    common.add_ray_arguments(p)
    common.add_plugin_argument(p)


def run(args: argparse.Namespace) -> int:
    from bench.space import describe, expand, load_space

    common.load_plugins(args.plugin)
    space = load_space(args.space)
    for warning in space.warnings:
        print(f"bench: warning: {warning}", file=sys.stderr)
    trials = expand(space)
    if args.print_id:
        print(space.sweep_id)
        return 0
    storage = ""
    if not args.dry_run:  # the cheap checks first: a bad --num-cpus or URI loads no data
        common.check_ray_arguments(args)
        storage = common.results_root(args.storage, space.storage)
    from bench.preflight import check_trials
    from bench.preflight import describe as describe_preflight

    # Every trial that cannot be built fails here, before Ray starts (exit 2, nothing written).
    # Data that only the cluster's workers hold cannot be checked on this machine.
    checked = check_trials(
        trials, str(args.space), skip_missing_data=bool(args.dry_run or args.address)
    )
    if args.dry_run:
        print(describe(space, trials))
        print(describe_preflight(checked, len(trials)))
        return 0

    from bench.sweep.grid import run_sweep

    outcome = run_sweep(
        space, storage=storage, address=args.address, resume=args.resume,
        num_cpus=args.num_cpus, progress_every=args.progress_every, verbose=args.verbose,
        plugins=[str(p.absolute()) for p in args.plugin], trials=trials,
    )  # fmt: skip
    print(outcome.report())
    return outcome.exit_code
