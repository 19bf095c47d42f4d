"""pytest fixtures for the servers here, and a runner for ``locust -f locustfiles/http_endpoint.py``.

Import the fixtures into a test module (``from servers.fixtures import fastapi_server``).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from servers.mlserver_env import MLServer
from servers.processes import ServerProcess, free_port

TESTS = Path(__file__).resolve().parent.parent
REPO_ROOT = TESTS.parent
HTTP_LOCUSTFILE = REPO_ROOT / "locustfiles" / "http_endpoint.py"


class FastAPIServer:
    def __init__(self, log_path: Path, env: dict):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [sys.executable, "-m", "uvicorn", "servers.fastapi_app:app", "--app-dir", str(TESTS),
               "--host", "127.0.0.1", "--port", str(self.port), "--log-level", "warning"]
        self.process = ServerProcess(cmd, f"{self.url}/healthz", log_path, cwd=TESTS, env=env, deadline_s=60)

    def records(self, path: str | None = None) -> list[dict]:
        with urllib.request.urlopen(f"{self.url}/_records", timeout=10) as resp:
            records = json.loads(resp.read())
        return [r for r in records if path is None or r["path"] == path]

    def clear(self) -> None:
        request = urllib.request.Request(f"{self.url}/_records", method="DELETE")
        urllib.request.urlopen(request, timeout=10).close()


@pytest.fixture(scope="module")
def fastapi_server(tmp_path_factory):
    """The FastAPI test service (plain, OpenAI-compatible and misbehaving endpoints) on a free loopback port."""
    env = {**os.environ, "BB_EXPECTED_TOKEN": EXPECTED_TOKEN}
    server = FastAPIServer(tmp_path_factory.mktemp("fastapi") / "uvicorn.log", env)
    yield server
    server.process.stop()


@pytest.fixture(scope="module")
def mlserver(tmp_path_factory):
    """MLServer (third-party KServe v2 server) serving the text-stats model on free loopback ports."""
    server = MLServer(tmp_path_factory.mktemp("mlserver"))
    yield server
    server.stop()


# The token the FastAPI service's /secure endpoint expects; tests pass it through an environment variable.
EXPECTED_TOKEN = "bb-secret-7f3c9a1e5d"


def run_http_locust(host: str, results_dir: Path, *flags: str, env: dict | None = None,
                    timeout: float = 120) -> subprocess.CompletedProcess:
    """``locust -f locustfiles/http_endpoint.py --headless``, as a user would run it."""
    cmd = [sys.executable, "-m", "locust", "-f", str(HTTP_LOCUSTFILE), "--headless", "--only-summary",
           "--host", host, "--results-dir", str(results_dir), *flags]
    return subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


@pytest.fixture(scope="module")
def llm_server(tmp_path_factory):
    """``transformers serve`` (a real OpenAI-compatible streaming server) with the untrained tiny GPT-2, on CPU."""
    from servers.llm_server import TransformersServe

    server = TransformersServe(tmp_path_factory.mktemp("transformers-serve"))
    yield server
    server.stop()


class MisbehavingServer:
    """``python -m servers.misbehaving`` in one mode: the fault on ``url``, its counts on a side port."""

    def __init__(self, mode: str, log_path: Path, *flags: str):
        self.mode = mode
        self.port, self.stats_port = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [sys.executable, "-m", "servers.misbehaving", "--port", str(self.port),
               "--stats-port", str(self.stats_port), "--mode", mode, *flags]
        self.process = ServerProcess(cmd, f"{self.url}/healthz", log_path, cwd=TESTS, deadline_s=30)

    def stats(self) -> dict:
        """Connections accepted and requests received on the main port (/healthz counted apart)."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.stats_port}/_stats", timeout=10) as resp:
            return json.loads(resp.read())

    def stop(self) -> None:
        self.process.stop()


@pytest.fixture(scope="module")
def misbehaving_servers(tmp_path_factory):
    """``start(mode, *flags)`` starts a MisbehavingServer; whatever is still running stops with the module."""
    started: list[MisbehavingServer] = []

    def start(mode: str, *flags: str) -> MisbehavingServer:
        server = MisbehavingServer(mode, tmp_path_factory.mktemp(f"misbehaving-{mode}") / "server.log", *flags)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
