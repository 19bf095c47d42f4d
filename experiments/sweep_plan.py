"""``burstbench sweep``'s plan: every flag checked, the step sizes (count and duration) and the rate grid.

No service, no Locust: ``make_plan`` runs before anything is built or started, and the step sizing
draws the same schedule Locust will draw.
"""
from __future__ import annotations

import math
from pathlib import Path

from burstbench.processes import check_port_free
from burstbench.arrivals import SCENARIOS, ArrivalSchedule, scenario
from burstbench.arrivals.traces import Trace
from burstbench.locustfiles.flags import number
from burstbench.slo import parse_slos
from burstbench.slo import DEFAULT_GOODPUT_TARGET, parse_goodput_target

MAX_FIND_N_TRIES = 12


def _pos(flag, raw):
    return number(flag, raw, float, "a number > 0", lambda v: 0 < v < math.inf)


def _int(flag, raw, low):
    return number(flag, raw, int, f"an integer >= {low}", lambda v: v >= low)


def make_plan(args) -> dict:
    """Every flag validated, before the model is built or the service started."""
    batching = [b.strip() for b in args.batching.split(",") if b.strip()]
    if not batching or any(b not in ("on", "off") for b in batching) or len(set(batching)) != len(batching):
        raise ValueError(f"--batching must be on, off or on,off (got {args.batching!r})")
    if args.trace is not None:
        trace = Trace.load(args.trace, args.trace_column)  # one-line ValueError for a bad file or column
        processes = [{"name": "trace", "kind": "trace", "shape": None, "ca2": trace.cv ** 2,
                      "trace": str(Path(args.trace).resolve()), "trace_column": trace.column,
                      "timestamps": len(trace), "label": f"trace {Path(args.trace).name}, cv={trace.cv:.2f}"}]
    else:
        names = [n.strip() for n in args.processes.split(",") if n.strip()]
        if not names:
            raise ValueError(f"--processes must list some of {', '.join(SCENARIOS)} (got {args.processes!r})")
        processes = []
        for name in names:
            dist = scenario(name) if name in SCENARIOS else None
            if dist is None:
                raise ValueError(f"--processes: each must be one of {', '.join(SCENARIOS)} (got {name!r})")
            processes.append({"name": name, "kind": dist.kind, "shape": dist.shape, "ca2": None,
                              "label": f"{dist.kind}" + (f" a={dist.shape:g}" if dist.kind == "gamma" else "")
                              + f", cv={dist.cv:.2f}"})
    rates = None
    if args.rates is not None:
        try:
            rates = sorted({float(r) for r in args.rates.split(",") if r.strip()})
        except ValueError:
            rates = None
        if not rates or any(not 0 < r < math.inf for r in rates):
            raise ValueError(f"--rates must be a comma-separated list of rates in req/s > 0, e.g. 2,4,8 (got {args.rates!r})")
    slos = parse_slos(args.slo)
    if args.goodput_target is not None and not slos:
        raise ValueError(f"--goodput-target needs at least one --slo (got --goodput-target {args.goodput_target})")
    port = number("--port", args.port, int, "an integer in [1, 65535]", lambda v: 1 <= v <= 65535)
    check_port_free(port)
    plan = {
        "variant": args.variant, "batching": batching, "processes": processes, "rates": rates,
        "slo_p99_ms": _pos("--slo-p99-ms", args.slo_p99_ms),
        "slo": slos,
        "goodput_target": (DEFAULT_GOODPUT_TARGET if args.goodput_target is None
                           else parse_goodput_target(args.goodput_target)),
        "grid_start": _pos("--grid-start", args.grid_start),
        "grid_factor": number("--grid-factor", args.grid_factor, float, "a number > 1", lambda v: 1 < v < math.inf),
        "max_steps": number("--max-steps", args.max_steps, int, "an integer in [1, 50]", lambda v: 1 <= v <= 50),
        "probe_rate": None if args.probe_rate == "auto" else number(
            "--probe-rate", args.probe_rate, float, "auto or a number > 0", lambda v: 0 < v < math.inf),
        "probe_requests": _int("--probe-requests", args.probe_requests, 20),
        "min_requests": _int("--min-requests", args.min_requests, 1),
        "min_duration_s": number("--min-duration", args.min_duration, float, "a number of seconds >= 0",
                               lambda v: 0 <= v < math.inf),
        "max_requests": _int("--max-requests", args.max_requests, 1),
        "saturation_ratio": number("--saturation", args.saturation, float, "a number in (0, 1]", lambda v: 0 < v <= 1),
        "max_failed_share": number("--max-failed-share", args.max_failed_share, float, "a number in [0, 1)",
                                 lambda v: 0 <= v < 1),
        "stop_p99_multiple": number("--stop-p99-multiple", args.stop_p99_multiple, float, "a number >= 1",
                                  lambda v: 1 <= v < math.inf),
        "users_horizon_s": _pos("--users-horizon", args.users_horizon),
        "min_users": _int("--min-users", args.min_users, 1),
        "max_users": _int("--max-users", args.max_users, 1),
        "request_timeout_s": number("--request-timeout", args.request_timeout, float, "a number of seconds in (0, 3600]",
                                  lambda v: 0 < v <= 3600),
        "seed": _int("--seed", args.seed, 0),
        "port": port,
        "ready_timeout_s": _pos("--ready-timeout", args.ready_timeout),
    }
    if plan["max_requests"] < plan["min_requests"]:
        raise ValueError(f"--max-requests must be >= --min-requests ({plan['min_requests']}) (got {args.max_requests!r})")
    if plan["max_users"] < plan["min_users"]:
        raise ValueError(f"--max-users must be >= --min-users ({plan['min_users']}) (got {args.max_users!r})")
    return plan


# -- step sizing -----------------------------------------------------------------------
def step_requests(process: dict, rate: float, seed: int, plan: dict) -> int:
    """Requests for one step: >= min_requests and a drawn schedule lasting >= min_duration_s.

    For the generated processes the schedule Locust will draw (same distribution, seed and count)
    is drawn here too, so the duration is exact, not expected. A trace (rescaled to the mean gap
    1/rate) is replayed from its start, and has only so many timestamps.
    """
    n = max(plan["min_requests"], math.ceil(rate * plan["min_duration_s"]))
    cap = plan["max_requests"]
    if process["kind"] == "trace":
        trace = Trace.load(process["trace"], process["trace_column"], 1.0 / rate)
        cap = min(cap, len(trace))
        draw = trace.schedule
    else:
        dist = scenario(process["name"], 1.0 / rate)
        draw = lambda n: ArrivalSchedule.draw(dist, n, seed)  # noqa: E731
    for _ in range(MAX_FIND_N_TRIES):
        n = min(n, cap)
        offsets = draw(n).offsets_s
        span = float(offsets[-1] - offsets[0]) if n > 1 else 0.0
        if span >= plan["min_duration_s"] or n >= cap:
            return n
        n = math.ceil(n * plan["min_duration_s"] / max(span, 1e-9) * 1.02) + 1
    return n


def step_users(rate: float, plan: dict) -> int:
    return int(min(plan["max_users"], max(plan["min_users"], math.ceil(rate * plan["users_horizon_s"]))))


def rate_grid(plan: dict, capacity_rps: float) -> list[float]:
    if plan["rates"] is not None:
        return list(plan["rates"])
    return [round(capacity_rps * plan["grid_start"] * plan["grid_factor"] ** k, 3) for k in range(plan["max_steps"])]
