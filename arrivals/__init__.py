"""Arrival processes for load tests: distributions, named scenarios, schedules, Locust wait times.

Importable without Locust (no gevent monkey-patching happens here).
"""
from .distributions import ArrivalDistribution, Exponential, Gamma, make_distribution
from .locust_wait import arrival_pacing, think_time
from .processes import MMPP, FromDistribution
from .stages import RateProfile, Stages
from .scenarios import SCENARIOS, scenario
from .schedule import ArrivalSchedule, Slot, SlotDispenser, rng_for

__all__ = [
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
