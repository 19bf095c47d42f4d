"""Which side a resilience run's failures describe: the generator's own conduct and the service's own counts.

A load tester that reports "not recovered" must know whether the service or the generator
failed. Two lines for the report, each from evidence that does not depend on the other side:

- The generator: slots that waited for a free user (``claim_late_ms`` > 0: every user was still
  waiting on an earlier request when the slot fell due, so it was sent late), send lateness, and the
  peak of requests in flight against the users there were.
- The service, from its own /metrics (telemetry): requests it answered by status code, and the work
  it dropped instead of computing (the bundled service's ``burstbench_deadline_dropped_total`` and
  ``burstbench_abandoned_dropped_total``), against the texts its model computed.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from . import server_signals
from .runs import RunFolder
from .telemetry import run_server_metrics, server_request_counts

DROP_COUNTERS = {"burstbench_deadline_dropped_total": "deadline passed",
                 "burstbench_abandoned_dropped_total": "request already over"}
COMPUTED_COUNTER = "burstbench_items_computed_total"


def peak_in_flight(sent_epoch: np.ndarray, done_epoch: np.ndarray) -> int:
    """The most requests outstanding at once (a request counts from its send to its answer)."""
    if sent_epoch.size == 0:
        return 0
    times = np.concatenate([sent_epoch, done_epoch])
    steps = np.concatenate([np.ones(sent_epoch.size), -np.ones(done_epoch.size)])
    order = np.lexsort((steps, times))  # at a tie, the answer (-1) before the next send
    return int(np.cumsum(steps[order]).max())


def generator_line(run: RunFolder) -> str:
    rows = run.rows
    sent = rows["sent_epoch"].to_numpy(dtype=float)
    done = sent + rows["latency_ms"].to_numpy(dtype=float) / 1000
    late = (pd.to_numeric(rows["claim_late_ms"], errors="coerce").fillna(0.0).to_numpy()
            if "claim_late_ms" in rows else np.zeros(len(rows)))  # closed-loop pacing claims no slots
    lateness = rows["lateness_ms"].to_numpy(dtype=float)
    users = run.record.users
    peak = peak_in_flight(sent, done)
    held = int((late > 0).sum())
    verdict = ("Every slot was sent on time by a free user: the generator did not cause the failures"
               if held == 0 else
               f"{held} slots fell due while every user was busy and went out late: raise -u/--users "
               "(the generator shares the blame for those)")
    return (f"Generator: {held} of {len(rows)} slots waited for a free user; send lateness p99 "
            f"{np.percentile(lateness, 99):.2f} ms, max {lateness.max():.1f} ms; at most {peak} requests in flight "
            f"of {users} users. {verdict}.")


def counter_total(frame: pd.DataFrame, metric: str) -> float | None:
    """A counter's increase over the run, summed over its series (resets read as Prometheus does); None if absent."""
    part = frame[frame["metric"] == metric]
    epochs = server_signals.scrapes(frame)
    if part.empty or len(epochs) < 2:
        return None
    step = server_signals.increases(server_signals._wide(part, epochs))
    return float(np.nansum(step.to_numpy()))


def service_line(run: RunFolder) -> str | None:
    frame = run_server_metrics(run)
    if frame is None or frame.empty:
        return None
    parts = []
    counts = server_request_counts(run)
    if counts is not None and len(counts):
        by_code = ", ".join(f"{code} {int(n)}" for code, n in counts.items() if n)
        parts.append(f"answered {int(counts.sum())} requests ({by_code}) for {len(run.rows)} rows")
    drops = {label: counter_total(frame, metric) for metric, label in DROP_COUNTERS.items()}
    computed = counter_total(frame, COMPUTED_COUNTER)
    if any(v is not None for v in drops.values()):
        dropped = ", ".join(f"{label} {int(v)}" for label, v in drops.items() if v is not None)
        parts.append(f"dropped without computing: {dropped}"
                     + ("" if computed is None else f"; computed {int(computed)} texts"))
    return ("Service (its own /metrics): " + "; ".join(parts) + ".") if parts else None


def side_lines(run: RunFolder) -> list[str]:
    lines = [generator_line(run)]
    service = service_line(run)
    if service is not None:
        lines.append(service)
    return lines
