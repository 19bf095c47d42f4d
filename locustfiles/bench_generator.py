"""``python -m locustfiles.bench_generator``: how fast and how faithfully can Locust send our schedule?

Against nginx answering a fixed body on loopback (not the bottleneck: tens of thousands of
requests/s), it steps the arrival rate up for each arrival process and each number of load
processes, one real Locust run per step (``locustfiles/fixed_body.py``), and reports per step the
achieved rate, the send lateness and how far the sent gaps are from the intended process
(``analysis.generator``). At each rate it also runs Locust's own ``constant_throughput`` at the
same number of users (at 1 process: burstbench records a closed loop only in one process) and
says what rate that holds.

    python -m locustfiles.bench_generator --rates 250,500,1000,2000,3000,4000 \\
        --arrivals exponential,gamma:0.8 --processes 1,2,4 --step-seconds 5

Writes ``results/<UTC>-bench-generator/``: steps.csv and steps.md (the table), PNG figures,
bench.json (parameters, machine, nginx), and every step's own run folder under runs/.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

import pandas as pd  # noqa: E402

from analysis import generator  # noqa: E402
from analysis.runs import RunError, load_run  # noqa: E402
from arrivals import make_distribution  # noqa: E402
from locustfiles.recording import make_run_dir  # noqa: E402
from locustfiles.run_info import git_commit, machine, package_versions  # noqa: E402

LOCUSTFILE = REPO_ROOT / "locustfiles" / "fixed_body.py"
NGINX_CANDIDATES = ("nginx", "/usr/sbin/nginx")
NGINX_READY_S = 10.0
STEP_OVERHEAD_S = 6.0       # Locust start (imports) and stop per step, for the runtime estimate
STEP_SLACK = 3.0            # a step may take this many times its scheduled duration (plus 10 s) before -t stops it
SPAWN_RATE = 1000           # all users at once: slow spawning would make the first slots late


# -- flags -------------------------------------------------------------------------------
def _list(flag: str, raw: str, convert, accepted: str, check) -> list:
    values = []
    for part in raw.split(","):
        try:
            value = convert(part.strip())
        except (TypeError, ValueError):
            raise ValueError(f"{flag} must be a comma-separated list of {accepted} (got {raw!r})") from None
        if not check(value):
            raise ValueError(f"{flag} must be a comma-separated list of {accepted} (got {raw!r})")
        values.append(value)
    if len(set(values)) != len(values):
        raise ValueError(f"{flag} lists a value twice (got {raw!r})")
    return values


def _arrival(part: str):
    """``exponential`` or ``gamma:<shape>``, as a (label, process, shape) triple."""
    if part == "exponential":
        return ("exponential", "exponential", None)
    kind, _, shape = part.partition(":")
    if kind != "gamma" or not shape:
        raise ValueError(part)
    value = float(shape)
    make_distribution("gamma", 1.0, value)  # raises for a shape <= 0
    return (f"gamma {value:g}", "gamma", value)


def _int(flag: str, raw: str, lo: int, hi: int) -> int:
    try:
        value = int(raw)
    except (TypeError, ValueError):
        value = None
    if value is None or not lo <= value <= hi:
        raise ValueError(f"{flag} must be an integer in [{lo}, {hi}] (got {raw!r})")
    return value


def _float(flag: str, raw: str, lo: float, hi: float) -> float:
    try:
        value = float(raw)
    except (TypeError, ValueError):
        value = math.nan
    if not lo < value <= hi:
        raise ValueError(f"{flag} must be a number in ({lo:g}, {hi:g}] (got {raw!r})")
    return value


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m locustfiles.bench_generator", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rates", default="250,500,1000,2000,3000,4000", help="offered rates in req/s, comma-separated")
    p.add_argument("--arrivals", default="exponential,gamma:0.8", help="exponential and/or gamma:<shape>")
    p.add_argument("--processes", default="1", help="load process counts, comma-separated (1 = one plain Locust "
                                                    "process; N > 1 = Locust's --processes N)")
    p.add_argument("--step-seconds", default="5", help="scheduled duration of a step (requests = rate x this)")
    p.add_argument("--min-requests", default="1000", help="at least this many requests per step (stable tails)")
    p.add_argument("--max-requests", default="30000", help="at most this many requests per step (bounded time)")
    p.add_argument("--requests", default=None, help="exactly this many requests per step (overrides the three above)")
    p.add_argument("--users", default="64", help="Locust users in total, the same for both pacings (default 64)")
    p.add_argument("--seed", default="0", help="seed of every step's schedule")
    p.add_argument("--constant-throughput", default="on", help="on or off: also run Locust's constant_throughput")
    p.add_argument("--results-dir", type=Path, default=REPO_ROOT / "results")
    p.add_argument("--nginx", default=None, help="nginx binary (default: nginx on PATH, then /usr/sbin/nginx)")
    return p.parse_args(argv)


@dataclass(frozen=True)
class Plan:
    rates: list
    arrivals: list
    processes: list
    step_seconds: float
    min_requests: int
    max_requests: int
    requests: int | None
    users: int
    seed: int
    constant_throughput: bool
    results_dir: Path
    nginx: str

    @classmethod
    def from_args(cls, a) -> "Plan":
        rates = _list("--rates", a.rates, float, "rates in req/s in (0, 100000]", lambda v: 0 < v <= 100_000)
        try:
            arrivals = [_arrival(part.strip()) for part in a.arrivals.split(",")]
        except ValueError:
            raise ValueError(f"--arrivals must be a comma-separated list of exponential and gamma:<shape > 0> "
                             f"(got {a.arrivals!r})") from None
        if len({label for label, _, _ in arrivals}) != len(arrivals):
            raise ValueError(f"--arrivals lists a process twice (got {a.arrivals!r})")
        processes = _list("--processes", a.processes, int, "integers in [1, 64]", lambda v: 1 <= v <= 64)
        if a.constant_throughput not in ("on", "off"):
            raise ValueError(f"--constant-throughput must be on or off (got {a.constant_throughput!r})")
        min_requests = _int("--min-requests", a.min_requests, 2, 10_000_000)
        max_requests = _int("--max-requests", a.max_requests, min_requests, 10_000_000)
        users = _int("--users", a.users, 1, 10_000)
        if users < max(processes):
            raise ValueError(f"--users must be at least the largest --processes ({max(processes)}), "
                             f"so that every process has a user (got {users})")
        return cls(
            rates=sorted(rates), arrivals=arrivals, processes=sorted(processes),
            step_seconds=_float("--step-seconds", a.step_seconds, 0, 3600),
            min_requests=min_requests, max_requests=max_requests,
            requests=None if a.requests is None else _int("--requests", a.requests, 2, 10_000_000),
            users=users, seed=_int("--seed", a.seed, 0, 2**63 - 1),
            constant_throughput=a.constant_throughput == "on",
            results_dir=a.results_dir, nginx=find_nginx(a.nginx),
        )

    def requests_at(self, rate: float) -> int:
        if self.requests is not None:
            return self.requests
        return int(min(self.max_requests, max(self.min_requests, round(rate * self.step_seconds))))

    @property
    def ct_runs(self) -> int:
        """constant_throughput runs per rate: at 1 process only (core's closed loop is single-process)."""
        return int(self.constant_throughput and 1 in self.processes)

    def estimate_s(self) -> float:
        per_rate = sum(self.requests_at(r) / r + STEP_OVERHEAD_S for r in self.rates)
        return per_rate * (len(self.arrivals) * len(self.processes) + self.ct_runs)


def find_nginx(explicit: str | None) -> str:
    for candidate in ([explicit] if explicit else NGINX_CANDIDATES):
        found = shutil.which(candidate)
        if found:
            return found
    raise ValueError(f"nginx not found ({explicit or ', '.join(NGINX_CANDIDATES)}): run `make nginx` "
                     "(installs Debian's nginx) or pass --nginx PATH")


# -- the fixed-body endpoint ------------------------------------------------------------------
NGINX_CONF = """\
daemon off;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    # FastHttpUser keeps its connection: never make it reconnect mid-step.
    keepalive_requests 10000000;
    keepalive_timeout 300s;
    server {{
        listen 127.0.0.1:{port};
        default_type application/json;
        location / {{ return 200 '{{"ok":1}}'; }}
    }}
}}
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class FixedBodyServer:
    """nginx in the foreground with a generated config in a temp dir, on a free loopback port."""

    def __init__(self, nginx: str):
        self.nginx = nginx
        self.tmp = Path(tempfile.mkdtemp(prefix="burstbench-nginx-"))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.conf = self.tmp / "nginx.conf"
        self.conf.write_text(NGINX_CONF.format(tmp=self.tmp, port=self.port))
        self.proc: subprocess.Popen | None = None

    def start(self) -> "FixedBodyServer":
        log = (self.tmp / "stdout.log").open("w")
        self.proc = subprocess.Popen([self.nginx, "-p", str(self.tmp), "-c", str(self.conf), "-e",
                                      str(self.tmp / "error.log")], stdout=log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        log.close()
        deadline = time.monotonic() + NGINX_READY_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"nginx exited with code {self.proc.returncode} at start: {self.log_tail()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"nginx did not accept connections on {self.url} within {NGINX_READY_S:.0f} s: "
                           f"{self.log_tail()}")

    def log_tail(self) -> str:
        text = ""
        for name in ("error.log", "stdout.log"):
            path = self.tmp / name
            if path.is_file():
                text += path.read_text(errors="replace")
        return " | ".join(text.strip().splitlines()[-3:]) or "(no log)"

    def version(self) -> str:
        out = subprocess.run([self.nginx, "-v"], capture_output=True, text=True, timeout=10)
        return (out.stderr or out.stdout).strip()

    def stop(self) -> None:
        """TERM the master (fast shutdown of its workers too), then KILL the group if it lingers."""
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
            except ProcessLookupError:
                pass
        shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *_exc):
        self.stop()


# -- one step ------------------------------------------------------------------------------
class StepError(RuntimeError):
    """A step that produced no analysable run folder; the message is one line."""


def run_step(plan: Plan, url: str, runs_dir: Path, logs_dir: Path, name: str, *, rate: float, processes: int,
             arrival: tuple | None) -> Path:
    """One Locust run; ``arrival`` None is Locust's constant_throughput. Returns the run folder."""
    n = plan.requests_at(rate)
    mean_s = 1.0 / rate
    limit_s = math.ceil(STEP_SLACK * n * mean_s + 10)
    cmd = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "--only-summary",
           "--host", url, "-u", str(plan.users), "-r", str(SPAWN_RATE), "-t", f"{limit_s}s",
           "--mean", repr(mean_s), "--requests", str(n), "--seed", str(plan.seed),
           "--results-dir", str(runs_dir), "--run-name", name, "--progress-every", "3600"]
    if arrival is None:
        cmd += ["--arrival", "exponential", "--pacing", "think", "ConstantThroughputUser"]
    else:
        _, process, shape = arrival
        cmd += ["--arrival", process] + (["--shape", repr(shape)] if shape is not None else []) + ["FixedBodyUser"]
    if processes > 1:
        cmd[cmd.index("--headless"):cmd.index("--headless")] = ["--processes", str(processes)]
    log_path = logs_dir / f"{name}.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            proc.wait(timeout=limit_s + 60)
        except KeyboardInterrupt:  # Locust is in its own session: pass Ctrl-C on, so it keeps its rows
            os.killpg(proc.pid, signal.SIGINT)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
            raise
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
            raise StepError(f"{name}: Locust did not stop within {limit_s + 60} s (killed); log {log_path}") from None
    found = sorted(runs_dir.glob(f"*-{name}"))
    if not found:
        reason = next((line for line in log_path.read_text(errors="replace").splitlines()
                       if line.startswith("burstbench:")), f"exit code {proc.returncode}")
        raise StepError(f"{name}: no run folder ({reason}); log {log_path}")
    return found[-1]


