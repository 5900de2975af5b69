"""`bench results RESULTS`: a per-loss summary of a results store (while a sweep runs, too)."""

from __future__ import annotations

import argparse
import sys
import warnings

from bench.commands import UsageError
from bench.commands.common import add_results_argument

HELP = "print a per-loss summary of a results store"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_results_argument(p)
    p.add_argument("--sweep-id", metavar="SWEEP_ID", help="only this sweep")


def run(args: argparse.Namespace) -> int:
    from bench.store import StoreError, StoreWarning, format_summary, read_results, summarize
    from bench.store.summary import COLUMNS

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", StoreWarning)
        try:
            df = read_results(args.results, args.sweep_id, columns=list(COLUMNS))
        except StoreError as exc:
            raise UsageError(str(exc)) from None
    for w in caught:
        # A truncated or unreadable fragment is skipped, never fatal: say which one.
        print(f"bench: warning: {w.message}", file=sys.stderr)
    print(format_summary(summarize(df)))
    return 0
