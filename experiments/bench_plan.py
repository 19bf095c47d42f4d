"""``burstbench bench-generator``'s plan: the cases (arrival, rate, requests, processes), the tools per case,
and every flag checked before nginx or any load process starts."""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from burstbench.arrivals import make_distribution
from burstbench.experiments import peers
from burstbench.experiments.nginx_server import find_nginx
from burstbench.experiments.wire_capture import WireCapture

STEP_OVERHEAD_S = 6.0       # Locust start (imports) and stop per step, for the runtime estimate
PEER_OVERHEAD_S = 12.0      # AIPerf's start (its services) and stop


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


def _name(label: str) -> str:
    return label.replace(" ", "")
