"""The one-call wait times (arrivals/wait_times.py), the lazy schedules under them (arrivals/lazy.py) and the
compact text forms (arrivals/notation.py): exact where the schedule is deterministic, against theory elsewhere.

No Locust here (importing it would monkey-patch pytest): the pacing runs on a fake clock without a dispatcher,
with a stand-in for Locust's StopUser; tests/test_readme_example.py runs the same wait times under real Locust.
"""
from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
from scipy import stats

from burstbench.arrivals import (ArrivalSchedule, Exponential, Gamma, MMPP, FromDistribution, RateProfile, Stages,
                                 concurrency, from_distribution, gamma, mmpp, poisson, replay, stages, think)
from burstbench.arrivals.lazy import LazySchedule, StreamDispenser
from burstbench.arrivals.notation import (parse_distribution, parse_mmpp, parse_stages, process_from_description,
                                          scale_mmpp)
from burstbench.arrivals.wait_times import Pacing

PROCESSES = {
    "exponential": Exponential(mean=0.05),
    "gamma": Gamma(shape=0.8, mean=0.05),
    "lognormal": FromDistribution("lognorm", {"s": 1.2}, mean=0.05),
    "weibull": FromDistribution("weibull_min", {"c": 0.7}, mean=0.05),
    "mmpp": MMPP(rates=(40.0, 5.0), dwell_s=(1.0, 4.0)),
    "stages": Stages(Gamma(shape=0.8, mean=1.0), RateProfile(((20, 5, 50), (20, 20, 20)))),
}


class Stop(Exception):
    """Stands in for Locust's StopUser."""


