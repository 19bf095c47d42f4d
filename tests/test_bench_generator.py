"""The generator benchmark, short: real nginx on loopback, real Locust, one step of each pacing.

No timing thresholds: how late sends go out depends on the machine; the test checks that every
request is accounted for and that every number the benchmark reports was computed.
"""
from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys

import pandas as pd
import pytest

from conftest import REPO_ROOT, only_run_dir

pytestmark = pytest.mark.load

NGINX = next((p for p in ("/usr/sbin/nginx", "/usr/bin/nginx") if os.path.exists(p)), None)
STEP = {"rate": 200, "requests": 200, "users": 16}


def bench(*flags: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "burstbench.experiments.bench_generator", *flags], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def one_step(tmp_path_factory):
    if NGINX is None:
        pytest.skip("nginx is not installed: `make nginx`")
    results = tmp_path_factory.mktemp("bench")
    # --wire on: a machine that cannot capture fails here rather than silently losing the wire columns.
    result = bench("--rates", str(STEP["rate"]), "--arrivals", "exponential", "--processes", "1",
                   "--requests", str(STEP["requests"]), "--users", str(STEP["users"]), "--seed", "3",
                   "--dispatchers", "timerfd", "--peers", "none", "--wire", "on", "--results-dir", str(results))
    return result, results


def _steps(results) -> pd.DataFrame:
    return pd.read_csv(only_run_dir(results) / "steps.csv").set_index("tool")


def test_one_step_accounts_for_every_request(one_step):
    result, results = one_step
    assert result.returncode == 0, result.stderr[-3000:]
    out_dir = only_run_dir(results)
    table = _steps(results)
    assert list(table.index) == ["burstbench (timerfd)", "Locust constant_throughput"]
    row = table.loc["burstbench (timerfd)"]
    n = STEP["requests"]
    assert (row["arrival"], row["processes"], row["rate"]) == ("exponential", 1, STEP["rate"])
    assert row["sent"] == row["ok"] == n and row["failed"] == 0 and bool(row["complete"])
    # The step's own run folder holds exactly the seeded schedule's n rows, all answered by nginx.
    step_run = out_dir / row["run"]
    rows = pd.read_csv(step_run / "requests.csv")
    assert sorted(rows["request_index"]) == list(range(n))
    assert (rows["status"] == 200).all()
    info = json.loads((step_run / "run.json").read_text())
    assert info["counts"]["consistent"] is True
    assert info["distribution"]["process"] == "exponential"
    assert info["dispatcher"]["mode"] == "timerfd" and info["clocks"]["stamped_at"] == "socket"


def test_the_wire_saw_every_request_and_pairs_it_with_its_row(one_step):
    """The packet capture and the rows agree on the count, request by request (by the index header)."""
    _, results = one_step
    row = _steps(results).loc["burstbench (timerfd)"]
    n = STEP["requests"]
    assert row["wire_requests"] == row["wire_matched"] == n
    assert row["rows_without_wire"] == 0 and row["wire_without_rows"] == 0
    assert row["dropped_packets"] == 0
    # The capture and the rows are on one clock: the median request reaches the wire after its slot
    # (50 us of slack for the clock conversion and the capture's timestamping). "Never early" for every
    # send is checked where it is exact, in tests/test_dispatch.py.
    assert row["wire_late_p50_ms"] >= -0.05
    for col in ("ks_wire", "ks_wire_p", "w1_wire_over_mean", "w1_wire_vs_sched", "cv_wire", "overhead_p50_ms"):
        assert math.isfinite(row[col]), col
    assert 0 <= row["ks_wire"] <= 1 and row["wire_per_s"] > 0


def test_metrics_are_computed_and_sane(one_step):
    _, results = one_step
    row = _steps(results).loc["burstbench (timerfd)"]
    for col in ("achieved_per_s", "lateness_p50_ms", "lateness_p99_ms", "lateness_max_ms", "ks_sent", "ks_sched",
                "w1_over_mean", "cv_sent", "cv_sched", "cpu_us_per_request"):
        assert math.isfinite(row[col]), col
    assert row["lateness_p50_ms"] <= row["lateness_p99_ms"] <= row["lateness_max_ms"]
    assert row["lateness_p50_ms"] >= 0  # a send never leaves before its slot
    assert 0 <= row["ks_sent"] <= 1 and 0 <= row["ks_sched"] <= 1
    assert row["w1_over_mean"] >= 0 and row["cpu_us_per_request"] > 0
    assert row["cv_intended"] == 1.0 and row["offered_per_s"] == STEP["rate"]
    assert row["achieved_per_s"] > 0 and row["scheduled_per_s"] > 0


