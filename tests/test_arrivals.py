"""Unit tests for the arrival processes: distributions, scenarios, schedules, Locust wait times.

No Locust and no clocks are needed: the wait-time factories are called with plain dummy
users and a fake clock. All random draws use fixed seeds, so every number here is
reproducible; the statistical tolerances are a few standard errors wide at n = 10,000.
"""
from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from scipy import integrate, stats

from burstbench.arrivals import (
    SCENARIOS,
    ArrivalSchedule,
    Exponential,
    Gamma,
    Slot,
    SlotDispenser,
    arrival_pacing,
    make_distribution,
    rng_for,
    scenario,
    think_time,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
N_DRAWS = 10_000

# Theoretical variances from the design notes' table (mean 2 s): m^2 / a.
EXPECTED_VAR = {"steady": 4.0, "moderate": 10.0 / 3.0, "extreme": 5.0}


# --------------------------------------------------------------------------------------
# Parameter conversion against known numbers
# --------------------------------------------------------------------------------------


def test_gamma_extreme_parameters():
    d = Gamma(shape=0.8, mean=2)
    assert d.shape == 0.8
    assert d.mean == 2.0
    assert d.scale == pytest.approx(2.5)
    assert d.var == pytest.approx(5.0)
    assert d.cv == pytest.approx(1.118034, abs=1e-6)
    assert d.rate == pytest.approx(0.5)


def test_gamma_moderate_parameters():
    d = Gamma(1.2, 2)
    assert d.scale == pytest.approx(1.6666667)
    assert d.var == pytest.approx(3.3333333)
    assert d.cv == pytest.approx(0.9128709, abs=1e-6)


def test_exponential_parameters():
    d = Exponential(2)
    assert d.mean == 2.0
    assert d.shape == 1.0
    assert d.var == pytest.approx(4.0)
    assert d.cv == pytest.approx(1.0)
    assert d.rate == pytest.approx(0.5)


def test_gamma_shape_one_equals_exponential_in_distribution():
    g, e = Gamma(shape=1.0, mean=3.0), Exponential(mean=3.0)
    xs = np.array([0.1, 1.0, 3.0, 10.0])
    np.testing.assert_allclose(g.cdf(xs), e.cdf(xs), rtol=1e-12)
    assert g.var == pytest.approx(e.var)


def test_str_forms():
    assert str(Gamma(shape=0.8, mean=2)) == "gamma(a=0.8, mean=2.00s, cv=1.12)"
    assert str(Gamma(shape=1.2, mean=2)) == "gamma(a=1.2, mean=2.00s, cv=0.91)"
    assert str(Exponential(mean=2)) == "exponential(mean=2.00s, cv=1.00)"


def test_describe_is_plain_data_with_known_numbers():
    desc = Gamma(shape=0.8, mean=2).describe()
    assert desc["process"] == "gamma"
    assert desc["shape"] == 0.8
    assert desc["mean_s"] == 2.0
    assert desc["var_s2"] == pytest.approx(5.0)
    assert desc["rate_per_s"] == pytest.approx(0.5)
    assert desc["label"] == "gamma(a=0.8, mean=2.00s, cv=1.12)"
    assert Exponential(2).describe()["process"] == "exponential"


def test_make_distribution_builds_known_objects():
    assert make_distribution("exponential", 2) == Exponential(mean=2.0)
    assert make_distribution("gamma", 2, 0.8) == Gamma(shape=0.8, mean=2.0)


def test_scenarios_table():
    assert set(SCENARIOS) == {"steady", "moderate", "extreme"}
    assert SCENARIOS["steady"] == Exponential(mean=2.0)
    assert SCENARIOS["moderate"] == Gamma(shape=1.2, mean=2.0)
    assert SCENARIOS["extreme"] == Gamma(shape=0.8, mean=2.0)
    for name, dist in SCENARIOS.items():
        assert dist.mean == 2.0
        assert dist.var == pytest.approx(EXPECTED_VAR[name])
    assert scenario("extreme") is SCENARIOS["extreme"]


def test_scenario_with_other_mean_keeps_shape():
    d = scenario("extreme", mean=0.5)
    assert d == Gamma(shape=0.8, mean=0.5)
    assert d.var == pytest.approx(0.3125)  # 0.25 / 0.8
    assert scenario("steady", mean=4) == Exponential(mean=4.0)


# --------------------------------------------------------------------------------------
# Sampling: moments and goodness of fit
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["steady", "moderate", "extreme"])
def test_scenario_draws_match_theory(name):
    dist = SCENARIOS[name]
    draws = dist.sample(N_DRAWS, np.random.default_rng(20241))
    assert draws.shape == (N_DRAWS,)
    assert np.all(draws > 0)
    assert np.mean(draws) == pytest.approx(2.0, rel=0.03)
    assert np.var(draws, ddof=1) == pytest.approx(EXPECTED_VAR[name], rel=0.08)
    assert stats.kstest(draws, dist.cdf).pvalue > 0.01


