"""Exact latency tables from the per-request rows (the paper's Tables 3-4 for one run)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from .runs import Run

QUANTILES = {"p50": 0.50, "p95": 0.95, "p99": 0.99}


def summarise(run: Run) -> pd.DataFrame:
    """One row per latency kind: count, failures, p50/p95/p99, min/avg/max, in ms.

    Percentiles are exact (numpy's linear interpolation over every successful request),
    not Locust's bucketed ones. Failed requests are counted, never folded into latency.
    """
    rows = run.rows
    ok = run.ok_rows
    records = []
    for kind, column in (("service", "latency_ms"), ("schedule-corrected", "corrected_latency_ms")):
        values = ok[column].to_numpy(dtype=float)
        record = {"latency": kind, "requests": len(rows), "ok": len(ok), "failed": len(rows) - len(ok)}
        if len(values):
            record.update({name: float(np.quantile(values, q)) for name, q in QUANTILES.items()})
            record.update(min=float(values.min()), avg=float(values.mean()), max=float(values.max()))
        else:  # say what is missing instead of reporting zeros
            record.update({name: np.nan for name in [*QUANTILES, "min", "avg", "max"]})
        records.append(record)
    return pd.DataFrame.from_records(records).set_index("latency")


def run_facts(run: Run) -> dict:
    """Offered versus achieved rate, lateness and batching: the context a latency table needs."""
    rows, info = run.rows, run.info
    sent = rows["sent_epoch"].to_numpy(dtype=float)
    duration_s = float(sent.max() - sent.min()) if len(sent) > 1 else float("nan")
    batch = pd.to_numeric(run.ok_rows.get("batch_size"), errors="coerce").dropna() if "batch_size" in rows else pd.Series()
    dist = info.get("distribution", {})
    return {
        "scenario": info.get("scenario"),
        "process": dist.get("label"),
        "pacing": info.get("pacing"),
        "users": info.get("users"),
        "offered_rate_per_s": dist.get("rate_per_s"),
        "achieved_rate_per_s": (len(rows) - 1) / duration_s if duration_s > 0 else float("nan"),
        "lateness_p99_ms": float(np.quantile(rows["lateness_ms"].to_numpy(dtype=float), 0.99)),
        "lateness_max_ms": float(rows["lateness_ms"].max()),
        "batch_size_max": int(batch.max()) if len(batch) else None,
        "batches_over_one_share": float((batch > 1).mean()) if len(batch) else None,
        "failure_kinds": rows.loc[rows["ok"] != 1, "failure_kind"].value_counts().to_dict(),
    }
