"""The compact text forms of the arrival processes, as flags and config files give them, and the way back
from a run record's ``describe()`` to the process.

    --stages "ramp 5 to 50 over 5m, hold 10m, spike 200 for 30s, hold 20 for 10m"
    --stages "sine 5 to 35 period 24h for 48h"          # a daily swing, lowest at the start
    --mmpp "calm 5/s for 8s, burst 40/s for 2s"         # states: rate and mean dwell time (labels optional)
    --distribution "lognorm(s=1.2)"                     # any continuous scipy.stats law and its shape parameters

Numbers are requests/s (``/s`` or ``requests/s`` may follow); durations are seconds, or carry a unit:
``s``, ``m``/``min``, ``h``. Every error names the field, the piece that failed and what is accepted.
"""
from __future__ import annotations

import math
import re

import numpy as np

from burstbench.errors import ParameterError

from .distributions import make_distribution
from .processes import MMPP, FromDistribution
from .stages import RateProfile, Stages

UNITS_S = {"": 1.0, "s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "hr": 3600.0}
SINE_PIECES_PER_PERIOD = 96  # a sine drawn as linear pieces: within 0.06% of its amplitude
_NUMBER = r"[0-9]*\.?[0-9]+(?:e[-+]?[0-9]+)?"
_RATE = rf"({_NUMBER})\s*(?:requests?/s|req/s|/s)?"
_DURATION = rf"({_NUMBER})\s*(s|sec|min|m|hr|h)?"
STAGE_FORMS = ("ramp A to B over D", "hold R for D", "hold D", "step R for D", "spike R for D",
               "sine A to B period P for D")
_STAGE_PATTERNS = {
    "ramp": re.compile(rf"ramp\s+(?:from\s+)?{_RATE}\s+to\s+{_RATE}\s+(?:over|in|for)\s+{_DURATION}"),
    "hold": re.compile(rf"(?:hold|step|spike|back)?\s*(?:at\s+|to\s+)?{_RATE}\s+for\s+{_DURATION}"),
    "hold_last": re.compile(rf"hold\s+(?:for\s+)?{_DURATION}"),
    "sine": re.compile(rf"sine\s+{_RATE}\s+to\s+{_RATE}\s+period\s+{_DURATION}\s+for\s+{_DURATION}"),
}
_MMPP_STATE = re.compile(rf"(?:[a-z_]+\s+)?{_RATE}\s+for\s+{_DURATION}")
_DISTRIBUTION = re.compile(r"([a-z_][a-z0-9_]*)\s*(?:\((.*)\))?")


def _seconds(number: str, unit: str | None) -> float:
    return float(number) * UNITS_S[unit or ""]


def parse_stages(text: str) -> RateProfile:
    """``--stages``: comma-separated pieces (``STAGE_FORMS``) as one piecewise-linear rate profile."""
    if not isinstance(text, str) or not text.strip():
        raise ParameterError(f"{{stages}} must be pieces such as 'ramp 5 to 50 over 5m, hold 10m' (got {text!r})",
                             "stages")
    segments: list[tuple[float, float, float]] = []
    for i, piece in enumerate(p.strip().lower() for p in text.split(",")):
        segments.extend(_stage(piece, i, segments))
    return RateProfile(tuple(segments))


def _stage(piece: str, i: int, before: list) -> list[tuple[float, float, float]]:
    m = _STAGE_PATTERNS["ramp"].fullmatch(piece)
    if m:
        return [(_seconds(m[3], m[4]), float(m[1]), float(m[2]))]
    m = _STAGE_PATTERNS["sine"].fullmatch(piece)
    if m:
        low, high, period, duration = float(m[1]), float(m[2]), _seconds(m[3], m[4]), _seconds(m[5], m[6])
        if period <= 0 or duration <= 0:
            raise ParameterError(f"{{stages}} piece {i + 1} {piece!r}: the period and the duration must be > 0",
                                 "stages")
        return _sine(low, high, period, duration)
    m = _STAGE_PATTERNS["hold_last"].fullmatch(piece)
    if m:
        if not before:
            raise ParameterError(f"{{stages}} piece {i + 1} {piece!r}: 'hold D' keeps the previous rate, and there "
                                 "is none yet (say 'hold R for D')", "stages")
        rate = before[-1][2]
        return [(_seconds(m[1], m[2]), rate, rate)]
    m = _STAGE_PATTERNS["hold"].fullmatch(piece)
    if m:
        rate = float(m[1])
        return [(_seconds(m[2], m[3]), rate, rate)]
    raise ParameterError(f"{{stages}} piece {i + 1} {piece!r} does not parse; accepted pieces: "
                         f"{'; '.join(STAGE_FORMS)} (rates in requests/s, durations like 30s, 5m, 2h)", "stages")


def _sine(low: float, high: float, period: float, duration: float) -> list[tuple[float, float, float]]:
    """``low + (high - low) (1 - cos(2 pi t / period)) / 2``: lowest at the start, highest half a period on."""
    pieces = max(1, math.ceil(duration / period * SINE_PIECES_PER_PERIOD))
    t = np.linspace(0.0, duration, pieces + 1)
    r = low + (high - low) * (1 - np.cos(2 * np.pi * t / period)) / 2
    return [(float(t1 - t0), float(a), float(b)) for t0, t1, a, b in zip(t[:-1], t[1:], r[:-1], r[1:])]


def parse_mmpp(text: str) -> MMPP:
    """``--mmpp``: states ``[label] RATE/s for DWELL`` separated by commas, visited in turn."""
    pieces = [p.strip().lower() for p in str(text).split(",")] if isinstance(text, str) else []
    rates, dwell = [], []
    for i, piece in enumerate(pieces):
        m = _MMPP_STATE.fullmatch(piece)
        if not m:
            raise ParameterError(f"{{mmpp}} state {i + 1} {piece!r} does not parse; each state is '[label] RATE/s "
                                 "for DWELL', e.g. 'calm 5/s for 8s, burst 40/s for 2s'", "mmpp")
        rates.append(float(m[1]))
        dwell.append(_seconds(m[2], m[3]))
    return MMPP(rates=tuple(rates), dwell_s=tuple(dwell))


def parse_distribution(text: str, mean: float) -> FromDistribution:
    """``--distribution``: ``name`` or ``name(param=value, ...)``, a continuous scipy.stats law, rescaled to ``mean``."""
    m = _DISTRIBUTION.fullmatch(text.strip().lower()) if isinstance(text, str) else None
    if not m:
        raise ParameterError(f"{{distribution}} must be a scipy.stats name with optional parameters, e.g. "
                             f"'lognorm(s=1.2)' or 'weibull_min(c=0.7)' (got {text!r})", "distribution")
    params = {}
    for item in filter(None, (p.strip() for p in (m[2] or "").split(","))):
        key, sep, value = item.partition("=")
        try:
            params[key.strip()] = float(value)
        except ValueError:
            key = ""
        if not sep or not key.strip().isidentifier():
            raise ParameterError(f"{{distribution}} parameter {item!r} must be name=number (in {text!r})",
                                 "distribution")
    return FromDistribution(m[1], params, mean=mean)


def scale_mmpp(process: MMPP, rate: float) -> MMPP:
    """The same states and dwell times, every state's rate multiplied so that the mean rate is ``rate``."""
    factor = rate / process.rate
    return MMPP(rates=tuple(r * factor for r in process.rates), dwell_s=process.dwell_s)


def process_from_description(desc: dict):
    """The process a run record's ``distribution`` (``describe()``) declared; ValueError when it cannot say."""
    if not isinstance(desc, dict):
        raise ValueError(f"an arrival process description must be an object (got {desc!r})")
    kind = desc.get("process")
    if kind == "trace":  # judged against its best-fitting gamma
        return process_from_description(desc.get("fitted_gamma") or {})
    if kind in ("exponential", "gamma"):
        return make_distribution(kind, desc.get("mean_s"), desc.get("shape") if kind == "gamma" else None)
    if kind == "distribution":
        return FromDistribution(desc["distribution"], dict(desc.get("params") or {}), mean=desc["mean_s"])
    if kind == "mmpp":
        return MMPP(rates=tuple(desc["rates_per_s"]), dwell_s=tuple(desc["dwell_s"]))
    if kind == "stages":
        base = process_from_description(desc["base"])
        return Stages(base, RateProfile(tuple(tuple(s) for s in desc["profile"]["segments"])))
    raise ValueError(f"unknown arrival process {kind!r} (known: exponential, gamma, distribution, mmpp, stages, trace)")


__all__ = ["parse_distribution", "parse_mmpp", "parse_stages", "process_from_description",
           "scale_mmpp"]
