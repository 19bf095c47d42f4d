"""The dispatcher that wakes senders at their slots (arrivals/dispatch.py): correctness, not speed.

Never early, every slot once, in slot order (timerfd), and a sender killed while it waits harms no
other. Run in a subprocess: gevent must not monkey-patch or own the loop of the pytest process.
How precise each mode is belongs to ``make bench-generator``.
"""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from burstbench.arrivals.dispatch import MODES, check_mode, timerfd_unavailable
from conftest import REPO_ROOT

SCRIPT = r"""
import json, sys, time
import gevent, numpy as np
from burstbench.arrivals import ArrivalSchedule, Exponential, SlotDispenser
from burstbench.arrivals.dispatch import Dispatcher

mode = sys.argv[2]
d = Dispatcher(mode)
schedule = ArrivalSchedule.draw(Exponential(mean=0.001), n=1500, seed=7)   # 1,000 slots/s, many gaps < 1 ms
dispenser = SlotDispenser(schedule)
dispenser.start(d.to_epoch(time.perf_counter() + 0.1))
woken = []  # (slot index, due, woke) in the order senders woke

def sender():
    while (slot := dispenser.claim()) is not None:
        due = d.to_perf(slot.due_epoch)
        d.wait_until(due)
        woken.append((slot.index, due, time.perf_counter()))
        gevent.sleep(0.0003)  # a pretend request: the sender is busy, another takes the next slot

def doomed():  # waits for a slot far away, then is killed (Locust stopping a user mid-wait)
    d.wait_until(time.perf_counter() + 0.5)
    woken.append((-1, 0.0, 0.0))

victim = gevent.spawn(doomed)
senders = [gevent.spawn(sender) for _ in range(16)]
gevent.sleep(0.05)
victim.kill()
gevent.joinall(senders, timeout=30)
print(json.dumps({"woken": woken, "waits": d.waits, "killed_ok": victim.dead and victim.successful()}))
"""


def run_dispatcher(mode: str) -> dict:
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(REPO_ROOT), mode], capture_output=True, text=True,
                         timeout=120, cwd=REPO_ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("mode", [m for m in MODES if m != "timerfd" or timerfd_unavailable() is None])
def test_never_early_and_every_slot_once(mode):
    result = run_dispatcher(mode)
    woken = result["woken"]
    indices = [i for i, _, _ in woken]
    assert -1 not in indices  # the killed waiter was never woken
    assert sorted(indices) == list(range(1500))  # every slot exactly once, none dropped or doubled
    early = [(i, woke - due) for i, due, woke in woken if woke < due]
    assert early == []  # on perf_counter, never before the due time
    assert result["waits"] > 1000  # the schedule was really waited for, not run through late


@pytest.mark.skipif(timerfd_unavailable() is not None, reason="timerfd needs Linux")
def test_timerfd_wakes_in_slot_order():
    """The kernel timer is armed at the earliest waiter; due senders are woken earliest first."""
    woken = run_dispatcher("timerfd")["woken"]
    assert [i for i, _, _ in woken] == list(range(1500))


@pytest.mark.parametrize("mode, message", [
    ("fast", "--dispatcher must be auto or one of timerfd, spin, sleep (got 'fast')"),
    ("", "--dispatcher must be auto or one of"),
])
def test_bad_mode_is_refused_with_the_accepted_values(mode, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        check_mode(mode)


def test_auto_picks_a_precise_mode():
    assert check_mode("auto") in ("timerfd", "spin")
