"""Maximum-likelihood fit of a two-state MMPP (Markov-modulated Poisson process) to a sequence of gaps.

An MMPP is a Markovian arrival process with ``D0 = Q - Lambda`` (no arrival) and ``D1 = Lambda`` (an
arrival, the state kept). The likelihood of gaps ``g_1..g_n`` observed from an arrival on is

    L = alpha  prod_i [expm(D0 g_i) D1]  1,        alpha = pi Lambda / (pi . rates)

(``alpha``: the state seen by a stationary arrival). Unlike the renewal laws it includes the order of the
gaps, i.e. their correlation, which is what an MMPP adds over a renewal process.

Computing it: ``expm(D0 g)`` in closed form from the two real eigenvalues of ``D0`` (a 2x2 matrix with
positive off-diagonal entries), written so that every term is non-negative (no cancellation), with the
slowest decay ``e^{lambda1 g}`` factored out so that long gaps do not underflow. ``forward_loglik`` is the
scaled forward recursion (normalise the row vector after each gap, sum the logs of the normalisers).
``loglik``, which the fit maximises, multiplies the same 2x2 matrices pairwise in a tree, normalising each
product: by associativity the same number (the tests check it to 1e-9), but log2(n) vectorised numpy steps
instead of n Python steps, about 50x faster at 5,000 gaps (0.3 ms against 16 ms), which is what lets a fit
from several starting points finish in well under a second.

The fit works in units of the mean gap (rates near 1, so one set of bounds fits every trace), maximises
over the logs of the two rates and the two switching rates (1/dwell) with L-BFGS-B from a few data-driven
starting points (searched on the first START_WINDOW gaps, the best then polished on all), and reports the
calm (lower-rate) state first: the two labellings have the same likelihood.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import optimize

from burstbench.arrivals import MMPP
from burstbench.errors import ParameterError

MIN_GAPS = 20            # fewer gaps cannot say anything about four parameters and their correlation
PARAMETERS = 4           # two rates, two mean dwell times
SPLIT_QUANTILES = (0.25, 0.5, 0.75, 0.9)  # starting points: short/long gaps split at these quantiles
_LOG_BOUNDS = (math.log(1e-5), math.log(1e5))  # on rates and switching rates, in units of the mean rate
START_WINDOW = 20_000   # gaps the starting points are searched on
START_ITERATIONS = 60
POLISH_ITERATIONS = 400


@dataclass(frozen=True)
class MMPPFit:
    """The fitted process (calm state first), its log-likelihood and how the search went."""

    process: MMPP
    loglik: float
    n: int
    starts: int
    converged: bool
    evaluations: int

    k = PARAMETERS

    @property
    def aic(self) -> float:
        return 2 * self.k - 2 * self.loglik


def _check(gaps) -> np.ndarray:
    gaps = np.asarray(gaps, dtype=float)
    if gaps.ndim != 1 or not np.all(np.isfinite(gaps)) or np.any(gaps < 0):
        raise ValueError("gaps must be a 1-d array of finite numbers >= 0")
    return gaps


def _expm_parts(x: np.ndarray, rates, switch) -> tuple[np.ndarray, float]:
    """``expm(D0 x) / e^{l1 x}`` for every ``x`` as rows (11, 12, 21, 22) of a (4, n) array, and ``l1``."""
    r1, r2 = rates
    q1, q2 = switch
    a, d = -(q1 + r1), -(q2 + r2)  # D0 = [[a, q1], [q2, d]]
    delta = math.sqrt((a - d) ** 2 + 4 * q1 * q2)        # l1 - l2 > 0: the eigenvalues are distinct
    # u = a - l2 = l1 - d and w = l1 - a = d - l2, both >= 0 (the eigenvalues interlace the diagonal), with
    # u + w = delta and u w = q1 q2: the larger directly, the smaller from the product, so neither is a
    # difference of nearly equal numbers (at extreme rates one of them would otherwise come out negative).
    big = (abs(a - d) + delta) / 2
    u, w = (big, q1 * q2 / big) if a >= d else (q1 * q2 / big, big)
    l2 = (a + d - delta) / 2                              # both eigenvalues negative; no cancellation here
    l1 = (q1 * r2 + r1 * q2 + r1 * r2) / l2               # det(D0) / l2, det written without a subtraction
    decay = np.exp(-delta * x)
    rise = -np.expm1(-delta * x) / delta                  # (1 - e^{-delta x}) / delta, exact for small x
    m = np.empty((4, len(x)))
    m[0] = (u + decay * w) / delta
    m[1] = q1 * rise
    m[2] = q2 * rise
    m[3] = (w + decay * u) / delta
    return m, l1


def _alpha(rates, switch) -> np.ndarray:
    """The state law at an arrival: pi Lambda / (pi . rates), pi proportional to the mean dwell times."""
    weights = np.array([rates[0] / switch[0], rates[1] / switch[1]])
    return weights / weights.sum()


def _blocks(gaps: np.ndarray, rates, switch) -> tuple[np.ndarray, float]:
    """``expm(D0 g) D1 / e^{l1 g}`` for every gap (rows 11, 12, 21, 22), and the sum of the ``l1 g``."""
    m, l1 = _expm_parts(gaps, rates, switch)
    m[0] *= rates[0]
    m[2] *= rates[0]
    m[1] *= rates[1]
    m[3] *= rates[1]
    return m, l1 * float(gaps.sum())


def loglik(gaps, rates, dwell_s) -> float:
    """Log-likelihood of the gap sequence under MMPP(rates, dwell_s): the tree product (see the module note)."""
    return _loglik(_check(gaps), tuple(rates), (1.0 / dwell_s[0], 1.0 / dwell_s[1]))


def _loglik(gaps: np.ndarray, rates, switch) -> float:
    m, total = _blocks(gaps, rates, switch)
    a, b, c, d = m                    # one contiguous array per entry: strided 2x2 stacks are twice as slow
    s = a + b + c + d
    total += float(np.log(s).sum())
    a, b, c, d = a / s, b / s, c / s, d / s
    right = np.eye(2)                 # the product of the odd ones out, which lie right of what remains
    while len(a) > 1:
        if len(a) % 2:
            right = np.array([[a[-1], b[-1]], [c[-1], d[-1]]]) @ right
            total += math.log(right.sum())
            right /= right.sum()
            a, b, c, d = a[:-1], b[:-1], c[:-1], d[:-1]
        a0, a1, b0, b1, c0, c1, d0, d1 = a[0::2], a[1::2], b[0::2], b[1::2], c[0::2], c[1::2], d[0::2], d[1::2]
        a, b, c, d = a0 * a1 + b0 * c1, a0 * b1 + b0 * d1, c0 * a1 + d0 * c1, c0 * b1 + d0 * d1
        s = a + b + c + d
        total += float(np.log(s).sum())
        a, b, c, d = a / s, b / s, c / s, d / s
    product = (np.array([[a[0], b[0]], [c[0], d[0]]]) if len(a) else np.eye(2)) @ right
    end = float(_alpha(rates, switch) @ product.sum(axis=1))
    return total + math.log(end) if end > 0 else -math.inf


def forward_loglik(gaps, rates, dwell_s) -> float:
    """The same log-likelihood by the scaled forward recursion, gap by gap: the reference ``loglik`` is checked with."""
    gaps = _check(gaps)
    switch = (1.0 / dwell_s[0], 1.0 / dwell_s[1])
    m, total = _blocks(gaps, tuple(rates), switch)
    v = _alpha(rates, switch)
    for b11, b12, b21, b22 in m.T:
        v = np.array([v[0] * b11 + v[1] * b21, v[0] * b12 + v[1] * b22])
        s = v.sum()
        if s <= 0:
            return -math.inf
        v /= s
        total += math.log(s)
    return total


def _starts(gaps: np.ndarray) -> list[np.ndarray]:
    """Log-parameters to start from, in units of the mean gap: split the gaps at a quantile into short
    (burst) and long (calm) ones; each state's rate is 1 / the mean of its gaps, and its dwell the mean
    length of a run of consecutive short (long) gaps times its mean gap, which puts the gaps' order in."""
    starts = []
    for level in SPLIT_QUANTILES:
        short = gaps <= np.quantile(gaps, level)
        if short.all() or not short.any():
            continue
        edges = np.flatnonzero(np.diff(short.astype(np.int8))) + 1
        runs = np.split(short, edges)
        run_short = np.mean([len(r) for r in runs if r[0]])
        run_long = np.mean([len(r) for r in runs if not r[0]])
        m_short, m_long = gaps[short].mean(), gaps[~short].mean()
        rates = (1 / m_long, 1 / m_short)
        dwell = (run_long * m_long, run_short * m_short)
        starts.append(np.log([*rates, 1 / dwell[0], 1 / dwell[1]]))
    if not starts:  # all gaps equal: a Poisson-like start
        starts.append(np.log([0.5, 2.0, 0.1, 0.1]))
    return starts


