"""`bench tune SPACE`: a persisted Optuna search (TPE or NSGA-II, with ASHA) run by Ray Tune.

The YAML (its `search` section, the objective's metric, every searched range) and the study
database URL are checked before the study is opened or created, so bad input exits 2 with the
study left as it was. `--dry-run` stops after the YAML check and prints the plan (no Ray, no
database). The search itself: `bench.sweep.search`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench.commands import UsageError, common

HELP = "hyperparameter search for a loss with Optuna on Ray Tune"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "space",
        metavar="SPACE",
        help="tune YAML: base settings plus a `search` section (see "
        "search_spaces/tune_example.yaml)",
    )
    common.add_storage_argument(p)
    p.add_argument(
        "--study-db",
        metavar="URL",
        help="Optuna RDB URL of the study database (default: "
        "sqlite:///<storage>/<name>.db, absolute)",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the study: run the trials still missing to reach num_samples "
        "(raise it with --num-samples)",
    )
    p.add_argument(
        "--num-samples",
        type=int,
        metavar="N",
        help="trials the study should have finished, overriding search.num_samples",
    )
    p.add_argument(
        "--out",
        type=Path,
        metavar="DIR",
        help="folder for the winner's sweep YAML <name>-best.yaml (and one per Pareto "
        "trial; default: the results root)",
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="check the YAML and print the search plan; open no database, run nothing",
    )
    common.add_ray_arguments(p)
    common.add_plugin_argument(p)


def run(args: argparse.Namespace) -> int:
    from bench.space.search import describe_plan, load_plan
    from bench.sweep.study import default_study_db, is_database_url, shown_url

    if args.storage and is_database_url(args.storage):
        raise UsageError(
            f"--storage {args.storage!r} is a database URL, but --storage is the "
            "results root (as in bench sweep); pass the study database as "
            "--study-db."
        )
    if args.out is not None and args.out.suffix in (".yaml", ".yml"):
        raise UsageError(
            f"--out {args.out} names a YAML file, but --out is a folder: the "
            "winner's YAML is written there as <name>-best.yaml."
        )
    common.load_plugins(args.plugin)
    plan = load_plan(args.space)
    for warning in plan.space.warnings:
        print(f"bench: warning: {warning}", file=sys.stderr)
    if args.num_samples is not None and args.num_samples < 1:
        raise UsageError(f"--num-samples {args.num_samples} must be at least 1.")
    common.check_ray_arguments(args)
    # A bad URI fails here (not for --dry-run, which touches no storage).
    storage = common.results_root(args.storage, plan.space.storage, check=not args.dry_run)
    study_db = args.study_db or default_study_db(storage, plan.name)
    from bench.preflight import affects_build, check_trials
    from bench.preflight import describe as describe_preflight
    from bench.space.params import corners

    # The search's corners (every combination of the ends of the ranges and of the choices that
    # change what a trial builds) are built here, before Ray starts.
    built = corners(plan.base, [p for p in plan.params if affects_build(p.name)])
    checked = check_trials(built, str(args.space), bool(args.dry_run or args.address))
    if args.dry_run:
        print(describe_plan(plan, storage, shown_url(study_db)))
        print(describe_preflight(checked, len(built), "search corners"))
        return 0
    if args.out is not None:
        try:  # found out now, not after the search
            args.out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UsageError(
                f"--out {args.out}: cannot create the folder ({exc.strerror})."
            ) from None

    from bench.sweep.search import run_tune

    outcome = run_tune(
        plan, storage=storage, study_db=study_db, resume=args.resume, address=args.address,
        num_cpus=args.num_cpus, num_samples=args.num_samples, out=args.out,
        progress_every=args.progress_every, verbose=args.verbose,
        plugins=[str(p.absolute()) for p in args.plugin],
    )  # fmt: skip
    print(outcome.report())
    return outcome.exit_code
