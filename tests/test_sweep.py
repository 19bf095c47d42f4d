"""Capacity sweeps: the queueing math and SLO picking on synthetic steps, and one short real sweep."""
from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

from burstbench.analysis.sweep import (arrival_ca2, capacity_pivot, kingman_latency_ms, max_in_flight, service_time_stats, slo_capacity,
                            slo_percentile_ms)
from conftest import REPO_ROOT, free_port
from burstbench.experiments.sweep import rate_grid, step_requests, step_users
from burstbench.arrivals import ArrivalSchedule, scenario


# -- Kingman -----------------------------------------------------------------------------
def test_kingman_is_exact_for_known_values():
    # rho = 5/s * 0.1 s = 0.5; M/M/1 (ca2 = cs2 = 1): E[W] = E[S] / (1 - rho) = 200 ms
    assert kingman_latency_ms(5.0, 100.0, 1.0, 1.0) == pytest.approx(200.0, rel=1e-12)
    # rho = 0.8, ca2 = 1.25 (gamma a=0.8), cs2 = 0.5: 50 + 4 * 0.875 * 50 = 225 ms
    assert kingman_latency_ms(16.0, 50.0, 0.5, 1.25) == pytest.approx(225.0, rel=1e-12)
    # no steady state at or beyond rho = 1
    assert math.isnan(kingman_latency_ms(10.0, 100.0, 1.0, 1.0))
    values = kingman_latency_ms(np.array([0.0, 5.0, 12.0]), 100.0, 1.0, 1.0)
    assert values[0] == pytest.approx(100.0) and values[1] == pytest.approx(200.0) and math.isnan(values[2])


def test_burstier_arrivals_wait_one_and_a_half_times_longer_at_equal_rate():
    """design.md: with deterministic service, a=0.8 queues 1.5x longer than a=1.2 (1.25 / 0.8333)."""
    s, rate = 100.0, 7.0
    wait = {a: kingman_latency_ms(rate, s, 0.0, arrival_ca2({"shape": a, "ca2": None})) - s for a in (0.8, 1.2)}
    assert wait[0.8] / wait[1.2] == pytest.approx(1.5, rel=1e-12)
    assert arrival_ca2({"shape": 1.0, "ca2": None}) == 1.0
    assert arrival_ca2({"shape": None, "ca2": 2.5}) == 2.5  # a trace's measured gaps


# -- service time, in-flight, SLO percentile --------------------------------------------------
def _rows(sent, latency_ms, ok=None, corrected=None):
    n = len(sent)
    return pd.DataFrame({"sent_epoch": np.asarray(sent, float), "latency_ms": np.asarray(latency_ms, float),
                         "ok": np.ones(n, int) if ok is None else np.asarray(ok),
                         "corrected_latency_ms": np.asarray(latency_ms if corrected is None else corrected, float)})


def test_service_time_uses_only_requests_that_found_the_service_idle():
    # five lone requests of 100/120/80/100/100 ms; one sent while another was in flight (queued: 500 ms)
    rows = _rows([0.0, 1.0, 2.0, 2.05, 3.0, 4.0], [100, 120, 80, 500, 100, 100])
    stats = service_time_stats(rows, min_idle=5)
    assert stats["idle_only"] and stats["samples"] == 5
    assert stats["mean_ms"] == pytest.approx(100.0)
    assert stats["var_ms2"] == pytest.approx(np.var([100, 120, 80, 100, 100], ddof=1))
    assert stats["cs2"] == pytest.approx(stats["var_ms2"] / 100.0**2)
    assert stats["capacity_rps"] == pytest.approx(10.0)
    # too few idle requests: all successful ones, and it says so
    fallback = service_time_stats(rows, min_idle=6)
    assert not fallback["idle_only"] and fallback["samples"] == 6


def test_max_in_flight_counts_overlaps():
    assert max_in_flight(_rows([0.0, 0.05, 0.08, 1.0], [100, 100, 10, 10])) == 3
    assert max_in_flight(_rows([0.0, 0.1, 0.2], [100, 100, 100])) == 1  # back to back: never two at once


def test_slo_percentile_counts_failures_as_over_the_bound():
    ok = _rows(np.arange(100.0), np.full(100, 10.0), corrected=np.arange(1.0, 101.0))
    assert slo_percentile_ms(ok) == 100.0  # 'higher' method: an observed value, never an interpolation
    failed = ok.assign(ok=[1] * 98 + [0] * 2)
    assert slo_percentile_ms(failed) == math.inf


# -- capacity at the SLO ------------------------------------------------------------------
def _steps(records):
    base = {"batching": "on", "process": "extreme", "kind": "step", "valid": True, "rho": 0.5}
    return pd.DataFrame([{**base, **r} for r in records])