def test_constant_throughput_comparison_is_recorded(one_step):
    _, results = one_step
    out_dir = only_run_dir(results)
    row = _steps(results).loc["Locust constant_throughput"]
    assert row["sent"] == row["ok"] == row["wire_requests"] == STEP["requests"]
    assert row["achieved_per_s"] > 0 and math.isfinite(row["ks_wire"])
    info = json.loads((out_dir / row["run"] / "run.json").read_text())
    assert info["wait_time"]["kind"] == "constant_throughput"
    assert info["wait_time"]["per_user_per_s"] == pytest.approx(STEP["rate"] / STEP["users"])
    assert info["counts"]["sent"] == info["counts"]["ok"] == STEP["requests"]
    md = (out_dir / "steps.md").read_text()
    assert "Locust constant_throughput" in md and "KS wire" in md and "W1/mean vs schedule" in md
    for png in ("wire_gaps.png", "wire_fidelity.png"):
        assert (out_dir / png).stat().st_size > 0, png


def test_nginx_is_stopped_afterwards(one_step):
    _, results = one_step
    info = json.loads((only_run_dir(results) / "bench.json").read_text())
    nginx = info["nginx"]
    assert nginx["stopped"] is True
    with pytest.raises(ProcessLookupError):
        os.kill(nginx["pid"], 0)
    port = int(nginx["url"].rsplit(":", 1)[1])
    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", port)) != 0


@pytest.mark.parametrize("flags, message", [
    (["--rates", "0"], "--rates must be a comma-separated list of rates in req/s in (0, 100000]"),
    (["--rates", "200", "--arrivals", "gamma"], "--arrivals must be a comma-separated list of exponential and gamma:<shape > 0>"),
    (["--rates", "200", "--arrivals", "gamma:-1"], "--arrivals must be a comma-separated list"),
    (["--rates", "200", "--processes", "1,0"], "--processes must be a comma-separated list of integers in [1, 64]"),
    (["--rates", "200", "--users", "2", "--processes", "4"], "--users must be at least the largest number of processes (4)"),
    (["--cases", "exponential@200x1"], "--cases must be a comma-separated list of arrival@rate"),
    (["--cases", "poisson@200"], "--cases must be a comma-separated list of arrival@rate"),
    (["--cases", "exponential@200", "--rates", "200"], "--cases and --rates are two ways"),
    (["--dispatchers", "timerfd,fast"], "--dispatchers must be a comma-separated list of dispatchers"),
    (["--peers", "k6"], "--peers must be a comma-separated list of peer tools"),
    (["--wire", "maybe"], "--wire must be auto, on or off"),
    (["--constant-throughput", "maybe"], "--constant-throughput must be on or off"),
    (["--nginx", "/nonexistent/nginx"], "nginx not found (/nonexistent/nginx): run `make nginx`"),
])
def test_bad_flags_stop_with_one_line(flags, message, tmp_path):
    result = bench(*flags, "--results-dir", str(tmp_path), timeout=60)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert not any(tmp_path.iterdir())  # nothing started, no results folder


def test_constant_throughput_user_needs_think_pacing(tmp_path):
    """Locust's own pacing under an arrival schedule would be neither: refused before any traffic."""
    cmd = [sys.executable, "-m", "locust", "-f", str(REPO_ROOT / "locustfiles" / "fixed_body.py"), "--headless",
           "--host", "http://127.0.0.1:9", "--results-dir", str(tmp_path), "--requests", "5",
           "ConstantThroughputUser"]
    result = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "burstbench: ConstantThroughputUser paces itself" in result.stderr
    assert not any(tmp_path.iterdir())  # stopped before the run folder was made


def test_the_docs_commands_are_valid(tmp_path):
    """Every bench-generator command in docs/generator.md parses into a plan (running them takes minutes)."""
    from burstbench.experiments.bench_generator import Plan, parse_args

    if NGINX is None:
        pytest.skip("nginx is not installed: `make nginx`")
    doc = (REPO_ROOT / "docs" / "generator.md").read_text()
    commands = [line[2:].split("#")[0].strip() for line in doc.splitlines() if line.startswith("$ ")]
    assert len(commands) >= 3
    for command in commands:
        if command.startswith("make bench-generator"):  # what make would run, without running it
            dry = subprocess.run(["make", "-n", *command.split()[1:]], cwd=REPO_ROOT, capture_output=True,
                                 text=True, timeout=60)
            assert dry.returncode == 0, dry.stderr
            joined = dry.stdout.replace("\\\n", " ")
            command = next(line for line in joined.splitlines() if "burstbench bench-generator" in line)
        args = command.split("burstbench bench-generator", 1)[1].split()
        plan = Plan.from_args(parse_args([*args, "--results-dir", str(tmp_path)]))
        assert plan.cases and plan.dispatchers, command
