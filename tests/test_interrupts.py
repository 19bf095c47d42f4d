"""The toolkit's own discipline: a run stopped by SIGTERM, or whose service dies, leaves a complete folder.

(SIGINT, Ctrl-C, is covered in test_load.py.) Each test checks what a user relies on afterwards:
``analysis.runs.load_run`` reads the folder, run.json's counts are consistent, and every request
sent has its row: rows = sent = ok + failed.
"""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from burstbench.analysis.runs import load_run
from conftest import REPO_ROOT, Server, only_run_dir
from burstbench.resilience.server import kill_tree

pytestmark = [pytest.mark.load, pytest.mark.server]


def start_locust(host: str, results_dir: Path, requests: int, mean_s: float, *flags: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "locust", "-f", str(REPO_ROOT / "locustfiles" / "sentiment.py"), "--headless",
           "--only-summary", "--host", host, "--results-dir", str(results_dir), "--scenario", "steady",
           "--mean", str(mean_s), "--requests", str(requests), "-u", "8", "-r", "8", *flags]
    return subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_rows(results_dir: Path, at_least: int, proc: subprocess.Popen, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and proc.poll() is None:
        runs = list(results_dir.iterdir())
        if runs and (runs[0] / "requests.csv").is_file():
            with (runs[0] / "requests.csv").open() as f:
                if sum(1 for _ in f) > at_least:
                    return
        time.sleep(0.2)
    raise AssertionError(f"fewer than {at_least} rows within {timeout_s} s (locust exit code {proc.poll()})")


def assert_complete_folder(run_dir: Path, planned: int):
    run = load_run(run_dir)  # readable by the analysis
    counts = run.info["counts"]
    assert run.dropped_rows == 0
    assert counts["rows"] == counts["sent"] == len(run.rows) == counts["ok"] + counts["failed"]
    assert counts["not_sent"] == planned - counts["sent"]
    assert counts["consistent"] is True
    assert sorted(run.rows["request_index"]) == sorted(set(run.rows["request_index"]))  # no slot twice
    for name in ("locust_stats.csv", "locust_failures.csv", "locust.html"):
        assert (run_dir / name).is_file(), name
    return run


def test_sigterm_mid_run_keeps_a_complete_folder(server, tmp_path):
    """SIGTERM (what `kill`, systemd and Kubernetes send) mid-run: Locust shuts down; every row is kept."""
    proc = start_locust(server.url, tmp_path, 5000, 0.02)
    try:
        wait_for_rows(tmp_path, 50, proc)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    run = assert_complete_folder(only_run_dir(tmp_path), 5000)
    assert run.info["status"] == "interrupted", stderr[-2000:]
    assert 50 <= len(run.rows) < 5000
    assert (run.rows.loc[run.rows["ok"] == 0, "failure_kind"] == "interrupted").all()


def test_service_killed_mid_run_keeps_a_complete_folder(tiny_model, tmp_path):
    """The service dies (kill -9 of its whole process tree) mid-run: the run goes on, its failures are counted."""
    srv = Server(tiny_model, tmp_path / "service.log", max_length=32)
    results = tmp_path / "results"
    results.mkdir()
    proc = start_locust(srv.url, results, 300, 0.02, "--request-timeout", "3")
    try:
        wait_for_rows(results, 100, proc)
        killed = kill_tree(srv.proc.pid)  # the arbiter and its workers (they live in sessions of their own)
        assert len(killed) >= 2
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        srv.stop()
    assert proc.returncode in (0, 1), stderr[-2000:]  # Locust's exit code 1: the run had failures
    run = assert_complete_folder(only_run_dir(results), 300)
    info = run.info
    assert info["status"] == "complete" and len(run.rows) == 300
    failed = run.rows[run.rows["ok"] == 0]
    assert len(failed) > 0 and info["counts"]["failed"] == len(failed)
    # After the kill nothing listens: refused connections (or a reset for a request caught mid-flight).
    assert set(failed["failure_kind"]) <= {"connection_refused", "other", "timeout"}
    assert (failed["failure_kind"] == "connection_refused").sum() > 0
    assert json.loads((only_run_dir(results) / "run.json").read_text())["counts"]["locust_failures"] == len(failed)
