"""A run's telemetry: the sidecar started from the load spec, and the closing lines it earns. No Locust here.

Local runs and masters start the sidecar (``burstbench.telemetry``) once their folder exists, before any
traffic, and stop it after the last answer; workers never do (their master's sidecar samples the
processes it forked, and generator.csv has every worker's own view).
"""
from __future__ import annotations

from pathlib import Path

from burstbench.server_metrics import metrics_url
from burstbench.telemetry import TelemetrySidecar


def start_telemetry(spec, host: str | None, run_dir: Path) -> TelemetrySidecar | None:
    """The started sidecar for ``spec`` (a LoadSpec), or None under ``--telemetry off`` (or no spec)."""
    if spec is None or spec.telemetry == "off":
        return None
    sidecar = TelemetrySidecar(run_dir, spec.metrics_every, metrics_url(host, spec.server_metrics),
                               service_pid=spec.service_pid, service_port=spec.service_port)
    return sidecar.start()


def telemetry_lines(summary: dict | None, problem: str | None) -> list[str]:
    """What the closing lines say about the telemetry: one line per source, the problem if there was one."""
    lines = [f"telemetry: {problem}"] if problem else []
    if summary is None:
        return lines or ["telemetry: the sidecar left no telemetry.json"]
    metrics = summary["server_metrics"]
    if metrics["status"] == "none":
        lines.append(metrics["note"])
    elif metrics["status"] == "ok":
        failed = f", {metrics['failed']} failed" if metrics["failed"] else ""
        lines.append(f"server metrics: {metrics['scrapes']} scrapes of {metrics['url']} every "
                     f"{summary['every_s']:g} s{failed} ({metrics['file']})")
    procs = summary["processes"]
    peaks = procs.get("peak", {})
    service = procs.get("service")
    if service is not None:
        peak = peaks.get("service")
        where = f"pid {service['pid']}" if service.get("pid") else f"port {service.get('port')}"
        lines.append(f"service ({where}): peak CPU {peak['cpu_percent']:.0f} % of a core, peak RSS "
                     f"{peak['rss_mb']:.0f} MB" if peak else f"service ({where}): {service['status']}, not sampled")
    if "load" in peaks:
        lines.append(f"load processes ({len(procs['load'])}): peak CPU {peaks['load']['cpu_percent']:.0f} % of a "
                     f"core, peak RSS {peaks['load']['rss_mb']:.0f} MB")
    gpu = summary["gpu"]
    lines.append(f"GPU: {', '.join(d['name'] for d in gpu['devices'])}" if gpu["status"] == "present"
                 else f"GPU: absent ({gpu['reason']})")
    return lines
