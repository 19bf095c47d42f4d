"""Arrival processes beyond exponential and gamma: any scipy.stats distribution, and a Markov-modulated
Poisson process (MMPP), each with its theory computed exactly.

Both draw gaps with ``sample(n, rng)`` like the renewal distributions, so ``ArrivalSchedule.draw`` takes
them as they are. An MMPP's gaps are not independent: ``sample`` draws one stationary sequence (the
modulating chain starts from its stationary law), and ``pdf``/``cdf`` are the stationary law of one gap.

    FromDistribution("lognorm", {"s": 1.0}, mean=0.05)       # lognormal gaps, mean 50 ms
    MMPP(rates=(50.0, 2.0), dwell_s=(1.0, 4.0))              # 1 s bursts at 50/s, 4 s calm at 2/s
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
from scipy import integrate, linalg, optimize, stats

from burstbench.errors import ParameterError

from .distributions import _RenewalDistribution


def _positive(name: str, value) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise ParameterError(f"{{{name}}} must be a finite number > 0 (got {value!r})", name)
    return value


def _state_value(what: str, i: int, value) -> float:
    try:
        return _positive("mmpp", value)
    except ParameterError:
        raise ParameterError(f"{{mmpp}} state {i + 1}: the {what} must be a finite number > 0 (got {value!r})",
                             "mmpp") from None


def _check_n(n) -> int:
    if isinstance(n, bool) or int(n) != n or n < 0:
        raise ValueError(f"n must be an integer >= 0 (got {n!r})")
    return int(n)


@dataclass(frozen=True)
class FromDistribution(_RenewalDistribution):
    """Renewal gaps from ``scipy.stats.<name>(**params)``, rescaled so the mean gap is ``mean`` seconds.

    Refused: an unknown name, a discrete distribution, gaps that can be negative, and a distribution
    whose mean is infinite (a Pareto with b <= 1, say): no rescaling can give it a mean.
    """

    name: str
    params: dict = field(default_factory=dict)
    mean: float = 2.0
    kind = "distribution"

    def __post_init__(self):
        object.__setattr__(self, "mean", _positive("mean", self.mean))
        self.scipy_dist  # noqa: B018 - validates the name, the support and the mean now

    @cached_property
    def _base(self):
        maker = getattr(stats, self.name, None)
        if not isinstance(maker, stats.rv_continuous):
            known = "lognorm, weibull_min, pareto, gamma, invgauss, ..."
            raise ParameterError(f"{{distribution}} must name a continuous scipy.stats distribution ({known}; "
                                 f"got {self.name!r})", "distribution")
        try:
            base = maker(**self.params)
            lower, mean = base.support()[0], float(base.mean())
        except (TypeError, ValueError) as err:
            raise ParameterError(f"{{distribution}} {self.name}: bad parameters {self.params!r} ({err})",
                                 "distribution") from None
        if lower < 0:
            raise ParameterError(f"{{distribution}} {self.name}: gaps must be >= 0, but its support starts at "
                                 f"{lower:g} (shift it with loc=...)", "distribution")
        if not (math.isfinite(mean) and mean > 0):
            raise ParameterError(f"{{distribution}} {self.name} with {self.params!r} has no finite mean (got "
                                 f"{mean!r}), so it cannot be rescaled to a mean gap", "distribution")
        return base, mean

    @cached_property
    def scipy_dist(self):
        base, base_mean = self._base
        args = dict(self.params)
        factor = self.mean / base_mean  # X * factor has the wanted mean; loc and scale scale with it
        args["scale"] = args.get("scale", 1.0) * factor
        args["loc"] = args.get("loc", 0.0) * factor
        return getattr(stats, self.name)(**args)

    @property
    def var(self) -> float:
        return float(self.scipy_dist.var())

    @property
    def cv(self) -> float:
        return math.sqrt(self.var) / self.mean if math.isfinite(self.var) else math.inf

    def describe(self) -> dict:
        return {"process": self.kind, "distribution": self.name, "params": dict(self.params), "mean_s": self.mean,
                "var_s2": self.var, "cv": self.cv, "rate_per_s": self.rate, "label": str(self)}

    def __str__(self) -> str:
        params = ", ".join(f"{k}={v:g}" for k, v in self.params.items())
        return f"{self.name}({params}{', ' if params else ''}mean={self.mean:.3g}s, cv={self.cv:.2f})"


@dataclass(frozen=True)
class MMPP:
    """A Markov-modulated Poisson process: in state i arrivals come at ``rates[i]`` per second, and the
    state lasts an exponential time of mean ``dwell_s[i]``, then moves to another state (the next one,
    cyclically; with two states, burst and calm alternate).

    Exact theory from the chain (generator ``Q``, ``Lambda = diag(rates)``, stationary law ``pi``):
    mean rate ``pi . rates``; one gap's stationary law is phase-type, ``alpha exp((Q - Lambda) t) Lambda 1``
    with ``alpha = pi Lambda / (pi . rates)``, so its moments are ``k! alpha (Lambda - Q)^-k 1``; and the
    index of dispersion of counts in a window of ``t`` s, ``Var N(t) / E N(t)``, by integrating the
    correlation of the rate (``idc``).
    """

    rates: tuple[float, ...]
    dwell_s: tuple[float, ...]
    kind = "mmpp"

    def __post_init__(self):
        rates, dwell = tuple(self.rates), tuple(self.dwell_s)
        if len(rates) < 2 or len(rates) != len(dwell):
            raise ParameterError(f"{{mmpp}} needs at least two states, each with a rate and a dwell time (got "
                                 f"{len(rates)} rates and {len(dwell)} dwell times)", "mmpp")
        object.__setattr__(self, "rates", tuple(_state_value("rate", i, r) for i, r in enumerate(rates)))
        object.__setattr__(self, "dwell_s", tuple(_state_value("dwell time", i, d) for i, d in enumerate(dwell)))

    @cached_property
    def generator(self) -> np.ndarray:
        k = len(self.rates)
        q = np.zeros((k, k))
        for i, dwell in enumerate(self.dwell_s):
            q[i, (i + 1) % k] += 1.0 / dwell
            q[i, i] -= 1.0 / dwell
        return q

    @cached_property
    def stationary(self) -> np.ndarray:
        """The chain's stationary law: time share of each state (proportional to its mean dwell)."""
        share = np.asarray(self.dwell_s) / sum(self.dwell_s)  # cyclic moves: every state is left equally often
        return share

    @property
    def rate(self) -> float:
        return float(self.stationary @ np.asarray(self.rates))

    @property
    def mean(self) -> float:
        return 1.0 / self.rate

    def _gap_moment(self, k: int) -> float:
        lam = np.diag(self.rates)
        alpha = self.stationary @ lam / self.rate
        m = np.linalg.matrix_power(np.linalg.inv(lam - self.generator), k)
        return float(math.factorial(k) * alpha @ m @ np.ones(len(self.rates)))

    @property
    def var(self) -> float:
        return self._gap_moment(2) - self._gap_moment(1) ** 2

    @property
    def cv(self) -> float:
        return math.sqrt(self.var) / self._gap_moment(1)

    def idc(self, window_s: float) -> float:
        """Index of dispersion of counts, Var N(t) / E N(t), in windows of ``window_s`` seconds (1 for Poisson)."""
        t = _positive("window", window_s)
        lam, ones, pi = np.diag(self.rates), np.ones(len(self.rates)), self.stationary
        rate = self.rate

        def covariance(v):  # Cov(rate at 0, rate at v) per unit rate: pi Lambda (e^{Qv} - 1 pi) Lambda 1
            return (t - v) * float(pi @ lam @ (linalg.expm(self.generator * v) - np.outer(ones, pi)) @ lam @ ones)

        integral, _ = integrate.quad(covariance, 0.0, t, limit=200)
        return 1.0 + 2.0 * integral / (rate * t)

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` successive gaps of one stationary run: the state from its stationary law, then the chain."""
        return self.gap_stream(rng)(_check_n(n))

    def gap_stream(self, rng: np.random.Generator):
        """``draw(n)``: the next ``n`` gaps of one run, the chain's state carried from call to call (so gaps
        drawn in chunks are the gaps drawn at once)."""
        state = int(rng.choice(len(self.rates), p=self.stationary))
        chain = {"state": state, "left": rng.exponential(self.dwell_s[state]), "waited": 0.0}

        def draw(n: int) -> np.ndarray:
            gaps = np.empty(n)
            state, left, waited = chain["state"], chain["left"], chain["waited"]
            i = 0
            while i < n:
                gap = rng.exponential(1.0 / self.rates[state])
                if gap < left:
                    left -= gap
                    gaps[i] = waited + gap
                    waited = 0.0
                    i += 1
                else:  # the state ends first: the wait so far carries over into the next state
                    waited += left
                    state = (state + 1) % len(self.rates)
                    left = rng.exponential(self.dwell_s[state])
            chain.update(state=state, left=left, waited=waited)
            return gaps

        return draw

    @cached_property
    def _spectral(self):
        """One eigendecomposition of ``Q - Lambda``: the gap law's survival and density weights per eigenvalue,
        so that ``cdf``/``pdf`` over a million gaps cost one exponential each, not a matrix exponential each."""
        lam = np.diag(self.rates)
        alpha = self.stationary @ lam / self.rate
        eigenvalues, vectors = np.linalg.eig(self.generator - lam)
        left, ones = alpha @ vectors, np.ones(len(self.rates))
        inverse = np.linalg.inv(vectors)
        return eigenvalues, left * (inverse @ ones), left * (inverse @ lam @ ones)

    def _spectral_sum(self, x, weights):
        x = np.asarray(x, dtype=float)
        return x, np.real(np.exp(np.multiply.outer(np.maximum(x, 0.0), self._spectral[0])) @ weights)

    def cdf(self, x):
        """The stationary law of one gap: ``1 - alpha exp((Q - Lambda) x) 1``."""
        x, survival = self._spectral_sum(x, self._spectral[1])
        return np.where(x > 0, np.clip(1.0 - survival, 0.0, 1.0), 0.0)

    def pdf(self, x):
        """``alpha exp((Q - Lambda) x) Lambda 1``."""
        x, density = self._spectral_sum(x, self._spectral[2])
        return np.where(x >= 0, np.maximum(density, 0.0), 0.0)

    def ppf(self, q: float) -> float:
        high = 10.0 / min(self.rates)
        while self.cdf(high) < q:
            high *= 2
        return float(optimize.brentq(lambda x: float(self.cdf(x)) - q, 0.0, high))

    def describe(self) -> dict:
        return {"process": self.kind, "rates_per_s": list(self.rates), "dwell_s": list(self.dwell_s),
                "mean_s": self.mean, "rate_per_s": self.rate, "cv": self.cv, "idc_1s": self.idc(1.0), "label": str(self)}

    def __str__(self) -> str:
        states = ", ".join(f"{r:g}/s for {d:g}s" for r, d in zip(self.rates, self.dwell_s))
        return f"mmpp({states}; mean rate {self.rate:.3g}/s, cv={self.cv:.2f})"