def test_capacity_is_the_highest_passing_valid_step_below_the_first_failure():
    steps = _steps([
        {"kind": "probe", "offered_rps": 50.0, "slo_p99_ms": 10.0},       # a probe never decides
        {"offered_rps": 1.0, "slo_p99_ms": 100.0},
        {"offered_rps": 2.0, "slo_p99_ms": 200.0},
        {"offered_rps": 3.0, "slo_p99_ms": 9000.0, "valid": False},       # too short: ignored
        {"offered_rps": 4.0, "slo_p99_ms": 480.0},
        {"offered_rps": 5.0, "slo_p99_ms": 700.0},                       # first failure
        {"offered_rps": 6.0, "slo_p99_ms": 400.0},                       # a lucky pass above it
        {"process": "steady", "offered_rps": 1.0, "slo_p99_ms": 600.0},   # fails from the start
        {"batching": "off", "offered_rps": 1.0, "slo_p99_ms": 50.0},     # passes everywhere it ran
    ])
    cap = slo_capacity(steps, 500.0).set_index(["batching", "process"])
    extreme = cap.loc[("on", "extreme")]
    assert extreme["capacity_rps"] == 4.0 and extreme["first_failing_rps"] == 5.0
    assert extreme["corr_p99_ms_at_capacity"] == 480.0
    assert extreme["valid_steps"] == 5 and extreme["invalid_steps"] == 1
    assert math.isnan(cap.loc[("on", "steady"), "capacity_rps"])
    off = cap.loc[("off", "extreme")]
    assert off["capacity_rps"] == 1.0 and math.isnan(off["first_failing_rps"])
    shown = capacity_pivot(slo_capacity(steps, 500.0))
    assert shown.loc["extreme", "batching on (req/s)"] == "4"
    assert shown.loc["steady", "batching on (req/s)"] == "< 1"      # missed from the first step
    assert shown.loc["extreme", "batching off (req/s)"] == ">= 1"   # never missed: capacity is higher


# -- step sizing ----------------------------------------------------------------------------
PLAN = {"min_requests": 200, "min_duration_s": 15.0, "max_requests": 5000, "users_horizon_s": 10.0,
        "min_users": 16, "max_users": 1000, "rates": None, "grid_start": 0.4, "grid_factor": 1.3, "max_steps": 10}


@pytest.mark.parametrize("process, rate", [("steady", 4.0), ("extreme", 30.0), ("moderate", 13.0)])
def test_each_step_meets_the_minimum_count_and_its_drawn_schedule_the_minimum_duration(process, rate):
    n = step_requests({"name": process, "kind": "x", "shape": None, "ca2": None}, rate, 3, PLAN)
    offsets = ArrivalSchedule.draw(scenario(process, 1 / rate), n, 3).offsets_s
    assert n >= 200 and offsets[-1] - offsets[0] >= 15.0
    # the smallest such count (up to the 2 % search margin): no needlessly long steps
    shorter = ArrivalSchedule.draw(scenario(process, 1 / rate), max(200, int(n / 1.05)), 3).offsets_s
    assert n == 200 or shorter[-1] - shorter[0] < 15.0


def test_users_and_grid():
    assert step_users(3.0, PLAN) == 30 and step_users(0.5, PLAN) == 16 and step_users(500.0, PLAN) == 1000
    assert step_users(2.01, PLAN) == 21  # rounded up: never fewer than rate x horizon
    grid = rate_grid(PLAN, 15.0)
    assert grid[0] == 6.0 and grid[1] == 7.8 and len(grid) == 10
    assert rate_grid({**PLAN, "rates": [2.0, 4.0]}, 15.0) == [2.0, 4.0]


# -- the command ---------------------------------------------------------------------------
def sweep_cli(*args, timeout=60, env=None):
    return subprocess.run([sys.executable, "-m", "burstbench.experiments.sweep", *args], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=timeout, env=env)


@pytest.mark.parametrize("args, message", [
    (["--rates", "2,-1"], "--rates must be a comma-separated list of rates in req/s > 0"),
    (["--batching", "maybe"], "--batching must be on, off or on,off"),
    (["--processes", "bursty"], "--processes: each must be one of steady, moderate, extreme"),
    (["--slo-p99-ms", "0"], "--slo-p99-ms must be a number > 0"),
    (["--saturation", "1.5"], "--saturation must be a number in (0, 1]"),
    (["--min-requests", "300", "--max-requests", "100"], "--max-requests must be >= --min-requests"),
    (["--trace", "no-such-trace.csv"], "--trace no-such-trace.csv: no such file"),
])
def test_bad_arguments_stop_before_anything_starts(args, message, tmp_path):
    out = sweep_cli(*args, "--results-dir", str(tmp_path), "--port", str(free_port()))
    assert out.returncode == 2, out.stderr
    assert message in out.stderr and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


