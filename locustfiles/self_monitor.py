"""The load generator watches itself: CPU, event-loop delay and send lateness of one load process.

    monitor = GeneratorMonitor(every_s=0.5, worker=0)
    monitor.start()                                  # at test start, in the hub's thread
    monitor.note_send(lateness_ms, claim_late)       # by the sender, once per request
    monitor.stop()                                   # at the end: a last sample
    write_csv(monitor.samples, run_dir / GENERATOR_FILE)   # and generator_verdict(samples, p99): [] when it kept up

It runs inside the load process beside sends that must be punctual to 0.1 ms, so nothing in it
blocks and nothing costs more than microseconds on the loop:

* ``note_send`` appends one float to an ``array('d')`` (8 bytes a send) and bumps a counter.
* The sampling greenlet wakes every ``every_s`` and reads two clocks, ``time.process_time`` (this
  process's user + system CPU time, all threads, nanosecond resolution: psutil's and ``os.times``'
  tick counts are 10 ms, 2 % of a half-second interval) and psutil's RSS (one read of
  /proc/self/statm): 18-21 us in all on a 2-core EPYC VM (tests/test_self_monitor.py prints it).
  Each interval's lateness percentiles are computed when ``samples`` is read: at the end of a
  local run, or at each Locust report (every 3 s) on a distributed worker, tens of microseconds.
* Loop delay is measured by two libev watchers, not by a timer: a *check* watcher (highest
  priority: the first thing the loop runs after ``epoll_wait`` returns) notes the time, and a
  *prepare* watcher (lowest priority: after gevent has run its queued callbacks, just before the
  next ``epoll_wait``) takes the difference. ``loop_delay_ms`` is the longest such stretch in the
  interval: the longest the loop went without polling. A timer, socket or callback that became
  ready at the start of that stretch waited that long to run (one that became ready during it
  waited for the rest of it, then for whatever ran ahead of it in the next). It is CPU work timed
  on ``perf_counter``, so it carries none of the ~1 ms rounding of gevent's sleeps (libev's epoll
  timeout is whole milliseconds): an idle loop reads a few microseconds. The cost is two Python
  calls per loop iteration, 0.4 to 1.5 us (quiet to busy machine). A probe callback queued with
  ``loop.run_callback`` every 50 ms was tried first and rejected: it only sees work queued ahead
  of it in gevent's callback deque, and read 0.01 ms while a timer-woken greenlet held the loop
  for 100 ms stretches (senders are woken by timers and sockets, not by that deque).

A stretch still running when a sample is taken counts in that sample too (so a sample taken by
a greenlet right after a stall sees it), and again, whole, in the next one.

``generator_verdict`` (pure, numpy only) and the CSV schema live in ``locustfiles.generator_health``,
which analysis reads without gevent; this module imports them from there. It imports gevent and
psutil, not Locust, so it can be tested without Locust's monkey-patching.
"""
from __future__ import annotations

import math
import time
from array import array

import gevent
import numpy as np
import psutil

from burstbench.locustfiles.generator_health import GENERATOR_COLUMNS, GENERATOR_FILE, generator_verdict, write_csv

__all__ = ["GeneratorMonitor", "GENERATOR_COLUMNS", "GENERATOR_FILE", "generator_verdict", "write_csv"]

EV_MAXPRI, EV_MINPRI = 2, -2  # libev's watcher priorities
MIB = 1024 * 1024

perf_counter = time.perf_counter
process_time = time.process_time


