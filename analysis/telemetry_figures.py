"""Telemetry drawn: the timeline's extra panels (one per signal collected) and the report's latency split.

Every panel shares the timeline's x axis, seconds since the run's first send, aligned by epoch. A value
that covers an interval (a rate, a mean per scrape, CPU % over a sample) is drawn as a step over the interval
that ends at its epoch; a gauge (in flight, queued, memory) as points joined by lines.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display on servers
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from burstbench.locustfiles.generator_health import CPU_LIMIT_PERCENT  # noqa: E402
from . import server_signals  # noqa: E402
from .figures import save_figure  # noqa: E402
from .runs import RunFolder  # noqa: E402
from .telemetry import cpu_count, run_gpu, run_processes, run_server_metrics  # noqa: E402

LIMIT = {"color": "#C44E52", "linestyle": "--", "linewidth": 1}


@dataclass
class Panel:
    # server_rate, in_flight, batch_size, server_latency, service_cpu, service_rss, load_cpu, gpu_util, gpu_memory
    name: str
    draw: Callable  # draw(ax): one axis, x in seconds since the first send
    height: float = 0.8


def _steps(ax, end_x, y, interval_s=None, **kw) -> None:
    """y[i] drawn over (end_x[i] - interval_s[i], end_x[i]]; without intervals, the gaps between ends."""
    end_x, y = np.asarray(end_x, dtype=float), np.asarray(y, dtype=float)
    if not len(end_x):
        return
    if interval_s is None:
        gaps = np.diff(end_x)
        first = gaps[0] if len(gaps) else 1.0
    else:
        first = float(np.nan_to_num(np.asarray(interval_s, dtype=float)[0]))
    ax.step(np.append(end_x[0] - first, end_x), np.append(y[:1], y), where="pre", linewidth=1, **kw)


def _finish(ax, ylabel: str) -> None:
    top = ax.get_ylim()[1]
    ax.set_ylim(0, top * 1.3 if top > 0 else 1)  # room for the legend above the data
    ax.set_ylabel(ylabel, fontsize=8)
    ax.legend(fontsize=7, loc="upper left", ncol=3)


def telemetry_panels(run: RunFolder) -> list[Panel]:
    """The panels the run's telemetry can fill, in drawing order; [] for a run without telemetry."""
    t0 = float(run.rows["sent_epoch"].min())
    panels: list[Panel] = []
    metrics = run_server_metrics(run)
    if metrics is not None and len(metrics):
        panels += _server_panels(run, metrics, t0)
    procs = run_processes(run)
    if procs is not None and len(procs):
        panels += _process_panels(run, procs, t0)
    gpu = run_gpu(run)
    if gpu is not None and len(gpu):
        panels += _gpu_panels(gpu, t0)
    return panels


def _server_panels(run: RunFolder, metrics: pd.DataFrame, t0: float) -> list[Panel]:
    endpoint, panels = run.record.endpoint, []
    rate = server_signals.request_rate(metrics, endpoint)
    if rate is not None:
        edges = np.append(rate.index[0] - rate["interval_s"].iloc[0], rate.index.to_numpy())
        sends, _ = np.histogram(run.rows["sent_epoch"].to_numpy(float), bins=edges)

        def draw_rate(ax):
            x = rate.index.to_numpy() - t0
            _steps(ax, x, rate["rate_per_s"], rate["interval_s"], color="#55A868",
                   label=f"server ({rate.attrs['family']})")
            _steps(ax, x, sends / rate["interval_s"].to_numpy(), rate["interval_s"], color="#4C72B0", alpha=0.6,
                   label="client sends, same intervals")
            _finish(ax, "requests/s")
        panels.append(Panel("server_rate", draw_rate))
    found = server_signals.gauges(metrics, endpoint=endpoint)
    if found is not None:
        def draw_gauges(ax):
            for column in found:
                ax.plot(found.index.to_numpy() - t0, found[column], marker=".", markersize=2, linewidth=1, label=column)
            _finish(ax, "in flight / queued")
        panels.append(Panel("in_flight", draw_gauges))
    batches = server_signals.batch_size(metrics, endpoint)
    if batches is not None:
        def draw_batches(ax):
            for column in batches:
                _steps(ax, batches.index.to_numpy() - t0, batches[column], label=f"{column} (mean per scrape)")
            _finish(ax, "batch size")
        panels.append(Panel("batch_size", draw_batches))
    timing = server_signals.processing_time(metrics, endpoint)
    if timing is not None and timing["intervals"] is not None:
        means = timing["intervals"]

        def draw_latency(ax):
            _steps(ax, means.index.to_numpy() - t0, means["mean"], means["interval_s"], color="#8172B2",
                   label=f"server mean per scrape ({timing['family']}, 2xx)")
            _finish(ax, "server time (ms)")
        panels.append(Panel("server_latency", draw_latency))
    return panels


