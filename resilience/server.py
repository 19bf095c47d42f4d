"""The local service under test: started plainly or under supervisord, and its process tree.

BentoML 1.4.40's ``bentoml serve`` is an arbiter process that binds the socket and runs
each worker as a child *in a session of its own* (``_bentoml_impl.worker.service``). So
the server's process group holds the arbiter only: freezing or killing "the server"
means every process of the tree, found from the root with psutil, not ``killpg``.

Under supervisord (``autorestart=true``, playing a container's restart policy) the tree's
root is supervisord and the server is its child; killed, it is started again.
"""
from __future__ import annotations

import signal
import tempfile
from pathlib import Path

import psutil

from burstbench.harness import NotReady, Service, wait_until  # noqa: F401 (wait_until: for the disruptions)

WORKER_MARK = "_bentoml_impl.worker"
START_DELAY_ENV = "BURSTBENCH_START_DELAY_S"  # the service waits this long before loading the model


def tree(pid: int) -> list[psutil.Process]:
    """``pid`` and all its descendants (those that still exist), parents before children."""
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def is_worker(proc: psutil.Process) -> bool:
    try:
        return WORKER_MARK in " ".join(proc.cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def signal_all(procs: list[psutil.Process], sig: int) -> list[int]:
    """Send ``sig`` to each process; the pids it reached."""
    reached = []
    for proc in procs:
        try:
            proc.send_signal(sig)
            reached.append(proc.pid)
        except psutil.NoSuchProcess:
            pass
    return reached


def kill_tree(pid: int) -> list[int]:
    """SIGKILL ``pid`` and every descendant (the arbiter first, so it cannot respawn a worker)."""
    return signal_all(tree(pid), signal.SIGKILL)


class LocalServer(Service):
    """``burstbench serve`` on loopback, directly (no supervisor) or as supervisord's program.

    Started and stopped by ``burstbench.harness.Service``; this adds the process tree the disruptions
    act on. ``server_pid()`` is the pid of the running server's root (the arbiter); ``stop()`` ends
    everything this object started, also workers left orphaned by a disruption.
    """

    def __init__(self, model: Path, port: int, supervisor: str, log_dir: Path, env: dict | None = None,
                 extra_args: tuple[str, ...] = ()):
        super().__init__(Path(model).resolve(), port, extra_args=extra_args, env=env, log_dir=log_dir,
                         supervisor=supervisor, stop_timeout_s=40)
        self.seen: dict[int, psutil.Process] = {}  # every process of the tree ever seen (psutil guards pid reuse)
        self.stopped = False

    # -- stop -----------------------------------------------------------------------------
    def stop(self, timeout_s: float | None = None) -> None:
        """SIGTERM the root (supervisord stops its program; the arbiter stops its workers), then SIGKILL leftovers."""
        if self.proc is None or self.stopped:
            return
        self.stopped = True
        self._remember()
        if self.running():
            signal_all(tree(self.proc.pid), signal.SIGCONT)  # a frozen tree cannot stop
        super().stop(timeout_s)
        # Workers live in sessions of their own: anything this server ever ran that is still alive goes now.
        for proc in self.seen.values():
            try:
                if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE and _ours(proc):
                    proc.kill()
            except psutil.NoSuchProcess:
                pass

    # -- the tree -----------------------------------------------------------------------
    def pids(self) -> list[int]:
        self._remember()
        return [p.pid for p in tree(self.proc.pid)] if self.proc else []

    def _remember(self) -> None:
        if self.proc is not None:
            self.seen.update((p.pid, p) for p in tree(self.proc.pid))

    def server_pid(self) -> int | None:
        """The server's root process: the Popen child, or supervisord's running program."""
        if not self.running():
            return None
        if self.supervisor != "supervisord":
            return self.proc.pid
        try:
            children = psutil.Process(self.proc.pid).children()
        except psutil.NoSuchProcess:
            return None
        return children[0].pid if children else None

    def server_tree(self) -> list[psutil.Process]:
        pid = self.server_pid()
        procs = tree(pid) if pid is not None else []
        self.seen.update((p.pid, p) for p in procs)
        return procs

    def workers(self) -> list[psutil.Process]:
        return [p for p in self.server_tree() if is_worker(p)]

    def reload_with_env(self, env: dict[str, str]) -> None:
        """Under supervisord: the program's ``environment=`` in supervisord.conf set to ``env``, then SIGHUP.

        On SIGHUP supervisord stops its program, reads its configuration again and starts the program
        with that environment; supervisord itself (the pid the telemetry follows) stays.
        """
        if self.supervisor != "supervisord" or not self.running():
            raise RuntimeError("reload_with_env needs the server running under supervisord")
        conf = self.log_dir / "supervisord.conf"
        lines = [line for line in conf.read_text().splitlines() if not line.startswith("environment=")]
        program = next(i for i, line in enumerate(lines) if line.startswith("[program:"))
        pairs = ",".join(f'{key}="{str(value).replace("%", "%%")}"' for key, value in env.items())
        lines.insert(program + 1, f"environment={pairs}")
        conf.write_text("\n".join(lines) + "\n")
        self.proc.send_signal(signal.SIGHUP)

    def wait_ready(self, timeout_s: float, **kw) -> float:
        """Seconds until /readyz answers 200; RuntimeError naming the log when it does not."""
        try:
            return super().wait_ready(timeout_s, **kw)
        except NotReady as err:
            raise RuntimeError(f"{err.reason} (log: {self.service_log})\n{err.tail[-2000:]}") from None


def _ours(proc: psutil.Process) -> bool:
    """A pid we saw in the tree may have been reused: kill it only if it is still a server process."""
    try:
        cmd = " ".join(proc.cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False
    return WORKER_MARK in cmd or "bentoml" in cmd or "service serve" in cmd or "supervisord" in cmd




def temp_dir(prefix: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=prefix))
