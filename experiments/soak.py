"""``burstbench soak``: a long bursty run against the bundled service, judged for drift and leaks.

    burstbench soak                                  # 60 min of gamma(0.8) ("extreme") at 5 req/s
    burstbench soak --minutes 30 --rate 5 --scenario extreme --port 3000
    burstbench soak --report-only results/<run> --window-s 120     # judge a run folder again

The bundled service is started as ``burstbench run`` starts it (the default model unless ``--model``), loaded
open-loop with the scenario's arrival process at ``--rate`` for ``--minutes`` (requests = minutes x 60 x rate,
so the drawn schedule lasts about that long), the telemetry sidecar sampling the service's process tree and the
load process every ``--metrics-every`` seconds (5 by default). The run's own progress lines (requests done,
ETA) come every ``--progress-every`` seconds. Then soak.md, soak.csv and soak.png are written into the run
folder (``burstbench.analysis.soak``): throughput, p50/p99 and failures per window, RSS over time, a leak
verdict per process and a latency drift verdict.
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from burstbench import harness
from burstbench.analysis import soak as soak_analysis
from burstbench.spec import SCENARIO_NAMES

DEFAULTS = {"minutes": 60.0, "rate": 5.0, "scenario": "extreme", "metrics_every": 5.0, "users": 16,
            "progress_every": 30.0}
MAX_MINUTES = 7 * 24 * 60


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="burstbench soak", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=DEFAULTS["minutes"], help="how long the load lasts (default 60)")
    p.add_argument("--rate", type=float, default=DEFAULTS["rate"], help="offered requests/s (default 5)")
    p.add_argument("--scenario", default=DEFAULTS["scenario"], choices=SCENARIO_NAMES,
                   help="arrival process: steady, moderate or extreme (gamma 0.8, the default)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--users", type=int, default=DEFAULTS["users"],
                   help="Locust users: the most requests in flight at once (default 16)")
    p.add_argument("--metrics-every", type=float, default=DEFAULTS["metrics_every"],
                   help="seconds between telemetry samples (default 5)")
    p.add_argument("--progress-every", type=float, default=DEFAULTS["progress_every"],
                   help="seconds between progress lines (default 30)")
    p.add_argument("--port", default="3000", help="loopback port to serve on (default 3000)")
    p.add_argument("--model", default=None, help="model folder (default: build the untrained default)")
    p.add_argument("--variant", default=None, help="served model variant (default the service's, onnx-fp32)")
    p.add_argument("--batching", default=None, help="BentoML adaptive batching: on or off")
    p.add_argument("--results-dir", default="results", help="where the run folder is created (default ./results)")
    judge = p.add_argument_group("the verdicts (burstbench.analysis.soak)")
    judge.add_argument("--window-s", type=float, default=None,
                       help="window length in s (default 300; runs under 30 min: a sixth of the run, >= 10 s)")
    judge.add_argument("--warmup-windows", type=int, default=soak_analysis.WARMUP_WINDOWS,
                       help="windows left out of both verdicts at the start (default 1)")
    judge.add_argument("--leak-threshold-mb-per-h", type=float, default=soak_analysis.LEAK_THRESHOLD_MB_PER_H,
                       help="RSS growth below this is no leak even when significant (default 10 MB/h)")
    judge.add_argument("--drift-threshold", type=float, default=soak_analysis.DRIFT_THRESHOLD_SHARE,
                       help="p99 change within this share of the baseline is no drift (default 0.2)")
    judge.add_argument("--report-only", type=Path, default=None, metavar="RUN_DIR",
                       help="run nothing: write the soak report of this run folder")
    return p


def run_arguments(a: argparse.Namespace) -> list[str]:
    """The soak as ``burstbench run`` arguments: its parser validates them and names the flag when one is bad."""
    if not (math.isfinite(a.minutes) and 0 < a.minutes <= MAX_MINUTES):
        raise ValueError(f"--minutes must be in (0, {MAX_MINUTES}] (got {a.minutes!r})")
    if not (math.isfinite(a.rate) and a.rate > 0):
        raise ValueError(f"--rate must be a number of requests/s > 0 (got {a.rate!r})")
    requests = max(1, round(a.minutes * 60 * a.rate))
    argv = [a.scenario, "--rate", str(a.rate), "--requests", str(requests), "--seed", str(a.seed),
            "--users", str(a.users), "--pacing", "arrival", "--telemetry", "on",
            "--metrics-every", str(a.metrics_every), "--progress-every", str(a.progress_every),
            "--results-dir", a.results_dir, "--run-name", f"soak-{a.minutes:g}min-{a.rate:g}rps-{a.scenario}",
            "--port", str(a.port)]
    for flag, value in (("--model", a.model), ("--variant", a.variant), ("--batching", a.batching)):
        if value is not None:
            argv += [flag, str(value)]
    return argv


def judge_options(a: argparse.Namespace) -> dict:
    return {"window_s": a.window_s, "warmup_windows": a.warmup_windows,
            "leak_threshold_mb_per_h": a.leak_threshold_mb_per_h, "drift_threshold_share": a.drift_threshold,
            "seed": a.seed}


def soak(a: argparse.Namespace) -> int:
    from burstbench.experiments import execute, run

    options = judge_options(a)
    soak_analysis.check_options(**{k: v for k, v in options.items() if k != "seed"})  # not after an hour of load
    spec, service, locust_args = run.parse(run_arguments(a))
    run_dir = harness.new_run_dir(Path(spec.results_dir), spec.run_label())
    execute.say(f"soak: {spec.requests} requests, about {a.minutes:g} min of {spec.process()} at {a.rate:g} req/s; "
                f"run folder {run_dir}")
    with harness.forward_interrupts() as interrupts:
        rc = execute._serve_and_load(spec, service, run_dir, locust_args, interrupts)  # noqa: SLF001 (run's own)
    if rc is None:
        return 3
    if not (run_dir / "requests.csv").is_file():
        execute.say(f"Locust wrote no requests.csv in {run_dir} (exit code {rc})")
        return rc or 4
    if interrupts.interrupted:
        execute.say("interrupted: judging what was measured")
    if options["window_s"] is None and not interrupts.interrupted:  # the length asked for, not the drawn one's
        options["window_s"] = soak_analysis.default_window_s(a.minutes * 60)
    report(run_dir, options)
    return rc


def report(run_dir: Path, options: dict) -> None:
    from burstbench.analysis.summary import summary

    result, paths = soak_analysis.write_soak_report(run_dir, **options)  # first: a bad option writes nothing
    print(summary(run_dir))
    print("\n".join(soak_analysis.verdict_lines(result)))
    print(f"soak report: {', '.join(str(p) for p in paths)}")


def main(argv=None) -> int:
    a = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    try:
        if a.report_only is not None:
            report(a.report_only, judge_options(a))
            return 0
        return soak(a)
    except ValueError as err:  # bad flags, and RunError (a folder that cannot be judged)
        print(f"burstbench soak: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
