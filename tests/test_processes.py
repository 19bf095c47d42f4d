"""arrivals/processes.py: any scipy.stats distribution rescaled to a mean gap, and a Markov-modulated
Poisson process, each against its exact theory (fixed seeds, tolerances of several standard errors)."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from burstbench.arrivals import ArrivalSchedule
from burstbench.arrivals.processes import MMPP, FromDistribution
from burstbench.errors import ParameterError


def test_lognormal_gaps_have_the_asked_mean_and_the_lognormals_cv():
    dist = FromDistribution("lognorm", {"s": 0.9}, mean=0.05)
    assert dist.mean == 0.05 and math.isclose(float(dist.scipy_dist.mean()), 0.05, rel_tol=1e-12)
    assert math.isclose(dist.cv, math.sqrt(math.exp(0.9**2) - 1), rel_tol=1e-9)  # the CV survives rescaling
    gaps = dist.sample(20_000, np.random.default_rng(0))
    se = dist.cv * dist.mean / math.sqrt(len(gaps))
    assert abs(gaps.mean() - 0.05) < 4 * se
    assert stats.kstest(gaps, dist.cdf).pvalue > 0.01
    assert str(dist) == "lognorm(s=0.9, mean=0.05s, cv=1.12)"


def test_weibull_and_a_finite_variance_pareto_are_rescaled_too():
    weibull = FromDistribution("weibull_min", {"c": 0.7}, mean=2.0)
    expected_cv = math.sqrt(math.gamma(1 + 2 / 0.7) / math.gamma(1 + 1 / 0.7) ** 2 - 1)
    assert math.isclose(weibull.cv, expected_cv, rel_tol=1e-9) and math.isclose(weibull.mean, 2.0)
    pareto = FromDistribution("pareto", {"b": 3.0}, mean=0.1)  # b > 2: finite variance
    assert math.isclose(float(pareto.scipy_dist.mean()), 0.1, rel_tol=1e-12)
    assert math.isclose(pareto.cv, 1 / math.sqrt(3.0 * (3.0 - 2.0)), rel_tol=1e-9)


@pytest.mark.parametrize("name, params, message", [
    ("nosuch", {}, "must name a continuous scipy.stats distribution"),
    ("poisson", {"mu": 3}, "must name a continuous scipy.stats distribution"),  # discrete
    ("norm", {}, "gaps must be >= 0, but its support starts at -inf"),
    ("pareto", {"b": 0.9}, "has no finite mean"),
    ("lognorm", {"sigma": 1}, "bad parameters"),
])
def test_distributions_that_cannot_give_gaps_are_refused_in_one_line(name, params, message):
    with pytest.raises(ParameterError, match=message) as err:
        FromDistribution(name, params, mean=1.0)
    assert str(err.value).startswith("--distribution ")


# -- MMPP -------------------------------------------------------------------------------------
BURSTY = MMPP(rates=(50.0, 2.0), dwell_s=(1.0, 4.0))  # 1 s bursts at 50/s, 4 s calm at 2/s


def two_state_idc(m: MMPP, t: float) -> float:
    """The closed form for two states (Heffes and Lucantoni): a check on the general integral."""
    (l1, l2), (d1, d2) = m.rates, m.dwell_s
    r1, r2 = 1 / d1, 1 / d2
    p1, p2 = r2 / (r1 + r2), r1 / (r1 + r2)
    mean_rate = p1 * l1 + p2 * l2
    s = r1 + r2
    return 1 + 2 * p1 * p2 * (l1 - l2) ** 2 / (mean_rate * s) * (1 - (1 - math.exp(-s * t)) / (s * t))


def test_mmpp_theory_mean_rate_cv_and_dispersion():
    assert math.isclose(BURSTY.rate, (50 * 1 + 2 * 4) / 5)  # time-weighted: 11.6/s
    assert BURSTY.cv > 1.5  # far burstier than Poisson
    for t in (0.1, 1.0, 10.0, 100.0):
        assert math.isclose(BURSTY.idc(t), two_state_idc(BURSTY, t), rel_tol=1e-6)
    poisson_like = MMPP(rates=(5.0, 5.0), dwell_s=(1.0, 3.0))  # equal rates: a Poisson process
    assert math.isclose(poisson_like.cv, 1.0, rel_tol=1e-9) and math.isclose(poisson_like.idc(10), 1.0)
    assert math.isclose(float(BURSTY.cdf(np.array([50.0]))[0]), 1.0, abs_tol=1e-9)
    grid = np.linspace(0, 3, 3001)
    assert math.isclose(np.trapezoid(BURSTY.pdf(grid), grid), float(BURSTY.cdf(np.array([3.0]))[0]), rel_tol=1e-3)


def test_mmpp_draws_match_the_theory():
    gaps = BURSTY.sample(200_000, np.random.default_rng(3))
    arrivals = np.cumsum(gaps)
    assert abs(len(gaps) / arrivals[-1] / BURSTY.rate - 1) < 0.03
    assert abs(gaps.std() / gaps.mean() / BURSTY.cv - 1) < 0.05
    sub = gaps[::20]  # gaps far apart are nearly independent: a KS test of the one-gap law is fair
    assert stats.kstest(sub, BURSTY.cdf).pvalue > 0.01
    for window in (1.0, 10.0):
        counts = np.bincount((arrivals // window).astype(int))[:-1]
        realised = counts.var() / counts.mean()
        assert abs(realised / BURSTY.idc(window) - 1) < 0.15, (window, realised, BURSTY.idc(window))


def test_mmpp_drives_a_schedule_reproducibly():
    a = ArrivalSchedule.draw(BURSTY, 500, seed=7)
    b = ArrivalSchedule.draw(BURSTY, 500, seed=7)
    assert np.array_equal(a.offsets_s, b.offsets_s) and not np.array_equal(
        a.offsets_s, ArrivalSchedule.draw(BURSTY, 500, seed=8).offsets_s)
    assert str(BURSTY) == "mmpp(50/s for 1s, 2/s for 4s; mean rate 11.6/s, cv={:.2f})".format(BURSTY.cv)
    assert BURSTY.describe()["rate_per_s"] == pytest.approx(11.6)


@pytest.mark.parametrize("rates, dwell, message", [
    ((5.0,), (1.0,), "needs at least two states"),
    ((5.0, 1.0), (1.0,), "needs at least two states, each with a rate and a dwell time"),
    ((5.0, 0.0), (1.0, 1.0), "--mmpp state 2: the rate must be a finite number > 0 (got 0.0)"),
    ((5.0, 1.0), (1.0, -2), "--mmpp state 2: the dwell time must be a finite number > 0 (got -2)"),
])
def test_bad_mmpp_states_are_refused_in_one_line(rates, dwell, message):
    with pytest.raises(ParameterError, match=message.replace("(", r"\(").replace(")", r"\)")):
        MMPP(rates=rates, dwell_s=dwell)


def test_the_stationary_gap_law_is_the_matrix_exponential_formula():
    """cdf/pdf go through one eigendecomposition; they must equal 1 - alpha e^{(Q - L)x} 1 and alpha e^{(Q - L)x} L 1."""
    from scipy import linalg

    for process in (MMPP(rates=(3.0, 50.0), dwell_s=(4.0, 0.5)), MMPP(rates=(5.0, 40.0, 1.0), dwell_s=(2, 1, 3))):
        lam = np.diag(process.rates)
        alpha = process.stationary @ lam / process.rate
        ones = np.ones(len(process.rates))
        x = np.array([0.0, 1e-4, 0.01, 0.1, 0.5, 2.0, 10.0])
        survival = np.array([alpha @ linalg.expm((process.generator - lam) * v) @ ones for v in x])
        density = np.array([alpha @ linalg.expm((process.generator - lam) * v) @ lam @ ones for v in x])
        np.testing.assert_allclose(process.cdf(x), np.where(x > 0, 1 - survival, 0.0), atol=1e-12)
        np.testing.assert_allclose(process.pdf(x), density, rtol=1e-9, atol=1e-12)
        assert process.cdf(process.ppf(0.995)) == pytest.approx(0.995)
