"""`bench results PATH`: a per-loss summary of a results store (while a sweep runs, too)."""

from __future__ import annotations

import argparse
import sys
import warnings

HELP = "print a per-loss summary of a results store"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "path",
        metavar="PATH",
        help="a results root (holding sweep directories), one sweep directory, or a "
        "pyarrow filesystem URI such as s3://bucket/prefix",
    )
    p.add_argument("--sweep-id", metavar="SWEEP_ID", help="only this sweep")


def run(args: argparse.Namespace) -> int:
    from bench.commands import UsageError
    from bench.store import StoreError, StoreWarning, format_summary, read_results, summarize

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", StoreWarning)
        try:
            df = read_results(
                args.path, args.sweep_id, columns=["status", "final", "m_knn_top1", "m_linear_top1"]
            )
        except StoreError as exc:
            raise UsageError(str(exc)) from None
    for w in caught:
        # A truncated or unreadable fragment is skipped, never fatal: say which one.
        print(f"bench: warning: {w.message}", file=sys.stderr)
    print(format_summary(summarize(df)))
    return 0
