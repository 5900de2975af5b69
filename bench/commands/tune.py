"""`bench tune SPACE`: a persisted Optuna search (TPE or NSGA-II, with ASHA) run by Ray Tune.

The YAML (its `search` section, the objective's metric, every searched range) and the storage URL
are checked before the study is opened or created, so bad input exits 2 with the study left as
it was. `--dry-run` stops after the YAML check and prints the plan. See `bench.tune`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench.commands.common import add_plugin_argument, load_plugins

HELP = "hyperparameter search for a loss with Optuna on Ray Tune"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("space", metavar="SPACE",
                   help="tune YAML: base settings plus a `search` section (see "
                   "search_spaces/tune_example.yaml)")
    p.add_argument("--storage", metavar="URL",
                   help="Optuna RDB URL of the study database (default: "
                   "sqlite:///<results>/<name>.db, absolute)")
    p.add_argument("--results", metavar="PATH|URI",
                   help="results root of the Parquet store (default: the YAML's `storage`, else "
                   "./results); trials land in <results>/<name>/")
    p.add_argument("--resume", action="store_true",
                   help="continue the study: run the trials still missing to reach num_samples "
                   "(raise it with --num-samples)")
    p.add_argument("--num-samples", type=int, metavar="N",
                   help="trials the study should have finished, overriding search.num_samples")
    p.add_argument("--out", type=Path, metavar="FILE",
                   help="where to write the winner's sweep YAML (default: "
                   "<results>/<name>-best.yaml)")
    p.add_argument("--address", metavar="ADDR",
                   help="Ray cluster to join ('auto' inside `ray job submit`); default: start an "
                   "embedded local Ray")
    p.add_argument("--num-cpus", type=int, metavar="N",
                   help="CPUs of the embedded local Ray (default: all of this machine's)")
    p.add_argument("--dry-run", action="store_true",
                   help="check the YAML and print the search plan; open no database, run nothing")
    p.add_argument("--progress-every", type=float, default=5.0, metavar="SECONDS",
                   help="seconds between progress lines (0: none)")
    p.add_argument("--verbose", action="store_true",
                   help="show Ray's, Optuna's and the trials' own logs")
    add_plugin_argument(p)


def run(args: argparse.Namespace) -> int:
    from bench.commands import UsageError
    from bench.commands.sweep import resolve_storage_arg
    from bench.tune import default_storage_url, describe_plan, load_plan

    load_plugins(args.plugin)
    plan = load_plan(args.space)
    for warning in plan.space.warnings:
        print(f"bench: warning: {warning}", file=sys.stderr)
    if args.num_samples is not None and args.num_samples < 1:
        raise UsageError(f"--num-samples {args.num_samples} must be at least 1.")
    if args.num_cpus is not None and (args.num_cpus < 1 or args.address):
        raise UsageError(f"--num-cpus {args.num_cpus} is invalid: give a positive count, and only "
                         "for the embedded local Ray (not with --address).")
    if args.progress_every < 0:
        raise UsageError(f"--progress-every {args.progress_every} must be >= 0 seconds.")
    results = resolve_storage_arg(args.results, plan.space.storage)
    storage_url = args.storage or default_storage_url(results, plan.name)
    if args.dry_run:
        print(describe_plan(plan, results, storage_url))
        return 0
    if args.out is not None:
        try:  # found out now, not after the search
            args.out.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UsageError(f"--out {args.out}: cannot create its folder ({exc.strerror}).") from None
    from bench.store import StoreError, resolve_storage

    try:
        resolve_storage(results)  # a bad URI fails here, before the study is touched
    except StoreError as exc:
        raise UsageError(str(exc)) from None

    from bench.tune import run_tune

    outcome = run_tune(
        plan, results=results, storage_url=storage_url, resume=args.resume,
        address=args.address, num_cpus=args.num_cpus, num_samples=args.num_samples,
        out=args.out, progress_every=args.progress_every, verbose=args.verbose,
        plugins=[str(p.absolute()) for p in args.plugin],
    )  # fmt: skip
    print(outcome.report())
    return outcome.exit_code
