"""Precise send times under gevent: wake a sender at its slot to a few tens of microseconds.

gevent's libev loop waits in epoll, whose timeout is whole milliseconds, so ``gevent.sleep``
wakes a sender up to 1 ms late and sends due within a millisecond of each other cluster on the
loop's wake-ups (an exponential process at 200 req/s has a fifth of its gaps under 1 ms). Three
ways to wait, chosen by ``--dispatcher`` and measured side by side by ``make bench-generator``:

* ``timerfd`` (default on Linux): one kernel timer per process (``timerfd_create``, armed at the
  earliest waiting slot on CLOCK_MONOTONIC, absolute). Its file descriptor wakes the loop's epoll
  as soon as it fires, whatever epoll's millisecond timeout; the hub then switches straight to the
  senders whose slots are due. No spinning: the CPU cost is one timer syscall per slot.
* ``spin``: ``gevent.sleep`` to 1.5 ms before the slot, then yield (``gevent.sleep(0)``) until it is
  due. Precise, portable, and busy: the process looks saturated to a CPU monitor.
* ``sleep``: plain ``gevent.sleep``, what Locust itself does (for comparison).

Every wait returns at or after its due time on ``time.perf_counter`` (CLOCK_MONOTONIC on Linux),
never before. Schedules are in epoch seconds (one epoch across distributed workers), converted once
per process by ``epoch_offset_s`` so that every stamp of a run is on one clock.

gevent is imported when a dispatcher is made, never on import: ``arrivals`` stays importable
without gevent or Locust.
"""
from __future__ import annotations

import ctypes
import heapq
import itertools
import os
import sys
import time

from burstbench.errors import ParameterError

MODES = ("timerfd", "spin", "sleep")
SPIN_WINDOW_S = 0.0015      # spin: the last part of a wait, yielded rather than slept
TIMERFD_LEAD_S = 0.00015    # timerfd: wake this early, then busy-wait the rest (a VM's wake-up from idle
                            # takes 50-250 us here; a 150 us spin costs 3 % of a core at 200 req/s)
CLOCK_MONOTONIC = 1
TFD_NONBLOCK = os.O_NONBLOCK
TFD_CLOEXEC = os.O_CLOEXEC
TFD_TIMER_ABSTIME = 1
PR_SET_TIMERSLACK = 29


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class _Itimerspec(ctypes.Structure):
    _fields_ = [("it_interval", _Timespec), ("it_value", _Timespec)]


def timerfd_unavailable() -> str | None:
    """None where a timerfd can be made, else why not (one line)."""
    if not sys.platform.startswith("linux"):
        return f"timerfd needs Linux (this is {sys.platform})"
    try:
        _TimerFd().close()
    except OSError as err:
        return f"timerfd_create failed: {err}"
    return None


def default_mode() -> str:
    return "timerfd" if timerfd_unavailable() is None else "spin"


def check_mode(mode: str) -> str:
    """``auto`` or one of MODES; a timerfd where the kernel has none is refused in one line."""
    if mode == "auto":
        return default_mode()
    if mode not in MODES:
        raise ParameterError(f"{{dispatcher}} must be auto or one of {', '.join(MODES)} (got {mode!r})", "dispatcher")
    if mode == "timerfd" and (reason := timerfd_unavailable()):
        raise ParameterError(f"{{dispatcher}} timerfd is not available here: {reason} (use spin)", "dispatcher")
    return mode


