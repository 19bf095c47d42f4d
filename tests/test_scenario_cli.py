"""`burstbench run` (what `make scenario-*` runs): serve, load, stop, summarise."""
from __future__ import annotations

import json
import socket
import subprocess
import sys
import urllib.request

import pytest

from conftest import REPO_ROOT, free_port, only_run_dir


def scenario_cli(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "burstbench.cli", "run", *args], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.load
@pytest.mark.parametrize("workers", [[], ["--workers", "2"]], ids=["one-process", "master-and-2-workers"])
def test_scenario_end_to_end_stops_the_service_and_prints_the_table(tiny_model, tmp_path, workers):
    port = free_port()
    out = scenario_cli("moderate", "--requests", "30", "--mean", "0.1", "--users", "4", "--port", str(port),
                       "--model", str(tiny_model), "--results-dir", str(tmp_path), "--progress-every", "1", *workers)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "service ready after" in out.stderr
    assert "30/30 requests (100%)" in out.stderr  # progress lines
    assert "gamma(a=1.2, mean=0.10s, cv=0.91)" in out.stdout
    for column in ("p50", "p95", "p99", "min", "avg", "max"):
        assert column in out.stdout
    run_dir = only_run_dir(tmp_path)
    info = json.loads((run_dir / "run.json").read_text())
    assert info["counts"]["ok"] == 30 and info["target"]["model"] == "untrained-roberta-tiny"
    assert (info["distributed"] or {}).get("workers") == (2 if workers else None)
    for name in ("service.log", "summary.csv", "latency.png", "requests.csv"):
        assert (run_dir / name).is_file(), name
    with pytest.raises(OSError):  # the service was stopped
        urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2)


@pytest.mark.parametrize("args, message", [
    (["bursty"], "--scenario must be one of steady, moderate, extreme"),
    (["steady", "--users", "0"], "--users must be an integer >= 1"),
    (["steady", "--requests", "many"], "--requests must be an integer"),
    (["steady", "--pacing", "open"], "--pacing must be one of arrival, think"),
    (["steady", "--port", "70000"], "--port must be in [1, 65535]"),
    (["steady", "--workers", "2", "--users", "1"], "--users must be at least --workers (2)"),
    (["steady", "--workers", "0"], "--workers must be an integer in [1, 64]"),
    (["steady", "--workers", "2", "--pacing", "think"], "--workers needs --pacing arrival"),
    (["steady", "--trace", "t.csv"], "with --trace the scenario is 'trace'"),
    (["trace", "--trace", "/no/such/trace.csv"], "--trace /no/such/trace.csv: no such file"),
])
def test_bad_arguments_stop_before_anything_starts(args, message, tmp_path):
    out = scenario_cli(*args, "--results-dir", str(tmp_path), timeout=60)
    assert out.returncode == 2
    assert message in out.stderr and "Traceback" not in out.stderr
    assert list(tmp_path.iterdir()) == []


def test_port_in_use_is_refused(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        out = scenario_cli("steady", "--port", str(port), "--results-dir", str(tmp_path), timeout=60)
    assert out.returncode == 2
    assert f"something already listens on 127.0.0.1:{port}" in out.stderr
