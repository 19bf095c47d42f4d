"""``burstbench bench-generator``: how precisely does each tool send an arrival process, seen from the wire?

Against nginx answering a fixed body on loopback (never the bottleneck), each *case* (an arrival
process at a rate, in one or more load processes) is sent by every tool in turn, one real run per
step: burstbench with each dispatcher (``locustfiles/fixed_body.py``, ``--dispatcher``), Locust's
own ``constant_throughput`` at the same users, and the open-loop peers of ``locustfiles.peers``
(AIPerf, in its own venv under build/). A packet capture of each step (``locustfiles.wire_capture``,
read by ``analysis.wire``) is the judge: the rate that reached the wire, the KS distance and W1 of
the wire gaps against the declared process, and for burstbench, whose requests carry their index,
wire minus scheduled send and the client's own overhead in the rows' latency.

    burstbench bench-generator                      # the precise-pacing targets
    burstbench bench-generator --cases gamma:0.5@20x1200,exponential@1000x5000/2
    burstbench bench-generator --rates 500,1000 --arrivals exponential --processes 1,2

Writes ``results/<UTC>-bench-generator/``: steps.csv and steps.md (the table and the targets), PNG
figures, bench.json (parameters, machine, nginx), every step's own run folder under runs/, and
its capture under wire/ with ``--keep-pcap``.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from burstbench import harness
from burstbench.analysis import generator, wire
from burstbench.analysis.runs import RunError, load_run
from burstbench.arrivals import make_distribution
from burstbench.experiments import peers
from burstbench.experiments.bench_plan import DISPATCHERS, TARGET_CASES, Case, Plan
from burstbench.experiments.nginx_server import FixedBodyServer
from burstbench.experiments.wire_capture import WireCapture
from burstbench.locustfiles.recording import make_run_dir
from burstbench.locustfiles.run_info import git_commit, machine, package_versions

LOCUSTFILE = harness.locustfile("fixed_body.py")
STEP_SLACK = 3.0            # a step may take this many times its scheduled duration (plus 10 s) before -t stops it
SPAWN_RATE = 1000           # all users at once: slow spawning would make the first slots late


def parse_args(argv):
    p = argparse.ArgumentParser(prog="burstbench bench-generator", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cases", default=None,
                   help="arrival@rate[xrequests][/processes], comma-separated (default: the precise-pacing targets, "
                        f"{TARGET_CASES}); --rates instead runs the grid --rates x --arrivals x --processes")
    p.add_argument("--rates", default=None, help="offered rates in req/s, comma-separated (a grid instead of --cases)")
    p.add_argument("--arrivals", default="exponential,gamma:0.8", help="grid: exponential and/or gamma:<shape>")
    p.add_argument("--processes", default="1", help="grid: load process counts, comma-separated (1 = one plain "
                                                    "Locust process; N > 1 = Locust's --processes N)")
    p.add_argument("--step-seconds", default="5", help="scheduled duration of a step (requests = rate x this)")
    p.add_argument("--min-requests", default="1000", help="at least this many requests per step (stable tails)")
    p.add_argument("--max-requests", default="30000", help="at most this many requests per step (bounded time)")
    p.add_argument("--requests", default=None, help="exactly this many requests per step (overrides the three above)")
    p.add_argument("--users", default="64", help="Locust users in total, the same for both pacings (default 64)")
    p.add_argument("--seed", default="0", help="seed of every step's schedule")
    p.add_argument("--dispatchers", default=",".join(DISPATCHERS),
                   help=f"burstbench's ways of waiting for a slot to compare: {', '.join(DISPATCHERS)}")
    p.add_argument("--constant-throughput", default="on", help="on or off: also run Locust's constant_throughput")
    p.add_argument("--peers", default="aiperf", help="open-loop peer tools to run in their own venvs under build/ "
                                                     "(aiperf), or none")
    p.add_argument("--wire", default="auto", help="auto, on or off: capture every step on loopback (tcpdump) and "
                                                  "judge it from the wire (auto: when tcpdump can capture)")
    p.add_argument("--keep-pcap", action="store_true", help="keep each step's packet capture (default: deleted once read)")
    p.add_argument("--results-dir", type=Path, default=Path("results"))
    p.add_argument("--nginx", default=None, help="nginx binary (default: nginx on PATH, then /usr/sbin/nginx)")
    return p.parse_args(argv)


# -- one step ------------------------------------------------------------------------------
class StepError(RuntimeError):
    """A step that produced no analysable run folder; the message is one line."""


def run_step(plan: Plan, url: str, runs_dir: Path, logs_dir: Path, name: str, *, rate: float, processes: int,
             arrival: tuple | None, requests: int, dispatcher: str | None = None) -> Path:
    """One Locust run; ``arrival`` None is Locust's constant_throughput. Returns the run folder."""
    n = requests
    mean_s = 1.0 / rate
    limit_s = math.ceil(STEP_SLACK * n * mean_s + 10)
    flags = ["-u", str(plan.users), "-r", str(SPAWN_RATE), "-t", f"{limit_s}s",
             "--mean", repr(mean_s), "--requests", str(n), "--seed", str(plan.seed),
             "--run-name", name, "--progress-every", "3600",
             # the capture judges every request on nginx's port: a scrape of it would be one more on the wire
             "--server-metrics", "off"]
    if arrival is None:
        flags += ["--arrival", "exponential", "--pacing", "think"]
        user_class = "ConstantThroughputUser"
    else:
        _, process, shape = arrival
        flags += ["--arrival", process] + (["--shape", repr(shape)] if shape is not None else [])
        flags += ["--dispatcher", dispatcher or "auto"]
        user_class = "FixedBodyUser"
    log_path = logs_dir / f"{name}.log"
    locust = harness.Locust(LOCUSTFILE, url, harness.new_run_dir(runs_dir, name), flags, processes=processes,
                            user_classes=[user_class], log=log_path)
    with locust:  # Ctrl-C (KeyboardInterrupt) is passed on to Locust once, so it keeps its rows, then raised
        locust.finish(limit_s + 60, on_timeout="kill", grace_s=30)
    found = locust.written()
    if locust.timed_out:
        raise StepError(f"{name}: Locust did not stop within {limit_s + 60} s (killed); log {log_path}")
    if found is None:
        reason = next((line for line in log_path.read_text(errors="replace").splitlines()
                       if line.startswith("burstbench:")), f"exit code {locust.returncode}")
        raise StepError(f"{name}: no run folder ({reason}); log {log_path}")
    return found


