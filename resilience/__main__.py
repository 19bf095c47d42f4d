"""``burstbench resilience``: disrupt the service on a plan while arrival-paced load runs, and report.

    burstbench resilience plans                                   # the shipped plans
    burstbench resilience plan k3s-paper                          # what a plan would do; runs nothing
    burstbench resilience run --plan local-default                # serve locally, load, disrupt, report
    burstbench resilience run --plan k3s-paper --target k8s [--host URL] [--dry-run]
    burstbench resilience report results/<run>                    # the table and figure again
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path



def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="burstbench resilience", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("plans", help="list the shipped plans")
    p = sub.add_parser("plan", help="print what a plan would do, commands included; runs nothing")
    p.add_argument("plan", help="a shipped plan's name or a .toml file")
    r = sub.add_parser("run", help="serve (local) or reach (k8s) the service, load it, disrupt it, report")
    r.add_argument("--plan", default="local-default", help="a shipped plan's name or a .toml file")
    r.add_argument("--target", default=None, help="local or k8s; must match the plan's (default: the plan's)")
    r.add_argument("--model", type=Path, default=None, help="model folder (local; default: build the untrained default)")
    r.add_argument("--port", default=None, help="local port (default: a free one)")
    r.add_argument("--host", default=None, help="k8s: the service's URL (default: the plan's kubernetes.url)")
    r.add_argument("--results-dir", type=Path, default=Path("results"))
    r.add_argument("--ready-timeout", type=float, default=300.0, help="seconds to wait for the local /readyz")
    r.add_argument("--dry-run", action="store_true", help="validate and print the plan and its commands; run nothing")
    rep = sub.add_parser("report", help="write the resilience table and timeline of a run again")
    rep.add_argument("run", type=Path)
    args = parser.parse_args(argv)

    from .plan import load_plan, shipped_plans

    try:
        if args.command == "plans":
            for name in shipped_plans():
                plan = load_plan(name)
                print(f"{name:22} {plan.target:6} {plan.description}")
            return 0
        if args.command == "plan":
            print(load_plan(args.plan).render())
            return 0
        if args.command == "report":
            return _report(args.run)
        plan = load_plan(args.plan)
        _check_run_args(args, plan)
        if args.dry_run:
            return _dry_run(plan, args)
        from .harness import Harness

        run_dir = Harness(plan, results_dir=args.results_dir, model=args.model,
                          port=None if args.port is None else int(args.port), host=args.host,
                          ready_timeout_s=args.ready_timeout).run()
        return _report(run_dir)
    except ValueError as err:  # PlanError and analysis' RunError: one line naming the file and field
        print(f"burstbench resilience: {err}", file=sys.stderr)
        return 2
    except RuntimeError as err:
        print(f"burstbench resilience: {err}", file=sys.stderr)
        return 3


def _check_run_args(args, plan) -> None:
    if args.target not in (None, "local", "k8s"):
        raise ValueError(f"--target must be one of local, k8s (got {args.target!r})")
    if args.target is not None and args.target != plan.target:
        raise ValueError(f"--target {args.target}: plan {plan.name} is for target {plan.target} "
                         f"(local plans: {', '.join(n for n in _names('local'))}; k8s plans: {', '.join(_names('k8s'))})")
    if args.port is not None:
        try:
            port = int(args.port)
        except ValueError:
            port = 0
        if not 1 <= port <= 65535:
            raise ValueError(f"--port must be an integer in [1, 65535] (got {args.port!r})")
    if plan.target == "k8s" and (args.model is not None or args.port is not None):
        raise ValueError("--model and --port apply to local plans; the cluster serves the model (give --host)")
    if plan.target == "local" and args.host is not None:
        raise ValueError("--host applies to k8s plans; a local plan starts its own server on loopback")
    if args.model is not None and not (args.model / "config.json").is_file():
        raise ValueError(f"--model {args.model}: no model there (no config.json); build one with "
                         "burstbench build-model --out DIR")
    if not args.ready_timeout > 0:
        raise ValueError(f"--ready-timeout must be a number of seconds > 0 (got {args.ready_timeout!r})")


def _names(target: str) -> list[str]:
    from .plan import load_plan, shipped_plans

    return [n for n in shipped_plans() if load_plan(n).target == target]


def _dry_run(plan, args) -> int:
    from .harness import check_programs, requests_for

    print(plan.render())
    print(f"requests: {requests_for(plan)} scheduled within {plan.load.duration_s:g} s")
    if plan.target == "k8s":
        print(f"load to: {args.host or plan.kubernetes.url or '(none: give --host)'}")
        for line in check_programs(plan):
            print(f"program {line}")
    print("dry run: nothing was started, sent or run")
    return 0


def _report(run_dir) -> int:
    from burstbench.analysis.resilience import write_report

    files = write_report(run_dir)
    print(files["text"])
    print(f"written: {files['markdown']}, {files['csv']}, {files['figure']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
