"""The report's "Where the time went" section: what the client measured against what the server says it
spent, whether the server saw the requests the client sent, and whether a CPU, the generator or a GPU was
saturated. Only runs with telemetry (telemetry.json, or run.json's ``telemetry``) get it.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .runs import RunFolder
from .telemetry import (cpu_count, gpu_absent_reason, gpu_stats, process_stats, run_server_metrics,
                        saturation_lines, server_metrics_line, telemetry_info)
from . import server_signals

WHERE_TITLE = "Where the time went"
STATS = ("mean", "p50", "p99")


def client_latency(run: RunFolder) -> dict[str, float]:
    """Mean, p50 and p99 (exact, numpy's linear interpolation) of the ok rows' ``latency_ms``; NaN without."""
    values = run.ok_rows["latency_ms"].to_numpy(dtype=float)
    if not len(values):
        return dict.fromkeys(STATS, float("nan"))
    return {"mean": float(values.mean()), "p50": float(np.quantile(values, 0.5)), "p99": float(np.quantile(values, 0.99))}


def latency_split(run: RunFolder, timing: dict | None) -> pd.DataFrame:
    """Rows mean, p50, p99; columns client (ms), server (ms), outside the server (ms) = client - server."""
    client = client_latency(run)
    server = {s: (timing or {}).get(f"{s}_ms", np.nan) for s in STATS}
    table = pd.DataFrame({"client (ms)": client, "server (ms)": server}).reindex(list(STATS))
    table["outside the server (ms)"] = table["client (ms)"] - table["server (ms)"]
    return table.rename_axis("statistic")


def requests_table(run: RunFolder, counts: pd.Series | None) -> pd.DataFrame:
    """The server's request count for the endpoint by response code and in all, beside the client's rows."""
    rows = {}
    if counts is not None:
        label = counts.index.name
        rows.update({f"server, {label} {code}" if label != "series" else "server": float(n) for code, n in counts.items()})
        rows["server, all codes"] = float(counts.sum())
    rows["client, rows sent"] = float(len(run.rows))
    rows["client, ok"] = float(len(run.ok_rows))
    return pd.DataFrame({"requests": rows}).rename_axis("counted by")


def resources_table(procs: pd.DataFrame | None, gpus: pd.DataFrame | None) -> pd.DataFrame:
    """One row per watched process and per GPU: peak and mean CPU (% of a core) or utilisation (%), memory (MB)."""
    rows = {}
    for name, r in (procs.iterrows() if procs is not None else ()):
        rows[f"{name} ({r['name']})"] = {
            "CPU / util peak (%)": r["cpu_peak_pct"], "CPU / util mean (%)": r["cpu_mean_pct"],
            "busiest 5 s (%)": r["cpu_busiest_5s_pct"], "memory peak (MB)": r["rss_peak_mb"],
            "memory mean (MB)": r["rss_mean_mb"], "memory total (MB)": np.nan}
    for name, r in (gpus.iterrows() if gpus is not None else ()):
        rows[f"{name} ({r['name']})"] = {
            "CPU / util peak (%)": r["util_peak_pct"], "CPU / util mean (%)": r["util_mean_pct"],
            "busiest 5 s (%)": r["util_busiest_5s_pct"], "memory peak (MB)": r["memory_peak_mb"],
            "memory mean (MB)": r["memory_mean_mb"], "memory total (MB)": r["memory_total_mb"]}
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("resource")


def _ms(value: float) -> str:
    return "n/a" if not np.isfinite(value) else f"{value:.1f} ms"


def latency_text(run: RunFolder, timing: dict | None, split: pd.DataFrame, metrics: bool = True) -> str:
    where = f" for {run.record.endpoint}" if run.record.endpoint else ""
    c = split["client (ms)"]
    text = (f"Client-measured latency of the {len(run.ok_rows)} successful requests (send to answer): mean "
            f"{_ms(c['mean'])}, p50 {_ms(c['p50'])}, p99 {_ms(c['p99'])}.")
    if timing is None:
        return text + (" The server exposed no request-duration histogram" if metrics else " Without server metrics")\
            + ": no server-side time to set against it."
    s, d = split["server (ms)"], split["outside the server (ms)"]
    text += (f" The server's own processing time{where} ({timing['family']}, successful (2xx) responses, "
             f"{timing['count']:.0f} of them): mean {_ms(s['mean'])} (Δsum/Δcount from the first scrape to the last), "
             f"p50 {_ms(s['p50'])}, p99 {_ms(s['p99'])}. Difference client − server: mean {d['mean']:+.1f} ms, p50 "
             f"{d['p50']:+.1f} ms, p99 {d['p99']:+.1f} ms: an estimate of the time outside the server's timer "
             "(network, connection set-up, queueing before the server starts timing, the client's own work). "
             "The server's quantiles are interpolated inside its histogram buckets (as Prometheus' "
             "histogram_quantile does), so they are only as fine as the buckets; the means are exact.")
    if (d < 0).any():
        text += " A negative difference is the buckets' coarseness, not time saved."
    return text + (f" ({timing['note']}.)" if timing.get("note") else "")


def count_text(run: RunFolder, counts: pd.Series | None) -> str:
    if counts is None:
        return "The server exposed no request counter: its request count is unknown."
    where = f" for {run.record.endpoint}" if run.record.endpoint else ""
    split = ", ".join(f"{code}: {n:.0f}" for code, n in counts.items()) if counts.index.name != "series" else ""
    text = (f"The server counted {counts.sum():.0f} requests{where} ({counts.attrs['family']}, first to last scrape"
            + (f"; by {counts.index.name}: {split}" if split else "") + f"), the client sent {len(run.rows)} "
            f"({len(run.ok_rows)} ok).")
    return text + (f" ({counts.attrs['note']}.)" if counts.attrs.get("note") else "")


def resources_text(run: RunFolder, procs: pd.DataFrame | None, gpus: pd.DataFrame | None) -> str:
    parts = []
    cores = cpu_count(run)
    if procs is not None and "service" in procs.index:
        s = procs.loc["service"]
        parts.append(f"Service (process tree): CPU peak {s['cpu_peak_pct']:.0f} %, mean {s['cpu_mean_pct']:.0f} % "
                     "of one core" + (f" ({cores} cores: {100 * cores} %)" if cores else "")
                     + f"; RSS peak {s['rss_peak_mb']:.0f} MB, mean {s['rss_mean_mb']:.0f} MB.")
    else:
        parts.append("Service: not watched (no service pid or port named, or not on this machine).")
    loads = procs[procs["role"] == "load"] if procs is not None else pd.DataFrame()
    for name, r in loads.iterrows():
        parts.append(f"Generator {name}: CPU peak {r['cpu_peak_pct']:.0f} %, mean {r['cpu_mean_pct']:.0f} % of one "
                     f"core; RSS peak {r['rss_peak_mb']:.0f} MB.")
    if gpus is None:
        parts.append(f"GPU: absent ({gpu_absent_reason(run)}).")
    for name, r in (gpus.iterrows() if gpus is not None else ()):
        parts.append(f"{name} ({r['name']}): utilisation peak {r['util_peak_pct']:.0f} %, mean "
                     f"{r['util_mean_pct']:.0f} %; memory peak {r['memory_peak_mb']:.0f} of {r['memory_total_mb']:.0f} MB.")
    return " ".join(parts)


def telemetry_section(run: RunFolder, out: Path):
    """The section, or None for a run without telemetry."""
    from .report import Section
    from .telemetry_figures import where_time_went_figure

    info = telemetry_info(run)
    if info is None:
        return None
    block = info.get("server_metrics") or {}
    frame = run_server_metrics(run) if block.get("status") not in ("none", "off") else None
    has_metrics = frame is not None and len(frame) > 0
    timing = server_signals.processing_time(frame, run.record.endpoint) if has_metrics else None
    counts = server_signals.request_counts(frame, run.record.endpoint) if has_metrics else None
    procs, gpus = process_stats(run), gpu_stats(run)
    split = latency_split(run, timing)
    # the scrapes, or the note saying why there are none; then the latencies
    head = [server_metrics_line(run, info) + ".", latency_text(run, timing, split, has_metrics)]
    if has_metrics:
        head.append(count_text(run, counts))
    text = [*head, resources_text(run, procs, gpus), " ".join(saturation_lines(run, procs, gpus))]
    tables = [("where_time_went", split), ("server_requests", requests_table(run, counts))]
    resources = resources_table(procs, gpus)
    if not resources.empty:
        tables.append(("resources", resources))
    figure = where_time_went_figure(split, f"{run.name}: client vs server latency"
                                    + ("" if timing else " (no server histogram)"), out / "where_time_went.png")
    return Section(WHERE_TITLE, "\n\n".join(text), tables=tables, figures=[figure])
