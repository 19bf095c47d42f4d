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


import pandas as pd  # noqa: E402

from burstbench.analysis import generator, wire  # noqa: E402
from burstbench.analysis.runs import RunError, load_run  # noqa: E402
from burstbench.arrivals import make_distribution  # noqa: E402
from burstbench.experiments import peers  # noqa: E402
from burstbench.locustfiles.recording import make_run_dir  # noqa: E402
from burstbench.experiments.wire_capture import WireCapture  # noqa: E402
from burstbench.locustfiles.run_info import git_commit, machine, package_versions  # noqa: E402

from burstbench.paths import package_folder  # noqa: E402

LOCUSTFILES_DIR = package_folder("locustfiles")
LOCUSTFILE = LOCUSTFILES_DIR / "fixed_body.py"
NGINX_CANDIDATES = ("nginx", "/usr/sbin/nginx")
NGINX_READY_S = 10.0
STEP_OVERHEAD_S = 6.0       # Locust start (imports) and stop per step, for the runtime estimate
PEER_OVERHEAD_S = 12.0      # AIPerf's start (its services) and stop
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


# The targets, one case each: arrival@rate[xrequests][/processes]
TARGET_CASES = ("exponential@200x4000,gamma:0.5@200x4000,gamma:0.5@20x1200,"
                "exponential@1000x5000,exponential@1000x5000/2,exponential@4000x12000")
DISPATCHERS = ("timerfd", "spin", "sleep")


@dataclass(frozen=True)
class Case:
    """One arrival process at one rate: every tool sends it in turn, and the wire judges each."""

    arrival: tuple          # (label, process, shape)
    rate: float
    requests: int
    processes: int = 1

    @property
    def name(self) -> str:
        return f"{_name(self.arrival[0])}-r{self.rate:g}-p{self.processes}"


def _case(part: str) -> Case:
    """``gamma:0.5@20x1200/2``: arrival @ rate [x requests] [/ processes]."""
    arrival, _, rest = part.partition("@")
    rest, _, procs = rest.partition("/")
    rate, _, n = rest.partition("x")
    return Case(_arrival(arrival), float(rate), int(n) if n else 0, int(procs) if procs else 1)


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


