"""What a server's own Prometheus metrics say about a run, for any server that exposes them.

Families are recognised by name and type, never by server: request counters (``*_request_total``,
``*_requests_total``, ``*_request_success_total``, ``vllm:request_success_total``, ``nv_inference_request_success``, ``tgi_request_count``),
in-flight and queue gauges (``*_in_progress``, ``vllm:num_requests_running``/``waiting``, ``tgi_queue_size``,
``nv_inference_pending_request_count``, ...), batch sizes (BentoML's ``*_adaptive_batch_size`` histogram,
``tgi_batch_current_size``) and request-duration histograms (``bentoml_service_request_duration_seconds``,
``vllm:e2e_request_latency_seconds``, ``tgi_request_duration``, ``*_request_duration_seconds``).

Every function takes the tidy frame of ``telemetry.load_server_metrics`` (one row per sample per scrape).
Counters and histogram parts increase between scrapes as Prometheus' ``rate()`` reads them: a drop means
the counter restarted from 0 (a server restart), so that interval's increase is the new value; there is no
extrapolation to window edges. A series first seen after the first scrape started at 0 (client libraries
create a labelled child on first use). Where a family has an endpoint label (``endpoint``, ``path``,
``handler``, ``route``), only the run's endpoint counts (``/readyz`` and ``/model-info`` do not).
"""
from __future__ import annotations

import re

import numpy as np
import pandas as pd

ENDPOINT_LABELS = ("endpoint", "path", "handler", "route")
CODE_LABELS = ("http_response_code", "code", "status_code", "status")
REQUEST_COUNTERS = (re.compile(r"^(vllm:request_success_total|nv_inference_request_success|tgi_request_count)$"),
                    re.compile(r"_request_success_total$"),  # MLServer's model_infer_request_success_total
                    re.compile(r"_requests?_total$"))
IN_FLIGHT_GAUGES = (re.compile(r"^(vllm:num_requests_running|vllm:num_requests_waiting|tgi_queue_size|"
                               r"nv_inference_pending_request_count)$"),
                    re.compile(r"(_in_progress|_inprogress|_in_flight|_queue_size|_queue_length)$"))
BATCH_HISTOGRAMS = (re.compile(r"_adaptive_batch_size$"),)
BATCH_GAUGES = (re.compile(r"^tgi_batch_current_size$"),)
DURATION_HISTOGRAMS = (re.compile(r"^(bentoml_service_request_duration_seconds|vllm:e2e_request_latency_seconds|"
                                  r"tgi_request_duration)$"),
                       re.compile(r"_request_duration_seconds$"))
# milliseconds per unit of a duration family: its name's suffix, else a known name; neither: not used
UNIT_SUFFIX_MS = (("_seconds", 1000.0), ("_milliseconds", 1.0), ("_ms", 1.0), ("_microseconds", 1e-3),
                  ("_us", 1e-3))
KNOWN_UNIT_MS = {"tgi_request_duration": 1000.0}
QUANTILES = {"p50": 0.50, "p95": 0.95, "p99": 0.99}
HISTOGRAM_PARTS = ("_bucket", "_sum", "_count")


# ------------------------------------------------------------------------------------------- families
def _base(metric: str, mtype: str) -> str:
    """A histogram sample's family (``x_bucket`` -> ``x``); any other sample is its own family."""
    if mtype == "histogram":
        for part in HISTOGRAM_PARTS:
            if metric.endswith(part):
                return metric[: -len(part)]
    return metric


def families(frame: pd.DataFrame, patterns, types: tuple[str, ...]) -> list[str]:
    """Names of the families of ``types`` matching ``patterns``, in the patterns' order (then by name).

    ``unknown`` (an untyped page) counts as any type. ``*_created`` samples are never a family."""
    names = frame.loc[frame["type"].isin((*types, "unknown")), ["metric", "type"]].drop_duplicates()
    bases = sorted({_base(m, t) for m, t in names.itertuples(index=False) if not m.endswith("_created")})
    found = []
    for pattern in patterns:
        found += [b for b in bases if pattern.search(b) and b not in found]
    return found


