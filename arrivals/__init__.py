"""Arrival processes for load tests: distributions, named scenarios, schedules, Locust wait times.

    wait_time = gamma(shape=0.8, rate=20)      # on any Locust User: see wait_times.py

Importable without Locust (no gevent monkey-patching happens here).
"""
from .distributions import ArrivalDistribution, Exponential, Gamma, make_distribution
from .locust_wait import arrival_pacing, think_time
from .processes import MMPP, FromDistribution
from .stages import RateProfile, Stages
from .scenarios import SCENARIOS, scenario
from .schedule import ArrivalSchedule, Slot, SlotDispenser, rng_for
from .wait_times import (Pacing, concurrency, from_distribution, gamma, mmpp, poisson, replay, stages, think)

__all__ = [
    "Pacing",
    "concurrency",
    "from_distribution",
    "gamma",
    "mmpp",
    "poisson",
    "replay",
    "stages",
    "think",
    "ArrivalDistribution",
    "ArrivalSchedule",
    "Exponential",
    "FromDistribution",
    "Gamma",
    "MMPP",
    "RateProfile",
    "SCENARIOS",
    "Slot",
    "SlotDispenser",
    "Stages",
    "arrival_pacing",
    "make_distribution",
    "rng_for",
    "scenario",
    "think_time",
]
