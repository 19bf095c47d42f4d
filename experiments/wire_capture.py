"""A packet capture of one loopback TCP port: when each request really reached the wire.

The generator's own timestamps are taken inside the generator; judging its accuracy needs an
observer outside it. ``tcpdump`` stamps every packet in the kernel with CLOCK_REALTIME, the clock
of Python's ``time.time()``, so wire times compare directly with the rows' epochs
(``analysis.wire`` reads the file).

    with WireCapture(port, Path("wire.pcap")) as cap:
        ...  # send traffic
    print(cap.dropped)  # packets the kernel dropped: non-zero means the capture is incomplete

Locust-free (imports no gevent), so analysis and tests can use it.
"""
from __future__ import annotations

import atexit
import os
import queue
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from burstbench import harness

TCPDUMP_CANDIDATES = ("tcpdump", "/usr/sbin/tcpdump", "/usr/bin/tcpdump")
READY_S = 10.0
STOP_S = 10.0
DRAIN_POLL_S = 0.05  # the captured count must hold still this long before SIGINT
INSTALL_HINT = "make tcpdump (apt-get install tcpdump)"


def find_tcpdump() -> str | None:
    for candidate in TCPDUMP_CANDIDATES:
        found = shutil.which(candidate)
        if found:
            return found
    return None


