"""arrivals/stages.py: a rate profile applied to a renewal process by time-rescaling, checked both ways."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from burstbench.arrivals import ArrivalSchedule, Exponential, Gamma
from burstbench.arrivals.processes import FromDistribution
from burstbench.arrivals.stages import RateProfile, Stages
from burstbench.errors import ParameterError

# Ramp 5 -> 50/s over 60 s, hold 50/s for 60 s, spike to 200/s for 10 s, back to 20/s for 60 s.
PROFILE = RateProfile([(60, 5, 50), (60, 50, 50), (10, 200, 200), (60, 20, 20)])
EXPECTED = 60 * 27.5 + 60 * 50 + 10 * 200 + 60 * 20  # 7,850 requests


def test_the_profile_integrates_and_inverts_exactly():
    assert PROFILE.duration_s == 190 and PROFILE.describe()["expected_requests"] == EXPECTED
    t = np.linspace(0, 250, 2001)
    assert np.allclose(PROFILE.inverse(PROFILE.integrated(t)), t, atol=1e-9)
    assert PROFILE.rate(np.array([0.0, 30.0, 90.0, 125.0, 150.0, 400.0])).tolist() == [5, 27.5, 50, 200, 20, 20]
    assert math.isclose(float(PROFILE.integrated(np.array([60.0]))[0]), 60 * 27.5)
    assert str(PROFILE) == "5 to 50/s over 60s, then 50/s for 60s, then 200/s for 10s, then 20/s for 60s"


@pytest.mark.parametrize("base", [Gamma(shape=0.8, mean=1.0), Exponential(mean=1.0),
                                  FromDistribution("lognorm", {"s": 0.7}, mean=1.0)], ids=str)
def test_a_drawn_schedule_follows_the_profile_and_keeps_the_bases_burstiness(base):
    process = Stages(base, PROFILE)
    schedule = ArrivalSchedule.draw(process, EXPECTED, seed=5)
    offsets = schedule.offsets_s
    # The rate: counts in 10 s windows against the profile's integral over each window.
    edges = np.arange(0, 181, 10.0)
    counts = np.histogram(offsets, bins=edges)[0]
    expected = np.diff(PROFILE.integrated(edges))
    sd = np.sqrt(expected) * max(base.cv, 1.0)  # renewal counts: variance about cv^2 x mean
    assert np.all(np.abs(counts - expected) < 4.5 * sd + 2), (counts, expected)
    # The time-rescaling theorem: Lambda of the arrival times gives the unit-mean base's gaps.
    rescaled = process.rescaled_gaps(offsets)
    assert stats.kstest(rescaled, process.unit_base.cdf).pvalue > 0.01
    assert abs(rescaled.std() / rescaled.mean() / base.cv - 1) < 0.06
    # and a wrong profile is caught: the same times read against a constant rate do not fit.
    flat = Stages(base, RateProfile([(190, EXPECTED / 190, EXPECTED / 190)]))
    assert stats.kstest(flat.rescaled_gaps(offsets), process.unit_base.cdf).pvalue < 1e-6


def test_stages_are_reproducible_and_the_last_rate_holds_after_the_profile():
    process = Stages(Gamma(shape=0.8, mean=3.0), RateProfile([(10, 10, 10), (10, 2, 2)]))
    a, b = (ArrivalSchedule.draw(process, 500, seed=1).offsets_s for _ in range(2))
    assert np.array_equal(a, b)
    after = a[a > 20]
    assert len(after) > 300 and abs(len(after) / (after[-1] - 20) / 2 - 1) < 0.2  # 2/s after the profile
    assert str(process) == "stages(10/s for 10s, then 2/s for 10s; base cv=1.12)"
    assert process.describe()["profile"]["expected_requests"] == 120


@pytest.mark.parametrize("segments, message", [
    ([], "needs at least one segment"),
    ([(0, 5, 5)], "segment 1: the duration must be a number of seconds > 0"),
    ([(10, -1, 5)], "segment 1: rates must be numbers of requests/s >= 0"),
    ([(10, 5, 5), (10, 5, 0)], "must end at a rate > 0"),
    ([(10, 5)], r"segment 1 must be \(duration_s, start_rate, end_rate\)"),
    ([("ten", 5, 5)], r"segment 1 must be \(duration_s, start_rate, end_rate\)"),
])
def test_bad_profiles_are_refused_in_one_line(segments, message):
    with pytest.raises(ParameterError, match=message) as err:
        RateProfile(segments)
    assert str(err.value).startswith("--stages ")


def test_a_pause_of_zero_rate_sends_nothing_in_it():
    process = Stages(Exponential(mean=1.0), RateProfile([(10, 20, 20), (5, 0, 0), (10, 20, 20)]))
    offsets = ArrivalSchedule.draw(process, 380, seed=2).offsets_s
    assert not ((offsets > 10) & (offsets < 15)).any()
    assert ((offsets > 15) & (offsets < 25)).sum() > 150
