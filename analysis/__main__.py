"""``burstbench``: turn results folders into tables, figures and reports.

    burstbench report results/<run>                 # report/ in the run folder: md, html, csv, png
    burstbench report results/<run> --slo ttft_ms=500 --slo tpot_ms=50   # goodput under these SLOs
    burstbench report --latest
    burstbench compare results/<a> results/<b> ... [--baseline results/<a>] [--out DIR]
    burstbench summary results/<run>                # the short p50/p95/p99 table
    burstbench paper-gaps [--seed 0] [--n 1000]     # the three scenarios' drawn gaps vs the paper
    burstbench superposition [--shape 0.8] [--workers 1,2,4,8,16]  # why distributed runs partition
    burstbench trace-fit FILE [--column timestamp]  # arrival processes fitted to a trace, ranked by AIC
"""
from __future__ import annotations

import argparse
import sys
from datetime import datetime, timezone
from pathlib import Path

from .runs import RunError


SLO_HELP = ("an SLO to judge goodput by, repeatable: ttft_ms, tpot_ms, latency_ms, itl_p<NN>_ms or itl_max_ms "
            "= a bound in ms, e.g. --slo ttft_ms=500 --slo tpot_ms=50 (default: the SLOs in run.json; any --slo "
            "replaces them all)")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="burstbench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, help_text in (("summary", "exact latency table of one run"), ("report", "full report of one run")):
        s = sub.add_parser(name, help=help_text)
        s.add_argument("run", nargs="?", help="results folder")
        s.add_argument("--latest", action="store_true", help="use the newest folder under --results-dir")
        s.add_argument("--results-dir", default="results")
        if name == "report":
            s.add_argument("--slo", action="append", default=None, metavar="METRIC=MS", help=SLO_HELP)
    c = sub.add_parser("compare", help="compare runs (scenarios, variants, pacings) side by side")
    c.add_argument("runs", nargs="+", help="results folders")
    c.add_argument("--baseline", default=None, help="the run the others are compared with (default: the first)")
    c.add_argument("--out", type=Path, default=None, help="output folder (default results/compare-<UTC time>)")
    c.add_argument("--slo", action="append", default=None, metavar="METRIC=MS", help=SLO_HELP)
    g = sub.add_parser("paper-gaps", help="drawn gaps of the three scenarios beside the paper's and the theory")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--n", type=int, default=1000)
    g.add_argument("--out", type=Path, default=None, help="also write one KDE-vs-PDF figure per scenario here")
    s = sub.add_parser("superposition", help="independent per-worker schedules vs one partitioned schedule")
    s.add_argument("--shape", type=float, default=0.8)
    s.add_argument("--mean", type=float, default=2.0)
    s.add_argument("--workers", default="1,2,4,8,16", help="comma-separated worker counts")
    s.add_argument("--n", type=int, default=20_000, help="requests in the whole schedule")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--out", type=Path, default=Path("results") / "superposition")
    t = sub.add_parser("trace-fit", help="gamma, lognormal, Weibull, exponential and MMPP2 fitted to a trace's "
                       "gaps, ranked by AIC, with the command that generates traffic like it")
    t.add_argument("trace", help="CSV, JSONL or Parquet file with a timestamp column")
    t.add_argument("--column", default="timestamp")
    t.add_argument("--mean", type=float, default=None, help="rescale to this mean gap (seconds) first")
    t.add_argument("--out", type=Path, default=None, help="output folder (default results/trace-fit-<name>)")
    args = parser.parse_args(argv)
    try:
        return _run(parser, args)
    except (RunError, ValueError) as err:
        print(f"burstbench: {err}", file=sys.stderr)
        return 2


def _run(parser, args) -> int:
    if args.command in ("summary", "report"):
        from .summary import latest_run, summary

        if args.run is None and not args.latest:
            parser.error("give a results folder or --latest")
        run_dir = latest_run(args.results_dir) if args.latest else args.run
        if args.command == "summary":
            print(summary(run_dir))
            return 0
        from .report import report
        from .slo import parse_slos

        slos = parse_slos(args.slo)  # checked before anything is written
        print(summary(run_dir))
        files = report(run_dir, slos)
        print(f"\n{files['verdict']}\nreport: {files['markdown']}\n        {files['html']}\n"
              f"tables and figures: {files['folder']}/")
        return 0
    if args.command == "compare":
        from .compare_report import write_comparison
        from .slo import parse_slos

        slos = parse_slos(args.slo)
        out = args.out or Path("results") / f"compare-{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}"
        text, files = write_comparison(args.runs, out, baseline=args.baseline, slos=slos)
        print(text)
        print(f"written: {', '.join(str(f) for f in files)}")
        return 0
    if args.command == "superposition":
        from .superposition import main as superposition

        try:
            workers = [int(w) for w in args.workers.split(",")]
        except ValueError:
            raise ValueError(f"--workers must be comma-separated integers >= 1 (got {args.workers!r})") from None
        if not workers or min(workers) < 1 or args.n < 10 * max(workers):
            raise ValueError(f"--workers must be integers >= 1 and --n at least 10 per worker (got {args.workers!r}, "
                             f"--n {args.n})")
        table = superposition(args.shape, args.mean, workers, args.n, args.seed, args.out)
        print(table.to_markdown(index=False, floatfmt=".3g"))
        print(f"written: {args.out}/superposition.md, .csv, .png")
        return 0
    if args.command == "trace-fit":
        from .trace_fit import write_trace_fit

        _, text, out = write_trace_fit(args.trace, args.column, args.mean, args.out)
        print(f"{text}\nwritten: {out}/trace-fit.md, .csv, .png")
        return 0
    from .paper import paper_gaps_table

    text = paper_gaps_table(seed=args.seed, n=args.n, figures_dir=args.out)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