def test_ks_has_power_negative_control():
    """Bursty gamma(0.8) draws must be told apart from the exponential of the same mean."""
    draws = Gamma(shape=0.8, mean=2.0).sample(N_DRAWS, np.random.default_rng(20241))
    assert stats.kstest(draws, Exponential(mean=2.0).cdf).pvalue < 0.01


def test_ks_negative_control_moderate_vs_extreme():
    draws = SCENARIOS["moderate"].sample(N_DRAWS, np.random.default_rng(5))
    assert stats.kstest(draws, SCENARIOS["extreme"].cdf).pvalue < 0.01


@pytest.mark.parametrize("name", ["steady", "moderate", "extreme"])
def test_schedule_gaps_pass_ks(name):
    dist = SCENARIOS[name]
    sched = ArrivalSchedule.draw(dist, N_DRAWS, seed=11)
    gaps = sched.gaps_s
    assert stats.kstest(gaps, dist.cdf).pvalue > 0.01
    assert np.mean(gaps) == pytest.approx(2.0, rel=0.03)


def test_sample_uses_only_the_given_rng():
    dist = SCENARIOS["extreme"]
    a = dist.sample(50, np.random.default_rng(3))
    np.random.seed(0)
    b = dist.sample(50, np.random.default_rng(3))
    np.random.seed(999)
    c = dist.sample(50, np.random.default_rng(3))
    assert np.array_equal(a, b) and np.array_equal(b, c)
    assert not np.array_equal(a, dist.sample(50, np.random.default_rng(4)))


def test_sample_zero_and_bad_n():
    rng = np.random.default_rng(0)
    assert Exponential(2).sample(0, rng).shape == (0,)
    with pytest.raises(ValueError, match=">= 0"):
        Exponential(2).sample(-1, rng)
    with pytest.raises(ValueError, match=">= 0"):
        Exponential(2).sample(2.5, rng)


@pytest.mark.parametrize("name", ["steady", "moderate", "extreme"])
def test_pdf_integrates_to_one(name):
    dist = SCENARIOS[name]
    # ``pdf`` builds a fresh scipy object per call (about 1-2 ms), so quad integrates the
    # frozen object it delegates to, after checking on a grid that the two agree.
    frozen = dist.scipy_dist
    xs = np.linspace(0.01, 20.0, 200)
    np.testing.assert_array_equal(dist.pdf(xs), frozen.pdf(xs))
    total, _err = integrate.quad(frozen.pdf, 0, np.inf, limit=200)
    assert total == pytest.approx(1.0, abs=1e-6)
    m1, _err = integrate.quad(lambda x: x * frozen.pdf(x), 0, np.inf, limit=200)
    assert m1 == pytest.approx(2.0, rel=1e-6)


@pytest.mark.parametrize("shape,mean", [(0.8, 2.0), (1.2, 2.0), (2.5, 0.3)])
def test_gamma_pdf_matches_scipy_parameterisation(shape, mean):
    ours = Gamma(shape=shape, mean=mean)
    ref = stats.gamma(shape, scale=mean / shape)
    xs = np.array([0.05, 0.5, 1.0, 2.0, 5.0])
    np.testing.assert_allclose(ours.pdf(xs), ref.pdf(xs), rtol=1e-12)
    np.testing.assert_allclose(ours.cdf(xs), ref.cdf(xs), rtol=1e-12)


def test_exponential_pdf_known_values():
    d = Exponential(mean=2.0)
    # f(x) = 0.5 exp(-x/2)
    assert d.pdf(0.0) == pytest.approx(0.5)
    assert d.pdf(2.0) == pytest.approx(0.5 * math.exp(-1.0))
    assert d.cdf(2.0) == pytest.approx(1 - math.exp(-1.0))