# -- the benchmark ---------------------------------------------------------------------------
def say(text: str) -> None:
    print(f"[bench-generator] {text}", file=sys.stderr, flush=True)


def _name(label: str) -> str:
    return label.replace(" ", "")


def run_bench(plan: Plan) -> int:
    out_dir = make_run_dir(plan.results_dir, "bench-generator")
    runs_dir, logs_dir = out_dir / "runs", out_dir / "logs"
    runs_dir.mkdir()
    logs_dir.mkdir()
    steps_total = len(plan.processes) * len(plan.rates) * len(plan.arrivals) + len(plan.rates) * plan.ct_runs
    if plan.constant_throughput and plan.ct_runs == 0:
        say("constant_throughput is compared at 1 process only (--processes has no 1): skipped")
    say(f"{steps_total} steps, about {plan.estimate_s() / 60:.1f} min; results in {out_dir}")
    info = {"command": sys.argv, "rates_per_s": plan.rates, "arrivals": [a[0] for a in plan.arrivals],
            "processes": plan.processes, "users": plan.users, "seed": plan.seed,
            "requests_per_step": {f"{r:g}": plan.requests_at(r) for r in plan.rates},
            "constant_throughput": plan.constant_throughput, "git": git_commit(), "machine": machine(),
            "versions": package_versions(), "load_average_start": os.getloadavg(),
            "started_utc": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    paced, closed, failures = [], [], []
    server = FixedBodyServer(plan.nginx)
    info["nginx"] = {"binary": plan.nginx, "version": server.version(), "url": server.url, "config": server.conf.read_text()}
    interrupted = False
    step = 0
    try:
        server.start()
        info["nginx"]["pid"] = server.proc.pid
        say(f"nginx (pid {server.proc.pid}) answers a fixed body at {server.url}/")
        for processes in plan.processes:
            for rate in plan.rates:
                runs = [(a, f"{_name(a[0])}-r{rate:g}-p{processes}") for a in plan.arrivals]
                if plan.constant_throughput and processes == 1:  # core's closed loop is single-process only
                    runs.append((None, f"constant-throughput-r{rate:g}-p{processes}"))
                for arrival, name in runs:
                    step += 1
                    what = arrival[0] if arrival else "Locust constant_throughput"
                    say(f"step {step}/{steps_total}: {what}, {rate:g} req/s, {processes} process(es), "
                        f"{plan.requests_at(rate)} requests, {plan.users} users")
                    started = time.monotonic()
                    load1 = os.getloadavg()[0]
                    try:
                        run = load_run(run_step(plan, server.url, runs_dir, logs_dir, name, rate=rate,
                                                processes=processes, arrival=arrival))
                    except (StepError, RunError) as err:
                        say(f"  FAILED: {err}")
                        failures.append(str(err))
                        continue
                    base = {"processes": processes, "rate": rate, "users": plan.users, "load1_before": load1,
                            "step_s": round(time.monotonic() - started, 1), "run": str(run.path.relative_to(out_dir))}
                    if arrival is None:
                        m = generator.closed_loop_metrics(run)
                        closed.append({**base, **m})
                        say(f"  constant_throughput held {m['ct_achieved_per_s']:.0f} req/s "
                            f"(sent {m['ct_sent']}, ok {m['ct_ok']}) in {base['step_s']:.0f} s")
                    else:
                        m = generator.paced_metrics(run)
                        paced.append({"arrival": arrival[0], **base, **m})
                        say(f"  achieved {m['achieved_per_s']:.0f} req/s (sent {m['sent']}, ok {m['ok']}); "
                            f"lateness p50 {m['lateness_p50_ms']:.2f} / p99 {m['lateness_p99_ms']:.2f} / max "
                            f"{m['lateness_max_ms']:.1f} ms; W1/mean {m['w1_over_mean']:.3f}; KS {m['ks_sent']:.3f}; "
                            f"CV {m['cv_sent']:.3f} (intended {m['cv_intended']:.3f}) in {base['step_s']:.0f} s")
    except KeyboardInterrupt:
        interrupted = True
        say("interrupted: writing the table of the steps done")
    finally:
        server.stop()
        info["nginx"]["stopped"] = server.proc is None or server.proc.poll() is not None
    info.update(load_average_end=os.getloadavg(), failures=failures, interrupted=interrupted,
                finished_utc=datetime.now(timezone.utc).isoformat(timespec="seconds"))
    (out_dir / "bench.json").write_text(json.dumps(info, indent=2, default=str) + "\n")
    if not paced:
        say(f"no step produced results; see {logs_dir}")
        return 1
    table = pd.DataFrame(paced)
    if closed:
        ct = pd.DataFrame(closed)[["processes", "rate", "ct_sent", "ct_ok", "ct_achieved_per_s", "run"]]
        table = table.merge(ct.rename(columns={"run": "ct_run"}), on=["processes", "rate"], how="left")
        table["ct_ratio"] = table["ct_achieved_per_s"] / table["achieved_per_s"]
    table.to_csv(out_dir / "steps.csv", index=False)
    md = generator.markdown_table(table)
    targets = generator.target_lines(table)
    (out_dir / "steps.md").write_text(md + "\n\n" + "\n".join(f"- {line}" for line in targets) + "\n")
    figures = generator.figures(table, out_dir)
    print(md)
    print()
    for line in targets:
        print(f"- {line}")
    print()
    print(f"load average (1 min) before the steps: {min(table['load1_before']):.2f} to {max(table['load1_before']):.2f}; "
          "other work on this machine disturbs the timing")
    say(f"table: {out_dir / 'steps.md'} and steps.csv; figures: {', '.join(p.name for p in figures)}")
    return 1 if failures or interrupted else 0


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        plan = Plan.from_args(args)
    except ValueError as err:
        print(f"python -m locustfiles.bench_generator: {err}", file=sys.stderr)
        return 2
    return run_bench(plan)


if __name__ == "__main__":
    sys.exit(main())
