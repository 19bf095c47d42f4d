"""Process groups and readiness, the bottom half of ``burstbench.harness`` (import from there).

A child here runs in a session of its own, so a terminal's Ctrl-C reaches only us; it is stopped as a
group: SIGTERM, SIGKILL after a deadline, then SIGKILL to what is left of the group. Readiness is a
poll with a deadline that fails naming the reason and the log's last lines.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable


STOP_TIMEOUT_S = 30.0   # SIGTERM, then this long before SIGKILL
KILL_WAIT_S = 10.0      # after SIGKILL, for the kernel to reap
LOG_TAIL_CHARS = 3000


class NotReady(RuntimeError):
    """Not ready by the deadline (or exited first). ``reason`` is one line; ``tail`` the log's end."""

    def __init__(self, reason: str, log_path: Path | None = None, tail: str = ""):
        self.reason, self.log_path, self.tail = reason, log_path, tail
        super().__init__(f"{reason}\n--- service log (tail) ---\n{tail}" if log_path is not None else reason)


# -- process groups ------------------------------------------------------------------------
def signal_group(pid: int, sig: int) -> bool:
    """``sig`` to process group ``pid`` (a child started in a session of its own); False when none is left."""
    try:
        os.killpg(pid, sig)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def stop_process(proc: subprocess.Popen, timeout_s: float = STOP_TIMEOUT_S, sig: int = signal.SIGTERM) -> int | None:
    """``sig`` to ``proc``'s group, SIGKILL after ``timeout_s``, then SIGKILL to any member left; the exit code.

    ``proc`` must lead its own process group (``start_new_session=True``). Idempotent.
    """
    if proc.poll() is None:
        signal_group(proc.pid, sig)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            signal_group(proc.pid, signal.SIGKILL)
            try:
                proc.wait(timeout=KILL_WAIT_S)
            except subprocess.TimeoutExpired:
                pass
    # The leader is gone; a grandchild that ignored ``sig`` may still hold the group (its id stays reserved).
    signal_group(proc.pid, signal.SIGKILL)
    return proc.returncode


def log_tail(path: Path | None, chars: int = LOG_TAIL_CHARS) -> str:
    try:
        return Path(path).read_text(errors="replace")[-chars:] if path is not None else ""
    except OSError:
        return ""


class Process:
    """``cmd`` in a session of its own (Ctrl-C in the terminal reaches only us), its output in ``log``.

    ``log``: a path (opened here, closed on stop), an open file, or None to share our stdout and stderr.
    Further keyword arguments go to ``subprocess.Popen``. Stopped as a group: ``stop()``, or leaving ``with``.
    """

    def __init__(self, cmd: list[str], *, log: Path | None = None, env: dict | None = None, cwd: Path | None = None,
                 stop_timeout_s: float = STOP_TIMEOUT_S, stop_signal: int = signal.SIGTERM, **popen):
        self.cmd = [str(c) for c in cmd]
        self.log_path = Path(log) if isinstance(log, (str, Path)) else Path(log.name) if hasattr(log, "name") else None
        self._log_arg = log
        self._log_file = None
        self.env, self.cwd = env, cwd
        self.stop_timeout_s, self.stop_signal = stop_timeout_s, stop_signal
        self.popen = popen
        self.proc: subprocess.Popen | None = None

    def start(self):
        if self.proc is not None:
            raise RuntimeError(f"already started: {self.cmd[:3]}")
        out = self._log_arg
        if isinstance(out, (str, Path)):
            Path(out).parent.mkdir(parents=True, exist_ok=True)
            out = self._log_file = Path(out).open("w")
        stdio = {} if out is None else {"stdout": out, "stderr": subprocess.STDOUT}
        self.proc = subprocess.Popen(self.cmd, env=self.env, cwd=self.cwd, start_new_session=True,
                                     **{**stdio, **self.popen})
        return self

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    @property
    def returncode(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig: int) -> bool:
        """``sig`` to the whole group (as a terminal's Ctrl-C reaches a whole foreground group)."""
        return self.running() and signal_group(self.proc.pid, sig)

    def wait(self, timeout_s: float | None = None) -> int:
        return self.proc.wait(timeout=timeout_s)

    def stop(self, timeout_s: float | None = None) -> int | None:
        """``stop_signal`` (SIGTERM) to the group, SIGKILL after the deadline, leftovers killed. Idempotent."""
        rc = None
        if self.proc is not None:
            rc = stop_process(self.proc, self.stop_timeout_s if timeout_s is None else timeout_s, self.stop_signal)
        self._close_log()
        return rc

    def _close_log(self) -> None:
        if self._log_file is not None and not self._log_file.closed:
            self._log_file.close()

    def log_tail(self, chars: int = LOG_TAIL_CHARS) -> str:
        if self._log_file is not None and not self._log_file.closed:
            self._log_file.flush()
        return log_tail(self.log_path, chars)

    def wait_ready(self, check, deadline_s: float, *, what: str | None = None, every_s: float = 0.5,
                   cancelled: Callable[[], bool] | None = None) -> float:
        """``wait_ready`` for this process: an exit first is a failure; the error carries our log's tail."""
        return wait_ready(check, deadline_s=deadline_s, proc=self, what=what, every_s=every_s, cancelled=cancelled)

    def __enter__(self):
        return self.start() if self.proc is None else self

    def __exit__(self, *_exc) -> None:
        self.stop()


