"""Service-level objectives on streaming measures, and goodput: the share of requests that met all of them.

    --slo ttft_ms=500 --slo tpot_ms=50        (flags, repeatable)
    slo: {ttft_ms: 500, tpot_ms: 50}          (config file)

Metrics: ``ttft_ms``, ``tpot_ms``, ``latency_ms`` (end to end, from the actual send), ``itl_pNN_ms`` (a
request's own NN-th percentile of its inter-token latencies, NN in 1..100) and ``itl_max_ms`` (= itl_p100_ms).
A request meets the SLOs when it is ok and each of its measures is <= its bound. A measure a request cannot
have is met trivially where the response has no such thing (no ITL or TPOT with one output token); a missing
TTFT or latency fails. Goodput counts ALL requests, failed ones included (they never meet).

The notation and the one-request rule live in ``burstbench.slo`` (the load process uses them too); this
module applies them to a run folder's rows.
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from burstbench.slo import (ACCEPTED, CONFIDENCE_LEVEL, ITL_MAX, MISSING_MEETS, ROW_METRICS,  # noqa: F401
                            describe_slos, itl_quantile, parse_slos, proportion_ci)
from burstbench.slo import goodput_line as _goodput_line


def run_slos(record, override: Mapping[str, float] | None = None) -> dict[str, float]:
    """The SLOs to judge a run by: ``override`` (already parsed, e.g. a report's --slo flags) when it
    has any, else those run.json recorded (its ``slo`` field), else none."""
    if override:
        return dict(override)
    return parse_slos(record.slo, source="run.json slo:")


# -- per request ------------------------------------------------------------------------------
def has_streaming_rows(rows: pd.DataFrame) -> bool:
    """The rows come from a streaming run: some row has a TTFT."""
    return "ttft_ms" in rows.columns and pd.to_numeric(rows["ttft_ms"], errors="coerce").notna().any()


def _row_measure(rows: pd.DataFrame, metric: str) -> np.ndarray:
    # A streaming measure on a run without streaming would be met (TPOT) or failed (TTFT) by every
    # request: refused instead, so a wrong SLO never reads as a goodput.
    if metric != "latency_ms" and not has_streaming_rows(rows):
        raise ValueError(f"SLO {metric}: the run has no streaming measures (no TTFT in any row)")
    return pd.to_numeric(rows[metric], errors="coerce").to_numpy(dtype=float)


def _itl_measure(rows: pd.DataFrame, itl: pd.DataFrame | None, metric: str) -> np.ndarray:
    """Each request's own ITL percentile (numpy's linear interpolation over its gaps); NaN without gaps."""
    if itl is None or not has_streaming_rows(rows):
        raise ValueError(f"SLO {metric}: the run has no inter-token latencies (itl.csv)")
    per_request = itl.groupby("request_index")["itl_ms"].quantile(itl_quantile(metric))
    return per_request.reindex(rows["request_index"].to_numpy(dtype=np.int64)).to_numpy(dtype=float)


def slo_met(rows: pd.DataFrame, itl: pd.DataFrame | None, metric: str, bound: float) -> np.ndarray:
    """Per row: the request is ok and its measure for ``metric`` is within ``bound``."""
    ok = rows["ok"].to_numpy() == 1
    if metric in ROW_METRICS:
        values, missing_meets = _row_measure(rows, metric), MISSING_MEETS[metric]
    else:
        values, missing_meets = _itl_measure(rows, itl, metric), True  # one chunk: no gap to be late
    within = np.where(np.isnan(values), missing_meets, values <= bound)
    return ok & within


def meets_slos(rows: pd.DataFrame, itl: pd.DataFrame | None, slos: Mapping[str, float]) -> np.ndarray:
    """Per row: ok and every SLO met (with no SLOs: ok)."""
    met = rows["ok"].to_numpy() == 1
    for metric, bound in slos.items():
        met = met & slo_met(rows, itl, metric, bound)
    return met


# -- goodput ----------------------------------------------------------------------------------
def run_duration_s(rows: pd.DataFrame) -> float:
    """First scheduled send to the last answer (sent_epoch + latency), in seconds."""
    first = float(np.nanmin(rows["scheduled_epoch"].to_numpy(dtype=float)))
    last = float(np.nanmax(rows["sent_epoch"].to_numpy(dtype=float) + rows["latency_ms"].to_numpy(dtype=float) / 1000))
    return last - first


def goodput(rows: pd.DataFrame, itl: pd.DataFrame | None, slos: Mapping[str, float]) -> dict:
    """Goodput of one run under ``slos``.

    Keys: slos, requests, ok, good, fraction (good / requests) with fraction_ci (Clopper-Pearson 95 %),
    duration_s (first scheduled send to last answer), rate_per_s (good / duration) with rate_ci_per_s (the
    fraction's CI times requests / duration: the duration taken as fixed), and per_slo: for each SLO alone,
    the ok requests meeting it (met, share_of_ok) and its bound, to see which one bites.
    """
    n = len(rows)
    ok = int((rows["ok"].to_numpy() == 1).sum())
    good = int(meets_slos(rows, itl, slos).sum())
    low, high = proportion_ci(good, n)
    duration_s = run_duration_s(rows) if n else float("nan")
    per_s = n / duration_s if duration_s > 0 else float("nan")
    per_slo = {}
    for metric, bound in slos.items():
        met = int(slo_met(rows, itl, metric, bound).sum())
        per_slo[metric] = {"bound_ms": float(bound), "met": met, "share_of_ok": met / ok if ok else float("nan")}
    return {"slos": dict(slos), "requests": n, "ok": ok, "good": good, "fraction": good / n if n else float("nan"),
            "fraction_ci": (low, high), "confidence_level": CONFIDENCE_LEVEL, "duration_s": duration_s,
            "rate_per_s": good * per_s / n if n else float("nan"), "rate_ci_per_s": (low * per_s, high * per_s),
            "per_slo": per_slo}


def goodput_line(result: dict) -> str:
    """One line for a terminal or a run's closing output."""
    return _goodput_line(result["good"], result["requests"], result["duration_s"], result["slos"])
