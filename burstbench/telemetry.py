"""The telemetry sidecar: server metrics, process and GPU telemetry on one clock, in a process of its own.

    sidecar = TelemetrySidecar(run_dir, every_s=1.0, metrics_url="http://127.0.0.1:3000/metrics",
                               service_pid=1234)
    sidecar.start()          # returns once the first sample is in (the counters' baseline precedes traffic)
    ...                      # the run
    summary = sidecar.stop() # a last sample, then telemetry.json's content (burstbench.telemetry_files)

Why a process and not a greenlet or a thread of the load process: a scrape parses 10-20 kB of text
(about 5 ms of Python for BentoML's page) and psutil reads /proc for every process of the service's
tree; in the load process that would hold its event loop (a greenlet) or its GIL (a thread) for
milliseconds at a time, right where sends must be punctual to 0.1 ms. In its own process it shares
only the CPU, and that cost is what ``make bench-telemetry`` measures. It ignores Ctrl-C (its load
process stops it, after the last answer, so the last scrape counts every request) and ends by itself
when the load process is gone.

    python -m burstbench.telemetry --run-dir DIR --every 1 [--metrics-url URL]
        [--service-pid PID | --service-port PORT] [--load-pid PID]
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil

from burstbench.process_telemetry import GpuSampler, ProcessTreeSampler, listening_pids
from burstbench.processes import log_tail, wait_until
from burstbench.server_metrics import MetricsScraper, ScrapeError
from burstbench.telemetry_files import (GPU_COLUMNS, GPU_FILE, NO_SERVER_METRICS, PROCESS_COLUMNS, PROCESSES_FILE,
                                        SERVER_METRICS_COLUMNS, SERVER_METRICS_FILE, TELEMETRY_FILE, summary_template)

MAX_ERRORS_KEPT = 5
START_TIMEOUT_S = 15.0  # the first sample: Python's start-up, imports, one scrape (its timeout at most 2 s)
STOP_TIMEOUT_S = 10.0
LOG_FILE = "telemetry.log"
# The sidecar's CPU priority, below the load process's: measured by make bench-telemetry (docs/telemetry.md).
NICENESS = 10


class _Table:
    """One CSV in the run folder, written as rows come (flushed every sample: a killed run keeps them)."""

    def __init__(self, path: Path, columns):
        self.path, self.columns = path, columns
        self._file = None

    def write(self, rows) -> None:
        if not rows:
            return
        if self._file is None:
            self._file = self.path.open("w", newline="")
            self._writer = csv.writer(self._file)
            self._writer.writerow(self.columns)
        self._writer.writerows([row[c] for c in self.columns] if isinstance(row, dict) else row for row in rows)
        self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


class Collector:
    """What the sidecar process does each tick; also usable in-process by tests."""

    def __init__(self, run_dir: Path, every_s: float, metrics_url: str | None = None, service_pid: int | None = None,
                 service_port: int | None = None, load_pid: int | None = None):
        self.run_dir = Path(run_dir)
        self.every_s = every_s
        self._started_s = time.monotonic()
        self.summary = summary_template(every_s)
        self.scraper = MetricsScraper(metrics_url, timeout_s=min(2.0, max(0.2, every_s))) if metrics_url else None
        if metrics_url:
            self.summary["server_metrics"].update(url=metrics_url, status="none")
        self.metrics = _Table(self.run_dir / SERVER_METRICS_FILE, SERVER_METRICS_COLUMNS)
        self.processes = _Table(self.run_dir / PROCESSES_FILE, PROCESS_COLUMNS)
        self.gpus = _Table(self.run_dir / GPU_FILE, GPU_COLUMNS)
        procs = self.summary["processes"]
        procs.update(cpu_count=psutil.cpu_count(), memory_total_mb=round(psutil.virtual_memory().total / 2**20, 1))
        self.service_pid, self.service_port = service_pid, service_port  # as named: one of the two
        self.service = None
        if service_pid is not None or service_port is not None:
            procs["service"] = {"pid": service_pid, "port": service_port,
                                "named_by": "pid" if service_pid is not None else "port", "status": "absent"}
            self._find_service()
        # the load process, and (--processes) the workers it forked, each its own row; never this process
        self.load_pid = load_pid
        self.loads: dict[int, ProcessTreeSampler] = {}
        self.gpu = GpuSampler()
        gpu = self.summary["gpu"]
        if self.gpu.available:
            gpu.update(status="present", devices=self.gpu.devices, file=GPU_FILE)
        else:
            gpu.update(status="absent", reason=self.gpu.reason)

    def _find_service(self) -> None:
        """The sampler of the named pid, or of the process listening on the named port (found again after a
        restart); None, and status gone, when it ended."""
        info = self.summary["processes"]["service"]
        candidates = [self.service_pid] if self.service_pid is not None else listening_pids(self.service_port)
        for candidate in candidates:
            try:
                self.service = ProcessTreeSampler(candidate, "service", exclude=(os.getpid(),))
            except psutil.Error:
                continue
            info.update(pid=candidate, status="ok")
            return
        self.service = None
        if info["status"] == "ok":
            info["status"] = "gone"

    def _load_samplers(self) -> list[ProcessTreeSampler]:
        if self.load_pid is None:
            return []
        pids = [self.load_pid]
        try:
            pids += [c.pid for c in psutil.Process(self.load_pid).children() if c.pid != os.getpid()]
        except psutil.Error:
            pass
        for pid in pids:
            if pid not in self.loads:
                try:
                    self.loads[pid] = ProcessTreeSampler(pid, "load", recursive=False)
                except psutil.Error:
                    continue
                self.summary["processes"]["load"].append(pid)
        return list(self.loads.values())

    def tick(self) -> None:
        self._scrape()
        if self.service is None and self.service_port is not None:
            self._find_service()  # named by port: a restarted server is found again
        service_row = self.service.sample() if self.service is not None else None
        if self.service is not None and service_row is None:
            self._find_service()  # its root ended: gone, or (by port) its successor's baseline
        samples = [service_row] + [sampler.sample() for sampler in self._load_samplers()]
        rows = [row for row in samples if row is not None]  # each sampler took its baseline when made
        if rows:
            self.processes.write(rows)
            procs = self.summary["processes"]
            procs["file"] = PROCESSES_FILE
            for row in rows:  # the closing lines' peaks; the analysis reads the file
                peak = procs.setdefault("peak", {}).setdefault(row["role"], {"cpu_percent": 0.0, "rss_mb": 0.0})
                for key in peak:
                    if row[key] > peak[key]:
                        peak[key] = round(row[key], 1)
        if self.gpu.available:
            self.gpus.write(self.gpu.sample())

    def _scrape(self) -> None:
        if self.scraper is None:
            return
        info = self.summary["server_metrics"]
        try:
            rows = self.scraper.scrape()
        except ScrapeError as err:
            info["failed"] += 1
            if len(info["errors"]) < MAX_ERRORS_KEPT and str(err) not in info["errors"]:
                info["errors"].append(str(err))
            if info["status"] != "ok":
                info["note"] = f"{NO_SERVER_METRICS}: {info['errors'][0]}"
            return
        epoch = time.time()
        self.metrics.write([(epoch, *row) for row in rows])
        info.update(status="ok", note=None, file=SERVER_METRICS_FILE)
        info["scrapes"] += 1
        info["samples"] += len(rows)

    def write_summary(self, final: bool) -> None:
        path = self.run_dir / TELEMETRY_FILE
        temp = path.with_suffix(".json.tmp")
        wall_s = time.monotonic() - self._started_s
        cpu_s = time.process_time()
        # its own cost (start-up imports included): what the sidecar takes from the load's CPUs
        self.summary["sidecar"] = {"cpu_s": round(cpu_s, 3), "wall_s": round(wall_s, 3),
                                   "cpu_percent": round(100 * cpu_s / wall_s, 2) if wall_s > 0 else None}
        temp.write_text(json.dumps({**self.summary, "final": final}, indent=2) + "\n")
        temp.replace(path)  # a reader never sees half a file

    def close(self) -> None:
        for table in (self.metrics, self.processes, self.gpus):
            table.close()
        self.gpu.close()


def run_sidecar(collector: Collector, parent_pid: int, stop: threading.Event) -> None:
    """Tick every ``every_s`` on the monotonic clock (missed ticks skipped, never bunched) until ``stop``."""
    start_s = time.monotonic()
    collector.tick()
    collector.write_summary(final=False)  # the load process waits for this file: the baseline is in
    k = 0
    while not stop.is_set():
        k = max(k + 1, math.floor((time.monotonic() - start_s) / collector.every_s))
        if stop.wait(max(0.0, start_s + k * collector.every_s - time.monotonic())):
            break
        if not psutil.pid_exists(parent_pid) or os.getppid() != parent_pid:
            break  # the load process is gone: nobody will stop us
        collector.tick()
    collector.tick()  # the last sample: after the last answer when the load process stopped us
    collector.write_summary(final=True)
    collector.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m burstbench.telemetry", description=__doc__.split("\n")[0])
    p.add_argument("--run-dir", required=True, type=Path)
    p.add_argument("--every", required=True, type=float)
    p.add_argument("--metrics-url")
    p.add_argument("--service-pid", type=int)
    p.add_argument("--service-port", type=int)
    p.add_argument("--load-pid", type=int)
    args = p.parse_args(argv)
    try:
        os.nice(NICENESS)  # background work: a sender woken by its timer gets the CPU first
    except OSError:
        pass
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a terminal's Ctrl-C reaches the whole group: the load
    stop = threading.Event()                       # process decides when the run ends, and stops us
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    collector = Collector(args.run_dir, args.every, args.metrics_url, args.service_pid, args.service_port,
                          args.load_pid)
    run_sidecar(collector, os.getppid(), stop)
    return 0


class TelemetrySidecar:
    """The load process's handle on the sidecar (plain subprocess calls: cooperative under gevent's patching)."""

    def __init__(self, run_dir: Path, every_s: float, metrics_url: str | None = None, service_pid: int | None = None,
                 service_port: int | None = None):
        self.run_dir = Path(run_dir)
        self.cmd = [sys.executable, "-m", "burstbench.telemetry", "--run-dir", str(self.run_dir), "--every",
                    repr(float(every_s)), "--load-pid", str(os.getpid())]
        for flag, value in (("--metrics-url", metrics_url), ("--service-pid", service_pid),
                            ("--service-port", service_port)):
            if value is not None:
                self.cmd += [flag, str(value)]
        self.proc: subprocess.Popen | None = None
        self.problem: str | None = None
        self._summary_path = self.run_dir / TELEMETRY_FILE

    def start(self, timeout_s: float = START_TIMEOUT_S) -> "TelemetrySidecar":
        log = (self.run_dir / LOG_FILE).open("w")
        try:
            self.proc = subprocess.Popen(self.cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        finally:
            log.close()
        wait_until(lambda: self._summary_path.exists() or self.proc.poll() is not None, timeout_s, every_s=0.05)
        if not self._summary_path.exists() and self.proc.poll() is not None:
            self.problem = f"the telemetry sidecar exited with {self.proc.returncode} at start: {self._log_tail()}"
        elif not self._summary_path.exists():
            self.problem = f"the telemetry sidecar took no sample within {timeout_s:g} s; the run goes on without waiting"
        return self

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> dict | None:
        """Stop it after its last sample; telemetry.json's content (None when there is none), ``problem`` set."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
                self.problem = f"the telemetry sidecar did not stop within {timeout_s:g} s and was killed"
        if self.proc is not None and self.proc.returncode not in (0, None) and self.problem is None:
            self.problem = f"the telemetry sidecar exited with {self.proc.returncode}: {self._log_tail()}"
        try:
            summary = json.loads(self._summary_path.read_text())
        except (OSError, ValueError):
            return None
        summary.pop("final", None)
        return summary

    def _log_tail(self) -> str:
        return " | ".join(log_tail(self.run_dir / LOG_FILE, 400).strip().splitlines()[-3:])


if __name__ == "__main__":
    sys.exit(main())