# --------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "build,param",
    [
        (lambda: Gamma(shape=0, mean=2), "shape"),
        (lambda: Gamma(shape=-1, mean=2), "shape"),
        (lambda: Gamma(shape=0.8, mean=0), "mean"),
        (lambda: Exponential(mean=0), "mean"),
        (lambda: Exponential(mean=-2), "mean"),
        (lambda: Exponential(mean=float("nan")), "mean"),
        (lambda: Exponential(mean=float("inf")), "mean"),
        (lambda: Gamma(shape=float("nan"), mean=2), "shape"),
        (lambda: Exponential(mean="abc"), "mean"),
        (lambda: Gamma(shape="abc", mean=2), "shape"),
        (lambda: Exponential(mean=None), "mean"),
    ],
)
def test_invalid_parameters_raise_value_error(build, param):
    with pytest.raises(ValueError) as info:
        build()
    msg = str(info.value)
    assert param in msg
    assert "> 0" in msg


def test_make_distribution_unknown_arrival_lists_choices():
    with pytest.raises(ValueError) as info:
        make_distribution("poisson", 2)
    msg = str(info.value)
    assert "exponential, gamma" in msg
    assert "poisson" in msg


def test_make_distribution_errors_name_the_flag():
    with pytest.raises(ValueError, match="--shape"):
        make_distribution("gamma", 2)
    with pytest.raises(ValueError, match="--shape"):
        make_distribution("gamma", 2, 0)
    with pytest.raises(ValueError, match="--mean"):
        make_distribution("gamma", -2, 0.8)
    with pytest.raises(ValueError, match="--mean"):
        make_distribution("exponential", 0)
    with pytest.raises(ValueError, match="--shape"):
        make_distribution("exponential", 2, 0.8)


def test_unknown_scenario_lists_choices():
    with pytest.raises(ValueError) as info:
        scenario("bogus")
    msg = str(info.value)
    for name in ("steady", "moderate", "extreme"):
        assert name in msg
    assert "bogus" in msg


@pytest.mark.parametrize("bad_rng", [None, 42, np.random.RandomState(0), "rng"])
def test_sample_rejects_non_generator(bad_rng):
    with pytest.raises(TypeError, match="Generator"):
        SCENARIOS["steady"].sample(10, bad_rng)


def test_distributions_are_frozen():
    d = Gamma(shape=0.8, mean=2)
    with pytest.raises(AttributeError):
        d.mean = 3.0


# --------------------------------------------------------------------------------------
# Schedules and named streams
# --------------------------------------------------------------------------------------


def test_schedule_reproducible_for_same_seed():
    dist = SCENARIOS["extreme"]
    a = ArrivalSchedule.draw(dist, 500, seed=7)
    b = ArrivalSchedule.draw(dist, 500, seed=7)
    assert len(a) == len(b) == 500
    assert np.array_equal(a.offsets_s, b.offsets_s)


def test_schedule_differs_for_other_seed():
    dist = SCENARIOS["extreme"]
    a = ArrivalSchedule.draw(dist, 500, seed=7)
    b = ArrivalSchedule.draw(dist, 500, seed=8)
    assert not np.array_equal(a.offsets_s, b.offsets_s)
    # not just a shifted copy: the gaps themselves differ almost everywhere
    assert np.mean(a.gaps_s != b.gaps_s) > 0.99


def test_schedule_offsets_strictly_increasing_and_gaps_sum():
    for name, dist in SCENARIOS.items():
        sched = ArrivalSchedule.draw(dist, 500, seed=7)
        assert sched.offsets_s[0] > 0, name
        assert np.all(np.diff(sched.offsets_s) > 0), name
        assert np.all(sched.gaps_s > 0), name
        assert sched.gaps_s[0] == sched.offsets_s[0]
        assert float(np.sum(sched.gaps_s)) == pytest.approx(sched.duration_s, rel=1e-12)
        # 500 gaps of mean 2 s: about 1000 s (SE ~ 2 * cv * sqrt(500) ~ 50 s)
        assert 800 < sched.duration_s < 1200, name


