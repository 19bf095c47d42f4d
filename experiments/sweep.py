"""``burstbench sweep``: step the offered load up past saturation, per arrival process.

For each batching setting (on, off) the bundled service is started once. A light-load step
(Poisson at ``--probe-rate``; by default 20 % of the capacity that unrecorded sequential warm-up
requests suggest) measures the service time's mean and variance (Kingman's E[S] and cs^2) and
so the capacity estimate 1/E[S]; the rate grid is fractions of it (or ``--rates``). Then, for each arrival process, open-loop steps (``--pacing arrival``, mean gap
1/rate) run one Locust run each, from light load up until the process is past saturation.
Each step is an ordinary run folder under ``results/<UTC>-sweep/``; ``sweep.json`` records the
plan and every step, and ``burstbench sweep-report`` turns it into tables and the figure.

    burstbench sweep [--variant onnx-fp32] [--batching on,off] [--slo-p99-ms 500]
    burstbench sweep --rates 2,4,8,12 --processes extreme --batching off

Step length (MLPerf server style, minimum count and duration): each step sends at least
``--min-requests`` requests and its drawn schedule lasts at least ``--min-duration`` seconds
(the request count is raised until the drawn schedule is that long). Stepping a process stops
after the first step that is saturated (achieved rate < ``--saturation`` of the scheduled
rate, or more than ``--max-failed-share`` failed) or whose schedule-corrected p99 exceeds
``--stop-p99-multiple`` times the SLO.

Users: open-loop senders never limit the offered rate while one is free. Each step gets
ceil(rate * ``--users-horizon``) users (at least ``--min-users``, at most ``--max-users``):
enough for every request of the last ``--users-horizon`` seconds to be in flight at once
(Little's law). The step table shows the most requests ever in flight beside the users.
"""
from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import datetime, timezone
from pathlib import Path

from burstbench import harness
from burstbench.arrivals import SCENARIOS
from burstbench.spec import LoadSpec
from burstbench.experiments.sweep_plan import make_plan, rate_grid, step_requests, step_users
from burstbench.locustfiles.progress import format_duration
from burstbench.locustfiles.recording import make_run_dir
from burstbench.locustfiles.run_info import git_commit, machine

STEP_OVERHEAD_S = 6.0  # Locust start-up and text loading per step, measured about 4-8 s here