# -- readiness -------------------------------------------------------------------------------
def http_ok(url: str, timeout_s: float = 2.0) -> bool:
    """GET ``url`` answers 200."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:
            return resp.status == 200
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError, ValueError):
        return False


def tcp_open(host: str, port: int, timeout_s: float = 1.0) -> bool:
    """Something accepts a TCP connection on ``host:port``."""
    try:
        socket.create_connection((host, port), timeout=timeout_s).close()
        return True
    except OSError:
        return False


def check_port_free(port: int) -> None:
    """ValueError naming ``--port`` when something already listens on 127.0.0.1:``port``."""
    if tcp_open("127.0.0.1", port):
        raise ValueError(f"--port {port}: something already listens on 127.0.0.1:{port}; choose another PORT=")


def free_port() -> int:
    """A TCP port nothing listens on now, on loopback."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(predicate: Callable, timeout_s: float, every_s: float = 0.25):
    """``predicate()``'s first truthy value within ``timeout_s``, else None (a bounded poll)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every_s)
    return None


def _probe(check) -> tuple[Callable[[], bool], str]:
    if isinstance(check, str):
        return (lambda: http_ok(check)), check
    if isinstance(check, tuple):
        host, port = check
        return (lambda: tcp_open(host, port)), f"{host}:{port}"
    return check, getattr(check, "__name__", "the check")


def wait_ready(check, *, deadline_s: float, proc: Process | subprocess.Popen | None = None, what: str | None = None,
               every_s: float = 0.5, cancelled: Callable[[], bool] | None = None) -> float:
    """Seconds until ``check`` passes: a URL (GET 200), ``(host, port)`` (TCP) or a callable returning truth.

    A deadline is always kept (BentoML respawns a crashing worker forever). ``NotReady`` when ``proc``
    exits first or the deadline passes, with ``proc``'s log tail; ``KeyboardInterrupt`` when ``cancelled()``.
    """
    probe, label = _probe(check)
    what = what or label
    log_path = getattr(proc, "log_path", None)  # a Process; a bare Popen has no log to show

    def tail() -> str:
        return proc.log_tail() if isinstance(proc, Process) else ""

    started = time.monotonic()
    while True:
        code = proc.poll() if isinstance(proc, subprocess.Popen) else proc.returncode if proc is not None else None
        if code is not None:
            raise NotReady(f"the service exited with code {code} before it was ready", log_path, tail())
        if probe():
            return time.monotonic() - started
        if cancelled is not None and cancelled():
            raise KeyboardInterrupt
        if time.monotonic() - started >= deadline_s:
            raise NotReady(f"the service was not ready at {what} after {deadline_s:.0f} s", log_path, tail())
        time.sleep(every_s)
