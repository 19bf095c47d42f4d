"""Shared fixtures: a tiny real model and real BentoML servers on loopback."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
TINY_MODEL = REPO_ROOT / "build" / "models" / "untrained-roberta-tiny"
READY_DEADLINE_S = 180


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def tiny_model() -> Path:
    """The 2-layer, hidden-128 RoBERTa and all its variants: built once, reused when identical."""
    from burstbench.service.model_builder import build_default_model
    from burstbench.service.models import export_variants

    model_dir = build_default_model(TINY_MODEL, size="tiny")
    export_variants(model_dir)
    return model_dir


class Server:
    def __init__(self, model: Path, log_path: Path, **settings: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, **{f"BURSTBENCH_{k.upper()}": str(v) for k, v in settings.items()}}
        self.log = log_path.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "burstbench.service", "serve", "--port", str(self.port), "--model", str(model)],
            cwd=REPO_ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        self.log_path = log_path
        self._wait_ready()

    def _wait_ready(self):
        deadline = time.monotonic() + READY_DEADLINE_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.log_path.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/readyz", timeout=2) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"server not ready after {READY_DEADLINE_S} s:\n{self.log_path.read_text()[-3000:]}")

    def stop(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self.log.close()


@pytest.fixture(scope="session")
def server(tiny_model, tmp_path_factory):
    """The bundled service with adaptive batching on, serving the tiny model."""
    srv = Server(tiny_model, tmp_path_factory.mktemp("server") / "service.log", max_length=32)
    yield srv
    srv.stop()


def run_locust(host: str, results_dir: Path, *flags: str, timeout: float = 180) -> subprocess.CompletedProcess:
    """Plain `locust -f locustfiles/sentiment.py --headless`, as a user would run it."""
    cmd = [sys.executable, "-m", "locust", "-f", str(REPO_ROOT / "locustfiles" / "sentiment.py"), "--headless",
           "--only-summary", "--host", host, "--results-dir", str(results_dir), *flags]
    return subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout)


SMOKE = {"scenario": "extreme", "shape": 0.8, "mean": 0.05, "requests": 600, "seed": 11, "users": 16}


@pytest.fixture(scope="session")
def smoke_run(server, tmp_path_factory):
    """The smoke load test's run (gamma 0.8, mean gap 50 ms, about 30 s), shared by the tests that read it."""
    results = tmp_path_factory.mktemp("smoke")
    s = SMOKE
    result = run_locust(server.url, results, "--scenario", s["scenario"], "--mean", str(s["mean"]),
                        "--requests", str(s["requests"]), "--seed", str(s["seed"]),
                        "-u", str(s["users"]), "-r", str(s["users"]))
    runs = [p for p in results.iterdir() if p.is_dir()]
    return result, (runs[0] if len(runs) == 1 else None)


def only_run_dir(results_dir: Path) -> Path:
    runs = [p for p in results_dir.iterdir() if p.is_dir()]
    assert len(runs) == 1, f"expected one run folder, found {runs}"
    return runs[0]
