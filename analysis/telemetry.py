"""What the telemetry sidecar saw during a run: its files read with clear errors, and what they add up to.

The files (``burstbench.telemetry_files``): server_metrics.csv (the target's Prometheus samples, read by
``server_signals``), processes.csv (CPU and memory of the service's process tree and of each load process)
and gpu.csv (NVML), with telemetry.json saying what was collected and what not. That summary is also
run.json's ``telemetry``; older runs have neither and every function here answers None for them.

Saturation is judged on the busiest 5 s of samples (consecutive samples covering about 5 s; one sample when
they are further apart): the service at 90 % of the machine's cores or more, a load process at 90 % of one
core or more (``generator_health.CPU_LIMIT_PERCENT``), a GPU at 90 % utilisation or more.
"""
from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pandas as pd

from burstbench.locustfiles.generator_health import CPU_LIMIT_PERCENT
from burstbench.telemetry_files import (GPU_COLUMNS, GPU_FILE, NO_SERVER_METRICS, PROCESS_COLUMNS, PROCESSES_FILE,
                                        SERVER_METRICS_COLUMNS, SERVER_METRICS_FILE, TELEMETRY_FILE)

from . import server_signals
from .runs import RunError, RunFolder, read_once

BUSIEST_WINDOW_S = 5.0
SATURATED_SHARE = 0.90  # of the machine's cores (service), of the GPU's utilisation
GPU_LIMIT_PERCENT = 90.0


# ------------------------------------------------------------------------------------------- files
def _read(path: Path, columns: tuple[str, ...]) -> pd.DataFrame | None:
    """A sidecar CSV as text columns; None when absent. A last line without its newline (the sidecar killed
    mid-write) is dropped; a file without a header is empty; wrong columns or bad CSV: RunError."""
    if not path.is_file():
        return None
    try:
        text = path.read_text()
    except UnicodeDecodeError as err:
        raise RunError(f"{path}: not UTF-8 text ({err})") from None
    text = text[: text.rfind("\n") + 1] if not text.endswith("\n") else text
    if not text.strip():
        return pd.DataFrame({c: pd.Series(dtype=object) for c in columns})
    try:
        frame = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    except pd.errors.ParserError as err:
        raise RunError(f"{path}: unreadable ({type(err).__name__}: {err})") from None
    if tuple(frame.columns) != columns:
        raise RunError(f"{path}: columns {list(frame.columns)}, expected {', '.join(columns)}")
    return frame


def _numbers(frame: pd.DataFrame, path: Path, columns, required=("epoch",)) -> pd.DataFrame:
    """``columns`` as floats: empty or 'nan' is NaN; any other text, or a missing required value, a RunError."""
    for column in columns:
        values = pd.to_numeric(frame[column], errors="coerce")
        text = frame[column].astype(str).str.strip().str.lower()
        bad = values.isna() & (~text.isin(["", "nan"]) | (column in required))
        if bad.any():
            line = int(np.flatnonzero(bad.to_numpy())[0]) + 2  # the header is line 1
            raise RunError(f"{path}: line {line}: {column} {frame[column].iloc[line - 2]!r} is not a number")
        frame[column] = values.astype(float)
    return frame


def load_server_metrics(run_dir: str | Path, name: str = SERVER_METRICS_FILE) -> pd.DataFrame | None:
    """server_metrics.csv: ``epoch``, ``metric``, ``type``, ``labels`` (a dict), ``value``, and ``labels_key``
    (the labels' JSON text, keys sorted: one key per series). None when the file is absent."""
    path = Path(run_dir) / name
    frame = _read(path, SERVER_METRICS_COLUMNS)
    if frame is None:
        return None
    frame = _numbers(frame, path, ("epoch", "value"))
    parsed = {}
    for i, text in enumerate(frame["labels"]):
        if text not in parsed:
            try:
                value = json.loads(text)
            except ValueError:
                value = None
            if not isinstance(value, dict):
                raise RunError(f"{path}: line {i + 2}: labels {text[:80]!r} is not a JSON object")
            parsed[text] = value
    keys = {text: json.dumps(value, sort_keys=True) for text, value in parsed.items()}
    frame["labels_key"] = frame["labels"].map(keys)
    frame["labels"] = frame["labels"].map(parsed)
    return frame.sort_values("epoch", kind="stable").reset_index(drop=True)