class _TimerFd:
    """A CLOCK_MONOTONIC timerfd armed at absolute times (Python 3.11 has no os.timerfd_*)."""

    def __init__(self):
        self._libc = ctypes.CDLL(None, use_errno=True)
        self.fd = self._libc.timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC)
        if self.fd < 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))
        self._spec = _Itimerspec()
        self._settime = self._libc.timerfd_settime

    def arm(self, when_s: float) -> None:
        """Fire once at ``when_s`` on CLOCK_MONOTONIC (= time.perf_counter on Linux)."""
        sec = int(when_s)
        self._spec.it_value.tv_sec = sec
        self._spec.it_value.tv_nsec = max(1, int((when_s - sec) * 1e9))  # 0 would disarm it
        self._settime(self.fd, TFD_TIMER_ABSTIME, ctypes.byref(self._spec), None)

    def drain(self) -> None:
        try:
            os.read(self.fd, 8)
        except BlockingIOError:
            pass

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def lower_timer_slack() -> bool:
    """Ask the kernel for 1 ns of timer slack (default 50 us) for this process's sleeps and polls."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        return ctypes.CDLL(None, use_errno=True).prctl(PR_SET_TIMERSLACK, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


class Dispatcher:
    """Blocks the calling greenlet until a due time; one per load process."""

    def __init__(self, mode: str = "auto", lead_s: float = TIMERFD_LEAD_S):
        import gevent  # noqa: F401  (only here: a dispatcher lives inside a gevent process)
        from gevent.hub import Waiter, get_hub

        self.mode = check_mode(mode)
        self.lead_s = lead_s if self.mode == "timerfd" else 0.0
        self.epoch_offset_s = time.time() - time.perf_counter()
        self.timer_slack_lowered = lower_timer_slack()
        self.waits = 0          # waits that had to block (the slot was not yet due)
        self._waiter_type = Waiter
        self._gevent_sleep = gevent.sleep
        self._heap: list[list] = []  # [due_s, seq, waiter or None once done or cancelled]
        self._dispatching = False    # inside the timer callback: more due senders may be about to run
        self._seq = itertools.count()
        self._timer = None
        if self.mode == "timerfd":
            self._timer = _TimerFd()
            self._armed_at: float | None = None
            self._watcher = get_hub().loop.io(self._timer.fd, 1)
            self._watcher.start(self._on_timer)

    # -- clocks ---------------------------------------------------------------------------
    def to_perf(self, epoch_s: float) -> float:
        return epoch_s - self.epoch_offset_s

    def to_epoch(self, perf_s: float) -> float:
        return perf_s + self.epoch_offset_s

    def describe(self) -> dict:
        return {"mode": self.mode, "clock": "time.perf_counter (CLOCK_MONOTONIC) shifted to epoch seconds by "
                                             "epoch_offset_s, measured once at the start of the process",
                "epoch_offset_s": self.epoch_offset_s, "lead_s": self.lead_s, "timer_slack_1ns": self.timer_slack_lowered,
                "offset_drift_s": (time.time() - time.perf_counter()) - self.epoch_offset_s}

    # -- waiting --------------------------------------------------------------------------
    def sleep_coarse(self, due_s: float, margin_s: float = 0.002) -> None:
        """Sleep (cheaply, killably) to ``margin_s`` before ``due_s``; the precise part is ``wait_until``."""
        remaining = due_s - time.perf_counter() - margin_s
        if remaining > 0:
            self._gevent_sleep(remaining)

    def wait_until(self, due_s: float) -> None:
        """Return at or after ``due_s`` (perf_counter seconds), as close to it as the mode allows."""
        if due_s <= time.perf_counter():
            return
        self.waits += 1
        if self.mode == "timerfd":
            if due_s - time.perf_counter() > self.lead_s:
                self._wait_timerfd(due_s - self.lead_s)
            while time.perf_counter() < due_s:  # the last microseconds, without yielding: nothing can cut in
                pass
        elif self.mode == "spin":
            while (remaining := due_s - time.perf_counter()) > 0:
                self._gevent_sleep(remaining - SPIN_WINDOW_S if remaining > SPIN_WINDOW_S else 0)
        else:
            while (remaining := due_s - time.perf_counter()) > 0:
                self._gevent_sleep(remaining)

    def wake_before(self, due_s: float) -> None:
        """Return up to ``lead_s`` before ``due_s``, without the final busy wait: for a sender whose socket
        holds its first write until the slot itself (locustfiles/stamps.py), so that senders due close
        together can all build their requests first. Other modes wait to ``due_s`` as ``wait_until``."""
        if self.mode != "timerfd":
            return self.wait_until(due_s)
        if due_s - time.perf_counter() > self.lead_s:
            self.waits += 1
            self._wait_timerfd(due_s - self.lead_s)

    def _wait_timerfd(self, due_s: float) -> None:
        entry = [due_s, next(self._seq), self._waiter_type()]
        heapq.heappush(self._heap, entry)
        if self._armed_at is None or due_s < self._armed_at:
            self._arm(due_s)
        try:
            entry[2].get()
        finally:
            entry[2] = None  # woken, or killed while waiting (Locust stopping the user): never switched to again

    def others_due_before(self, when_s: float) -> bool:
        """Will another sender wake before ``when_s``? (Then a sender holding its write should yield.)"""
        return self._dispatching or bool(self._heap and self._heap[0][0] <= when_s)

    def _arm(self, due_s: float) -> None:
        self._armed_at = due_s
        self._timer.arm(due_s)

    def _on_timer(self) -> None:
        """In the hub: switch to every sender now due, then arm for the next one."""
        self._timer.drain()
        self._armed_at = None
        heap = self._heap
        self._dispatching = True
        try:
            self._wake_due(heap)
        finally:
            self._dispatching = False
        if heap and (self._armed_at is None or heap[0][0] < self._armed_at):
            self._arm(heap[0][0])

    def _wake_due(self, heap: list) -> None:
        while heap:
            head = heap[0]
            if head[2] is None:
                heapq.heappop(heap)
                continue
            if head[0] > time.perf_counter():
                break
            heapq.heappop(heap)
            waiter, head[2] = head[2], None
            waiter.switch(None)  # runs that sender until it blocks (its request is on the wire by then)

    def close(self) -> None:
        if self._timer is not None:
            self._watcher.stop()
            self._timer.close()
            self._timer = None