class GeneratorMonitor:
    """Samples this load process every ``every_s`` seconds; see the module docstring for each column."""

    def __init__(self, every_s: float = 0.5, worker: int = 0):
        if not (isinstance(every_s, (int, float)) and math.isfinite(every_s) and 0.01 <= every_s <= 3600):
            raise ValueError(f"every_s must be a number of seconds in [0.01, 3600] (got {every_s!r})")
        self.every_s = float(every_s)
        self.worker = worker  # may be set later (a distributed worker learns its index at test start)
        self._process = psutil.Process()
        self._lateness = array("d")
        self._claim_late = 0
        self._samples: list[dict] = []
        self._slices: list[tuple[int, int]] = []  # each sample's sends in self._lateness
        self._filled = 0                          # samples whose lateness percentiles are computed
        self._greenlet = None
        self._check = self._prepare = None
        self._wake_s = 0.0
        self._loop_max_s = 0.0
        self._running = False

    # -- the sender's side ------------------------------------------------------------------
    def note_send(self, lateness_ms: float, claim_late: bool) -> None:
        """One request sent ``lateness_ms`` after its slot; ``claim_late``: overdue before a user was free."""
        self._lateness.append(lateness_ms)
        if claim_late:
            self._claim_late += 1

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> "GeneratorMonitor":
        """Start sampling now (the first interval starts here). Call in the thread that runs the hub.

        A second call while it runs does nothing; a stopped monitor is not started again.
        """
        if self._running:
            return self
        if self._samples:
            raise RuntimeError("a stopped GeneratorMonitor is not started again (make a new one)")
        loop = gevent.get_hub().loop
        self._check = loop.check(ref=False, priority=EV_MAXPRI)
        self._prepare = loop.prepare(ref=False, priority=EV_MINPRI)
        self._last_wall_s = self._wake_s = perf_counter()
        self._last_cpu_s = process_time()
        self._first_send = 0
        self._check.start(self._on_wake)
        self._prepare.start(self._on_poll)
        self._running = True
        self._greenlet = gevent.spawn(self._sample_every)
        return self

    def stop(self) -> None:
        """Take a last sample and stop; a second call does nothing."""
        if not self._running:
            return
        self._running = False
        self._greenlet.kill(block=False)
        self._take_sample()
        for watcher in (self._check, self._prepare):
            watcher.stop()
            watcher.close()

    # -- loop watchers: two Python calls per loop iteration, keep them minimal ------------------
    def _on_wake(self) -> None:
        self._wake_s = perf_counter()

    def _on_poll(self) -> None:
        busy_s = perf_counter() - self._wake_s
        if busy_s > self._loop_max_s:
            self._loop_max_s = busy_s

    # -- sampling -------------------------------------------------------------------------------
    def _sample_every(self) -> None:
        while True:
            gevent.sleep(self.every_s)
            self._take_sample()

    def _take_sample(self) -> None:
        wall_s, cpu_s = perf_counter(), process_time()
        interval_s = wall_s - self._last_wall_s
        loop_max_s = max(self._loop_max_s, wall_s - self._wake_s)  # include the stretch still running
        self._loop_max_s = 0.0
        try:
            rss_mb = self._process.memory_info().rss / MIB
        except psutil.Error:
            rss_mb = math.nan
        end = len(self._lateness)
        self._samples.append({
            "epoch": time.time(), "worker": self.worker, "interval_s": interval_s,
            "cpu_percent": 100 * (cpu_s - self._last_cpu_s) / interval_s if interval_s > 0 else math.nan,
            "rss_mb": rss_mb, "loop_delay_ms": 1000 * loop_max_s, "sends": end - self._first_send,
            "lateness_p50_ms": math.nan, "lateness_p99_ms": math.nan, "claim_late": self._claim_late,
        })
        self._slices.append((self._first_send, end))
        self._first_send, self._claim_late = end, 0
        self._last_wall_s, self._last_cpu_s = wall_s, cpu_s

    # -- results --------------------------------------------------------------------------------
    @property
    def samples(self) -> list[dict]:
        """Every sample so far, as dicts with GENERATOR_COLUMNS; lateness percentiles filled in on reading."""
        for i in range(self._filled, len(self._samples)):
            start, end = self._slices[i]
            if end > start:
                # a copy (slicing an array copies): a numpy view would pin the array against growing
                values = np.frombuffer(self._lateness[start:end], dtype=float)
                self._samples[i]["lateness_p50_ms"], self._samples[i]["lateness_p99_ms"] = (
                    float(v) for v in np.quantile(values, [0.50, 0.99]))
        self._filled = len(self._samples)
        return self._samples

    def lateness_values_ms(self) -> np.ndarray:
        """Every send's lateness noted so far, in order (a view: no copy)."""
        return np.frombuffer(self._lateness, dtype=float) if self._lateness else np.empty(0)

    def lateness_p99_ms(self) -> float:
        """Exact p99 of every send's lateness noted so far (NaN when none)."""
        if not self._lateness:
            return math.nan
        return float(np.quantile(np.frombuffer(self._lateness[:], dtype=float), 0.99))
