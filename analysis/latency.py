"""Exact latency tables from the per-request rows (the paper's Tables 3-4 for one run)."""
from __future__ import annotations

import csv

import numpy as np
import pandas as pd
from scipy import stats

from .runs import RunFolder

QUANTILES = {"p50": 0.50, "p95": 0.95, "p99": 0.99}
REPORT_QUANTILES = {**QUANTILES, "p99.9": 0.999}
LATENCY_COLUMNS = {"service": "latency_ms", "schedule-corrected": "corrected_latency_ms"}


def summarise(run: RunFolder) -> pd.DataFrame:
    """One row per latency kind: count, failures, p50/p95/p99, min/avg/max, in ms.

    Percentiles are exact (numpy's linear interpolation over every successful request),
    not Locust's bucketed ones. Failed requests are counted, never folded into latency.
    """
    rows = run.rows
    ok = run.ok_rows
    records = []
    for kind, column in LATENCY_COLUMNS.items():
        values = ok[column].to_numpy(dtype=float)
        record = {"latency": kind, "requests": len(rows), "ok": len(ok), "failed": len(rows) - len(ok)}
        if len(values):
            record.update({name: float(np.quantile(values, q)) for name, q in QUANTILES.items()})
            record.update(min=float(values.min()), avg=float(values.mean()), max=float(values.max()))
        else:  # say what is missing instead of reporting zeros
            record.update({name: np.nan for name in [*QUANTILES, "min", "avg", "max"]})
        records.append(record)
    return pd.DataFrame.from_records(records).set_index("latency")


def percentile_cis(values_ms: np.ndarray, quantiles: dict[str, float] = REPORT_QUANTILES,
                   n_resamples: int = 2000, seed: int = 0, max_values: int = 20_000) -> pd.DataFrame:
    """Each percentile with a bootstrap 95% CI (percentile method, scipy.stats.bootstrap).

    Above ``max_values`` a seeded subsample feeds the bootstrap (the point estimate stays exact).
    """
    values_ms = np.asarray(values_ms, dtype=float)
    out = []
    rng = np.random.default_rng(seed)
    sample = values_ms if len(values_ms) <= max_values else rng.choice(values_ms, max_values, replace=False)
    for name, q in quantiles.items():
        if len(values_ms) < 2:
            out.append({"percentile": name, "ms": np.nan if not len(values_ms) else float(values_ms[0]),
                        "ci_low": np.nan, "ci_high": np.nan})
            continue
        res = stats.bootstrap((sample,), lambda x, axis: np.quantile(x, q, axis=axis), vectorized=True,
                              n_resamples=n_resamples, method="percentile", rng=rng)
        out.append({"percentile": name, "ms": float(np.quantile(values_ms, q)),
                    "ci_low": float(res.confidence_interval.low), "ci_high": float(res.confidence_interval.high)})
    return pd.DataFrame(out).set_index("percentile")


def latency_table(run: RunFolder, n_resamples: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Long table: for service and schedule-corrected latency, p50..p99.9 with CIs, then min/avg/max."""
    parts = []
    for kind, column in LATENCY_COLUMNS.items():
        values = run.ok_rows[column].to_numpy(dtype=float)
        table = percentile_cis(values, n_resamples=n_resamples, seed=seed)
        extra = pd.DataFrame(
            {"ms": [values.min(), values.mean(), values.max()] if len(values) else [np.nan] * 3,
             "ci_low": np.nan, "ci_high": np.nan},
            index=pd.Index(["min", "avg", "max"], name="percentile"))
        parts.append(pd.concat([table, extra]).assign(latency=kind))
    return pd.concat(parts).reset_index().set_index(["latency", "percentile"])


def locust_percentiles(run: RunFolder) -> pd.DataFrame | None:
    """Locust's own (bucketed) aggregated percentiles from its CSV, to show beside the exact ones."""
    path = run.path / "locust_stats.csv"
    if not path.is_file():
        return None
    with path.open(newline="") as f:
        row = next((r for r in csv.DictReader(f) if r.get("Name") == "Aggregated"), None)
    if row is None:
        return None
    wanted = {"50%": "p50", "95%": "p95", "99%": "p99", "99.9%": "p99.9",
              "Min Response Time": "min", "Average Response Time": "avg", "Max Response Time": "max"}
    values = {}
    for column, name in wanted.items():
        try:
            values[name] = float(row[column])
        except (KeyError, TypeError, ValueError):
            values[name] = np.nan
    values["requests"] = float(row.get("Request Count") or np.nan)
    values["failures"] = float(row.get("Failure Count") or np.nan)
    return pd.DataFrame({"locust (bucketed)": values})


def batch_sizes(run: RunFolder) -> pd.Series:
    """How many successful requests ran in batches of each size, as the service reported them."""
    if "batch_size" not in run.rows:
        return pd.Series(dtype=int, name="requests")
    sizes = pd.to_numeric(run.ok_rows["batch_size"], errors="coerce").dropna().astype(int)
    return sizes.value_counts().sort_index().rename("requests").rename_axis("batch_size")


def run_facts(run: RunFolder) -> dict:
    """Offered versus achieved rate, lateness and batching: the context a latency table needs."""
    rows, record = run.rows, run.record
    sent = rows["sent_epoch"].to_numpy(dtype=float)
    duration_s = float(sent.max() - sent.min()) if len(sent) > 1 else float("nan")
    batch = batch_sizes(run)
    dist = record.distribution or {}
    batched = int(batch[batch.index > 1].sum()) if len(batch) else 0
    return {
        "scenario": record.scenario,
        "process": dist.get("label"),
        "pacing": record.pacing,
        "users": record.users,
        "duration_s": duration_s,
        "offered_rate_per_s": dist.get("rate_per_s"),
        "achieved_rate_per_s": (len(rows) - 1) / duration_s if duration_s > 0 else float("nan"),
        "lateness_p50_ms": float(np.quantile(rows["lateness_ms"].to_numpy(dtype=float), 0.50)),
        "lateness_p99_ms": float(np.quantile(rows["lateness_ms"].to_numpy(dtype=float), 0.99)),
        "lateness_max_ms": float(rows["lateness_ms"].max()),
        "batch_size_max": int(batch.index.max()) if len(batch) else None,
        "batches_over_one_share": batched / int(batch.sum()) if len(batch) else None,
        "failure_kinds": rows.loc[rows["ok"] != 1, "failure_kind"].value_counts().to_dict(),
        "partial": run.partial,
        "dropped_rows": run.dropped_rows,
    }
