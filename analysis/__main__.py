"""``python -m analysis``: turn results folders into tables and figures.

    python -m analysis summary results/<run>     # p50/p95/p99 table, summary.csv, latency.png
    python -m analysis summary --latest           # the newest folder under results/
"""
from __future__ import annotations

import argparse
import sys

from .runs import RunError
from .summary import latest_run, summary


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m analysis", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("summary", help="exact latency table of one run")
    s.add_argument("run", nargs="?", help="results folder")
    s.add_argument("--latest", action="store_true", help="use the newest folder under --results-dir")
    s.add_argument("--results-dir", default="results")
    args = parser.parse_args(argv)
    try:
        if args.run is None and not args.latest:
            parser.error("give a results folder or --latest")
        print(summary(latest_run(args.results_dir) if args.latest else args.run))
    except (RunError, ValueError) as err:
        print(f"python -m analysis: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
