"""Real Locust against the real service on loopback: the smoke load test and the run folder contract."""
from __future__ import annotations

import csv
import json
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from burstbench.arrivals import ArrivalSchedule, Gamma
from conftest import REPO_ROOT, SMOKE, only_run_dir, run_locust

pytestmark = pytest.mark.load


def locust_aggregated(run_dir):
    with (run_dir / "locust_stats.csv").open() as f:
        return next(r for r in csv.DictReader(f) if r["Name"] == "Aggregated")


def test_smoke_load_arrival_pacing(smoke_run):
    """Gamma 0.8 at a mean gap of 50 ms for about 30 s, 16 users: the whole contract of a run."""
    n, mean, seed = SMOKE["requests"], SMOKE["mean"], SMOKE["seed"]
    result, run_dir = smoke_run
    assert result.returncode == 0, result.stderr[-3000:]
    assert run_dir is not None
    rows = pd.read_csv(run_dir / "requests.csv")
    info = json.loads((run_dir / "run.json").read_text())

    # Every request accounted for: rows = sent = Locust's count, and nothing failed.
    assert len(rows) == n
    assert sorted(rows["request_index"]) == list(range(n))
    assert info["status"] == "complete"
    assert info["counts"]["sent"] == n and info["counts"]["ok"] == n and info["counts"]["failed"] == 0
    assert int(locust_aggregated(run_dir)["Request Count"]) == n
    assert int(locust_aggregated(run_dir)["Failure Count"]) == 0
    assert info["counts"]["consistent"] is True

    # The scheduled sends are exactly the seeded schedule, and its gaps fit the declared process.
    scheduled = rows.sort_values("request_index")["scheduled_epoch"].to_numpy()
    start = info["schedule"]["start_epoch"]
    expected = ArrivalSchedule.draw(Gamma(shape=0.8, mean=mean), n, seed).offsets_s
    np.testing.assert_allclose(scheduled - start, expected, atol=2e-6)
    gaps = np.diff(scheduled, prepend=start)
    assert stats.kstest(gaps, Gamma(shape=0.8, mean=mean).cdf).pvalue > 0.01

    # Sends kept to the schedule (tolerance sized for a busy 2-core machine) ...
    assert np.quantile(rows["lateness_ms"], 0.99) < 100
    # ... and concurrent users let the service form batches.
    assert rows["batch_size"].max() > 1
    # Schedule-corrected latency is never below the service latency.
    assert (rows["corrected_latency_ms"] >= rows["latency_ms"] - 1e-3).all()
    for name in ("locust_stats.csv", "locust_stats_history.csv", "locust_failures.csv", "locust.html"):
        assert (run_dir / name).is_file(), name


def test_think_pacing_is_the_papers_closed_loop(server, tmp_path):
    """One user, think time after each response: every gap between sends is think time + response time."""
    result = run_locust(server.url, tmp_path, "--scenario", "steady", "--mean", "0.05", "--requests", "40",
                        "--pacing", "think", "-u", "1", "-r", "1")
    assert result.returncode == 0, result.stderr[-3000:]
    rows = pd.read_csv(only_run_dir(tmp_path) / "requests.csv").sort_values("request_index")
    assert len(rows) == 40 and rows["ok"].all()
    sent = rows["sent_epoch"].to_numpy()
    latency_s = rows["latency_ms"].to_numpy() / 1000
    think_s = rows["think_s"].to_numpy()
    # gap_i = send_{i+1} - send_i >= response_i + think_{i+1}: the offered load falls as the service slows.
    assert (np.diff(sent) >= latency_s[:-1] + think_s[1:] - 1e-3).all()


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--arrival", "gamma", "--shape", "-1"], "--shape must be a number > 0"),
        (["--arrival", "gamma", "--shape", "abc"], "--shape must be a number > 0"),
        (["--mean", "0"], "--mean must be a number > 0"),
        (["--scenario", "bursty"], "--scenario must be one of steady, moderate, extreme"),
        (["--pacing", "closed"], "--pacing must be one of arrival, think"),
        (["--requests", "0"], "--requests must be an integer >= 1"),
        (["--seed", "-3"], "--seed must be an integer >= 0"),
        (["--arrival", "poisson"], "--arrival must be one of exponential, gamma"),
        (["--dataset", "/no/such.csv"], "--dataset must be 'bundled', 'hub' or an existing CSV file"),
    ],
)
def test_bad_flags_stop_before_any_traffic(tmp_path, flags, message):
    # Port 9 on loopback: nothing may be sent anyway, and no run folder may appear.
    result = run_locust("http://127.0.0.1:9", tmp_path, *flags, "-u", "1", "-r", "1", timeout=60)
    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_ctrl_c_keeps_what_was_measured(server, tmp_path):
    """SIGINT mid-run: a complete, readable folder whose counts add up."""
    cmd = [sys.executable, "-m", "locust", "-f", str(REPO_ROOT / "locustfiles" / "sentiment.py"), "--headless",
           "--only-summary", "--host", server.url, "--results-dir", str(tmp_path), "--scenario", "steady",
           "--mean", "0.02", "--requests", "5000", "-u", "8", "-r", "8"]
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    rows_file = None
    while time.monotonic() < deadline:  # wait until some requests have been recorded
        runs = list(tmp_path.iterdir())
        if runs and (runs[0] / "requests.csv").is_file():
            rows_file = runs[0] / "requests.csv"
            if sum(1 for _ in rows_file.open()) > 50:
                break
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert rows_file is not None, stderr[-3000:]
    assert proc.returncode == 130, stderr[-3000:]
    assert "interrupted: stopping" in stderr
    run_dir = only_run_dir(tmp_path)
    info = json.loads((run_dir / "run.json").read_text())
    rows = pd.read_csv(run_dir / "requests.csv")
    counts = info["counts"]
    assert info["status"] == "interrupted"
    assert 50 <= len(rows) < 5000
    assert counts["rows"] == counts["sent"] == len(rows) == counts["ok"] + counts["failed"]
    assert counts["not_sent"] == 5000 - counts["sent"]
    interrupted = int((rows["failure_kind"] == "interrupted").sum())
    assert counts["locust_requests"] == len(rows) - interrupted
    assert counts["consistent"] is True
    assert (rows.loc[rows["ok"] == 0, "failure_kind"] == "interrupted").all()
