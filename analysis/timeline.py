"""Throughput, failures and latency over the course of one run (the paper's Figure 4).

Requests are binned by their *send* time (``sent_epoch``), in seconds since the run's first
send. A request therefore counts, and its latency is attributed, to the window in which it
went out, not the one in which it finished: a request sent just before an outage and stuck in
it shows its long latency at the outage's start, and the failure and latency of one request
always land in the same window as its send. ``requests_per_s`` is the offered rate realised in
that window; use it beside ``failures_per_s`` to see what share of the load failed.

When the run recorded its load processes' own samples (generator.csv), the figure gains two
panels on the same time axis: each load process's CPU use (% of one core, with the 90 % line of
the generator verdict) and its event-loop delay (the longest stretch without polling, log scale,
with the 10 ms stall line). A sample covers the interval that ends at its ``epoch``.

When the run has telemetry (server_metrics.csv, processes.csv, gpu.csv), a panel per signal collected
follows on the same time axis: the server's request rate beside the client's sends, in-flight and queue
gauges, batch size, the server's mean processing time, service CPU and RSS, the load processes' CPU
(when there is no generator.csv), GPU utilisation and memory.
"""
from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display on servers
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from burstbench.locustfiles.generator_health import CPU_LIMIT_PERCENT, LOOP_DELAY_LIMIT_MS  # noqa: E402
from .runs import RunFolder, RunError  # noqa: E402
from .figures import save_figure  # noqa: E402
from .telemetry_figures import telemetry_panels  # noqa: E402

TARGET_WINDOWS = 40
MIN_WINDOW_S = 1.0
LATENCY_QUANTILES = {"p50": 0.50, "p95": 0.95}
TELEMETRY_PANEL_IN = 1.8  # figure inches per telemetry panel
LOOP_DELAY_FLOOR_MS = 1e-3  # the log axis's floor: a loop idle all interval reads microseconds


def default_window_s(span_s: float) -> float:
    """Window width for a run whose sends span ``span_s`` seconds.

    The rule: span / 40 rounded *up* to two significant figures, and at least 1 s. Rounding up
    changes the width by under 10 %, so a run longer than 40 s gets 37-41 windows (the last
    send opens the 41st when the span divides evenly); a shorter run gets 1 s windows, fewer of them.
    """
    raw_s = span_s / TARGET_WINDOWS
    if not math.isfinite(raw_s) or raw_s <= MIN_WINDOW_S:
        return MIN_WINDOW_S
    step = 10.0 ** (math.floor(math.log10(raw_s)) - 1)  # two significant figures
    return max(MIN_WINDOW_S, math.ceil(round(raw_s / step, 9)) * step)


def _offsets_s(run: RunFolder) -> np.ndarray:
    sent = run.rows["sent_epoch"].to_numpy(dtype=float)
    return sent - sent.min()


def timeline(run: RunFolder, window_s: float | None = None) -> pd.DataFrame:
    """Per-window counts, rates and service-latency percentiles, binned by send time.

    Index ``window_start_s``: window start in seconds since the first send; every window from
    the first send to the last is present, also empty ones (count 0). Columns: ``count``,
    ``failures``, ``requests_per_s`` and ``failures_per_s`` (over the full window width, so the
    last, partly covered window reads low), ``p50_ms`` and ``p95_ms`` (exact, numpy's linear
    interpolation) of the service latency of successful requests sent in the window: NaN where
    the window has none, never 0. Default ``window_s``: see ``default_window_s``.
    """
    offsets_s = _offsets_s(run)
    if window_s is None:
        window_s = default_window_s(float(offsets_s.max()))
    elif not (isinstance(window_s, (int, float)) and math.isfinite(window_s) and window_s > 0):
        raise ValueError(f"window_s must be a finite number of seconds > 0 (got {window_s!r})")
    window_s = float(window_s)
    index = np.floor(offsets_s / window_s).astype(int)
    frame = pd.DataFrame({"window": index, "failed": (run.rows["ok"].to_numpy() != 1).astype(int),
                          "ok_latency_ms": run.rows["latency_ms"].to_numpy(dtype=float)})
    frame.loc[frame["failed"] == 1, "ok_latency_ms"] = np.nan  # latency of successful requests only
    grouped = frame.groupby("window")
    table = pd.DataFrame({"count": grouped.size(), "failures": grouped["failed"].sum()})
    for name, q in LATENCY_QUANTILES.items():
        table[f"{name}_ms"] = grouped["ok_latency_ms"].quantile(q)  # NaNs skipped; all-NaN gives NaN
    table = table.reindex(range(int(index.max()) + 1))
    table[["count", "failures"]] = table[["count", "failures"]].fillna(0).astype(int)
    table["requests_per_s"] = table["count"] / window_s
    table["failures_per_s"] = table["failures"] / window_s
    table.index = pd.Index(np.round(table.index.to_numpy() * window_s, 9), name="window_start_s")
    table = table[["requests_per_s", "failures_per_s", "p50_ms", "p95_ms", "count", "failures"]]
    table.attrs["window_s"] = window_s  # the width, for plotting and reports
    return table