def unit_ms(family: str) -> float | None:
    """Milliseconds per unit of a duration family (``_seconds``: 1000), None when its unit is unknown."""
    if family in KNOWN_UNIT_MS:
        return KNOWN_UNIT_MS[family]
    return next((ms for suffix, ms in UNIT_SUFFIX_MS if family.endswith(suffix)), None)


# ------------------------------------------------------------------------------------------- series selection
def _norm(path) -> str:
    return "/" + str(path).strip().strip("/")


def select(frame: pd.DataFrame, metrics, endpoint: str | None, ok_codes: bool = False) -> tuple[pd.DataFrame, str]:
    """The samples of ``metrics`` that belong to ``endpoint``, and a note ('' when all went as asked).

    With an endpoint label present, only that endpoint's series; none matching: every series, noted.
    ``ok_codes``: where a response-code label exists, only 2xx series (successful responses)."""
    part = frame[frame["metric"].isin(list(metrics))]
    note = ""
    keys = set().union(*part["labels"]) if len(part) else set()
    label = next((k for k in ENDPOINT_LABELS if k in keys), None)
    if endpoint is not None and label is not None:
        match = part["labels"].map(lambda d: label in d and _norm(d[label]) == _norm(endpoint))
        if match.any():
            part = part[match]
        else:
            note = f"no series with {label}={endpoint}: every series counted"
    code = next((k for k in CODE_LABELS if k in keys), None)
    if ok_codes and code is not None:
        part = part[part["labels"].map(lambda d: str(d.get(code, "")).startswith("2"))]
    return part, note


def _family_choice(frame: pd.DataFrame, names: list[str], endpoint: str | None, parts=("",)) -> str | None:
    """The first family whose series match the endpoint (or that has no endpoint label), else the first."""
    for name in names:
        if not select(frame, [name + p for p in parts], endpoint)[1]:
            return name
    return names[0] if names else None


# ------------------------------------------------------------------------------------------- counters
def scrapes(frame: pd.DataFrame) -> np.ndarray:
    """Every scrape's epoch, in order."""
    return np.unique(frame["epoch"].to_numpy(dtype=float))


def _wide(part: pd.DataFrame, epochs: np.ndarray) -> pd.DataFrame:
    """Rows = scrapes, columns = series (metric and labels); NaN where a scrape lacked the series."""
    part = part.drop_duplicates(["epoch", "metric", "labels_key"], keep="last")
    wide = part.pivot(index="epoch", columns=["metric", "labels_key"], values="value")
    return wide.reindex(epochs)


def increases(wide: pd.DataFrame) -> pd.DataFrame:
    """Per-interval increase of each cumulative series (rows: the scrape that ends the interval).

    A drop is a reset: that interval's increase is the new value, as in Prometheus' ``rate()``; a series
    first seen after the first scrape started at 0. NaN where a scrape lacked the series."""
    previous = wide.ffill().shift(1)
    step = wide - previous
    step = step.mask(step < 0, wide)
    step = step.mask(previous.isna() & wide.notna(), wide)
    return step.iloc[1:]


def counter_increase(frame: pd.DataFrame, endpoint: str | None = None, family: str | None = None) -> pd.DataFrame | None:
    """The request counter's per-interval increase, per series: rows = scrapes after the first.

    ``attrs``: ``family``, ``note``, ``interval_s`` (array) and ``code_label`` (None without one)."""
    family = family or _family_choice(frame, families(frame, REQUEST_COUNTERS, ("counter",)), endpoint)
    epochs = scrapes(frame)
    if family is None or len(epochs) < 2:
        return None
    part, note = select(frame, [family], endpoint)
    if part.empty:
        return None
    step = increases(_wide(part, epochs)).droplevel("metric", axis=1)
    keys = set().union(*part["labels"])
    step.attrs.update(family=family, note=note, interval_s=np.diff(epochs),
                      code_label=next((k for k in CODE_LABELS if k in keys), None),
                      labels=dict(zip(part["labels_key"], part["labels"])))
    return step


