"""The one module that owns processes: the model build, the service, readiness, Locust, Ctrl-C and stopping.

Every program that runs a whole experiment (``burstbench run``, ``sweep``, ``bench-generator``,
``resilience run``, ``fuzz``) starts its children through here:

- ``ensure_default_model()``: ``python -m burstbench.service build-model`` (it reuses an identical model);
- ``Service``: ``python -m burstbench.service serve`` on loopback, directly or as supervisord's program
  (``supervisor="supervisord"``: killed, it is started again); ``RemoteService``: a URL nobody here starts;
- ``wait_ready(check, deadline_s=...)``: a URL answering 200, a ``(host, port)`` accepting TCP, or any
  callable, polled until a deadline; ``NotReady`` names the reason and carries the log's last lines;
- ``Locust``: ``python -m locust`` with an explicit ``--run-dir`` (created here, so nobody guesses the
  folder afterwards), one process or master + N workers (``processes=N``);
- ``forward_interrupts()``: Ctrl-C reaches this process only (children live in sessions of their
  own); each press is passed on once, as SIGINT, to the Locust that runs, which stops and keeps what it
  measured; the caller then stops the service itself;
- ``Process.stop()`` / ``stop_process()``: SIGTERM to the whole process group, SIGKILL after a deadline,
  then SIGKILL to whatever of the group is left. Every class is a context manager: nothing outlives an
  exception.

Imports nothing heavy (no gevent, no Locust), so analysis and tests may use it.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Callable

from burstbench.paths import default_model_dir, package_folder
from burstbench.processes import (KILL_WAIT_S, LOG_TAIL_CHARS, STOP_TIMEOUT_S, NotReady, Process,  # noqa: F401
                                  check_port_free, free_port, http_ok, log_tail, signal_group, stop_process, tcp_open,
                                  wait_ready, wait_until)


# -- the bundled service ----------------------------------------------------------------------
def ensure_default_model(variants: str = "onnx-fp32", out: Path | None = None) -> Path:
    """Build the untrained default model (or reuse an identical one: build-model checks); its folder."""
    out = Path(out) if out is not None else default_model_dir()
    subprocess.run([sys.executable, "-m", "burstbench.service", "build-model", "--out", str(out),
                    "--variants", variants], check=True)
    return out


def serve_command(model: Path, port: int, *, variant: str | None = None, batching: str | None = None,
                  extra_args: tuple[str, ...] = ()) -> list[str]:
    cmd = [sys.executable, "-m", "burstbench.service", "serve", "--port", str(int(port)), "--model", str(model)]
    cmd += ["--variant", variant] if variant else []
    cmd += ["--batching", batching] if batching else []
    return cmd + list(extra_args)


class Service(Process):
    """The bundled service on 127.0.0.1:``port``: a plain child, or supervisord's program (restarted when killed).

    ``log_path`` is the service's own output (default ``log_dir/service.log``); under supervisord,
    ``log_dir`` also holds supervisord.conf, supervisord.log and supervisord.out.
    """

    def __init__(self, model: Path, port: int, *, variant: str | None = None, batching: str | None = None,
                 extra_args: tuple[str, ...] = (), env: dict | None = None, log_path: Path | None = None,
                 log_dir: Path | None = None, supervisor: str | None = None, workdir: Path | None = None,
                 stop_timeout_s: float = STOP_TIMEOUT_S):
        if log_path is None and log_dir is None:
            raise ValueError("Service needs log_path or log_dir")
        self.port = int(port)
        self.url = f"http://127.0.0.1:{self.port}"
        self.supervisor = supervisor if supervisor == "supervisord" else None
        self.log_dir = Path(log_dir) if log_dir is not None else Path(log_path).parent
        self.service_log = Path(log_path) if log_path is not None else self.log_dir / "service.log"
        self.workdir = Path(workdir) if workdir is not None else Path.cwd()
        self.serve_cmd = serve_command(model, port, variant=variant, batching=batching, extra_args=extra_args)
        env = {**os.environ, **(env or {})}
        if self.supervisor:
            cmd = [sys.executable, "-m", "supervisor.supervisord", "--nodaemon", "--configuration",
                   str(self.log_dir / "supervisord.conf")]
            super().__init__(cmd, log=self.log_dir / "supervisord.out", env=env, stop_timeout_s=stop_timeout_s)
        else:
            super().__init__(self.serve_cmd, log=self.service_log, env=env, stop_timeout_s=stop_timeout_s)

    def start(self):
        self.log_dir.mkdir(parents=True, exist_ok=True)
        if self.supervisor:
            _write_supervisord_conf(self.log_dir, self.serve_cmd, self.service_log, self.workdir)
        return super().start()

    def log_tail(self, chars: int = LOG_TAIL_CHARS) -> str:
        if not self.supervisor:
            return super().log_tail(chars)
        return log_tail(self.service_log, chars) or log_tail(self.log_path, chars)

    def wait_ready(self, deadline_s: float, *, cancelled: Callable[[], bool] | None = None, **kw) -> float:
        """Seconds until GET /readyz answers 200 (``NotReady`` with the service log's tail)."""
        try:
            return wait_ready(f"{self.url}/readyz", deadline_s=deadline_s, proc=self, cancelled=cancelled, **kw)
        except NotReady as err:
            raise NotReady(err.reason, self.service_log, err.tail) from None


class RemoteService:
    """A service somebody else runs (``--host URL``): nothing to start or stop, only its /readyz to ask."""

    def __init__(self, url: str):
        self.url = url.rstrip("/")
        self.proc = None

    def start(self):
        return self

    def stop(self, timeout_s: float | None = None) -> None:
        return None

    def ready(self) -> bool:
        return http_ok(f"{self.url}/readyz")

    def wait_ready(self, deadline_s: float, *, every_s: float = 1.0, cancelled=None) -> float:
        return wait_ready(f"{self.url}/readyz", deadline_s=deadline_s, every_s=every_s, cancelled=cancelled)

    def __enter__(self):
        return self

    def __exit__(self, *_exc) -> None:
        pass


SUPERVISED_PROGRAM = "burstbench"


def _write_supervisord_conf(d: Path, serve_cmd: list[str], service_log: Path, workdir: Path) -> Path:
    """The restart policy of a container: autorestart, stop the program's whole group."""
    import shlex

    command = " ".join(shlex.quote(a).replace("%", "%%") for a in serve_cmd)  # shlex split, %(..)s expanded
    conf = d / "supervisord.conf"
    conf.write_text(f"""; generated by burstbench's harness: the restart policy of a container
[supervisord]
nodaemon=true
logfile={d / 'supervisord.log'}
pidfile={d / 'supervisord.pid'}
childlogdir={d}
loglevel=info

[program:{SUPERVISED_PROGRAM}]
command={command}
directory={workdir}
autostart=true
autorestart=true
startsecs=1
startretries=1000
stopsignal=TERM
stopwaitsecs=30
stopasgroup=true
killasgroup=true
redirect_stderr=true
stdout_logfile={service_log}
stdout_logfile_maxbytes=0
""")
    return conf


# -- Locust -----------------------------------------------------------------------------------
def locustfile(name: str) -> Path:
    """A shipped locustfile: ``sentiment.py``, ``http_endpoint.py``, ``fixed_body.py``."""
    return package_folder("locustfiles") / name


def new_run_dir(results_dir: Path, name: str) -> Path:
    """``<results_dir>/<UTC time>-<name>/``, created empty (never an existing one): the folder for ``--run-dir``."""
    from burstbench.locustfiles.recording import make_run_dir  # no Locust import: plain files

    return make_run_dir(Path(results_dir), name)


def locust_command(locustfile: Path, host: str, run_dir: Path, args: list[str] = (), *,
                   processes: int | None = None, user_classes: list[str] = ()) -> list[str]:
    cmd = [sys.executable, "-m", "locust", "-f", str(locustfile)]
    folder = ["--run-dir", str(run_dir)]
    if processes is not None and processes > 1:
        # A free port for master and workers: two runs on one machine never meet on Locust's default 5557.
        port = str(free_port())
        cmd += ["--processes", str(int(processes)), "--master-bind-port", port, "--master-port", port]
    # The folder flags after ``args``: they win over a --results-dir in there (argparse keeps the last).
    return cmd + ["--headless", "--only-summary", "--host", host, *[str(a) for a in args], *folder, *user_classes]


class Locust(Process):
    """A headless Locust run writing exactly ``run_dir`` (``--run-dir``); master + N workers with ``processes=N``."""

    def __init__(self, locustfile: Path, host: str, run_dir: Path, args: list[str] = (), *,
                 processes: int | None = None, user_classes: list[str] = (), log: Path | None = None,
                 env: dict | None = None, cwd: Path | None = None):
        self.run_dir = Path(run_dir)
        self.timed_out = False
        super().__init__(locust_command(locustfile, host, self.run_dir, list(args), processes=processes,
                                        user_classes=list(user_classes)), log=log, env=env, cwd=cwd)

    def start(self):
        self.run_dir.mkdir(parents=True, exist_ok=True)
        return super().start()

    def interrupt(self) -> bool:
        """SIGINT, as one Ctrl-C: Locust stops sending, keeps its rows and writes run.json."""
        return self.signal(signal.SIGINT)

    def finish(self, timeout_s: float | None = None, *, grace_s: float = 60.0, on_timeout: str = "interrupt") -> int:
        """Wait until Locust ends; its exit code. At ``timeout_s``: ``interrupt`` (SIGINT, then ``grace_s``
        before it is stopped) or ``kill``; ``timed_out`` says so. A KeyboardInterrupt here (Ctrl-C under
        Python's default handler) is passed on once, the same way, and raised again."""
        try:
            return self.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.timed_out = True
            if on_timeout == "kill":
                self._close_log()
                return stop_process(self.proc, 0, signal.SIGKILL)
            return self.wind_down(grace_s)
        except KeyboardInterrupt:
            self.wind_down(grace_s)
            raise

    def wind_down(self, grace_s: float = 60.0) -> int | None:
        """SIGINT and ``grace_s`` to write what it measured, then stop the group."""
        if self.interrupt():
            try:
                self.wait(grace_s)
            except subprocess.TimeoutExpired:
                pass
        return self.stop(0)

    def written(self) -> Path | None:
        """The run folder when Locust wrote anything into it; an empty one (it stopped first) is removed."""
        if not self.run_dir.is_dir():
            return None
        if any(self.run_dir.iterdir()):
            return self.run_dir
        with contextlib.suppress(OSError):
            self.run_dir.rmdir()
        return None

    def wait_for_files(self, timeout_s: float, names: tuple[str, ...] = ("requests.csv",),
                       every_s: float = 0.1) -> bool:
        """True once every file in ``names`` is in the run folder (requests.csv: the load has started);
        False at the deadline, or when Locust ended without them."""
        def there() -> bool:
            return all((self.run_dir / name).is_file() for name in names)

        return bool(wait_until(lambda: there() or not self.running(), timeout_s, every_s)) and there()


def move_log(src: Path, run_dir: Path | None, name: str) -> Path | None:
    """A temp log into the run folder as ``name`` (left where it is when there is no run folder)."""
    if run_dir is None or not Path(src).exists():
        return None
    return Path(shutil.move(str(src), str(Path(run_dir) / name)))


# -- Ctrl-C ------------------------------------------------------------------------------------
class Interrupts:
    """What ``forward_interrupts`` saw: ``count`` presses; ``target``, the Locust each press is passed on to."""

    def __init__(self):
        self.count = 0
        self.target: Process | None = None

    @property
    def interrupted(self) -> bool:
        return self.count > 0

    def __call__(self) -> bool:
        return self.interrupted

    def _handle(self, *_):
        self.count += 1
        target = self.target
        if target is not None and target.running():
            target.signal(signal.SIGINT)  # once per press; a second press makes Locust leave at once


@contextlib.contextmanager
def forward_interrupts(*signals: int):
    """While inside: SIGINT (and ``signals``, e.g. SIGTERM) are counted and passed on, as one SIGINT each, to
    ``interrupts.target`` when it runs. No KeyboardInterrupt is raised; check ``interrupts.interrupted``."""
    interrupts = Interrupts()
    wanted = (signal.SIGINT, *signals)
    previous = {sig: signal.signal(sig, interrupts._handle) for sig in wanted}
    try:
        yield interrupts
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