@pytest.mark.load
def test_short_real_sweep_writes_steps_capacity_and_figure(tiny_model, tmp_path):
    env = {**os.environ, "BURSTBENCH_MAX_LENGTH": "32"}
    # Judging is switched off (huge SLO, no saturation stop), so both rates run whatever this machine does.
    out = sweep_cli("--model", str(tiny_model), "--batching", "on", "--processes", "extreme", "--rates", "10,20",
                    "--probe-requests", "30", "--min-requests", "40", "--min-duration", "2",
                    "--slo-p99-ms", "60000", "--saturation", "0.01", "--max-failed-share", "0.99",
                    "--port", str(free_port()), "--results-dir", str(tmp_path), timeout=240, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    (sweep_dir,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    assert sweep_dir.name.endswith("-sweep")
    sweep = json.loads((sweep_dir / "sweep.json").read_text())
    assert sweep["status"] == "complete"
    assert [(s["kind"], s["rate_per_s"]) for s in sweep["steps"][1:]] == [("step", 10.0), ("step", 20.0)]
    assert sweep["steps"][0]["kind"] == "probe" and "light-load step at" in out.stderr  # its rate from the warm-up
    assert sweep["service"]["on"]["mean_ms"] > 0
    for record in sweep["steps"]:
        info = json.loads((sweep_dir / record["run_dir"] / "run.json").read_text())
        counts = info["counts"]
        assert counts["sent"] == counts["ok"] + counts["failed"] == record["requests"], record
        assert counts["consistent"] and info["pacing"] == "arrival" and info["users"] == record["users"]
        assert (sweep_dir / record["run_dir"] / "locust.log").is_file()
    steps = pd.read_csv(sweep_dir / "steps.csv")
    assert list(steps["kind"]) == ["probe", "step", "step"] and steps["counts_add_up"].all()
    assert (steps["requests"] == steps["ok"] + steps["failed"]).all()
    assert steps.loc[steps["kind"] == "step", "valid"].all()
    assert (steps["in_flight_max"] <= steps["users"]).all()
    assert steps["batch_mean"].ge(1).all()
    service = sweep["service"]["on"]
    expected = kingman_latency_ms(steps["offered_rps"].to_numpy(), service["mean_ms"], service["cs2"],
                                  np.array([1.0, 1.25, 1.25]))  # probe Poisson, then gamma a=0.8
    np.testing.assert_allclose(steps["kingman_ms"].to_numpy(), expected, rtol=1e-3)
    capacity = pd.read_csv(sweep_dir / "capacity.csv")
    assert list(capacity["process"]) == ["extreme"] and capacity.loc[0, "capacity_rps"] == 20.0
    png = sweep_dir / "latency_vs_load.png"
    assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for name in ("steps.md", "capacity.md", "service-batching-on.log"):
        assert (sweep_dir / name).is_file(), name
    assert "capacity at the SLO" in out.stdout and "extreme" in out.stdout
    assert "light load: E[S]" in out.stderr and "past saturation" not in out.stderr


@pytest.mark.load
def test_ctrl_c_stops_the_sweep_keeping_every_request_of_the_step(tiny_model, tmp_path):
    env = {**os.environ, "BURSTBENCH_MAX_LENGTH": "32"}
    cmd = [sys.executable, "-m", "burstbench.experiments.sweep", "--model", str(tiny_model), "--batching", "on",
           "--processes", "steady", "--rates", "5", "--probe-rate", "20", "--probe-requests", "20",
           "--min-requests", "300", "--port", str(free_port()), "--results-dir", str(tmp_path)]
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 180
        for line in proc.stderr:  # bounded: the sweep ends by itself within about a minute
            if "| step 1:" in line:
                break
            assert time.monotonic() < deadline, "step 1 did not start in time"
        while time.monotonic() < deadline:  # mid-step: once the step has recorded some requests
            rows = list(tmp_path.glob("*/batching-on/steady/*/requests.csv"))
            if rows and len(rows[0].read_text().splitlines()) > 10:
                break
            time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, stderr[-2000:]
    (sweep_dir,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    sweep = json.loads((sweep_dir / "sweep.json").read_text())
    assert sweep["status"] == "interrupted" and len(sweep["steps"]) == 2
    steps = pd.read_csv(sweep_dir / "steps.csv")
    step = steps.iloc[1]
    assert 0 < step["requests"] < 300 and not step["valid"] and step["counts_add_up"]
    info = json.loads((sweep_dir / sweep["steps"][1]["run_dir"] / "run.json").read_text())
    assert info["status"] == "interrupted" and info["counts"]["sent"] == info["counts"]["ok"] + info["counts"]["failed"]
    assert "capacity at the SLO" in stdout