class FakeClock:
    def __init__(self, now: float = 1000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def _pacing(process, requests=None, seed=0) -> Pacing:
    pacing = Pacing(process, seed=seed, requests=requests, dispatcher=None, clock=FakeClock())
    pacing.stop_user = Stop
    pacing.dispenser.start(1000.0)
    return pacing


# -- lazy schedules -------------------------------------------------------------------------------
@pytest.mark.parametrize("name", PROCESSES)
@pytest.mark.parametrize("chunk", [1, 7, 1024])
def test_a_lazily_drawn_schedule_is_the_schedule_drawn_whole(name, chunk):
    process = PROCESSES[name]
    whole = ArrivalSchedule.draw(process, 3000, seed=4).offsets_s
    lazy = LazySchedule(process, seed=4, chunk=chunk)
    assert np.array_equal(lazy.offsets(3000), whole)  # bit for bit, whatever the chunk size
    assert lazy.offset(2999) == whole[2999]


@pytest.mark.parametrize("name", PROCESSES)
def test_worker_shares_merge_into_the_single_process_schedule(name):
    """Worker k takes slots k, k+W, ...: the merged claims are the one schedule, for every process."""
    process = PROCESSES[name]
    single = ArrivalSchedule.draw(process, 1000, seed=9).offsets_s
    claimed = {}
    for k in range(3):
        dispenser = StreamDispenser(LazySchedule(process, seed=9, limit=1000), k, 3)
        dispenser.start(0.0)
        while (slot := dispenser.claim()) is not None:
            claimed[slot.index] = slot.due_epoch
        assert dispenser.total == len(range(k, 1000, 3)) == dispenser.claimed
    assert sorted(claimed) == list(range(1000))
    assert np.array_equal(np.array([claimed[i] for i in range(1000)]), single)


def test_an_unbounded_schedule_never_runs_out_and_counts_what_fell_due():
    lazy = LazySchedule(Gamma(shape=0.8, mean=0.01), seed=1, chunk=64)
    assert lazy.offset(50_000) > 0  # far past the first chunk
    due = lazy.due_by(120.0)
    offsets = lazy.offsets(due + 1)
    assert offsets[due - 1] <= 120.0 < offsets[due]
    assert abs(due / 120.0 / 100.0 - 1) < 0.05  # 100 requests/s: 12,000 +- a few percent (CV 1.12)


def test_a_replayed_trace_is_its_own_finite_schedule(tmp_path):
    trace = tmp_path / "t.csv"
    trace.write_text("timestamp\n10\n10.5\n12\n12.25\n")
    pacing = replay(trace)
    pacing.stop_user, pacing.dispatcher = Stop, None
    pacing.dispenser.start(0.0)
    assert [pacing.dispenser.claim().due_epoch for _ in range(4)] == [0.0, 0.5, 2.0, 2.25]
    assert pacing.dispenser.claim() is None and pacing.dispenser.total == 4


# -- the pacing: claims, give-back, count-bound stop ----------------------------------------------
def test_users_share_one_schedule_and_a_count_bound_run_stops_when_the_last_user_is_done():
    pacing = _pacing(Gamma(shape=0.8, mean=0.5), requests=5)
    offsets = ArrivalSchedule.draw(Gamma(shape=0.8, mean=0.5), 5, seed=0).offsets_s
    exhausted = []
    pacing.on_exhausted = lambda: exhausted.append(True)
    a, b = SimpleNamespace(), SimpleNamespace()
    pacing.first_wait(a)
    pacing.first_wait(b)
    sleeps = [pacing(a), pacing(b), pacing(a)]  # a, b, a claim slots 2, 3, 4
    assert sleeps == pytest.approx([1000 + o - 1000.0 for o in offsets[2:]])
    with pytest.raises(Stop):
        pacing(b)  # the schedule is used up: b stops; a is still answering its request
    assert not exhausted
    with pytest.raises(Stop):
        pacing(a)
    assert exhausted == [True] and pacing.sent == 5


def test_a_user_stopped_while_waiting_gives_its_slot_back_and_it_is_sent_on_time():
    pacing = _pacing(Exponential(mean=1.0), requests=3)
    a, b = SimpleNamespace(), SimpleNamespace()
    first = pacing.dispenser.claim()
    a.burstbench_slot = first  # a holds slot 0 while it waits
    pacing.users.add(id(a))
    pacing.stopped(a)          # -t over, or Locust moving the user: slot 0 goes back
    pacing.first_wait(b)
    assert b.burstbench_slot is None and list(pacing.late_ms) == [0.0]  # b took slot 0, due when it was due
    assert pacing.dispenser.claimed == 1


def test_a_class_wait_time_waits_before_the_first_task_and_gives_back_on_stop():
    pacing = gamma(shape=0.8, rate=10)
    pacing.stop_user, pacing.dispatcher, pacing.clock = Stop, None, FakeClock()
    calls = []

    class Base:
        def on_start(self):
            calls.append("own on_start")

        def on_stop(self):
            calls.append("own on_stop")

    class User(Base):
        wait_time = pacing

    user = User()
    user.on_start()
    assert calls == ["own on_start"] and pacing.dispenser.claimed == 1  # the first slot, before any task
    assert user.wait_time() >= 0 and pacing.dispenser.claimed == 2       # bound like a method
    user.burstbench_slot = pacing.dispenser.claim()
    user.on_stop()
    assert calls == ["own on_start", "own on_stop"] and pacing.dispenser.claimed == 2  # the unsent slot is back


def test_concurrency_sends_at_once_up_to_its_count():
    pacing = concurrency(requests=3)
    pacing.stop_user = Stop
    user = SimpleNamespace()
    pacing.first_wait(user)
    assert pacing(user) == 0.0 and pacing(user) == 0.0
    with pytest.raises(Stop):
        pacing(user)
    assert pacing.sent == 3


def test_think_draws_a_fresh_gap_per_wait_from_its_process():
    wait = think(shape=0.8, mean=2.0, seed=3)
    user = SimpleNamespace()
    draws = np.array([wait(user) for _ in range(4000)])
    assert stats.kstest(draws, Gamma(shape=0.8, mean=2.0).cdf).pvalue > 0.01


# -- the factories: rate first, one line for bad input --------------------------------------------
def test_rate_and_mean_are_alternatives_and_every_factory_builds_its_process():
    assert poisson(rate=20).process == poisson(mean=0.05).process == Exponential(mean=0.05)
    assert gamma(shape=0.8, rate=20).process == Gamma(shape=0.8, mean=0.05)
    assert from_distribution("lognorm", s=1.2, rate=20).process == FromDistribution("lognorm", {"s": 1.2}, 0.05)
    assert mmpp(rates=(40, 5), dwell=(1, 4)).process == MMPP((40.0, 5.0), (1.0, 4.0))
    scaled = mmpp(rates=(40, 5), dwell=(1, 4), rate=5).process
    assert math.isclose(scaled.rate, 5.0) and scaled.dwell_s == (1.0, 4.0)
    ramp = stages("ramp 5 to 50 over 20s, hold 20 for 20s", shape=0.8).process
    assert ramp.unit_base == Gamma(shape=0.8, mean=1.0) and ramp.profile.duration_s == 40.0
    assert str(gamma(shape=0.8, rate=20, requests=100)) == "gamma: gamma(a=0.8, mean=0.05s, cv=1.12), seed 0, 100 requests"


@pytest.mark.parametrize("make, message", [
    (lambda: gamma(shape=0.8, rate=20, mean=0.05), "burstbench.arrivals.gamma: give rate= (requests/s) or mean= (s), "
                                                   "not both"),
    (lambda: poisson(), "burstbench.arrivals.poisson: needs rate= (requests/s) or mean= (the mean gap in s)"),
    (lambda: poisson(rate=0), "burstbench.arrivals.poisson: rate= must be a finite number > 0 (got 0.0)"),
    (lambda: gamma(shape=-1, rate=5), "burstbench.arrivals.gamma: shape= must be a finite number > 0 (got -1)"),
    (lambda: poisson(rate=5, requests=0), "burstbench.arrivals.poisson: requests= must be an integer >= 1 (got 0)"),
    (lambda: from_distribution("pareto", b=0.9, rate=5), "burstbench.arrivals.from_distribution: distribution= pareto "
                                                         "with {'b': 0.9} has no finite mean"),
    (lambda: stages("ramp 5 to 50 over 0s"), "burstbench.arrivals.stages: stages= segment 1: the duration must be"),
    (lambda: mmpp(rates=(5, 40), dwell=(1, 0)), "burstbench.arrivals.mmpp: mmpp= state 2: the dwell time must be"),
    (lambda: think(MMPP((5, 40), (1, 1))), "burstbench.arrivals.think: process= must be a renewal process"),
])
def test_bad_factory_arguments_are_one_line_naming_the_argument(make, message):
    with pytest.raises(ValueError) as err:
        make()
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


# -- the compact forms ----------------------------------------------------------------------------------
def test_stage_pieces_parse_into_the_profile_they_say():
    profile = parse_stages("ramp 5 to 50 over 5m, hold 10m, spike 200 for 30s, hold 20 requests/s for 10 min")
    assert profile.segments == ((300.0, 5.0, 50.0), (600.0, 50.0, 50.0), (30.0, 200.0, 200.0), (600.0, 20.0, 20.0))
    assert parse_stages("step 8/s for 1.5h").segments == ((5400.0, 8.0, 8.0),)


def test_a_sine_profile_follows_the_sine_and_its_draws_follow_the_profile():
    profile = parse_stages("sine 5 to 35 period 60s for 120s")
    t = np.linspace(0, 119.9, 500)
    assert np.allclose(profile.rate(t), 5 + 30 * (1 - np.cos(2 * np.pi * t / 60)) / 2, atol=30 * 0.0006)
    assert math.isclose(profile.expected_requests, 20 * 120, rel_tol=1e-3)  # the mean rate, 20/s
    offsets = LazySchedule(Stages(Exponential(mean=1.0), profile), seed=2).offsets(10_000)
    counts, _ = np.histogram(offsets, bins=np.arange(0, 121, 10))
    expected = np.diff(profile.integrated(np.arange(0, 121, 10)))
    assert np.all(np.abs(counts - expected) < 4 * np.sqrt(expected))  # Poisson counts: within 4 sd per bin


def test_mmpp_states_parse_with_optional_labels_and_scale_to_a_rate():
    process = parse_mmpp("calm 5/s for 8s, burst 40 requests/s for 2 s")
    assert process == MMPP((5.0, 40.0), (8.0, 2.0)) and math.isclose(process.rate, 12.0)
    scaled = scale_mmpp(process, 6.0)
    # every state's rate halves, the dwell times stay: the mean rate is exact, the burst pattern in time kept
    assert scaled.rates == (2.5, 20.0) and scaled.dwell_s == process.dwell_s and math.isclose(scaled.rate, 6.0)


def test_a_distribution_names_a_scipy_law_and_its_parameters():
    assert parse_distribution("weibull_min(c=0.7)", 0.5) == FromDistribution("weibull_min", {"c": 0.7}, 0.5)
    assert parse_distribution("expon", 0.5).mean == 0.5


@pytest.mark.parametrize("name", PROCESSES)
def test_a_processes_record_rebuilds_the_process(name):
    process = PROCESSES[name]
    rebuilt = process_from_description(process.describe())
    offsets = ArrivalSchedule.draw(process, 200, seed=1).offsets_s
    assert np.allclose(ArrivalSchedule.draw(rebuilt, 200, seed=1).offsets_s, offsets)