def test_schedule_validates_arguments():
    with pytest.raises(ValueError, match="--requests"):
        ArrivalSchedule.draw(SCENARIOS["steady"], 0, seed=1)
    with pytest.raises(ValueError, match="--seed"):
        ArrivalSchedule.draw(SCENARIOS["steady"], 10, seed=-1)
    with pytest.raises(ValueError, match="--seed"):
        ArrivalSchedule.draw(SCENARIOS["steady"], 10, seed=1.5)


def test_same_seed_same_uniforms_across_scenarios():
    """Every scenario draws its schedule from the same 'schedule' stream of the seed."""
    steady = ArrivalSchedule.draw(SCENARIOS["steady"], 200, seed=4)
    steady_again = ArrivalSchedule.draw(Exponential(2.0), 200, seed=4)
    assert np.array_equal(steady.offsets_s, steady_again.offsets_s)
    extreme = ArrivalSchedule.draw(SCENARIOS["extreme"], 200, seed=4)
    assert not np.array_equal(steady.offsets_s, extreme.offsets_s)


def test_rng_for_streams_are_stable_and_distinct():
    seed = 123
    texts_a = rng_for(seed, "texts").random(20)
    texts_b = rng_for(seed, "texts").random(20)
    assert np.array_equal(texts_a, texts_b)
    schedule = rng_for(seed, "schedule").random(20)
    think = rng_for(seed, "think").random(20)
    assert not np.array_equal(texts_a, schedule)
    assert not np.array_equal(texts_a, think)
    assert not np.array_equal(schedule, think)
    # sub-streams (e.g. users) differ from each other
    assert not np.array_equal(rng_for(seed, "think", 0).random(20), rng_for(seed, "think", 1).random(20))
    # and a different seed gives a different texts stream
    assert not np.array_equal(texts_a, rng_for(seed + 1, "texts").random(20))


def test_texts_stream_unaffected_by_scenario():
    seed = 9
    before = rng_for(seed, "texts").permutation(1500)
    for dist in SCENARIOS.values():
        ArrivalSchedule.draw(dist, 1000, seed=seed)
        after = rng_for(seed, "texts").permutation(1500)
        assert np.array_equal(before, after)


def test_rng_for_unknown_stream():
    with pytest.raises(ValueError) as info:
        rng_for(1, "nope")
    msg = str(info.value)
    assert "nope" in msg
    for name in ("schedule", "texts", "think"):
        assert name in msg


def test_rng_for_rejects_bad_seed():
    with pytest.raises(ValueError, match="--seed"):
        rng_for(-1, "texts")
    with pytest.raises(ValueError, match="--seed"):
        rng_for(True, "texts")


# --------------------------------------------------------------------------------------
# SlotDispenser
# --------------------------------------------------------------------------------------


def _fixed_schedule(offsets):
    return ArrivalSchedule(distribution=Exponential(2.0), seed=0, offsets_s=np.array(offsets, dtype=float))


def test_dispenser_claims_in_order_then_none():
    disp = SlotDispenser(_fixed_schedule([1.0, 2.5, 4.0]))
    assert disp.start(1000.0) == 1000.0
    assert disp.total == 3
    assert disp.claimed == 0
    assert disp.claim() == Slot(index=0, due_epoch=1001.0)
    assert disp.claim() == Slot(index=1, due_epoch=1002.5)
    assert disp.claimed == 2
    assert disp.claim() == Slot(index=2, due_epoch=1004.0)
    assert disp.claim() is None
    assert disp.claim() is None
    assert disp.claimed == 3


def test_dispenser_start_is_fixed_once():
    disp = SlotDispenser(_fixed_schedule([1.0, 2.0]))
    disp.start(50.0)
    assert disp.start(70.0) == 50.0
    assert disp.claim().due_epoch == 51.0
    assert disp.due_epoch(1) == 52.0


def test_dispenser_first_claim_fixes_start_when_not_started():
    disp = SlotDispenser(_fixed_schedule([1.0, 2.0]))
    assert disp.start_epoch is None
    first = disp.claim()
    assert disp.start_epoch is not None
    assert first.due_epoch == disp.start_epoch + 1.0
    assert disp.claim().due_epoch == disp.start_epoch + 2.0


