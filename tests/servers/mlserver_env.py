"""MLServer, a third-party KServe v2 server, in a virtual environment of its own, and one running instance.

MLServer 1.7.1 pins fastapi < 0.116 (hence starlette 0.46) and protobuf < 7; installed into the
project's .venv it would downgrade what BentoML runs on. So it lives in
``build/test-venvs/mlserver-<hash of mlserver-requirements.txt>``, built once from PyPI on first use
(about a minute, 330 MB) and reused after. ``BURSTBENCH_MLSERVER=/path/to/mlserver`` uses an
installation you already have instead.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from servers.processes import ServerProcess, free_port

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent.parent
REQUIREMENTS = HERE / "mlserver-requirements.txt"
MODEL_DIR = HERE / "mlserver_model"
MODEL_NAME = "text-stats"
INSTALL_DEADLINE_S = 900
READY_DEADLINE_S = 120


def mlserver_executable() -> Path:
    """The ``mlserver`` command, building its virtual environment first when it is missing."""
    if os.environ.get("BURSTBENCH_MLSERVER"):
        return Path(os.environ["BURSTBENCH_MLSERVER"])
    key = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()[:12]
    venv = REPO_ROOT / "build" / "test-venvs" / f"mlserver-{key}"
    done = venv / ".installed"
    venv.parent.mkdir(parents=True, exist_ok=True)
    with (venv.parent / f"mlserver-{key}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one builder at a time; the others reuse its result
        if not done.is_file():
            _build(venv, done)
    return venv / "bin" / "mlserver"


def _build(venv: Path, done: Path) -> None:
    started = time.monotonic()
    shutil.rmtree(venv, ignore_errors=True)

    def run(*cmd):
        left = INSTALL_DEADLINE_S - (time.monotonic() - started)
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=max(left, 1))
        if out.returncode != 0:
            raise RuntimeError(f"building MLServer's environment failed: {' '.join(map(str, cmd))}\n"
                               f"{(out.stdout + out.stderr)[-3000:]}")
        return out.stdout

    print(f"\n[tests] installing MLServer from PyPI into {venv} (once, about a minute)", file=sys.stderr)
    run(sys.executable, "-m", "venv", str(venv))
    run(str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
        "-r", str(REQUIREMENTS))
    version = run(str(venv / "bin" / "python"), "-c", "import mlserver; print(mlserver.__version__)").strip()
    done.write_text(version + "\n")


def mlserver_version(executable: Path) -> str:
    python = executable.parent / "python"
    out = subprocess.run([str(python), "-c", "import mlserver; print(mlserver.__version__)"],
                         capture_output=True, text=True, timeout=60)
    return out.stdout.strip() or "unknown"


class MLServer:
    """``mlserver start`` serving the text-stats model on free loopback ports; ``received()`` lists its inputs."""

    def __init__(self, workdir: Path):
        executable = mlserver_executable()
        self.version = mlserver_version(executable)
        self.repo = Path(workdir)
        shutil.copytree(MODEL_DIR, self.repo / MODEL_NAME, ignore=shutil.ignore_patterns("__pycache__"))
        self.port = free_port()
        self.metrics_port = free_port()  # MLServer's Prometheus page is on a port of its own
        settings = {"host": "127.0.0.1", "http_port": self.port, "grpc_port": free_port(),
                    "metrics_port": self.metrics_port, "parallel_workers": 0, "debug": False}
        (self.repo / "settings.json").write_text(json.dumps(settings))
        self.record = self.repo / "received.jsonl"
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "TEXT_STATS_RECORD": str(self.record)}
        self.process = ServerProcess([str(executable), "start", "."], f"{self.url}/v2/models/{MODEL_NAME}/ready",
                                     self.repo / "mlserver.log", cwd=self.repo, env=env,
                                     deadline_s=READY_DEADLINE_S)

    def received(self) -> list[dict]:
        if not self.record.is_file():
            return []
        return [json.loads(line) for line in self.record.read_text(encoding="utf-8").splitlines() if line]

    def clear(self) -> None:
        self.record.unlink(missing_ok=True)

    def stop(self) -> None:
        self.process.stop()