# -- the benchmark ---------------------------------------------------------------------------
def say(text: str) -> None:
    print(f"[bench-generator] {text}", file=sys.stderr, flush=True)


def tool_label(tool: str, dispatcher: str | None) -> str:
    if tool == "burstbench":
        return f"burstbench ({dispatcher})"
    if tool == "constant_throughput":
        return "Locust constant_throughput"
    return f"{tool} {peers.PEERS[tool].version}"


def run_bench(plan: Plan) -> int:
    out_dir = make_run_dir(plan.results_dir, "bench-generator")
    runs_dir, logs_dir, wire_dir = out_dir / "runs", out_dir / "logs", out_dir / "wire"
    for folder in (runs_dir, logs_dir, wire_dir):
        folder.mkdir()
    steps = [(case, tool, d) for case in plan.cases for tool, d in plan.tools(case)]
    if not plan.wire:
        say(f"no packet capture ({WireCapture.available() or '--wire off'}): the table has the generator's own "
            "timestamps only, no wire columns")
    say(f"{len(steps)} steps, about {plan.estimate_s() / 60:.1f} min; results in {out_dir}")
    info = {"command": sys.argv, "cases": [c.name for c in plan.cases], "users": plan.users, "seed": plan.seed,
            "dispatchers": plan.dispatchers, "peers": plan.peers, "wire": plan.wire,
            "constant_throughput": plan.constant_throughput, "git": git_commit(), "machine": machine(),
            "versions": package_versions(), "load_average_start": os.getloadavg(),
            "started_utc": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    for name in plan.peers:  # before nginx and the clock start: a first install takes a minute or two
        try:
            peers.PEERS[name].ensure_installed(peers.BUILD_DIR)
        except peers.PeerInstallError as err:
            say(f"peer {name} left out: {err}")
            plan = Plan(**{**plan.__dict__, "peers": [p for p in plan.peers if p != name]})
    steps = [(case, tool, d) for case in plan.cases for tool, d in plan.tools(case)]
    table_rows, failures, gaps = [], [], {}
    server = FixedBodyServer(plan.nginx)
    info["nginx"] = {"binary": plan.nginx, "version": server.version(), "url": server.url, "config": server.conf.read_text()}
    interrupted = False
    try:
        server.start()
        info["nginx"]["pid"] = server.proc.pid
        say(f"nginx (pid {server.proc.pid}) answers a fixed body at {server.url}/")
        for step, (case, tool, dispatcher) in enumerate(steps, 1):
            label = tool_label(tool, dispatcher)
            name = f"{case.name}-{tool}" + (f"-{dispatcher}" if dispatcher else "")
            say(f"step {step}/{len(steps)}: {label}, {case.arrival[0]}, {case.rate:g} req/s, {case.processes} "
                f"process(es), {case.requests} requests")
            started, load1 = time.monotonic(), os.getloadavg()[0]
            pcap = wire_dir / f"{name}.pcap"
            capture = WireCapture(server.port, pcap) if plan.wire else None
            try:
                if capture is not None:
                    capture.start()
                try:
                    run, peer = _run_tool(plan, server.url, runs_dir, logs_dir, name, case, tool, dispatcher)
                finally:
                    if capture is not None:
                        capture.stop()
                m = _step_metrics(case, run, peer, pcap if capture is not None else None, server.port)
            except (StepError, RunError, ValueError, RuntimeError) as err:
                say(f"  FAILED: {err}")
                failures.append(f"{name}: {err}")
                continue
            finally:
                if not plan.keep_pcap:
                    pcap.unlink(missing_ok=True)
            gaps[(case.name, label)] = m.pop("_wire_gaps_s", None)
            row = {"case": case.name, "tool": label, "arrival": case.arrival[0], "processes": case.processes,
                   "rate": case.rate, "requests": case.requests, "users": plan.users, "load1_before": load1,
                   "step_s": round(time.monotonic() - started, 1), "dropped_packets": getattr(capture, "dropped", None),
                   "run": str(run.path.relative_to(out_dir)) if run is not None else str(peer.log_path.parent.relative_to(out_dir)),
                   **m}
            table_rows.append(row)
            say("  " + generator.step_line(row))
    except KeyboardInterrupt:
        interrupted = True
        say("interrupted: writing the table of the steps done")
    finally:
        server.stop()
        info["nginx"]["stopped"] = server.proc is None or server.proc.poll() is not None
    info.update(load_average_end=os.getloadavg(), failures=failures, interrupted=interrupted,
                finished_utc=datetime.now(timezone.utc).isoformat(timespec="seconds"))
    (out_dir / "bench.json").write_text(json.dumps(info, indent=2, default=str) + "\n")
    if not table_rows:
        say(f"no step produced results; see {logs_dir}")
        return 1
    table = pd.DataFrame(table_rows)
    table.to_csv(out_dir / "steps.csv", index=False)
    md = generator.markdown_table(table)
    targets = generator.target_lines(table)
    (out_dir / "steps.md").write_text(md + "\n\n" + "\n".join(f"- {line}" for line in targets) + "\n")
    figures = generator.figures(table, gaps, plan.cases, out_dir)
    print(md)
    print()
    for line in targets:
        print(f"- {line}")
    print()
    print(f"load average (1 min) before the steps: {min(table['load1_before']):.2f} to {max(table['load1_before']):.2f}; "
          "other work on this machine disturbs the timing")
    say(f"table: {out_dir / 'steps.md'} and steps.csv; figures: {', '.join(p.name for p in figures)}")
    return 1 if failures or interrupted else 0


def _run_tool(plan: Plan, url: str, runs_dir: Path, logs_dir: Path, name: str, case: Case, tool: str,
              dispatcher: str | None):
    """(run folder loaded, None) for a Locust step, (None, PeerResult) for a peer."""
    if tool in ("burstbench", "constant_throughput"):
        path = run_step(plan, url, runs_dir, logs_dir, name, rate=case.rate, processes=case.processes,
                        arrival=case.arrival if tool == "burstbench" else None, requests=case.requests,
                        dispatcher=dispatcher)
        return load_run(path), None
    _, process, shape = case.arrival
    arrival = "exponential" if process == "exponential" else ("gamma", shape)
    result = peers.run_peer(tool, url, case.rate, case.requests, arrival, plan.seed, runs_dir / name,
                            timeout_s=STEP_SLACK * case.requests / case.rate + 60)
    if result.exit_code != 0:
        raise StepError(f"{tool} exited with {result.exit_code}{' (timed out)' if result.timed_out else ''}; "
                        f"log {result.log_path}")
    return None, result


def _step_metrics(case: Case, run, peer, pcap: Path | None, port: int) -> dict:
    """What the rows say (ours) and what the wire saw (every tool), for one step."""
    dist = make_distribution(case.arrival[1], 1.0 / case.rate, case.arrival[2])
    m = {}
    if run is not None:
        m.update(generator.paced_metrics(run) if run.info.get("pacing") == "arrival"
                 else generator.closed_loop_metrics(run))
    else:
        m.update(sent=peer.sent, ok=peer.completed, failed=peer.errors)
    if pcap is None:
        return m
    seen = wire.read_capture(pcap, port)
    # Only an arrival schedule has slots to pair with the wire; a closed loop's "scheduled" is its own send.
    paired = run is not None and run.info.get("pacing") == "arrival"
    m.update(generator.wire_metrics(seen, dist, run.rows if paired else None))
    m["_wire_gaps_s"] = generator.wire_gaps_s(seen)
    return m


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        plan = Plan.from_args(args)
    except ValueError as err:
        print(f"burstbench bench-generator: {err}", file=sys.stderr)
        return 2
    return run_bench(plan)


if __name__ == "__main__":
    sys.exit(main())