def load_processes(run_dir: str | Path, name: str = PROCESSES_FILE) -> pd.DataFrame | None:
    """processes.csv as numbers (``role`` and ``name`` text), sorted by time; None when absent."""
    path = Path(run_dir) / name
    frame = _read(path, PROCESS_COLUMNS)
    if frame is None:
        return None
    frame = _numbers(frame, path, ("epoch", "pid", "processes", "cpu_percent", "rss_mb", "interval_s"),
                     required=("epoch", "pid"))
    frame["pid"] = frame["pid"].astype(np.int64)
    return frame.sort_values(["epoch", "role", "pid"], kind="stable").reset_index(drop=True)


def load_gpu(run_dir: str | Path, name: str = GPU_FILE) -> pd.DataFrame | None:
    """gpu.csv as numbers (``name`` text), sorted by device and time; None when absent (no GPU)."""
    path = Path(run_dir) / name
    frame = _read(path, GPU_COLUMNS)
    if frame is None:
        return None
    frame = _numbers(frame, path, [c for c in GPU_COLUMNS if c != "name"], required=("epoch", "gpu"))
    frame["gpu"] = frame["gpu"].astype(np.int64)
    return frame.sort_values(["gpu", "epoch"], kind="stable").reset_index(drop=True)


def telemetry_info(run: RunFolder) -> dict | None:
    """telemetry.json's content: run.json's ``telemetry``, else the file in the run folder; None without."""
    info = getattr(run.record, "telemetry", None) or run.record.extra.get("telemetry")
    path = run.path / TELEMETRY_FILE
    if info is None and path.is_file():
        try:
            info = json.loads(path.read_text())
        except ValueError as err:
            raise RunError(f"{path}: not JSON ({err})") from None
    if info is not None and not isinstance(info, dict):
        raise RunError(f"{path}: telemetry is {type(info).__name__}, expected an object")
    return info


def _file(run: RunFolder, block: str, default: str) -> str:
    return ((telemetry_info(run) or {}).get(block) or {}).get("file") or default


def run_server_metrics(run: RunFolder) -> pd.DataFrame | None:
    """The run's server_metrics.csv (``load_server_metrics``), read once per file version; each caller a copy."""
    path = run.path / _file(run, "server_metrics", SERVER_METRICS_FILE)
    if not path.is_file():
        return None
    return read_once(path, _read_server_metrics)  # the report asks for it 4 times


def _read_server_metrics(path: Path) -> pd.DataFrame:
    return load_server_metrics(path.parent, path.name)


def run_processes(run: RunFolder) -> pd.DataFrame | None:
    return load_processes(run.path, _file(run, "processes", PROCESSES_FILE))


def run_gpu(run: RunFolder) -> pd.DataFrame | None:
    return load_gpu(run.path, _file(run, "gpu", GPU_FILE))


# ------------------------------------------------------------------------------------------- server side
def server_request_rate(run: RunFolder) -> pd.DataFrame | None:
    """``server_signals.request_rate`` for the run's endpoint (None without server metrics)."""
    frame = run_server_metrics(run)
    return None if frame is None or frame.empty else server_signals.request_rate(frame, run.record.endpoint)


def server_request_counts(run: RunFolder) -> pd.Series | None:
    """The run's endpoint's requests by response code, first to last scrape (``server_signals.request_counts``)."""
    frame = run_server_metrics(run)
    return None if frame is None or frame.empty else server_signals.request_counts(frame, run.record.endpoint)


def server_request_count(run: RunFolder) -> float | None:
    """How many requests the server counted for the run's endpoint over the run, every response code."""
    counts = server_request_counts(run)
    return None if counts is None else float(counts.sum())


def server_processing_time(run: RunFolder) -> dict | None:
    """``server_signals.processing_time`` for the run's endpoint (mean, p50/p95/p99 in ms, per interval)."""
    frame = run_server_metrics(run)
    return None if frame is None or frame.empty else server_signals.processing_time(frame, run.record.endpoint)


