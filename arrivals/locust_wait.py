"""Locust wait-time factories driven by an arrival distribution.

Like Locust's own ``constant_pacing``, each factory returns a *plain function* of the
user (a plain function binds as a method on the User class; a callable object would
not). Per-user state is kept on the user. Nothing here imports Locust, so the module
can be used and tested without gevent's monkey-patching.

Two pacings:

* ``think_time``: the reference paper's closed loop. After each response the user sleeps
  a fresh draw, so its real gap is think time + response time.
* ``arrival_pacing``: one schedule of send times fixed ahead; the user about to become
  idle claims the next slot and sleeps until it is due. A slow response delays no other
  request while another user is free. The claimed slot is left on ``user.arrival_slot``
  for the task to record (scheduled time, lateness); it is None once the schedule is used up.
"""
from __future__ import annotations

import itertools
from typing import Callable

from .distributions import ArrivalDistribution
from .schedule import SlotDispenser, rng_for


def think_time(distribution: ArrivalDistribution, seed: int) -> Callable[[object], float]:
    """``wait_time = think_time(Gamma(shape=0.8, mean=2.0), seed=1)``: a fresh draw per wait.

    Each user gets its own reproducible stream, numbered in the order users first wait.
    """
    user_numbers = itertools.count()

    def wait_time(user) -> float:
        rng = getattr(user, "_think_rng", None)
        if rng is None:
            rng = user._think_rng = rng_for(seed, "think", next(user_numbers))
        think_s = float(distribution.sample(1, rng)[0])
        user.last_think_s = think_s
        return think_s

    return wait_time


def arrival_pacing(dispenser: SlotDispenser, clock: Callable[[], float] | None = None,
                   dispatcher="auto") -> Callable[[object], float]:
    """``wait_time = arrival_pacing(SlotDispenser(ArrivalSchedule.draw(dist, n, seed)))``.

    Claims the next slot for this user and waits until it is due, to a few tens of microseconds
    (``dispatch.Dispatcher``: gevent's own sleep is a millisecond coarse), then returns 0. A late
    slot is sent at once; its lateness is recorded, it is never re-timed or dropped.
    ``dispatcher``: "auto" (one per process, made at the first wait, the best mode here), a
    ``Dispatcher``, or None to return the sleep until due instead of waiting (what a test with a
    fake ``clock`` wants; ``clock`` defaults to the dispenser's).
    """
    if clock is not None and dispatcher == "auto":
        dispatcher = None  # a fake clock cannot drive a real timer
    clock = clock or dispenser.clock
    made: list = [dispatcher]

    def wait_time(user) -> float:
        slot = dispenser.claim()
        user.arrival_slot = slot
        if slot is None:
            return 0.0
        if made[0] is None:
            return max(0.0, slot.due_epoch - clock())
        if made[0] == "auto":
            from .dispatch import Dispatcher

            made[0] = Dispatcher()
        made[0].wait_until(made[0].to_perf(slot.due_epoch))
        return 0.0

    return wait_time
