"""Schedules drawn lazily, in chunks, from the seeded stream: a run bounded by time never runs out.

``LazySchedule`` holds the offsets drawn so far and draws the next chunk when a slot past them is asked
for. Chunks are drawn from the one ``schedule`` stream of the seed, carrying the process's state (an
MMPP's chain, a stage profile's operational time) and summing from the last offset, so the offsets are
bit-identical to ``ArrivalSchedule.draw`` of the same count: a schedule does not depend on how it was drawn.

``StreamDispenser`` hands out one process's share of it, slots k, k+W, k+2W, ... (W load processes), up to
an optional count, with the same give-back of unsent slots as ``SlotDispenser``.
"""
from __future__ import annotations

import heapq
import time
from typing import Callable

import numpy as np

from .schedule import Slot, check_requests, check_seed, rng_for

CHUNK = 1024


def offset_stream(process, rng: np.random.Generator) -> Callable[[int], np.ndarray]:
    """``draw(n)``: the next ``n`` send offsets of ``process`` (seconds from the start)."""
    if hasattr(process, "offset_stream"):
        return process.offset_stream(rng)
    gaps = process.gap_stream(rng) if hasattr(process, "gap_stream") else (lambda n: process.sample(n, rng))
    last = [0.0]

    def draw(n: int) -> np.ndarray:
        offsets = np.cumsum(np.concatenate([last, gaps(n)]))[1:]  # summed on from the last offset, bit for bit
        if len(offsets):
            last[0] = float(offsets[-1])
        return offsets

    return draw


class LazySchedule:
    """The offsets of ``process`` from ``seed``'s schedule stream, drawn as far as asked; ``limit`` caps the count.

    A replayed trace (anything with ``offsets_s`` and no sampler) is its own, finite schedule.
    """

    def __init__(self, process, seed: int = 0, limit: int | None = None, chunk: int = CHUNK):
        self.process = process
        self.seed = check_seed(seed)
        self.limit = None if limit is None else check_requests(limit)
        self.chunk = int(chunk)
        fixed = getattr(process, "offsets_s", None)
        if fixed is not None and not hasattr(process, "sample"):
            self._buffer = np.asarray(fixed, dtype=float)
            self._drawn = len(self._buffer)
            self.limit = self._drawn if self.limit is None else min(self.limit, self._drawn)
            self._draw = None
        else:
            self._buffer, self._drawn = np.empty(self.chunk), 0
            self._draw = offset_stream(process, rng_for(self.seed, "schedule"))

    @property
    def _offsets(self) -> np.ndarray:
        return self._buffer[:self._drawn]

    def _extend_to(self, n: int) -> None:
        # A buffer that doubles when full: drawing on costs amortised O(1) a slot on the wait-time call, where
        # concatenating onto the whole schedule at every chunk would copy it all (O(n) per chunk).
        while self._drawn < n and self._draw is not None:
            chunk = self._draw(self.chunk)
            if self._drawn + len(chunk) > len(self._buffer):
                grown = np.empty(max(2 * len(self._buffer), self._drawn + len(chunk)))
                grown[:self._drawn] = self._offsets
                self._buffer = grown
            self._buffer[self._drawn:self._drawn + len(chunk)] = chunk
            self._drawn += len(chunk)

    def offset(self, index: int) -> float | None:
        """Slot ``index``'s offset (s), or None past the limit."""
        if self.limit is not None and index >= self.limit:
            return None
        self._extend_to(index + 1)
        return float(self._buffer[index])

    def offsets(self, n: int) -> np.ndarray:
        """The first ``n`` offsets (fewer only past the limit)."""
        n = n if self.limit is None else min(n, self.limit)
        self._extend_to(n)
        return self._offsets[:n].copy()

    def due_by(self, elapsed_s: float) -> int:
        """How many slots fell due within ``elapsed_s`` of the start (what a time-bound run owed)."""
        if elapsed_s <= 0:
            return 0
        while self._draw is not None and (self.limit is None or self._drawn < self.limit) and (
                not self._drawn or self._buffer[self._drawn - 1] <= elapsed_s):
            self._extend_to(self._drawn + self.chunk)
        count = int(np.searchsorted(self._offsets, elapsed_s, side="right"))
        return count if self.limit is None else min(count, self.limit)


class StreamDispenser:
    """Slots ``worker_index``, ``worker_index + worker_count``, ... of a lazy schedule, in order, to whichever
    sender is free; None once the share (up to the schedule's limit) is used up. ``worker_count`` 0: no slots."""

    def __init__(self, schedule: LazySchedule, worker_index: int = 0, worker_count: int = 1,
                 clock: Callable[[], float] = time.time):
        if worker_count < 0 or (worker_count and not 0 <= worker_index < worker_count):
            raise ValueError(f"worker index must be in [0, {max(worker_count - 1, 0)}] (got {worker_index})")
        self.schedule = schedule
        self.worker_index, self.worker_count = worker_index, worker_count
        self.clock = clock
        self.start_epoch: float | None = None
        self._position = 0
        self._returned: list[tuple[float, int]] = []

    def start(self, epoch: float | None = None) -> float:
        if self.start_epoch is None:
            self.start_epoch = self.clock() if epoch is None else float(epoch)
        return self.start_epoch

    def _index(self, position: int) -> int:
        return self.worker_index + position * self.worker_count

    def claim(self) -> Slot | None:
        offset = self.schedule.offset(self._index(self._position)) if self.worker_count else None
        if self._returned and (offset is None or self._returned[0][0] <= self.start() + offset):
            due, index = heapq.heappop(self._returned)
            return Slot(index=index, due_epoch=due)
        if offset is None:
            return None
        slot = Slot(index=self._index(self._position), due_epoch=self.start() + offset)
        self._position += 1
        return slot

    def give_back(self, slot: Slot) -> None:
        heapq.heappush(self._returned, (slot.due_epoch, slot.index))

    @property
    def claimed(self) -> int:
        return self._position - len(self._returned)

    @property
    def total(self) -> int | None:
        """This share's slot count, or None for an unbounded schedule."""
        limit = self.schedule.limit
        if limit is None:
            return None
        if not self.worker_count:
            return 0
        return max(0, -(-(limit - self.worker_index) // self.worker_count))