# ------------------------------------------------------------------------------------------- processes, GPU
def busiest_mean(values, interval_s) -> float:
    """The highest time-weighted mean of ``values`` over consecutive samples covering about 5 s."""
    ok = np.isfinite(values) & np.isfinite(interval_s) & (interval_s > 0)
    if not ok.any():
        return float("nan")
    frame = pd.DataFrame({"weighted": values[ok] * interval_s[ok], "s": interval_s[ok]})
    k = min(len(frame), max(1, round(BUSIEST_WINDOW_S / float(np.median(frame["s"])))))
    rolled = frame.rolling(k).sum()
    return float((rolled["weighted"] / rolled["s"]).max())


def _cpu_row(part: pd.DataFrame) -> dict:
    cpu, span = part["cpu_percent"].to_numpy(float), part["interval_s"].to_numpy(float)
    ok = np.isfinite(cpu) & np.isfinite(span) & (span > 0)
    return {"samples": len(part), "monitored_s": float(span[ok].sum()),
            "cpu_peak_pct": float(np.max(cpu[ok])) if ok.any() else np.nan,
            "cpu_mean_pct": float(np.average(cpu[ok], weights=span[ok])) if ok.any() else np.nan,
            "cpu_busiest_5s_pct": busiest_mean(cpu, span),
            "rss_peak_mb": float(part["rss_mb"].max()), "rss_mean_mb": float(part["rss_mb"].mean())}


def process_stats(run: RunFolder) -> pd.DataFrame | None:
    """One row per watched process: the service's tree (``service``), each load process (``load PID``).

    Columns: role, pid, name, samples, monitored_s, CPU peak and time-weighted mean (% of one core), CPU over
    the busiest 5 s, RSS peak and mean (MB). None without processes.csv or rows."""
    frame = run_processes(run)
    if frame is None or frame.empty:
        return None
    rows = {}
    service = frame[frame["role"] == "service"]
    if len(service):
        rows["service"] = {"role": "service", "pid": int(service["pid"].iloc[-1]), "name": service["name"].iloc[-1],
                           **_cpu_row(service)}
    for pid, part in frame[frame["role"] == "load"].groupby("pid", sort=True):
        rows[f"load {pid}"] = {"role": "load", "pid": int(pid), "name": part["name"].iloc[-1], **_cpu_row(part)}
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("process") if rows else None


def gpu_stats(run: RunFolder) -> pd.DataFrame | None:
    """One row per GPU: name, utilisation peak / mean / busiest 5 s (%), memory used peak and mean and total (MB)."""
    frame = run_gpu(run)
    if frame is None or frame.empty:
        return None
    rows = {}
    for gpu, part in frame.groupby("gpu", sort=True):
        util = part["utilization_percent"].to_numpy(float)
        span = np.diff(part["epoch"].to_numpy(float), prepend=np.nan)  # a sample covers the gap before it
        span[0] = np.nanmedian(span) if len(span) > 1 else 1.0
        rows[f"GPU {gpu}"] = {
            "gpu": int(gpu), "name": part["name"].iloc[-1], "samples": len(part),
            "util_peak_pct": float(np.nanmax(util)), "util_mean_pct": float(np.nanmean(util)),
            "util_busiest_5s_pct": busiest_mean(util, span),
            "memory_peak_mb": float(part["memory_used_mb"].max()), "memory_mean_mb": float(part["memory_used_mb"].mean()),
            "memory_total_mb": float(part["memory_total_mb"].max())}
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("device")


def cpu_count(run: RunFolder) -> int | None:
    """The machine's logical CPUs as the sidecar saw them (telemetry.json), else run.json's machine."""
    count = ((telemetry_info(run) or {}).get("processes") or {}).get("cpu_count")
    if count is None and run.record.machine is not None:
        count = run.record.machine.cores
    return int(count) if count else None


def gpu_absent_reason(run: RunFolder) -> str:
    gpu = (telemetry_info(run) or {}).get("gpu") or {}
    return gpu.get("reason") or "no GPU telemetry"