def parse_args(argv):
    p = argparse.ArgumentParser(prog="burstbench sweep", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--variant", default="onnx-fp32", help="served model variant (default onnx-fp32)")
    p.add_argument("--batching", default="on,off", help="on, off or on,off (default on,off)")
    p.add_argument("--slo-p99-ms", default="500", help="SLO bound on schedule-corrected p99 in ms (default 500)")
    p.add_argument("--slo", action="append", default=None, metavar="METRIC=MS",
                   help="an SLO for the goodput criterion, repeatable: ttft_ms, tpot_ms, latency_ms, itl_p<NN>_ms or "
                   "itl_max_ms = a bound in ms, e.g. --slo latency_ms=300 (default: none, the p99 criterion only)")
    p.add_argument("--goodput-target", default=None,
                   help="with --slo: capacity is the highest rate whose goodput stays >= this share (default 0.99)")
    p.add_argument("--processes", default=",".join(SCENARIOS), help="arrival processes (default steady,moderate,extreme)")
    p.add_argument("--trace", default=None, help="a CSV of timestamps: sweep this trace instead of the processes")
    p.add_argument("--trace-column", default="timestamp", help="the trace's timestamp column (default timestamp)")
    p.add_argument("--rates", default=None, help="offered rates in req/s, e.g. 2,4,8 (default: from the light-load step)")
    p.add_argument("--grid-start", default="0.4", help="first rate as a fraction of 1/E[S] (default 0.4)")
    p.add_argument("--grid-factor", default="1.3", help="each next rate is this times the last (default 1.3)")
    p.add_argument("--max-steps", default="9", help="most steps per process (default 9: up to 3.3 x 1/E[S])")
    p.add_argument("--probe-rate", default="auto",
                   help="light-load step rate in req/s (default auto: 0.2 / the warm-up's median latency)")
    p.add_argument("--probe-requests", default="100", help="light-load step requests (default 100)")
    p.add_argument("--min-requests", default="200", help="a valid step sends at least this many (default 200)")
    p.add_argument("--min-duration", default="15", help="a valid step's schedule lasts at least this, s (default 15)")
    p.add_argument("--max-requests", default="5000", help="cap on requests per step (default 5000)")
    p.add_argument("--saturation", default="0.9", help="saturated when achieved < this x scheduled rate (default 0.9)")
    p.add_argument("--max-failed-share", default="0.05", help="saturated when more failed (default 0.05)")
    p.add_argument("--stop-p99-multiple", default="4", help="stop when corrected p99 > this x SLO (default 4)")
    p.add_argument("--users-horizon", default="5", help="users = rate x this many seconds (default 5)")
    p.add_argument("--min-users", default="16")
    p.add_argument("--max-users", default="1000")
    p.add_argument("--request-timeout", default="30", help="seconds before a request counts as timed out")
    p.add_argument("--seed", default="0", help="step k uses seed + k")
    p.add_argument("--port", default="3000")
    p.add_argument("--model", type=Path, default=None, help="model folder (default: build the untrained default)")
    p.add_argument("--results-dir", type=Path, default=Path("results"))
    p.add_argument("--ready-timeout", default="300", help="seconds to wait for /readyz")
    return p.parse_args(argv)


# -- running ---------------------------------------------------------------------------
class Sweep:
    """The sweep folder and its sweep.json, rewritten after every step so an interrupted sweep is analysable."""

    def __init__(self, plan: dict, results_dir: Path, argv: list[str]):
        self.dir = make_run_dir(results_dir, "sweep")
        self.data = {"name": self.dir.name, "status": "running", "argv": argv,
                     "started_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                     "plan": plan, "service": {}, "steps": [], "git": git_commit(), "machine": machine()}
        self.service_pid: int | None = None  # the service's root: each step samples its process tree
        self.save()

    def save(self):
        (self.dir / "sweep.json").write_text(json.dumps(self.data, indent=2, default=str) + "\n")


def log(message: str) -> None:
    print(f"[sweep] {message}", file=sys.stderr, flush=True)


def run_step(sweep: Sweep, url: str, batching: str, process: dict, kind: str, step: int, rate: float,
             requests: int, seed: int, plan: dict, interrupts: harness.Interrupts | None = None) -> dict:
    """One Locust run; returns its record (run_dir relative to the sweep folder, or None)."""
    users = step_users(rate, plan)
    parent = sweep.dir / f"batching-{batching}" / (process["name"] if kind == "step" else "probe")
    parent.mkdir(parents=True, exist_ok=True)
    run_name = f"{kind}{step:02d}-{rate:g}rps"
    record = {"batching": batching, "process": process["name"], "kind": kind, "step": step, "rate_per_s": rate,
              "requests": requests, "users": users, "seed": seed, "shape": process["shape"], "ca2": process["ca2"],
              "run_dir": None, "locust_rc": None}
    sweep.data["steps"].append(record)
    # The step's load spec (burstbench.spec): the process at this rate; a trace is rescaled to it.
    arrival = ({"trace": process["trace"], "trace_column": process["trace_column"]} if process["kind"] == "trace"
               else {"scenario": process["name"]})
    spec = LoadSpec.from_values({**arrival, "rate": rate, "requests": requests, "seed": seed, "pacing": "arrival",
                                 "run_name": run_name, "request_timeout": plan["request_timeout_s"],
                                 "progress_every": 10, "users": users})
    record["spec"] = spec.to_dict()
    flags = ["-u", str(users), "-r", str(users), *spec.locust_args()]
    if sweep.service_pid is not None:
        flags += ["--service-pid", str(sweep.service_pid)]
    expected_s = requests / rate
    log(f"batching {batching} | {process['name']} ({process['label']}) | {kind} {step}: {rate:g} req/s offered, "
        f"{requests} requests, {users} users, about {format_duration(expected_s + STEP_OVERHEAD_S)}")
    # Deadline: the schedule, then every request may still take its full timeout, then start-up.
    deadline_s = expected_s + plan["request_timeout_s"] + 120
    with tempfile.NamedTemporaryFile("w+", prefix="burstbench-locust-", suffix=".log", delete=False) as out:
        out_path = Path(out.name)
    # Its own session: Ctrl-C reaches the sweep only, which passes exactly one SIGINT per press on to it.
    locust = harness.Locust(harness.locustfile("sentiment.py"), url, harness.new_run_dir(parent, run_name), flags, log=out_path)
    with locust:
        if interrupts is not None:
            interrupts.target = locust
        try:
            record["locust_rc"] = locust.wait(deadline_s)
        except subprocess.TimeoutExpired:
            log(f"Locust still running after {deadline_s:.0f} s: interrupting it (its rows are kept)")
            record["locust_rc"] = locust.wind_down(60)
        finally:
            if interrupts is not None:
                interrupts.target = None
    run_dir = locust.written()
    if run_dir is not None:
        harness.move_log(out_path, run_dir, "locust.log")
        record["run_dir"] = str(run_dir.relative_to(sweep.dir))
    else:  # stopped before it started, or a bad flag: keep its output beside the steps
        kept = parent / f"{run_name}-no-run-folder.log"
        out_path.replace(kept)
        tail = kept.read_text()[-2000:]
        log(f"Locust created no run folder (exit {record['locust_rc']}); its output ({kept}):\n{tail}")
    sweep.save()
    return record


def _post_text(url: str, text: str, timeout_s: float = 60.0) -> None:
    req = urllib.request.Request(f"{url}/analyze-sentiment", data=json.dumps({"text": text}).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout_s) as resp:
        resp.read()


def warm_up(url: str, sequential: int = 10, burst: int = 32, bursts: int = 2) -> float | None:
    """Unrecorded requests before the light-load step: the first answers of a fresh service (session
    set-up, memory arenas, first batch of each size) are several times slower than the rest.

    Returns the median latency in ms of the sequential requests after the bursts (None on failure).
    """
    from concurrent.futures import ThreadPoolExecutor

    texts = [f"warm-up request {i}: the service should be fast after this one." for i in range(burst)]
    try:
        for i in range(sequential):
            _post_text(url, texts[i % burst])
        with ThreadPoolExecutor(max_workers=burst) as pool:
            for _ in range(bursts):
                list(pool.map(lambda t: _post_text(url, t), texts))
        timings = []
        for i in range(sequential):
            t0 = time.perf_counter()
            _post_text(url, texts[i % burst])
            timings.append((time.perf_counter() - t0) * 1000)
        return sorted(timings)[len(timings) // 2]
    except OSError as err:
        log(f"warm-up request failed ({type(err).__name__}: {err}); going on")
        return None


def settle(url: str, service: dict | None, limit_s: float = 60.0) -> None:
    """After an overloaded step the service may still be working off abandoned requests: wait until
    one request is answered about as fast as at light load (bounded), so the next step starts idle."""
    target_ms = 3 * service["mean_ms"] + 50 if service else 500
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        t0 = time.perf_counter()
        try:
            _post_text(url, "settle", timeout_s=30)
            if (time.perf_counter() - t0) * 1000 <= target_ms:
                return
        except OSError:
            pass
        time.sleep(1.0)
    log(f"the service did not answer within {target_ms:.0f} ms for {limit_s:.0f} s after the last step; going on")


def sweep_batching(sweep: Sweep, batching: str, model: Path, plan: dict, interrupted) -> int:
    """Serve with this batching setting, probe, step every process; 0, or 3 when the service failed."""
    from burstbench.analysis.runs import load_run
    from burstbench.analysis.sweep import past_saturation, service_time_stats, step_metrics

    log_path = sweep.dir / f"service-batching-{batching}.log"
    server = harness.Service(model, plan["port"], variant=plan["variant"], batching=batching, log_path=log_path)
    url = server.url
    log(f"batching {batching}: starting the service on {url} (log: {log_path})")
    with server:  # the service's whole process group is stopped on every way out of this block
        try:
            log(f"service ready after {server.wait_ready(plan['ready_timeout_s']):.1f} s")
        except harness.NotReady as err:
            log(str(err))
            return 3
        sweep.service_pid = server.proc.pid
        warm_ms = warm_up(url)
        if interrupted():
            return 0
        probe_rate = plan["probe_rate"]
        if probe_rate is None:  # utilisation about 0.2: most requests find the service idle
            probe_rate = round(200.0 / warm_ms, 3) if warm_ms else 3.0
            log(f"warm-up: median latency {warm_ms:.1f} ms; light-load step at {probe_rate:g} req/s")
        probe_process = {"name": "steady", "kind": "exponential", "shape": 1.0, "ca2": None,
                         "label": "exponential, cv=1.00"}
        record = run_step(sweep, url, batching, probe_process, "probe", 0, probe_rate,
                          plan["probe_requests"], plan["seed"], plan, interrupted)
        if record["run_dir"] is None or interrupted():
            return 0
        service = service_time_stats(load_run(sweep.dir / record["run_dir"]).rows)
        if not service["idle_only"]:
            log(f"warning: only {service['idle_share']:.0%} of the light-load requests found the service idle; "
                "E[S] includes queueing and the grid is too low (lower --probe-rate, or quieten the machine)")
        sweep.data["service"][batching] = service
        sweep.save()
        rates = rate_grid(plan, service["capacity_rps"])
        log(f"light load: E[S] {service['mean_ms']:.2f} ms, cs^2 {service['cs2']:.3f} "
            f"({service['samples']} requests), capacity estimate 1/E[S] = {service['capacity_rps']:.1f} req/s; "
            f"rates {', '.join(f'{r:g}' for r in rates)}")
        for process in plan["processes"]:
            for k, rate in enumerate(rates, start=1):
                if not server.running():
                    log(f"the service exited (code {server.returncode}); see {log_path}")
                    return 3
                seed = plan["seed"] + k
                record = run_step(sweep, url, batching, process, "step", k, rate,
                                  step_requests(process, rate, seed, plan), seed, plan, interrupted)
                if interrupted() or record["run_dir"] is None:
                    return 0  # an interrupted step is kept (analysed, marked invalid), never judged here
                row = step_metrics(sweep.dir / record["run_dir"], record, plan, service)
                verdict = "SLO met" if row["meets_slo"] else "SLO missed" if row["valid"] else "invalid step"
                if plan["slo"]:
                    verdict += f", goodput {row['goodput']:.4f}"
                log(f"  -> achieved {row['achieved_rps']:.2f} req/s, corrected p99 {row['corr_p99_ms']:.0f} ms, "
                    f"failed {row['failed']}, lateness p99 {row['lateness_p99_ms']:.1f} ms, "
                    f"mean batch {row['batch_mean']:.2f}: {verdict}")
                if past_saturation(row, plan):
                    record["stopped_here"] = True
                    sweep.save()
                    log(f"  {process['name']} is past saturation at {rate:g} req/s: next process")
                    settle(url, service)
                    break
    return 0


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        plan = make_plan(args)
    except ValueError as err:
        print(f"burstbench sweep: {err}", file=sys.stderr)
        return 2
    model = args.model
    if model is None:
        model = harness.ensure_default_model(plan["variant"])
    plan["model"] = str(Path(model).resolve())
    plan["model_name"] = Path(model).name
    sweep = Sweep(plan, args.results_dir, sys.argv)
    log(f"sweep folder {sweep.dir}")
    started = time.monotonic()
    rc = 0
    # Ctrl-C or SIGTERM: stop stepping; the running step ends as a Ctrl-C'd Locust run does, rows kept
    # (each press goes on to Locust once: a second press makes it leave at once).
    with harness.forward_interrupts(signal.SIGTERM) as interrupts:
        try:
            for batching in plan["batching"]:
                rc = sweep_batching(sweep, batching, Path(model), plan, interrupts)
                if rc or interrupts.interrupted:
                    break
        finally:
            sweep.data["status"] = "interrupted" if interrupts.interrupted else "failed" if rc else "complete"
            sweep.data["elapsed_s"] = round(time.monotonic() - started, 1)
            sweep.save()
    stopped = {"flag": interrupts.interrupted}
    log(f"{sweep.data['status']} after {format_duration(sweep.data['elapsed_s'])}")
    from burstbench.analysis.runs import RunError
    from burstbench.analysis.sweep import write_sweep_report

    try:
        text, files = write_sweep_report(sweep.dir)
    except (RunError, ValueError) as err:
        print(f"burstbench sweep: nothing to analyse: {err}", file=sys.stderr)
        return rc or 4
    print(text)
    print("written: " + ", ".join(str(f) for f in files))
    return 130 if stopped["flag"] else rc


if __name__ == "__main__":
    sys.exit(main())
