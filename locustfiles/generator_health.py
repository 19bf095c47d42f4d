"""Did the load generator keep up? The verdict on a run's generator samples (``generator.csv``).

Each Locust load process samples itself (``locustfiles/self_monitor.py``): CPU use, event-loop
delay and the lateness of its sends, every half second. ``generator_verdict`` turns those samples
and the run's send lateness p99 into plain lines for a report's first lines, or [] when the
generator kept up. It tells three causes apart:

* CPU-bound: a load process ran at ``cpu_limit_percent`` or more of a core for at least
  ``cpu_time_share`` of its monitored time. A saturated process sends late and reads responses
  late (its latencies include its own queueing), even where its sends still look punctual.
* event-loop stalls: the loop went ``loop_delay_limit_ms`` or longer without polling (a gen-2
  garbage collection, a call that blocks without yielding). Quoted as a cause of lateness, not on
  its own: one 50 ms pause delays a handful of sends and leaves p99 alone.
* too few users: at least ``claim_late_share`` of the sends were already overdue when a user
  became free to claim them: every user was busy waiting for a response, which no CPU fixes.
  Where the process was also CPU-bound or stalled, those late claims are its consequence (the
  users were held up by the loop) and the verdict says that more users will not help.

Thresholds (the defaults, and why):

* ``CPU_LIMIT_PERCENT = 90``: a gevent process is one thread on one core; above about 90 % the
  hub has no idle time left to absorb a burst of due slots, and sends queue behind each other.
* ``CPU_TIME_SHARE = 0.10``: 10 % of the monitored time (3 s of a 30 s run) at that level is a
  sustained period, not one garbage collection or a burst of connection set-ups.
* ``LATENESS_LIMIT_MS = 1.0``: the precise dispatchers (timerfd, spin) send within tens of
  microseconds (``arrivals/dispatch.py``: the target is 0.1 ms), so a p99 of 1 ms is ten times the
  target; it is also the scale at which inter-arrival gaps are visibly distorted at the rates
  where that matters (a fifth of the gaps of a 200 req/s Poisson process are under 1 ms). Plain
  ``gevent.sleep`` wakes about 1 ms late by libev's millisecond epoll timeout and sits on this line:
  when no other cause shows, the verdict says so.
* ``LOOP_DELAY_LIMIT_MS = 10``: twice gevent's 5 ms switch interval, the longest gevent runs ready
  greenlets before it polls again; a loop busy with many ready greenlets (the spin dispatcher's
  yields) reaches about 5 ms by design and is not a stall.
* ``CLAIM_LATE_SHARE = 0.01``: one send in a hundred overdue at its claim can by itself carry p99.

The first sample of each load process is left out of the CPU and loop-delay judgement (unless it
is the only one): it covers the start of the monitor, i.e. Locust spawning its users and opening
connections in a burst, not the steady sending. So is the last, when it holds no send: it is the
sample taken at stop, and covers writing the run's files. Every other sample is weighted by its
interval.

This module is imported inside the Locust load processes (``locustfiles/self_monitor.py``): keep
it to the standard library and numpy. No pandas, no matplotlib, no gevent, no Locust here.
"""
from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np

GENERATOR_FILE = "generator.csv"
# One row per sample per load process; the schema written by ``write_csv`` and read by analysis.runs.
GENERATOR_COLUMNS = (
    "epoch",            # time.time() when the sample was taken (the end of its interval)
    "worker",           # load process: 0 alone, k of W in a distributed run
    "interval_s",       # wall time since the previous sample (since start() for the first)
    "cpu_percent",      # this process's user + system CPU time over the interval / interval * 100
    "rss_mb",           # resident memory at the sample, MiB
    "loop_delay_ms",    # longest stretch the event loop ran without polling, in the interval
    "sends",            # requests noted (note_send) in the interval
    "lateness_p50_ms",  # exact percentiles of those sends' lateness (empty when no sends)
    "lateness_p99_ms",
    "claim_late",       # sends whose slot was already overdue when a user became free to claim it
)
INT_COLUMNS = ("worker", "sends", "claim_late")

PREFIX = "the generator, not the service, limited this run: "
CPU_LIMIT_PERCENT = 90.0
CPU_TIME_SHARE = 0.10
LATENESS_LIMIT_MS = 1.0
LOOP_DELAY_LIMIT_MS = 10.0
CLAIM_LATE_SHARE = 0.01


def write_csv(samples, path: str | Path) -> Path:
    """Write samples (dicts with GENERATOR_COLUMNS) as ``generator.csv``; NaN is written empty."""
    path = Path(path)
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(GENERATOR_COLUMNS)
        for sample in samples:
            writer.writerow([_cell(column, sample[column]) for column in GENERATOR_COLUMNS])
    return path


def _cell(column: str, value) -> str:
    if column in INT_COLUMNS:
        return str(int(value))
    value = float(value)
    if not math.isfinite(value):
        return ""
    return f"{value:.6f}" if column in ("epoch", "interval_s") else f"{value:.4f}"


def busy_waits(dispatcher: dict | str | None) -> bool:
    """Whether run.json's ``dispatcher`` says the sends were paced by busy-waiting (mode ``spin``).

    Such a process shows 100 % of a core by design: its CPU use says nothing about keeping up.
    A whole run.json dict (no ``mode`` key) is read for its ``dispatcher``.
    """
    if isinstance(dispatcher, dict) and "mode" not in dispatcher:
        dispatcher = dispatcher.get("dispatcher")
    mode = dispatcher.get("mode") if isinstance(dispatcher, dict) else dispatcher
    return mode == "spin"


