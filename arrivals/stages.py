"""A rate that changes over time, applied to any renewal process by time-rescaling.

A ``RateProfile`` is piecewise linear: each segment lasts ``duration_s`` and goes from ``start`` to ``end``
requests/s (a hold has ``start == end``, a step is a hold at a new rate, a spike a short one). ``Stages``
draws the base process at unit rate and maps its arrival times through the inverse of the integrated rate
``Lambda(t)``, so the rate follows the profile while the burstiness of the base (its gap CV, in
operational time) is kept. After the last segment the last rate holds.

The check runs the other way (the time-rescaling theorem): ``Lambda`` of the arrival times gives gaps
that follow the unit-mean base distribution, whatever the profile (``rescaled_gaps``).

    profile = RateProfile([(300, 5, 50), (600, 50, 50), (30, 200, 200), (600, 20, 20)])  # ramp, hold, spike, hold
    Stages(Gamma(shape=0.8, mean=1.0), profile)
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import cached_property

import numpy as np

from burstbench.errors import ParameterError


@dataclass(frozen=True)
class RateProfile:
    """Segments ``(duration_s, start_rate, end_rate)``: durations > 0, rates >= 0, not all zero."""

    segments: tuple[tuple[float, float, float], ...]

    def __post_init__(self):
        checked = []
        for i, seg in enumerate(self.segments):
            try:
                duration, start, end = (float(v) for v in seg)
            except (TypeError, ValueError):
                raise ParameterError(f"{{stages}} segment {i + 1} must be (duration_s, start_rate, end_rate) "
                                     f"(got {seg!r})", "stages") from None
            if not (math.isfinite(duration) and duration > 0):
                raise ParameterError(f"{{stages}} segment {i + 1}: the duration must be a number of seconds > 0 "
                                     f"(got {duration:g})", "stages")
            if not all(math.isfinite(r) and r >= 0 for r in (start, end)):
                raise ParameterError(f"{{stages}} segment {i + 1}: rates must be numbers of requests/s >= 0 "
                                     f"(got {start:g} to {end:g})", "stages")
            checked.append((duration, start, end))
        if not checked:
            raise ParameterError("{stages} needs at least one segment", "stages")
        if checked[-1][2] <= 0:
            raise ParameterError("{stages} must end at a rate > 0 (the last rate holds after the profile)", "stages")
        object.__setattr__(self, "segments", tuple(checked))

    @cached_property
    def _edges(self) -> tuple[np.ndarray, np.ndarray]:
        """Segment start times and ``Lambda`` at each start."""
        durations = np.array([d for d, _, _ in self.segments])
        areas = np.array([d * (a + b) / 2 for d, a, b in self.segments])
        return np.concatenate([[0.0], np.cumsum(durations)]), np.concatenate([[0.0], np.cumsum(areas)])

    @property
    def duration_s(self) -> float:
        return float(self._edges[0][-1])

    @property
    def expected_requests(self) -> float:
        return float(self._edges[1][-1])

    def rate(self, t):
        """The intended rate at times ``t`` (s from the start)."""
        t = np.asarray(t, dtype=float)
        starts, _ = self._edges
        out = np.full(t.shape, self.segments[-1][2])
        for (d, a, b), t0 in zip(self.segments, starts[:-1]):
            inside = (t >= t0) & (t < t0 + d)
            out[inside] = a + (b - a) * (t[inside] - t0) / d
        return out

    def integrated(self, t):
        """``Lambda(t)``: the expected number of arrivals by time ``t``."""
        t = np.asarray(t, dtype=float)
        starts, lams = self._edges
        last = self.segments[-1][2]
        out = lams[-1] + last * (t - starts[-1])
        for (d, a, b), t0, l0 in zip(self.segments, starts[:-1], lams[:-1]):
            inside = (t >= t0) & (t < t0 + d)
            u = t[inside] - t0
            out[inside] = l0 + a * u + (b - a) * u * u / (2 * d)
        return out

    def inverse(self, lam):
        """The time ``t`` with ``Lambda(t) = lam`` (the earliest, where the rate is zero for a while)."""
        lam = np.asarray(lam, dtype=float)
        starts, lams = self._edges
        last = self.segments[-1][2]
        out = starts[-1] + (lam - lams[-1]) / last
        for (d, a, b), t0, l0, l1 in zip(self.segments, starts[:-1], lams[:-1], lams[1:]):
            inside = (lam >= l0) & (lam < l1)
            x = lam[inside] - l0
            slope = (b - a) / d
            if slope == 0:
                u = x / a
            else:  # solve a u + slope u^2 / 2 = x for u >= 0 (the stable form of the quadratic's root)
                root = a + np.sqrt(np.maximum(a * a + 2 * slope * x, 0.0))
                u = np.divide(2 * x, root, out=np.zeros_like(x), where=root > 0)
            out[inside] = t0 + u
        return out

    def describe(self) -> dict:
        return {"segments": [list(s) for s in self.segments], "duration_s": self.duration_s,
                "expected_requests": self.expected_requests}

    def __str__(self) -> str:
        parts = [f"{a:g}/s for {d:g}s" if a == b else f"{a:g} to {b:g}/s over {d:g}s" for d, a, b in self.segments]
        return ", then ".join(parts)


@dataclass(frozen=True)
class Stages:
    """``base`` (a renewal distribution with a ``mean`` field: Exponential, Gamma, FromDistribution; its mean is
    ignored, it is drawn at unit rate) following ``profile``."""

    base: object
    profile: RateProfile
    kind = "stages"

    @cached_property
    def unit_base(self):
        """The base rescaled to mean 1: what the rescaled gaps of a correct schedule follow."""
        return replace(self.base, mean=1.0)

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` gaps whose arrival times follow the profile (the last rate holds after it)."""
        return np.diff(self.offset_stream(rng)(n), prepend=0.0)

    def offset_stream(self, rng: np.random.Generator):
        """``draw(n)``: the next ``n`` arrival offsets (s), the base's operational time carried between calls."""
        operational_end = [0.0]

        def draw(n: int) -> np.ndarray:
            # Prepending the running sum keeps chunked sums bit-identical to one cumulative sum.
            operational = np.cumsum(np.concatenate([operational_end, self.unit_base.sample(n, rng)]))[1:]
            if len(operational):
                operational_end[0] = float(operational[-1])
            return self.profile.inverse(operational)

        return draw

    def rescaled_gaps(self, offsets_s) -> np.ndarray:
        """Gaps of ``Lambda(arrival times)``: unit-mean draws of the base when the traffic followed the profile."""
        return np.diff(self.profile.integrated(np.asarray(offsets_s, dtype=float)), prepend=0.0)

    @property
    def mean(self) -> float:
        """The mean gap over the profile (its duration over its expected requests)."""
        return self.profile.duration_s / self.profile.expected_requests

    @property
    def rate(self) -> float:
        return 1.0 / self.mean

    def describe(self) -> dict:
        base = self.unit_base.describe() if hasattr(self.unit_base, "describe") else {"process": str(self.base)}
        return {"process": self.kind, "base": base, "profile": self.profile.describe(), "mean_s": self.mean,
                "rate_per_s": self.rate, "cv": self.unit_base.cv, "label": str(self)}

    def __str__(self) -> str:
        return f"stages({self.profile}; base cv={self.unit_base.cv:.2f})"