def test_dispenser_on_drawn_schedule_uses_offsets():
    sched = ArrivalSchedule.draw(SCENARIOS["extreme"], 50, seed=2)
    disp = SlotDispenser(sched)
    disp.start(0.0)
    slots = [disp.claim() for _ in range(50)]
    assert disp.claim() is None
    assert [s.index for s in slots] == list(range(50))
    # with a zero start epoch, due times are exactly the schedule's offsets
    assert np.array_equal(np.array([s.due_epoch for s in slots]), sched.offsets_s)


def _drain(disp):
    slots = []
    while (slot := disp.claim()) is not None:
        slots.append(slot)
    return slots


def test_workers_partition_reproduces_single_process_schedule():
    sched = ArrivalSchedule.draw(SCENARIOS["extreme"], 10, seed=3)
    start = 1_700_000_000.0

    single = SlotDispenser(sched)
    single.start(start)
    single_slots = _drain(single)
    assert len(single_slots) == 10

    per_worker = []
    for k in range(3):
        disp = SlotDispenser(sched, worker_index=k, worker_count=3)
        disp.start(start)
        slots = _drain(disp)
        assert [s.index for s in slots] == list(range(k, 10, 3))
        assert disp.total == len(slots)
        per_worker.append(slots)

    assert [len(s) for s in per_worker] == [4, 3, 3]
    merged = sorted((s for slots in per_worker for s in slots), key=lambda s: s.index)
    assert merged == single_slots
    # no slot handed out twice
    assert len({s.index for s in merged}) == 10


@pytest.mark.parametrize("index,count", [(3, 3), (-1, 3), (0, 0), (5, 2), (1, 1)])
def test_dispenser_invalid_worker_index(index, count):
    with pytest.raises(ValueError, match="worker index"):
        SlotDispenser(_fixed_schedule([1.0, 2.0, 3.0]), worker_index=index, worker_count=count)


# --------------------------------------------------------------------------------------
# Locust wait-time factories, without Locust
# --------------------------------------------------------------------------------------


class FakeClock:
    def __init__(self, now):
        self.now = now

    def __call__(self):
        return self.now


def test_arrival_pacing_returns_time_until_due():
    disp = SlotDispenser(_fixed_schedule([1.0, 2.5, 4.0]))
    disp.start(1000.0)
    clock = FakeClock(1000.25)
    wait_time = arrival_pacing(disp, clock=clock)
    user = SimpleNamespace()

    assert wait_time(user) == pytest.approx(0.75)
    assert user.arrival_slot == Slot(index=0, due_epoch=1001.0)

    clock.now = 1003.0  # slot 1 was due at 1002.5: late
    assert wait_time(user) == 0.0
    assert user.arrival_slot == Slot(index=1, due_epoch=1002.5)

    clock.now = 1003.5
    assert wait_time(user) == pytest.approx(0.5)
    assert user.arrival_slot.index == 2

    assert wait_time(user) == 0.0
    assert user.arrival_slot is None
    assert wait_time(user) == 0.0
    assert user.arrival_slot is None


def test_arrival_pacing_shares_one_dispenser_between_users():
    disp = SlotDispenser(_fixed_schedule([1.0, 2.0, 3.0, 4.0]))
    disp.start(0.0)
    wait_time = arrival_pacing(disp, clock=FakeClock(0.0))
    users = [SimpleNamespace(), SimpleNamespace()]
    got = []
    for _ in range(2):
        for u in users:
            got.append(wait_time(u))
            assert u.arrival_slot is not None
    assert got == [1.0, 2.0, 3.0, 4.0]
    assert users[0].arrival_slot.index == 2
    assert users[1].arrival_slot.index == 3


def test_arrival_pacing_never_negative_when_very_late():
    sched = ArrivalSchedule.draw(SCENARIOS["extreme"], 100, seed=1)
    disp = SlotDispenser(sched)
    disp.start(0.0)
    wait_time = arrival_pacing(disp, clock=FakeClock(1e9))
    user = SimpleNamespace()
    waits = [wait_time(user) for _ in range(100)]
    assert all(w == 0.0 for w in waits)


def _draws(wait_time, user, n):
    return np.array([wait_time(user) for _ in range(n)])