class WireCapture:
    """``tcpdump`` writing TCP to and from 127.0.0.1:``port`` on ``interface`` to ``pcap_path``.

    After ``stop()``: ``dropped`` (packets dropped by the kernel; the capture misses them),
    ``captured`` and ``received`` (tcpdump's own counts; on lo ``received`` is twice ``captured``:
    the kernel hands over both the outgoing and the incoming copy, libpcap keeps one), ``stderr``.
    Stop it after the traffic has ended: it first waits (up to 10 s) for tcpdump to catch up.
    """

    def __init__(self, port: int, pcap_path: Path, interface: str = "lo", snaplen: int = 1024,
                 buffer_kib: int = 65536):
        if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
            raise ValueError(f"port must be an integer in 1..65535 (got {port!r})")
        if isinstance(snaplen, bool) or not isinstance(snaplen, int) or snaplen < 256:
            raise ValueError(f"snaplen must be an integer >= 256 bytes, enough for HTTP headers (got {snaplen!r})")
        self.port, self.pcap_path, self.interface = port, Path(pcap_path), interface
        self.snaplen, self.buffer_kib = snaplen, buffer_kib
        self.proc: subprocess.Popen | None = None
        self.dropped: int | None = None
        self.captured: int | None = None
        self.received: int | None = None
        self.stderr = ""
        self._lines: list[str] = []
        self._progress: queue.Queue[int] = queue.Queue()  # "packets captured" answers to SIGUSR1
        self._listening = False
        self._settled = threading.Event()  # set at "listening on" or when tcpdump's stderr closes
        self._reader: threading.Thread | None = None

    def command(self, tcpdump: str) -> list[str]:
        cmd = [tcpdump, "-i", self.interface, "-n",
               "-B", str(self.buffer_kib),  # KiB of kernel ring: bursts of thousands of requests/s must not drop
               "-s", str(self.snaplen),     # request line and headers, status line: no bodies needed
               # Hand each packet over at once. Without it libpcap's ring hands over whole blocks, and
               # the packets of a block not yet full when SIGINT arrives never reach the file
               # (measured: 200 requests, then a stop at once, left an empty capture three times in three).
               "--immediate-mode",
               # The kernel stamps in nanoseconds; the default file format would round to microseconds.
               "--time-stamp-precision=nano",
               "-w", str(self.pcap_path)]
        if os.geteuid() == 0:
            cmd += ["-Z", "root"]  # Debian's tcpdump drops to user tcpdump otherwise; keep the file ours
        return cmd + [f"tcp and host 127.0.0.1 and port {self.port}"]

    def start(self) -> "WireCapture":
        """Start tcpdump and return once it is capturing ("listening on ..."), within 10 s."""
        if self.proc is not None:
            raise RuntimeError("this WireCapture was already started; make a new one per capture")
        tcpdump = find_tcpdump()
        if tcpdump is None:
            raise RuntimeError(f"tcpdump not found: {INSTALL_HINT}")
        self.proc = harness.Process(self.command(tcpdump), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.PIPE, text=True).start().proc  # a session of its own
        atexit.register(self._kill)
        self._reader = threading.Thread(target=self._read_stderr, name="tcpdump-stderr", daemon=True)
        self._reader.start()
        # tcpdump prints "listening on" after the filter is installed: from then on every packet is kept.
        self._settled.wait(READY_S)
        if not self._listening or self.proc.poll() is not None:
            self._kill()
            if self._reader is not None:
                self._reader.join(timeout=STOP_S)
            why = (f"exited with code {self.proc.returncode}" if self._settled.is_set()
                   else f"printed no 'listening on' within {READY_S:.0f} s")
            raise RuntimeError(f"tcpdump {why} instead of capturing on {self.interface} port {self.port}: "
                               f"{self._error_line() or '(no output)'}")
        return self

    def _read_stderr(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        for line in self.proc.stderr:
            self._lines.append(line.rstrip("\n"))
            if m := re.match(r"tcpdump: (\d+) packets? captured", line):
                self._progress.put(int(m.group(1)))
            elif "listening on" in line:
                self._listening = True
                self._settled.set()
        self._settled.set()

    def _error_line(self) -> str:
        """tcpdump's own message ("tcpdump: lo: ..."), else its last line."""
        lines = [line.strip() for line in self._lines if line.strip()]
        ours = [line for line in lines if line.startswith("tcpdump:")]
        return (ours or lines or [""])[-1]

    def stop(self) -> None:
        """SIGINT (tcpdump flushes the file and prints its counts), wait, read the counts. Idempotent."""
        if self.proc is None or self.dropped is not None:
            return
        if self.proc.poll() is None:
            self._drain()
            try:
                self.proc.send_signal(signal.SIGINT)
                self.proc.wait(timeout=STOP_S)
            except subprocess.TimeoutExpired:
                self._kill()
        if self._reader is not None:
            self._reader.join(timeout=STOP_S)
        atexit.unregister(self._kill)
        self.stderr = "\n".join(self._lines)
        counts = {name: int(n) for n, name in
                  re.findall(r"^(\d+) packets? (captured|received by filter|dropped by kernel)", self.stderr, re.M)}
        if "dropped by kernel" not in counts:
            raise RuntimeError(f"tcpdump (exit code {self.proc.returncode}) printed no packet counts; "
                               f"the capture may be incomplete: {self._error_line() or '(no output)'}")
        self.dropped = counts["dropped by kernel"]
        self.captured = counts.get("captured")
        self.received = counts.get("received by filter")

    def _drain(self) -> None:
        """Wait until tcpdump has taken every packet the kernel queued: on SIGINT it drops the rest.

        The last packets before a stop are still in the kernel's ring for a moment (measured without
        this: 8 captures in 100 lost the last request's packets). SIGUSR1 makes tcpdump print its
        captured count without stopping; once two answers 50 ms apart agree, it has caught up.
        """
        deadline = time.monotonic() + STOP_S
        last = None
        while self.proc.poll() is None and time.monotonic() < deadline:
            self.proc.send_signal(signal.SIGUSR1)
            try:
                captured = self._progress.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                return
            if captured == last:
                return
            last = captured
            time.sleep(DRAIN_POLL_S)

    def _kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            harness.stop_process(self.proc, 0, signal.SIGKILL)

    def __enter__(self) -> "WireCapture":
        return self.start()

    def __exit__(self, exc_type, *_exc) -> None:
        if exc_type is None:
            self.stop()
        else:  # keep the original error; never leave tcpdump running
            try:
                self.stop()
            except RuntimeError:
                self._kill()

    @classmethod
    def available(cls, interface: str = "lo") -> str | None:
        """None if tcpdump is installed and can capture on ``interface``; else a one-line reason."""
        if find_tcpdump() is None:
            return f"tcpdump not found: {INSTALL_HINT}"
        with tempfile.TemporaryDirectory(prefix="burstbench-wire-") as tmp:
            try:
                # Port 9 (discard) on loopback: nothing is sent, only the capture itself is tried.
                with cls(9, Path(tmp) / "probe.pcap", interface=interface):
                    pass
            except (OSError, RuntimeError) as exc:
                return f"tcpdump cannot capture on {interface}: {str(exc).splitlines()[0]}"
        return None