def _process_panels(run: RunFolder, procs: pd.DataFrame, t0: float) -> list[Panel]:
    panels = []
    service = procs[procs["role"] == "service"]
    cores = cpu_count(run)
    if len(service):
        x = service["epoch"].to_numpy(float) - t0

        def draw_cpu(ax):
            _steps(ax, x, service["cpu_percent"], service["interval_s"], color="#DD8452", label="service process tree")
            if cores:
                ax.axhline(100 * cores, color="black", linestyle="--", linewidth=1, label=f"{cores} cores")
            _finish(ax, "service CPU\n(% of a core)")

        def draw_rss(ax):
            ax.plot(x, service["rss_mb"], color="#DD8452", linewidth=1, label="service RSS")
            _finish(ax, "service RSS (MB)")
        panels += [Panel("service_cpu", draw_cpu), Panel("service_rss", draw_rss)]
    loads = procs[procs["role"] == "load"]
    if len(loads) and run.generator is None:  # generator.csv's panels already show the load processes
        def draw_loads(ax):
            for pid, part in loads.groupby("pid", sort=True):
                _steps(ax, part["epoch"].to_numpy(float) - t0, part["cpu_percent"], part["interval_s"],
                       label=f"load {pid}")
            ax.axhline(CPU_LIMIT_PERCENT, **LIMIT, label=f"{CPU_LIMIT_PERCENT:g} % of a core")
            _finish(ax, "generator CPU\n(% of a core)")
        panels.append(Panel("load_cpu", draw_loads))
    return panels


def _gpu_panels(gpu: pd.DataFrame, t0: float) -> list[Panel]:
    def draw(ax, column, ylabel, total=False):
        for index, part in gpu.groupby("gpu", sort=True):
            of = f" (of {part['memory_total_mb'].max():.0f} MB)" if total else ""
            ax.plot(part["epoch"].to_numpy(float) - t0, part[column], marker=".", markersize=2, linewidth=1,
                    label=f"GPU {index}{of}")
        _finish(ax, ylabel)

    return [Panel("gpu_util", lambda ax: draw(ax, "utilization_percent", "GPU util (%)")),
            Panel("gpu_memory", lambda ax: draw(ax, "memory_used_mb", "GPU memory used (MB)", True))]


def where_time_went_figure(table: pd.DataFrame, title: str, path: str | Path) -> Path:
    """Client against server latency (mean, p50, p99) as paired bars, the gap written over each pair.

    ``table``: rows mean/p50/p99, columns ``client (ms)`` and ``server (ms)`` (NaN: not known)."""
    fig, ax = plt.subplots(figsize=(7, 4))
    x = np.arange(len(table))
    width = 0.38
    client, server = table["client (ms)"].to_numpy(float), table["server (ms)"].to_numpy(float)
    ax.bar(x - width / 2, client, width, color="#4C72B0", label="client (send to answer)")
    if np.isfinite(server).any():
        ax.bar(x + width / 2, np.nan_to_num(server), width, color="#8172B2",
               label="server (its histogram; p50, p99 bucket-interpolated)")
        for i, (c, s) in enumerate(zip(client, server)):
            if np.isfinite(c) and np.isfinite(s):
                ax.annotate(f"{c - s:+.1f} ms outside", (i, max(c, s)), xytext=(0, 3), textcoords="offset points",
                            ha="center", fontsize=8)
    ax.set_xticks(x, table.index)
    ax.set_ylabel("latency (ms)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8, loc="upper left")
    ax.margins(y=0.15)
    return save_figure(fig, path)
