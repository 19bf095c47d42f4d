"""Distributed Locust (master + workers on loopback) keeps the arrival process: one schedule, partitioned."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from burstbench.arrivals import ArrivalSchedule, Gamma
from conftest import REPO_ROOT, free_port, master_port_flags, only_run_dir, run_locust, wait_for_text

pytestmark = pytest.mark.load

LOCUSTFILE = str(REPO_ROOT / "locustfiles" / "sentiment.py")
EXTREME = Gamma(shape=0.8, mean=0.1)


def _rows(run_dir: Path) -> tuple[pd.DataFrame, dict]:
    info = json.loads((run_dir / "run.json").read_text())
    rows = pd.read_csv(run_dir / "requests.csv").sort_values("request_index").reset_index(drop=True)
    return rows, info


def test_two_workers_reproduce_the_single_process_schedule(server, tmp_path):
    requests, seed = 240, 5
    proc = run_locust(server.url, tmp_path, "--processes", "2", "-u", "16", "-r", "16", "--scenario", "extreme",
                      "--mean", "0.1", "--requests", str(requests), "--seed", str(seed))
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows, info = _rows(only_run_dir(tmp_path))

    # Every slot exactly once, each from the worker the partition names (k takes k, k+2, ...).
    assert rows["request_index"].tolist() == list(range(requests))
    assert (rows["worker"] == rows["request_index"] % 2).all()
    assert info["distributed"]["workers"] == 2 and info["distributed"]["lost_slots"] == 0
    assert [w["rows"] for w in info["distributed"]["per_worker"]] == [requests // 2] * 2
    counts = info["counts"]
    assert counts["consistent"] and counts["sent"] == counts["rows"] == counts["ok"] == requests
    assert counts["locust_requests"] == requests  # Locust's aggregated stats agree with the merged rows

    # The merged scheduled sends are the single-process schedule for the same seed, to the microsecond.
    single = ArrivalSchedule.draw(EXTREME, requests, seed)
    offsets = rows["scheduled_epoch"].to_numpy() - info["schedule"]["start_epoch"]
    np.testing.assert_allclose(offsets, single.offsets_s, atol=2e-6, rtol=0)

    # So the gaps are the declared gamma(0.8) ones; the actual sends stay close to them.
    gaps = np.diff(offsets, prepend=0.0)
    assert stats.kstest(gaps, EXTREME.scipy_dist.cdf).pvalue > 0.01
    sent_gaps = np.diff(np.sort(rows["sent_epoch"].to_numpy()))
    assert stats.wasserstein_distance(sent_gaps, gaps[1:]) / EXTREME.mean < 0.5


def test_a_worker_that_dies_has_its_unsent_slots_counted(server, tmp_path):
    """By hand: a master and two workers; worker 1 is killed -9 mid-run. The run ends by itself."""
    port = free_port()
    common = ["-f", LOCUSTFILE, "--headless", "--only-summary"]
    log = tmp_path / "master.log"
    master = subprocess.Popen(
        [sys.executable, "-m", "locust", *common, "--master", "--master-bind-host", "127.0.0.1",
         "--master-bind-port", str(port), "--expect-workers", "2", "--host", server.url, "-u", "8", "-r", "8",
         "--scenario", "steady", "--mean", "0.05", "--requests", "400", "--seed", "2",
         "--results-dir", str(tmp_path / "results")],
        cwd=REPO_ROOT, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)
    workers, worker_logs = [], []
    try:
        for k in range(2):
            worker_logs.append(tmp_path / f"worker{k}.log")
            workers.append(subprocess.Popen(
                [sys.executable, "-m", "locust", *common, "--worker", "--master-host", "127.0.0.1",
                 "--master-port", str(port)],
                cwd=REPO_ROOT, stdout=worker_logs[-1].open("w"), stderr=subprocess.STDOUT, start_new_session=True))
            wait_for_text(log, f"{k + 1} workers connected", master)
        wait_for_text(log, "start in", master)
        for worker_log in worker_logs:
            wait_for_text(worker_log, " of 2: ", master)
        victim = next(w for w, wl in zip(workers, worker_logs) if "worker 1 of 2" in wl.read_text())
        # The schedule starts about 2 s after the partition and lasts about 20 s; workers report rows
        # every 3 s. Killed about 8 s in, the victim has reported some rows and has many slots left.
        time.sleep(10)
        victim.kill()
        master.wait(timeout=120)
    finally:
        for p in (*workers, master):
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(timeout=10)
    rows, info = _rows(only_run_dir(tmp_path / "results"))
    counts, dist = info["counts"], info["distributed"]
    per_worker = {w["worker"]: w for w in dist["per_worker"]}
    assert per_worker[0]["rows"] == per_worker[0]["slots"] == 200 and not per_worker[0]["lost"]
    assert per_worker[1]["lost"] and 0 < per_worker[1]["lost_slots"] < 200
    # Every slot is a row or a counted lost slot; none both, none neither.
    assert counts["rows"] + counts["lost_slots"] == 400
    assert counts["lost_slots"] == 200 - (rows["worker"] == 1).sum()
    assert rows["request_index"].is_unique
    assert "worker 1 left before sending its share" in log.read_text()


def test_ctrl_c_on_the_master_keeps_every_row(server, tmp_path):
    cmd = [sys.executable, "-m", "locust", "-f", LOCUSTFILE, "--headless", "--only-summary", "--host", server.url,
           "--processes", "2", "-u", "8", "-r", "8", "--scenario", "moderate", "--mean", "0.05",
           "--requests", "2000", "--seed", "1", "--results-dir", str(tmp_path)]
    cmd += master_port_flags(cmd)
    log = tmp_path / "locust.log"
    master = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=log.open("w"), stderr=subprocess.STDOUT,
                              start_new_session=True)
    try:
        wait_for_text(log, "worker 1 of 2", master)
        time.sleep(6)  # the schedule starts about 2 s after the partition
        master.send_signal(signal.SIGINT)  # the master alone: it stops the workers itself
        assert master.wait(timeout=60) == 130
    finally:
        if master.poll() is None:
            os.killpg(master.pid, signal.SIGKILL)
    rows, info = _rows(only_run_dir(tmp_path))
    counts = info["counts"]
    assert info["status"] == "interrupted"
    assert 0 < counts["rows"] < 2000 and counts["lost_slots"] == 0
    assert counts["consistent"], counts
    assert counts["sent"] == counts["rows"] == len(rows) == counts["ok"] + counts["failed"]
    assert set(rows["worker"]) == {0, 1}


@pytest.mark.parametrize("flags, message", [
    (["--processes", "2", "-u", "4", "--pacing", "think"], "--pacing think is the paper's single-process closed loop"),
    (["--processes", "2", "-u", "1"], "-u/--users must be at least the number of workers (2)"),
])
def test_distributed_misconfiguration_is_refused_before_traffic(server, tmp_path, flags, message):
    proc = run_locust(server.url, tmp_path, "--requests", "10", *flags, timeout=120)
    assert proc.returncode != 0
    assert message in proc.stderr
    assert not any(tmp_path.iterdir())
