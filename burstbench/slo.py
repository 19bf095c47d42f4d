"""Service-level objectives: their notation, and whether one request met them. Imports no pandas.

    --slo ttft_ms=500 --slo tpot_ms=50        (flags, repeatable)
    slo = {ttft_ms = 500, tpot_ms = 50}       (config file)

Metrics: ``ttft_ms``, ``tpot_ms``, ``latency_ms`` (end to end, from the actual send), ``itl_pNN_ms`` (a
request's own NN-th percentile of its inter-token latencies, NN in 1..100) and ``itl_max_ms`` (= itl_p100_ms).
A request meets the SLOs when it is ok and each of its measures is <= its bound. A measure a request cannot
have is met trivially where the response has no such thing (no ITL or TPOT with one output token); a missing
TTFT or latency fails. Goodput counts ALL requests, failed ones included (they never meet).

The load process judges each request as it is recorded (its closing line); ``burstbench.analysis.slo``
judges the rows of a run folder by the same rules (a test holds the two equal).
"""
from __future__ import annotations

import math
import re
from collections.abc import Mapping

CONFIDENCE_LEVEL = 0.95
DEFAULT_GOODPUT_TARGET = 0.99  # the capacity sweep's goodput criterion (--goodput-target)
ROW_METRICS = ("ttft_ms", "tpot_ms", "latency_ms")  # bounds on one column of the rows
MISSING_MEETS = {"ttft_ms": False, "tpot_ms": True, "latency_ms": False}  # no TPOT: fewer than 2 tokens
ITL_METRIC = re.compile(r"itl_p([1-9][0-9]*)_ms")
ITL_MAX = "itl_max_ms"
ACCEPTED = "ttft_ms, tpot_ms, latency_ms, itl_p<NN>_ms with NN in 1..100, itl_max_ms"


def itl_quantile(metric: str) -> float | None:
    """itl_p99_ms -> 0.99, itl_max_ms -> 1.0; None for a metric that is not an ITL percentile."""
    if metric == ITL_MAX:
        return 1.0
    match = ITL_METRIC.fullmatch(metric)
    return int(match.group(1)) / 100 if match and 1 <= int(match.group(1)) <= 100 else None


def _canonical(metric: str) -> str | None:
    if metric in ROW_METRICS or metric == ITL_MAX:
        return metric
    q = itl_quantile(metric)
    return None if q is None else ITL_MAX if q == 1.0 else metric


def parse_slos(items, source: str = "--slo") -> dict[str, float]:
    """SLOs as {metric: bound in ms}, in the order given.

    ``items``: "metric=value" strings (the repeatable flag), a mapping (the config key), or None (no SLOs).
    ``source`` names where they came from in errors. Bad input is a ValueError of one line naming the item,
    the accepted metrics and the accepted range.
    """
    if items is None:
        return {}
    if isinstance(items, Mapping):
        pairs = [(str(k), v, f"{source} {k}={v}") for k, v in items.items()]
    elif isinstance(items, (list, tuple)):
        pairs = []
        for item in items:
            text = str(item)
            if "=" not in text:
                raise ValueError(f"{source} {text}: expected metric=value in ms, e.g. ttft_ms=500 (accepted: {ACCEPTED})")
            metric, value = text.split("=", 1)
            pairs.append((metric.strip(), value.strip(), f"{source} {text}"))
    else:
        raise ValueError(f"{source}: expected metric=value items or a mapping of metric to ms, "
                         f"not {type(items).__name__} (accepted: {ACCEPTED})")
    slos: dict[str, float] = {}
    for metric, raw, shown in pairs:
        name = _canonical(metric)
        if name is None:
            raise ValueError(f"{shown}: unknown metric {metric!r} (accepted: {ACCEPTED})")
        try:
            if isinstance(raw, bool):
                raise ValueError
            bound = float(raw)
        except (TypeError, ValueError):
            raise ValueError(f"{shown}: {raw!r} is not a number of ms (accepted: a finite number > 0)") from None
        if not (0 < bound < math.inf):
            raise ValueError(f"{shown}: {raw!r} is out of range (accepted: a finite number of ms > 0)")
        if name in slos:
            raise ValueError(f"{shown}: {name} is given twice (one bound per metric)")
        slos[name] = bound
    return slos


def describe_slos(slos: Mapping[str, float]) -> str:
    """One line: 'ttft_ms <= 500 ms, tpot_ms <= 50 ms' (or 'no SLOs')."""
    return ", ".join(f"{metric} <= {bound:g} ms" for metric, bound in slos.items()) or "no SLOs"


def _quantile(values: list[float], q: float) -> float:
    """numpy's default (linear) quantile of a non-empty list, without numpy."""
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q
    low = math.floor(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def request_meets(row: Mapping, itl_ms: list[float] | None, slos: Mapping[str, float]) -> bool:
    """One request (a row as the load process records it, ``itl_ms`` its gaps) against every SLO."""
    if not row.get("ok"):
        return False
    for metric, bound in slos.items():
        if metric in ROW_METRICS:
            value = row.get(metric, "")
            if value in ("", None) or value != value:  # empty, or NaN as pandas reads an empty cell
                if not MISSING_MEETS[metric]:
                    return False
                continue
        elif not itl_ms:
            continue  # one chunk: no gap to be late
        else:
            value = _quantile(itl_ms, itl_quantile(metric))
        if float(value) > bound:
            return False
    return True


def proportion_ci(successes: int, trials: int, level: float = CONFIDENCE_LEVEL) -> tuple[float, float]:
    """Exact (Clopper-Pearson) CI of a binomial proportion; NaNs without trials."""
    if trials == 0:
        return float("nan"), float("nan")
    from scipy import stats

    ci = stats.binomtest(int(successes), int(trials)).proportion_ci(confidence_level=level, method="exact")
    return float(ci.low), float(ci.high)


def goodput_line(good: int, requests: int, duration_s: float, slos: Mapping[str, float]) -> str:
    """One line for a terminal or a run's closing output: the share and rate of requests meeting every SLO."""
    low, high = proportion_ci(good, requests)
    per_s = requests / duration_s if duration_s > 0 else float("nan")
    fraction = good / requests if requests else float("nan")
    return (f"goodput {fraction:.3f} [{low:.3f}, {high:.3f}] ({good} of {requests} requests met "
            f"{describe_slos(slos)}), {fraction * per_s:.3g} good/s [{low * per_s:.3g}, {high * per_s:.3g}] "
            f"over {duration_s:.1f} s; 95% CIs, Clopper-Pearson")


def parse_goodput_target(raw) -> float:
    """--goodput-target: a share in (0, 1]."""
    try:
        value = float(raw)
    except (TypeError, ValueError):
        value = math.nan
    if not 0 < value <= 1:
        raise ValueError(f"--goodput-target must be a share in (0, 1], e.g. 0.99 (got {raw!r})")
    return value