def request_rate(frame: pd.DataFrame, endpoint: str | None = None) -> pd.DataFrame | None:
    """Server-side requests per second per scrape interval, summed over the endpoint's series.

    Index ``epoch`` (the scrape ending the interval); columns ``interval_s``, ``increase``, ``rate_per_s``.
    None when no request counter was exposed. ``attrs``: ``family``, ``note``."""
    step = counter_increase(frame, endpoint)
    if step is None:
        return None
    increase = step.sum(axis=1)
    out = pd.DataFrame({"interval_s": step.attrs["interval_s"], "increase": increase.to_numpy()}, index=step.index)
    out["rate_per_s"] = out["increase"] / out["interval_s"]
    out.attrs.update(family=step.attrs["family"], note=step.attrs["note"])
    return out


def request_counts(frame: pd.DataFrame, endpoint: str | None = None) -> pd.Series | None:
    """The request counter's increase from the first scrape to the last, per response code (index: the
    code, ``all`` without a code label), resets handled. None without a counter or two scrapes."""
    step = counter_increase(frame, endpoint)
    if step is None:
        return None
    total = step.sum(axis=0)
    code, labels = step.attrs["code_label"], step.attrs["labels"]
    by = [str(labels[k].get(code, "")) if code else "all" for k in total.index]
    counts = total.groupby(by).sum().rename_axis(code or "series").rename("requests")
    counts.attrs.update(family=step.attrs["family"], note=step.attrs["note"])
    return counts


# ------------------------------------------------------------------------------------------- gauges
def gauges(frame: pd.DataFrame, patterns=IN_FLIGHT_GAUGES, endpoint: str | None = None) -> pd.DataFrame | None:
    """Each matching gauge family summed over its (endpoint's) series, per scrape; None when none matched."""
    epochs = scrapes(frame)
    columns = {}
    for family in families(frame, patterns, ("gauge",)):
        part, _ = select(frame, [family], endpoint)
        if len(part):
            columns[family] = _wide(part, epochs).sum(axis=1, min_count=1)
    return pd.DataFrame(columns).rename_axis("epoch") if columns else None


# ------------------------------------------------------------------------------------------- histograms
def _histogram_steps(frame: pd.DataFrame, family: str, endpoint: str | None, ok_codes: bool):
    """Per-interval increases of a histogram's _sum, _count (each summed over series) and of its buckets."""
    epochs = scrapes(frame)
    part, note = select(frame, [family + p for p in HISTOGRAM_PARTS], endpoint, ok_codes)
    if len(epochs) < 2 or part.empty:
        return None
    step = increases(_wide(part, epochs))
    names = step.columns.get_level_values("metric")
    return {"sum": step.loc[:, names == family + "_sum"].sum(axis=1, min_count=1),
            "count": step.loc[:, names == family + "_count"].sum(axis=1, min_count=1),
            "buckets": step.loc[:, names == family + "_bucket"], "labels": dict(zip(part["labels_key"], part["labels"])),
            "interval_s": np.diff(epochs), "note": note}


def interval_means(frame: pd.DataFrame, family: str, endpoint: str | None = None, ok_codes: bool = False,
                   scale: float = 1.0, steps: dict | None = None) -> pd.DataFrame | None:
    """A histogram's mean per scrape interval, Δsum / Δcount (NaN where nothing was observed), times ``scale``.

    Index ``epoch`` (interval end); columns ``interval_s``, ``count`` (Δcount), ``mean``."""
    steps = steps or _histogram_steps(frame, family, endpoint, ok_codes)
    if steps is None:
        return None
    count = steps["count"].fillna(0.0)
    out = pd.DataFrame({"interval_s": steps["interval_s"], "count": count.to_numpy()}, index=steps["sum"].index)
    out["mean"] = (steps["sum"] / count.where(count > 0)).to_numpy() * scale
    return out


