"""``compare`` on resource use: each run's service CPU and memory, generator CPU and GPU, peak and mean, so a
variant that is faster but needs twice the memory (or a whole extra core) shows it beside its latency."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from .compare import _fmt, describe_differences
from .runs import RunFolder
from .telemetry import gpu_stats, process_stats, telemetry_info

GPU_COLUMNS = ("gpu_util_peak_pct", "gpu_util_mean_pct", "gpu_memory_peak_mb", "gpu_memory_mean_mb")


def resources_table(runs: Sequence[RunFolder]) -> pd.DataFrame | None:
    """One row per run label: service CPU peak and mean (% of one core, its whole process tree), service RSS
    peak and mean (MB), generator CPU peak and mean (% of one core, the busiest load process), and, when any
    run had a GPU, its utilisation (%) and memory used (MB), peak and mean (the busiest device). NaN where a
    run lacks the measurement; None when no run has telemetry."""
    if not any(telemetry_info(r) is not None for r in runs):
        return None
    labels = describe_differences(runs)["label"]
    records = []
    for run in runs:
        procs, gpus = process_stats(run), gpu_stats(run)
        record = dict.fromkeys(("service_cpu_peak_pct", "service_cpu_mean_pct", "service_rss_peak_mb",
                                "service_rss_mean_mb", "generator_cpu_peak_pct", "generator_cpu_mean_pct",
                                *GPU_COLUMNS), np.nan)
        if procs is not None and "service" in procs.index:
            s = procs.loc["service"]
            record.update(service_cpu_peak_pct=s["cpu_peak_pct"], service_cpu_mean_pct=s["cpu_mean_pct"],
                          service_rss_peak_mb=s["rss_peak_mb"], service_rss_mean_mb=s["rss_mean_mb"])
        loads = procs[procs["role"] == "load"] if procs is not None else None
        if loads is not None and len(loads):
            record.update(generator_cpu_peak_pct=loads["cpu_peak_pct"].max(),
                          generator_cpu_mean_pct=loads["cpu_mean_pct"].max())
        if gpus is not None:
            record.update(gpu_util_peak_pct=gpus["util_peak_pct"].max(), gpu_util_mean_pct=gpus["util_mean_pct"].max(),
                          gpu_memory_peak_mb=gpus["memory_peak_mb"].max(), gpu_memory_mean_mb=gpus["memory_mean_mb"].max())
        records.append({k: float(v) for k, v in record.items()})
    table = pd.DataFrame.from_records(records, index=pd.Index(labels, name="label"))
    if table[list(GPU_COLUMNS)].isna().all().all():
        table = table.drop(columns=list(GPU_COLUMNS))
    return table


def format_resources(table: pd.DataFrame) -> str:
    """The resource table for the terminal: whole numbers, NaN as n/a."""
    return ("resources, peak and mean over the run (CPU in % of one core: 200 is two cores busy; generator: its "
            "busiest load process; RSS and GPU memory in MB):\n" + table.map(lambda v: _fmt(v, ".0f")).to_string())