def _objective(scaled: np.ndarray, counter: list[int]):
    def negative_loglik(theta):
        counter[0] += 1
        r1, r2, q1, q2 = np.exp(theta)
        value = -_loglik(scaled, (r1, r2), (q1, q2))
        return value if math.isfinite(value) else 1e300  # L-BFGS-B wants a number; this one is never the best
    return negative_loglik


def fit_mmpp2(gaps) -> MMPPFit:
    """Maximum-likelihood MMPP with two states for the gap sequence ``gaps`` (seconds, in order; zeros dropped)."""
    gaps = _check(gaps)
    gaps = gaps[gaps > 0]
    if len(gaps) < MIN_GAPS:
        raise ParameterError(f"an MMPP needs at least {MIN_GAPS} positive gaps to be fitted (got {len(gaps)})")
    unit = float(gaps.mean())
    scaled = gaps / unit
    counter = [0]
    bounds = [_LOG_BOUNDS] * PARAMETERS
    # A short search from each start on the first START_WINDOW gaps (all of them, up to that), then the best
    # one polished on all gaps: for a trace of millions of gaps only the polish pays the full price.
    window = _objective(scaled[:START_WINDOW], counter)
    starts = _starts(scaled[:START_WINDOW])
    searched = [optimize.minimize(window, np.clip(theta, *_LOG_BOUNDS), method="L-BFGS-B", bounds=bounds,
                                  options={"maxiter": START_ITERATIONS}) for theta in starts]
    best = min(searched, key=lambda r: r.fun)
    best = optimize.minimize(_objective(scaled, counter), best.x, method="L-BFGS-B", bounds=bounds,
                             options={"maxiter": POLISH_ITERATIONS})
    if not best.fun < 1e300:
        raise ValueError("the MMPP2 likelihood is zero at every parameter tried")
    r1, r2, q1, q2 = np.exp(best.x) / unit  # back to seconds: rates and switching rates scale alike
    states = sorted([(r1, 1 / q1), (r2, 1 / q2)])  # calm first
    process = MMPP(rates=(states[0][0], states[1][0]), dwell_s=(states[0][1], states[1][1]))
    # The density of gaps in seconds is that of the scaled gaps divided by unit, once per gap.
    # L-BFGS-B status 2 (no further decrease in a line search) is convergence to numerical precision here.
    return MMPPFit(process=process, loglik=float(-best.fun - len(gaps) * math.log(unit)), n=len(gaps),
                   starts=len(starts), converged=best.status != 1, evaluations=counter[0])


__all__ = ["MIN_GAPS", "MMPPFit", "fit_mmpp2", "forward_loglik", "loglik"]
