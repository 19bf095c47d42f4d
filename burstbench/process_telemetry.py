"""CPU and memory of whole process trees (psutil), and NVIDIA GPUs (NVML), sampled on the sidecar's clock.

One sampler serves the service and the load processes alike (``ProcessTreeSampler``): the service is
a tree (``burstbench serve`` -> BentoML's arbiter -> its workers), a load process a tree of one. Its
CPU is the tree's user + system time over the interval as % of one core, so 200 means two cores busy;
a child that ended between two samples takes its last interval's CPU with it (psutil cannot read a
dead process), which undercounts short-lived children only. RSS is summed over the tree (shared pages
count once per process, as ``ps`` and ``top`` count them).

``GpuSampler`` reads utilisation, memory, power and temperature per device through NVML
(``nvidia-ml-py``). Without the library, the driver or a device it reports ``absent`` with the reason:
never a row of zeros.
"""
from __future__ import annotations

import math
import os
import time

import psutil

MIB = 1024 * 1024


def listening_pids(port: int) -> list[int]:
    """The processes that hold a listening TCP socket on ``port`` (any address); the roots first."""
    pids = {c.pid for c in psutil.net_connections(kind="tcp")
            if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port and c.pid}
    roots = []
    for pid in pids:
        try:
            parents = {p.pid for p in psutil.Process(pid).parents()}
        except psutil.Error:
            continue
        if not parents & pids:
            roots.append(pid)
    return sorted(roots) + sorted(pids - set(roots))


class ProcessTreeSampler:
    """Samples one process and all its descendants; ``sample()`` returns None once the root is gone.

    ``exclude``: pids left out of the tree (the sidecar samples its parent's tree without itself).
    """

    def __init__(self, pid: int, role: str, exclude: tuple[int, ...] = (), recursive: bool = True):
        self.root = psutil.Process(pid)  # NoSuchProcess for a pid that is not there: the caller says so
        self.pid = pid
        self.role = role
        self.exclude = set(exclude)
        self.recursive = recursive
        try:
            argv = self.root.cmdline()
            # short enough for a table: the program's base name and its first arguments (python -m bentoml serve)
            self.name = " ".join([os.path.basename(argv[0]), *argv[1:3]])[:60] if argv else self.root.name()
        except psutil.Error:
            self.name = str(pid)
        self._cpu_s: dict[int, float] = {}  # pid -> CPU seconds at the last sample
        self._known: dict[int, psutil.Process] = {}
        self._last_s: float | None = None
        self.sample()  # the baseline: CPU is a difference

    def _tree(self) -> list[psutil.Process]:
        members = [self.root]
        if self.recursive:
            members += self.root.children(recursive=True)
        # keep the same Process objects between samples: psutil checks a pid was not reused by its start time
        tree = []
        for proc in members:
            if proc.pid in self.exclude:
                continue
            tree.append(self._known.setdefault(proc.pid, proc))
        return tree

    def sample(self) -> dict | None:
        now_s = time.perf_counter()
        try:
            tree = self._tree()
        except psutil.NoSuchProcess:
            return None
        cpu_s, rss, alive = {}, 0, 0
        for proc in tree:
            try:
                with proc.oneshot():
                    times = proc.cpu_times()
                    mem = proc.memory_info()
            except psutil.Error:
                continue  # ended while we looked
            cpu_s[proc.pid] = times.user + times.system
            rss += mem.rss
            alive += 1
        if not alive:
            return None
        # a process seen for the first time counts from its first sample: its earlier CPU is not this interval's
        used_s = sum(t - self._cpu_s[pid] for pid, t in cpu_s.items() if pid in self._cpu_s)
        interval_s = now_s - self._last_s if self._last_s is not None else math.nan
        self._cpu_s, self._last_s = cpu_s, now_s
        self._known = {pid: p for pid, p in self._known.items() if pid in cpu_s}
        return {"epoch": time.time(), "role": self.role, "pid": self.pid, "name": self.name, "processes": alive,
                "cpu_percent": 100 * used_s / interval_s if interval_s and interval_s > 0 else math.nan,
                "rss_mb": rss / MIB, "interval_s": interval_s}


class GpuSampler:
    """NVML's view of every NVIDIA GPU; ``available`` False with ``reason`` when there is none to see."""

    def __init__(self):
        self.devices: list[dict] = []
        self.reason: str | None = None
        self._nvml = None
        self._handles = []
        try:
            import pynvml  # nvidia-ml-py
        except ImportError:
            self.reason = "nvidia-ml-py (pynvml) is not installed"
            return
        try:
            pynvml.nvmlInit()
        except Exception as err:  # NVMLError_LibraryNotFound, _DriverNotLoaded, ...: no usable driver
            self.reason = f"NVML could not start: {err} (no NVIDIA driver on this machine)"
            return
        try:
            count = pynvml.nvmlDeviceGetCount()
            for index in range(count):
                handle = pynvml.nvmlDeviceGetHandleByIndex(index)
                name = pynvml.nvmlDeviceGetName(handle)
                name = name.decode() if isinstance(name, bytes) else name
                total_mb = pynvml.nvmlDeviceGetMemoryInfo(handle).total / MIB
                self._handles.append((index, name, handle))
                self.devices.append({"index": index, "name": name, "memory_total_mb": round(total_mb, 1)})
        except Exception as err:
            self.reason = f"NVML could not list the GPUs: {err}"
            self._handles, self.devices = [], []
        if not self._handles and self.reason is None:
            self.reason = "NVML reports no GPU"
        self._nvml = pynvml

    @property
    def available(self) -> bool:
        return bool(self._handles)

    def sample(self) -> list[dict]:
        nvml, rows = self._nvml, []
        for index, name, handle in self._handles:
            row = {"epoch": time.time(), "gpu": index, "name": name}
            for columns, read in (  # one NVML call per reading; memory gives used and total at once
                    (("utilization_percent",), lambda h: (nvml.nvmlDeviceGetUtilizationRates(h).gpu,)),
                    (("memory_used_mb", "memory_total_mb"),
                     lambda h: (lambda m: (m.used / MIB, m.total / MIB))(nvml.nvmlDeviceGetMemoryInfo(h))),
                    (("power_w",), lambda h: (nvml.nvmlDeviceGetPowerUsage(h) / 1000.0,)),  # milliwatts
                    (("temperature_c",), lambda h: (nvml.nvmlDeviceGetTemperature(h, nvml.NVML_TEMPERATURE_GPU),))):
                try:
                    values = tuple(map(float, read(handle)))
                except Exception:  # a reading this device does not support: empty, not zero
                    values = (math.nan,) * len(columns)
                row.update(zip(columns, values))
            rows.append(row)
        return rows

    def close(self) -> None:
        if self._nvml is not None:
            try:
                self._nvml.nvmlShutdown()
            except Exception:
                pass
            self._nvml = None