# ------------------------------------------------------------------------------------------- verdict, summary
def saturation_lines(run: RunFolder, procs: pd.DataFrame | None = None, gpus: pd.DataFrame | None = None) -> list[str]:
    """One line per saturated resource; when none was, one line naming the peaks."""
    procs = process_stats(run) if procs is None else procs
    gpus = gpu_stats(run) if gpus is None else gpus
    cores = cpu_count(run)
    lines, peaks = [], []
    service = procs.loc["service"] if procs is not None and "service" in procs.index else None
    if service is not None:
        busiest = service["cpu_busiest_5s_pct"]
        if cores and busiest >= SATURATED_SHARE * cores * 100:
            lines.append(f"Service CPU-bound: {busiest:.0f} % of one core over its busiest 5 s, at least "
                         f"{100 * SATURATED_SHARE:.0f} % of the machine's {cores} cores.")
        peaks.append(f"service CPU {service['cpu_peak_pct']:.0f} % of one core"
                     + (f" (of {cores * 100} % for {cores} cores)" if cores else " (core count unknown)"))
    loads = procs[procs["role"] == "load"] if procs is not None else pd.DataFrame()
    for name, row in loads.iterrows():
        if row["cpu_busiest_5s_pct"] >= CPU_LIMIT_PERCENT:
            lines.append(f"Generator CPU-bound: its numbers describe the generator too ({name} at "
                         f"{row['cpu_busiest_5s_pct']:.0f} % of one core over its busiest 5 s).")
    if len(loads):
        peaks.append(f"generator CPU {loads['cpu_peak_pct'].max():.0f} % of one core")
    for name, row in (gpus.iterrows() if gpus is not None else ()):
        if row["util_busiest_5s_pct"] >= GPU_LIMIT_PERCENT:
            lines.append(f"GPU-bound: {name} ({row['name']}) at {row['util_busiest_5s_pct']:.0f} % utilisation "
                         "over its busiest 5 s.")
    peaks.append(f"GPU {gpus['util_peak_pct'].max():.0f} % utilisation" if gpus is not None
                 else f"GPU absent ({gpu_absent_reason(run)})")
    return lines or ["Nothing saturated: peaks were " + ", ".join(peaks) + "."]


def server_metrics_line(run: RunFolder, info: dict | None = None) -> str:
    """'server metrics: N scrapes every S s (family: R requests for ENDPOINT)', or the note why there are none."""
    info = telemetry_info(run) if info is None else info
    block = (info or {}).get("server_metrics") or {}
    status = block.get("status")
    if status == "none":
        return block.get("note") or f"{NO_SERVER_METRICS}: no scrape parsed"
    if status == "off":
        return "server metrics: off (not asked for)"
    frame = run_server_metrics(run)
    if frame is None or frame.empty:
        return f"{NO_SERVER_METRICS}: no {_file(run, 'server_metrics', SERVER_METRICS_FILE)} in the run folder"
    n = int(block.get("scrapes") or len(server_signals.scrapes(frame)))
    every = (info or {}).get("every_s")
    text = f"server metrics: {n} scrapes" + (f" every {every:g} s" if every else "")
    if block.get("failed"):
        text += f" ({block['failed']} failed)"
    counts = server_signals.request_counts(frame, run.record.endpoint)
    if counts is not None:
        text += (f"; {counts.attrs['family']}: {counts.sum():.0f} requests"
                 + (f" for {run.record.endpoint}" if run.record.endpoint else "") + f" (client sent {len(run.rows)})")
    return text


def summary_lines(run: RunFolder) -> list[str]:
    """What ``burstbench run`` prints about telemetry: server metrics, then the resources' peaks ([]: none)."""
    info = telemetry_info(run)
    if info is None:
        return []
    procs, gpus = process_stats(run), gpu_stats(run)
    parts = []
    if procs is not None and "service" in procs.index:
        s, cores = procs.loc["service"], cpu_count(run)
        parts.append(f"service peak CPU {s['cpu_peak_pct']:.0f} % of a core" + (f" ({cores} cores)" if cores else "")
                     + f", peak RSS {s['rss_peak_mb']:.0f} MB")
    elif ((info.get("processes") or {}).get("service")) is None:
        parts.append("service: not watched (no pid or port named)")
    loads = procs[procs["role"] == "load"] if procs is not None else None
    if loads is not None and len(loads):
        parts.append(f"generator peak CPU {loads['cpu_peak_pct'].max():.0f} % of a core")
    if gpus is not None:
        parts.append("; ".join(f"{name} peak {r['util_peak_pct']:.0f} % util, {r['memory_peak_mb']:.0f} of "
                               f"{r['memory_total_mb']:.0f} MB" for name, r in gpus.iterrows()))
    else:
        parts.append(f"GPU absent ({gpu_absent_reason(run)})")
    return [server_metrics_line(run, info), "; ".join(parts)]