def histogram_quantile(q: float, upper_bounds, cumulative_counts) -> float:
    """The q-quantile of a cumulative histogram, as Prometheus' ``histogram_quantile`` computes it.

    The bucket holding rank q * total is found and the value interpolated linearly inside it (from 0 for
    the first bucket); a rank in the +Inf bucket gives the highest finite bound. Counts are made monotonic
    first, as Prometheus does. NaN without a +Inf bucket, two buckets or any observation."""
    bounds = np.asarray(upper_bounds, dtype=float)
    order = np.argsort(bounds)
    bounds = bounds[order]
    counts = np.maximum.accumulate(np.nan_to_num(np.asarray(cumulative_counts, dtype=float)[order]))
    if len(bounds) < 2 or not np.isposinf(bounds[-1]) or counts[-1] <= 0 or not 0 <= q <= 1:
        return float("nan")
    rank = q * counts[-1]
    b = int(np.searchsorted(counts, rank, side="left"))
    if b == len(bounds) - 1:
        return float(bounds[-2])
    if b == 0 and bounds[0] <= 0:
        return float(bounds[0])
    start, below = (0.0, 0.0) if b == 0 else (bounds[b - 1], counts[b - 1])
    inside = counts[b] - below
    return float(bounds[b] if inside <= 0 else start + (bounds[b] - start) * (rank - below) / inside)


def run_buckets(steps: dict) -> pd.Series:
    """Each bucket's increase over the run (first to last scrape), summed over series: index ``le``."""
    totals = steps["buckets"].sum(axis=0).droplevel("metric")
    bounds = [float(steps["labels"][k]["le"]) for k in totals.index]
    return totals.groupby(bounds).sum().rename_axis("le")


def processing_time(frame: pd.DataFrame, endpoint: str | None = None) -> dict | None:
    """The server's own processing time for the endpoint's successful (2xx) responses, over the run, in ms.

    ``mean_ms`` = Δsum / Δcount from the first scrape to the last (exact); ``p50_ms``, ``p95_ms``, ``p99_ms``
    from the bucket increases over the same span, interpolated inside buckets (``histogram_quantile``: only
    as fine as the buckets). Also ``count``, ``family``, ``note`` and ``intervals`` (per-interval means, ms).
    None when no duration histogram with a known unit was exposed."""
    names = [f for f in families(frame, DURATION_HISTOGRAMS, ("histogram",)) if unit_ms(f) is not None]
    family = _family_choice(frame, names, endpoint, HISTOGRAM_PARTS)
    if family is None:
        return None
    steps = _histogram_steps(frame, family, endpoint, ok_codes=True)
    if steps is None:
        return None
    scale = unit_ms(family)
    count, total = float(steps["count"].sum()), float(steps["sum"].sum())
    buckets = run_buckets(steps)
    out = {"family": family, "note": steps["note"], "count": count,
           "mean_ms": total / count * scale if count > 0 else float("nan"),
           "intervals": interval_means(frame, family, scale=scale, steps=steps)}
    for name, q in QUANTILES.items():
        out[f"{name}_ms"] = histogram_quantile(q, buckets.index, buckets.to_numpy()) * scale
    return out


def batch_size(frame: pd.DataFrame, endpoint: str | None = None) -> pd.DataFrame | None:
    """Batch size per scrape: each batch histogram's Δsum / Δcount (mean per interval, NaN without a batch)
    and each batch gauge's value. One column per family; None when the server exposes neither."""
    columns = {}
    for family in families(frame, BATCH_HISTOGRAMS, ("histogram",)):
        means = interval_means(frame, family, endpoint)
        if means is not None:
            columns[family] = means["mean"]
    found = gauges(frame, BATCH_GAUGES, endpoint)
    table = pd.DataFrame(columns).rename_axis("epoch")
    if found is not None:
        table = found if table.empty else table.join(found, how="outer")
    return None if table.empty else table
