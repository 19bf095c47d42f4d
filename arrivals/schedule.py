"""Arrival schedules fixed ahead from a seed, and the slot dispenser that releases them.

A schedule is the list of send offsets t_i = g_1 + ... + g_i (seconds after the start
epoch) for i.i.d. gaps g drawn from one distribution. Slots are handed out in order;
with W load processes, process k takes slots k, k+W, k+2W, ... of the *same* schedule,
so the merged sends reproduce the single-process schedule (independent per-process
schedules would superpose towards Poisson and lose the burstiness).
"""
from __future__ import annotations

import heapq
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from burstbench.errors import ParameterError

from .distributions import ArrivalDistribution

# Named random streams, so the texts do not change when the arrival process does.
STREAMS = {"schedule": 0, "texts": 1, "think": 2}


def rng_for(seed: int, stream: str, *sub: int) -> np.random.Generator:
    """An independent, reproducible generator for one named stream (and sub-stream, e.g. a user)."""
    if stream not in STREAMS:
        raise ValueError(f"stream must be one of {', '.join(STREAMS)} (got {stream!r})")
    return np.random.default_rng(np.random.SeedSequence(check_seed(seed), spawn_key=(STREAMS[stream], *sub)))


def check_seed(seed) -> int:
    if isinstance(seed, bool) or int(seed) != seed or seed < 0:
        raise ParameterError(f"{{seed}} must be an integer >= 0 (got {seed!r})", "seed")
    return int(seed)


def check_requests(n) -> int:
    if isinstance(n, bool) or int(n) != n or n < 1:
        raise ParameterError(f"{{requests}} must be an integer >= 1 (got {n!r})", "requests")
    return int(n)


@dataclass(frozen=True)
class ArrivalSchedule:
    """Send offsets in seconds from the start epoch, one per request."""

    distribution: ArrivalDistribution
    seed: int
    offsets_s: np.ndarray = field(repr=False)

    @classmethod
    def draw(cls, distribution: ArrivalDistribution, n: int, seed: int) -> "ArrivalSchedule":
        from .lazy import offset_stream  # the one way offsets are drawn: lazily drawn schedules equal this one

        offsets = offset_stream(distribution, rng_for(check_seed(seed), "schedule"))(check_requests(n))
        return cls(distribution=distribution, seed=check_seed(seed), offsets_s=offsets)

    def __len__(self) -> int:
        return len(self.offsets_s)

    @property
    def gaps_s(self) -> np.ndarray:
        """The drawn gaps, the first measured from the start epoch."""
        return np.diff(self.offsets_s, prepend=0.0)

    @property
    def duration_s(self) -> float:
        return float(self.offsets_s[-1])


@dataclass(frozen=True)
class Slot:
    index: int
    due_epoch: float


class SlotDispenser:
    """Hands out the schedule's slots in order to whichever sender is free.

    Claiming is a plain counter increment: under gevent it cannot interleave, so every
    slot goes to exactly one sender. The start epoch is fixed by ``start`` or, failing
    that, by the first claim. A sender stopped while holding an unsent slot (Locust
    rebalancing users onto a new worker, say) gives it back, and the next claim takes it
    first if it is due first: a slot is never lost or re-timed.
    """

    def __init__(self, schedule: ArrivalSchedule, worker_index: int = 0, worker_count: int = 1,
                 clock: Callable[[], float] = time.time):
        if worker_count < 1 or not 0 <= worker_index < worker_count:
            raise ValueError(f"worker index must be in [0, {worker_count - 1}] (got {worker_index})")
        self._init(np.arange(worker_index, len(schedule), worker_count),
                   schedule.offsets_s[worker_index::worker_count], clock)

    @classmethod
    def for_slots(cls, indices, offsets_s, clock: Callable[[], float] = time.time) -> "SlotDispenser":
        """A dispenser for an explicit share of a schedule (what a distributed worker is sent)."""
        indices, offsets_s = np.asarray(indices, dtype=np.int64), np.asarray(offsets_s, dtype=float)
        if indices.shape != offsets_s.shape:
            raise ValueError(f"{len(indices)} slot indices but {len(offsets_s)} offsets")
        dispenser = cls.__new__(cls)
        dispenser._init(indices, offsets_s, clock)
        return dispenser

    def _init(self, indices: np.ndarray, offsets_s: np.ndarray, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.slot_indices = indices
        self.offsets_s = offsets_s
        self.start_epoch: float | None = None
        self._next = 0
        self._returned: list[tuple[float, int]] = []  # heap of (due_epoch, index) given back unsent

    def start(self, epoch: float | None = None) -> float:
        if self.start_epoch is None:
            self.start_epoch = self.clock() if epoch is None else float(epoch)
        return self.start_epoch

    def claim(self) -> Slot | None:
        """The next due slot, or None once this process's share is used up."""
        fresh = self._next < len(self.slot_indices)
        if self._returned and (not fresh or self._returned[0][0] <= self.due_epoch(self._next)):
            due, index = heapq.heappop(self._returned)
            return Slot(index=index, due_epoch=due)
        if not fresh:
            return None
        slot = Slot(index=int(self.slot_indices[self._next]), due_epoch=self.due_epoch(self._next))
        self._next += 1
        return slot

    def give_back(self, slot: Slot) -> None:
        """Return a claimed slot that was never sent; it keeps its due time."""
        heapq.heappush(self._returned, (slot.due_epoch, slot.index))

    @property
    def claimed(self) -> int:
        return self._next - len(self._returned)

    @property
    def total(self) -> int:
        return len(self.slot_indices)

    def due_epoch(self, position: int) -> float:
        """When this process's ``position``-th slot is due (for ETAs)."""
        return self.start() + float(self.offsets_s[position])