@dataclass(frozen=True)
class Plan:
    cases: list
    users: int
    seed: int
    dispatchers: list
    constant_throughput: bool
    peers: list
    wire: bool
    keep_pcap: bool
    results_dir: Path
    nginx: str

    @classmethod
    def from_args(cls, a) -> "Plan":
        min_requests = _int("--min-requests", a.min_requests, 2, 10_000_000)
        max_requests = _int("--max-requests", a.max_requests, min_requests, 10_000_000)
        step_s = _float("--step-seconds", a.step_seconds, 0, 3600)
        fixed = None if a.requests is None else _int("--requests", a.requests, 2, 10_000_000)

        def requests_at(rate: float) -> int:
            return fixed if fixed is not None else int(min(max_requests, max(min_requests, round(rate * step_s))))

        if a.rates is not None and a.cases is not None:
            raise ValueError("--cases and --rates are two ways to choose the steps: give one of them")
        if a.rates is not None:
            rates = _list("--rates", a.rates, float, "rates in req/s in (0, 100000]", lambda v: 0 < v <= 100_000)
            try:
                arrivals = [_arrival(part.strip()) for part in a.arrivals.split(",")]
            except ValueError:
                raise ValueError(f"--arrivals must be a comma-separated list of exponential and gamma:<shape > 0> "
                                 f"(got {a.arrivals!r})") from None
            if len({label for label, _, _ in arrivals}) != len(arrivals):
                raise ValueError(f"--arrivals lists a process twice (got {a.arrivals!r})")
            processes = _list("--processes", a.processes, int, "integers in [1, 64]", lambda v: 1 <= v <= 64)
            cases = [Case(arr, r, requests_at(r), p) for p in sorted(processes) for r in sorted(rates) for arr in arrivals]
        else:
            raw = a.cases or TARGET_CASES
            accepted = "arrival@rate[xrequests][/processes] (arrival: exponential or gamma:<shape > 0>; rate in " \
                       "(0, 100000] req/s; requests >= 2; processes in [1, 64]), e.g. gamma:0.5@20x1200"
            cases = []
            for part in raw.split(","):
                try:
                    case = _case(part.strip())
                except ValueError:
                    raise ValueError(f"--cases must be a comma-separated list of {accepted} (got {part!r})") from None
                if not 0 < case.rate <= 100_000 or not 1 <= case.processes <= 64 or case.requests == 1 or case.requests < 0:
                    raise ValueError(f"--cases must be a comma-separated list of {accepted} (got {part!r})")
                cases.append(Case(case.arrival, case.rate, case.requests or requests_at(case.rate), case.processes))
            if len({c.name for c in cases}) != len(cases):
                raise ValueError(f"--cases lists a case twice (got {raw!r})")
        dispatchers = _list("--dispatchers", a.dispatchers, str, f"dispatchers ({', '.join(DISPATCHERS)})",
                            lambda v: v in DISPATCHERS)
        if a.constant_throughput not in ("on", "off"):
            raise ValueError(f"--constant-throughput must be on or off (got {a.constant_throughput!r})")
        peer_names = [] if a.peers.strip() == "none" else _list("--peers", a.peers, str,
                                                                f"peer tools ({', '.join(peers.PEERS)}) or none",
                                                                lambda v: v in peers.PEERS)
        users = _int("--users", a.users, 1, 10_000)
        if users < max(c.processes for c in cases):
            raise ValueError(f"--users must be at least the largest number of processes ({max(c.processes for c in cases)}), "
                             f"so that every process has a user (got {users})")
        if a.wire not in ("auto", "on", "off"):
            raise ValueError(f"--wire must be auto, on or off (got {a.wire!r})")
        why_not = WireCapture.available() if a.wire != "off" else None
        if a.wire == "on" and why_not:
            raise ValueError(f"--wire on, but no packet capture is possible here: {why_not}")
        return cls(cases=cases, users=users, seed=_int("--seed", a.seed, 0, 2**63 - 1), dispatchers=dispatchers,
                   constant_throughput=a.constant_throughput == "on", peers=peer_names,
                   wire=a.wire != "off" and why_not is None, keep_pcap=a.keep_pcap,
                   results_dir=a.results_dir, nginx=find_nginx(a.nginx))

    def tools(self, case: Case) -> list[tuple]:
        """(tool, dispatcher) pairs for one case: ours per dispatcher, Locust's and the peers' at 1 process."""
        tools = [("burstbench", d) for d in self.dispatchers]
        if case.processes == 1:  # core's closed loop and the peers are single-process here
            tools += [("constant_throughput", None)] if self.constant_throughput else []
            tools += [(name, None) for name in self.peers]
        return tools

    def estimate_s(self) -> float:
        per_tool = {"burstbench": STEP_OVERHEAD_S, "constant_throughput": STEP_OVERHEAD_S}
        return sum(c.requests / c.rate + per_tool.get(tool, PEER_OVERHEAD_S)
                   for c in self.cases for tool, _ in self.tools(c))


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
{locations}
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
        self.conf.write_text(NGINX_CONF.format(tmp=self.tmp, port=self.port, locations=peers.NGINX_LOCATIONS))
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
             arrival: tuple | None, requests: int, dispatcher: str | None = None) -> Path:
    """One Locust run; ``arrival`` None is Locust's constant_throughput. Returns the run folder."""
    n = requests
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
        cmd += ["--arrival", process] + (["--shape", repr(shape)] if shape is not None else [])
        cmd += ["--dispatcher", dispatcher or "auto", "FixedBodyUser"]
    if processes > 1:
        cmd[cmd.index("--headless"):cmd.index("--headless")] = ["--processes", str(processes)]
    log_path = logs_dir / f"{name}.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
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
