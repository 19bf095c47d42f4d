"""Start a server process on loopback, wait for it with a deadline, and stop its whole process group.

A thin test-side face of ``burstbench.harness``: the same Process, readiness poll and group stop.
"""
from __future__ import annotations

from pathlib import Path

from burstbench import harness
from burstbench.harness import free_port  # noqa: F401 (the fixtures import it from here)


class ServerProcess:
    """``cmd`` in its own session; ready when GET ``ready_url`` answers 200 before ``deadline_s``."""

    def __init__(self, cmd: list[str], ready_url: str, log_path: Path, *, cwd: Path, env: dict | None = None,
                 deadline_s: float = 60):
        self.log_path = Path(log_path)
        self.process = harness.Process(cmd, log=self.log_path, cwd=cwd, env=env, stop_timeout_s=20).start()
        self.proc = self.process.proc
        try:
            self.process.wait_ready(ready_url, deadline_s, every_s=0.25)
        except harness.NotReady as err:
            self.stop()
            raise RuntimeError(f"{ready_url}: {err.reason}:\n{err.tail}") from None
        except BaseException:
            self.stop()
            raise

    def log_tail(self, chars: int = 3000) -> str:
        return self.process.log_tail(chars)

    def stop(self) -> None:
        self.process.stop()