def events(run: RunFolder) -> pd.DataFrame:
    """The record's events (disruptions and the like) as ``offset_s`` since the first send, with their labels.

    None: an empty table. A malformed event never gets here: loading the record validates it
    (a RunError naming run.json and the event).
    """
    first_sent = float(run.rows["sent_epoch"].min())
    records = []
    for i, event in enumerate(run.record.events):
        if not math.isfinite(event.epoch):
            raise RunError(f"{run.record_path}: events[{i}] has a non-finite epoch {event.epoch!r}")
        records.append({"offset_s": event.epoch - first_sent, "label": event.label})
    return pd.DataFrame(records, columns=["offset_s", "label"]).astype({"offset_s": float, "label": str}).sort_values(
        "offset_s", kind="stable", ignore_index=True)


def timeline_figure(run: RunFolder, path: str | Path, window_s: float | None = None) -> Path:
    """Panels sharing x: requests/s and failures/s; p50 and p95 service latency; event markers.

    With generator.csv two more: CPU % of a core and event-loop delay, per load process. With telemetry,
    one more per signal collected (``telemetry_figures.telemetry_panels``); the figure grows with them.
    """
    path = Path(path)
    table = timeline(run, window_s)
    marks = events(run)
    x_s = table.index.to_numpy()
    width_s = table.attrs["window_s"]
    generator = run.generator if run.generator is not None and len(run.generator) else None

    panels = telemetry_panels(run)  # only what the sidecar collected
    ratios = (1, 1) + ((0.8, 0.8) if generator is not None else ()) + tuple(p.height for p in panels)
    height = (5.5 if generator is None else 9.5) + TELEMETRY_PANEL_IN * len(panels)
    fig, axes = plt.subplots(len(ratios), 1, sharex=True, figsize=(9, height), height_ratios=ratios, squeeze=False)
    axes = axes[:, 0]
    ax_rate, ax_lat = axes[:2]
    edges_s = np.append(x_s, x_s[-1] + width_s)  # repeat the last value so the last window is drawn whole
    for column, color, label in (("requests_per_s", "#4C72B0", "requests/s"), ("failures_per_s", "#C44E52", "failures/s")):
        values = table[column].to_numpy()
        ax_rate.step(edges_s, np.append(values, values[-1]), where="post", color=color, label=label)
    ax_rate.set_ylabel("per second")
    ax_rate.legend(fontsize=8, loc="upper left")
    percentile_lines(ax_lat, x_s + width_s / 2, table["p50_ms"], table["p95_ms"], "", "service latency (ms)")
    if generator is not None:
        _generator_panels(axes[2], axes[3], generator, float(run.rows["sent_epoch"].min()))
    for panel, ax in zip(panels, axes[len(axes) - len(panels):]):
        panel.draw(ax)
    axes[-1].set_xlabel(f"time since first send (s), {width_s:g} s windows by send time")
    for offset_s, label in zip(marks["offset_s"], marks["label"]):
        for ax in axes:
            ax.axvline(offset_s, color="black", linestyle=":", linewidth=1)
        ax_rate.annotate(label, xy=(offset_s, 1.0), xycoords=("data", "axes fraction"), xytext=(2, -2),
                         textcoords="offset points", rotation=90, ha="left", va="top", fontsize=7)
    dist = run.record.distribution or {}
    ax_rate.set_title(f"{run.name}\n{dist.get('label')}, pacing {run.record.pacing}", fontsize=9)
    return save_figure(fig, path)


def _generator_panels(ax_cpu, ax_loop, generator: pd.DataFrame, first_sent_epoch: float) -> None:
    """Each load process's samples as steps over the interval each one covers."""
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (worker, samples) in enumerate(generator.groupby("worker", sort=True)):
        end_s = samples["epoch"].to_numpy(dtype=float) - first_sent_epoch
        start_s = end_s - np.nan_to_num(samples["interval_s"].to_numpy(dtype=float))
        edges_s = np.append(start_s[:1], end_s)
        color = colors[i % len(colors)]
        for ax, column in ((ax_cpu, "cpu_percent"), (ax_loop, "loop_delay_ms")):
            values = samples[column].to_numpy(dtype=float)
            if column == "loop_delay_ms":
                values = np.maximum(values, LOOP_DELAY_FLOOR_MS)
            ax.step(edges_s, np.append(values, values[-1]), where="post", color=color, linewidth=1,
                    label=f"load process {worker}")
    ax_cpu.axhline(CPU_LIMIT_PERCENT, color="#C44E52", linestyle="--", linewidth=1,
                   label=f"{CPU_LIMIT_PERCENT:g} % of a core")
    ax_cpu.set_ylim(bottom=0, top=max(110.0, float(np.nanmax(generator["cpu_percent"].to_numpy(dtype=float),
                                                             initial=0.0)) * 1.05))
    ax_cpu.set_ylabel("generator CPU (% of a core)")
    ax_cpu.legend(fontsize=7, loc="best", ncol=4)
    ax_loop.axhline(LOOP_DELAY_LIMIT_MS, color="#C44E52", linestyle="--", linewidth=1,
                    label=f"{LOOP_DELAY_LIMIT_MS:g} ms: a stall")
    ax_loop.set_yscale("log")
    ax_loop.set_ylabel("loop delay (ms)")
    ax_loop.legend(fontsize=7, loc="best", ncol=4)


def percentile_lines(ax, x, p50, p95, what: str, ylabel: str) -> None:
    """A windowed p50 and p95 as two marked lines (the timeline's latency panel, the streaming TTFT panel)."""
    ax.plot(x, p50, marker=".", color="#4C72B0", label=f"{what} p50".strip())
    ax.plot(x, p95, marker=".", color="#DD8452", label=f"{what} p95".strip())
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8, loc="upper left")
