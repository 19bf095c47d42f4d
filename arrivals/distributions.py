"""Inter-arrival distributions as small frozen value objects.

Shaped like scipy's frozen distributions, but parameterised by what a load test is
specified in: the mean gap in seconds, and for the gamma its shape (burstiness).
The one conversion to scipy's parameters lives in ``scipy_dist``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from typing import ClassVar

import numpy as np
from scipy import stats

from burstbench.errors import ParameterError


def _check_positive(name: str, value: float) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number > 0 (got {value!r})") from None
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0 (got {value!r})")
    return value


def _seconds(value: float) -> str:
    """2.00s, 0.05s, 0.012s: two decimals, or three significant digits below 0.1 s."""
    return f"{value:.2f}s" if value >= 0.1 else f"{value:.3g}s"


class _RenewalDistribution:
    """Behaviour shared by the distributions; each defines ``mean``, ``shape`` and ``scipy_dist``."""

    kind: ClassVar[str]
    mean: float
    shape: float

    @property
    def scipy_dist(self):  # pragma: no cover - overridden
        raise NotImplementedError

    @property
    def rate(self) -> float:
        """Arrivals per second."""
        return 1.0 / self.mean

    @property
    def var(self) -> float:
        return self.mean**2 / self.shape

    @property
    def cv(self) -> float:
        """Coefficient of variation of the gaps: 1 for Poisson, > 1 burstier."""
        return 1.0 / math.sqrt(self.shape)

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """Draw ``n`` i.i.d. gaps in seconds from ``rng`` (never from global state)."""
        if not isinstance(rng, np.random.Generator):
            raise TypeError("rng must be a numpy.random.Generator, e.g. np.random.default_rng(seed)")
        if int(n) != n or n < 0:
            raise ValueError(f"n must be an integer >= 0 (got {n!r})")
        return self.scipy_dist.rvs(size=int(n), random_state=rng)

    def pdf(self, x):
        return self.scipy_dist.pdf(x)

    def cdf(self, x):
        return self.scipy_dist.cdf(x)

    def describe(self) -> dict:
        """Plain-data description, for run.json and reports."""
        return {
            "process": self.kind,
            "shape": self.shape,
            "mean_s": self.mean,
            "var_s2": self.var,
            "cv": self.cv,
            "rate_per_s": self.rate,
            "label": str(self),
        }


@dataclass(frozen=True)
class Exponential(_RenewalDistribution):
    """Exponential gaps: a Poisson arrival process (CV = 1)."""

    mean: float
    kind: ClassVar[str] = "exponential"
    shape: ClassVar[float] = 1.0

    def __post_init__(self):
        object.__setattr__(self, "mean", _check_positive("mean", self.mean))

    @cached_property
    def scipy_dist(self):
        return stats.expon(scale=self.mean)

    def __str__(self) -> str:
        return f"exponential(mean={_seconds(self.mean)}, cv=1.00)"


@dataclass(frozen=True)
class Gamma(_RenewalDistribution):
    """Gamma gaps with the given mean; shape < 1 is burstier than Poisson, > 1 more regular.

    Same parameterisation as vLLM's ``--burstiness``: scale = mean / shape, CV^2 = 1 / shape.
    """

    shape: float
    mean: float
    kind: ClassVar[str] = "gamma"

    def __post_init__(self):
        object.__setattr__(self, "shape", _check_positive("shape", self.shape))
        object.__setattr__(self, "mean", _check_positive("mean", self.mean))

    @property
    def scale(self) -> float:
        return self.mean / self.shape

    @cached_property
    def scipy_dist(self):
        return stats.gamma(a=self.shape, scale=self.scale)

    def __str__(self) -> str:
        return f"gamma(a={self.shape:g}, mean={_seconds(self.mean)}, cv={self.cv:.2f})"


ArrivalDistribution = Exponential | Gamma


def make_distribution(arrival: str, mean: float, shape: float | None = None) -> ArrivalDistribution:
    """Build a distribution from flag-like values; errors name the flag and the accepted range."""
    if arrival == "exponential":
        if shape not in (None, 1, 1.0):
            raise ParameterError(f"{{shape}} applies only to {{arrival}} gamma (got {{shape}} {shape} with exponential)", "shape", "arrival")
        return Exponential(mean=_check_positive("--mean", mean))
    if arrival == "gamma":
        if shape is None:
            raise ParameterError("{arrival} gamma needs {shape}, a number > 0 (e.g. 0.8 for bursty traffic)", "arrival", "shape")
        return Gamma(shape=_check_positive("--shape", shape), mean=_check_positive("--mean", mean))
    raise ParameterError(f"{{arrival}} must be one of exponential, gamma (got {arrival!r})", "arrival")