def generator_verdict(samples, lateness_p99_ms: float, *, cpu_limit_percent: float = CPU_LIMIT_PERCENT,
                      lateness_limit_ms: float = LATENESS_LIMIT_MS, loop_delay_limit_ms: float = LOOP_DELAY_LIMIT_MS,
                      cpu_time_share: float = CPU_TIME_SHARE, claim_late_share: float = CLAIM_LATE_SHARE,
                      busy_wait: bool = False) -> list[str]:
    """[] when the generator kept up, else one line per finding, each starting with ``PREFIX``.

    ``samples``: dicts with GENERATOR_COLUMNS (``GeneratorMonitor.samples``), or a DataFrame of
    generator.csv (anything with ``to_dict("records")``). ``lateness_p99_ms``: the run's send
    lateness p99 over all its rows (NaN: not judged). ``busy_wait``: the sends were paced by
    spinning, so CPU use alone is no finding. See the module docstring for the thresholds.
    """
    records = samples.to_dict("records") if hasattr(samples, "to_dict") else list(samples)
    workers = _per_worker(records)
    cpu_bound, stalls = [], []
    for worker, recs in workers.items():
        judged = recs[1:] if len(recs) > 1 else recs  # the first sample is start-up (module docstring)
        if len(judged) > 1 and not judged[-1].get("sends"):
            judged = judged[:-1]  # the sample taken at stop, after the last send: shutdown (writing files), not sending
        interval_s = _column(judged, "interval_s")
        cpu = _column(judged, "cpu_percent")
        valid = np.isfinite(interval_s) & np.isfinite(cpu) & (interval_s > 0)
        total_s = float(interval_s[valid].sum())
        above = valid & (cpu >= cpu_limit_percent)
        above_s = float(interval_s[above].sum())
        if total_s > 0 and above_s > 0 and above_s >= cpu_time_share * total_s:
            mean = float(np.average(cpu[above], weights=interval_s[above]))
            cpu_bound.append(f"load process {worker} used {mean:.0f} % of a core for {_s(above_s)} of {_s(total_s)} s")
        delay = _column(judged, "loop_delay_ms")
        delay = delay[np.isfinite(delay)]
        if len(delay) and delay.max() >= loop_delay_limit_ms:
            stretches = int((delay >= loop_delay_limit_ms).sum())
            stalls.append(f"load process {worker}'s loop went up to {_ms(float(delay.max()))} ms without polling, "
                          f"{stretches} of {len(delay)} intervals at {loop_delay_limit_ms:g} ms or more")

    lines = []
    cpu_found = bool(cpu_bound) and not busy_wait  # a spinning dispatcher shows a full core by design
    if cpu_found:
        lines.append(PREFIX + ", ".join(cpu_bound) + " (CPU-bound: spread the load over more processes, "
                     "Locust's --processes or --workers of burstbench run)")
    late = lateness_p99_ms is not None and math.isfinite(lateness_p99_ms) and lateness_p99_ms > lateness_limit_ms
    if late:
        causes = []
        if cpu_found:
            causes.append("the CPU-bound load process above")
        elif cpu_bound:
            causes.append("CPU not judged (the spin dispatcher busy-waits by design)")
        if stalls:
            causes.append("event-loop stalls: " + "; ".join(stalls)
                          + " (garbage collection, or a greenlet that runs without yielding)")
        sends = int(_column(records, "sends", 0).sum())
        claim_late = int(_column(records, "claim_late", 0).sum())
        if sends and claim_late >= claim_late_share * sends:
            overdue = (f"{claim_late} of {sends} sends ({100 * claim_late / sends:.0f} %) were already overdue when "
                       "a user became free to claim them")
            if cpu_found or stalls:  # the users were held up by the loop: more of them would wait the same
                causes.append(f"so {overdue} (more users will not help)")
            else:
                causes.append(f"too few users: {overdue} (raise -u/--users)")
        if not records:
            causes.append("no generator samples to say why")
        elif not causes:
            causes.append("no cause seen in CPU, loop delay or free users (the process was not running when "
                          "its timer fired: another process or the host held the CPU; with --dispatcher sleep, "
                          "gevent.sleep alone wakes up to about 1 ms late)")
        lines.append(PREFIX + f"send lateness p99 {_ms(lateness_p99_ms)} ms > {_ms(lateness_limit_ms)} ms: "
                     + "; ".join(causes))
    return lines


def _per_worker(records: list[dict]) -> dict[int, list[dict]]:
    workers: dict[int, list[dict]] = {}
    for rec in records:
        workers.setdefault(int(rec["worker"]), []).append(rec)
    return {w: sorted(recs, key=lambda r: float(r["epoch"])) for w, recs in sorted(workers.items())}


def _column(records: list[dict], name: str, missing: float = math.nan) -> np.ndarray:
    values = np.array([rec[name] for rec in records], dtype=float)
    values[np.isnan(values)] = missing
    return values


def _ms(value: float) -> str:
    return f"{value:.2f}" if value < 10 else f"{value:.1f}" if value < 100 else f"{value:.0f}"


def _s(value: float) -> str:
    return f"{value:.1f}" if value < 10 else f"{value:.0f}"