def test_think_time_per_user_streams_differ_and_reproduce():
    dist = SCENARIOS["extreme"]
    wt = think_time(dist, seed=5)
    u1, u2 = SimpleNamespace(), SimpleNamespace()
    a1 = _draws(wt, u1, 20)
    a2 = _draws(wt, u2, 20)
    assert not np.array_equal(a1, a2)
    assert np.all(a1 > 0) and np.all(a2 > 0)
    assert u1.last_think_s == a1[-1]

    # a fresh factory with the same seed numbers users in first-wait order again
    wt_again = think_time(dist, seed=5)
    v1, v2 = SimpleNamespace(), SimpleNamespace()
    b1 = _draws(wt_again, v1, 20)
    b2 = _draws(wt_again, v2, 20)
    assert np.array_equal(a1, b1)
    assert np.array_equal(a2, b2)

    # another seed gives other draws
    c1 = _draws(think_time(dist, seed=6), SimpleNamespace(), 20)
    assert not np.array_equal(a1, c1)


def test_think_time_streams_do_not_depend_on_interleaving():
    dist = SCENARIOS["steady"]
    wt = think_time(dist, seed=5)
    u1, u2 = SimpleNamespace(), SimpleNamespace()
    # first waits fix the user numbers: u1 is user 0, u2 user 1
    seq1, seq2 = [wt(u1)], [wt(u2)]
    for i in range(30):
        if i % 3:
            seq1.append(wt(u1))
        else:
            seq2.append(wt(u2))

    wt_b = think_time(dist, seed=5)
    w1, w2 = SimpleNamespace(), SimpleNamespace()
    ref1 = [wt_b(w1) for _ in range(len(seq1))]
    ref2 = [wt_b(w2) for _ in range(len(seq2))]
    assert seq1 == ref1
    assert seq2 == ref2


def test_think_time_stream_is_not_the_schedule_stream():
    dist = SCENARIOS["extreme"]
    think = _draws(think_time(dist, seed=7), SimpleNamespace(), 20)
    schedule_gaps = ArrivalSchedule.draw(dist, 20, seed=7).gaps_s
    assert not np.allclose(think, schedule_gaps)


@pytest.fixture(scope="module")
def extreme_think_draws():
    """5,000 waits of one user (about 7 s: ``sample`` builds a scipy object per call)."""
    wt = think_time(SCENARIOS["extreme"], seed=2)
    return _draws(wt, SimpleNamespace(), 5_000)


def test_think_time_draws_follow_distribution(extreme_think_draws):
    draws = extreme_think_draws
    assert stats.kstest(draws, SCENARIOS["extreme"].cdf).pvalue > 0.01
    assert np.mean(draws) == pytest.approx(2.0, rel=0.05)
    assert np.var(draws, ddof=1) == pytest.approx(5.0, rel=0.12)


def test_think_time_negative_control(extreme_think_draws):
    """The same draws are told apart from the moderate and Poisson scenarios."""
    assert stats.kstest(extreme_think_draws, SCENARIOS["moderate"].cdf).pvalue < 0.01
    assert stats.kstest(extreme_think_draws, SCENARIOS["steady"].cdf).pvalue < 0.01


# --------------------------------------------------------------------------------------
# Import hygiene
# --------------------------------------------------------------------------------------


def test_import_arrivals_does_not_import_locust_or_gevent():
    proc = subprocess.run(
        [sys.executable, "-c", 'import burstbench.arrivals, sys; print("locust" in sys.modules, "gevent" in sys.modules)'],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False False"


def test_a_slot_given_back_unsent_is_claimed_again_first_with_its_due_time():
    """A user stopped while holding a slot (Locust moving users between workers) loses no slot."""
    from burstbench.arrivals import Exponential

    schedule = ArrivalSchedule.draw(Exponential(mean=1.0), 6, 0)
    dispenser = SlotDispenser(schedule, worker_index=1, worker_count=2, clock=lambda: 100.0)
    first, second = dispenser.claim(), dispenser.claim()
    assert (first.index, second.index) == (1, 3)
    dispenser.give_back(second)
    assert dispenser.claimed == 1
    again = dispenser.claim()
    assert again == second  # same index, same due time: never re-timed
    assert dispenser.claim().index == 5 and dispenser.claim() is None
    dispenser.give_back(first)  # given back after the share ran out: still sent
    assert dispenser.claim() == first and dispenser.claim() is None
