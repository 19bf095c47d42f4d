"""The soak analysis on synthetic run folders with hand-computed answers (windows, RSS slope and its CI, both
ways of each verdict), the command's bad input, and one short real soak against the tiny model."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from burstbench.analysis import soak
from burstbench.analysis.runs import KNOWN_COLUMNS
from burstbench.experiments.soak import main as soak_main
from burstbench.telemetry_files import PROCESS_COLUMNS, summary_template
from conftest import REPO_ROOT, free_port

T0 = 1_800_000_000  # integer epoch: offsets from it are exact
HOUR = 3600.0
N = 360  # one request a minute for six hours
# Residuals orthogonal to [1, x] for x = 1..5 h: the OLS slope is exactly the line's, SSR = 10, Sxx = 10,
# so stderr = sqrt(SSR / (n - 2) / Sxx) = 1 / sqrt(3) and the 95 % half-width is t(0.975, 3) / sqrt(3).
RESIDUALS_MB = np.array([1.0, -2.0, 0.0, 2.0, -1.0])
T_975_3 = 3.182446305284263  # Student's t table, 3 degrees of freedom
HALF_WIDTH = T_975_3 / math.sqrt(3)


def write_rows(path: Path, failed=(), latency_ms=None) -> pd.DataFrame:
    """requests.csv: request i sent at T0 + 60 i s, latency 10 + (i % 60) ms (each hour: 10..69 ms)."""
    path.mkdir(parents=True, exist_ok=True)
    ok = np.array([0 if i in failed else 1 for i in range(N)])
    latency = 10.0 + np.arange(N) % 60 if latency_ms is None else np.asarray(latency_ms, dtype=float)
    rows = pd.DataFrame({c: "" for c in KNOWN_COLUMNS}, index=range(N))
    sent = T0 + 60.0 * np.arange(N)
    rows["request_index"], rows["user"] = range(N), 0
    rows["scheduled_epoch"] = rows["sent_epoch"] = sent
    rows["lateness_ms"] = 0.0
    rows["latency_ms"] = rows["corrected_latency_ms"] = latency
    rows["status"] = np.where(ok == 1, 200, 0)
    rows["ok"] = ok
    rows["failure_kind"] = [("timeout" if i % 2 else "http_503") if i in failed else "" for i in range(N)]
    rows.to_csv(path / "requests.csv", index=False)
    return rows


def write_processes(path: Path, slope_mb_per_h: float, residuals=RESIDUALS_MB) -> None:
    """The service at 0.5 h (warm-up: a wild value to be ignored), 1..5 h on the line, and at 6.2 h (after the
    last send at 5.98 h: ignored too); a load process at a constant 80 MB every half hour."""
    rows = [(T0 + 0.5 * HOUR, "service", 999, "bentoml", 5, 50.0, 5000.0, 5.0)]
    rows += [(T0 + x * HOUR, "service", 999, "bentoml", 5, 50.0, 400.0 + slope_mb_per_h * x + r, 5.0)
             for x, r in zip(range(1, 6), residuals)]
    rows += [(T0 + 6.2 * HOUR, "service", 999, "bentoml", 5, 50.0, 9999.0, 5.0)]
    rows += [(T0 + k * HOUR / 2, "load", 4242, "locust", 1, 20.0, 80.0, 5.0) for k in range(13)]
    pd.DataFrame(rows, columns=list(PROCESS_COLUMNS)).to_csv(path / "processes.csv", index=False)


def make_run(path: Path, slope_mb_per_h=20.0, residuals=RESIDUALS_MB, **rows) -> Path:
    write_rows(path, **rows)
    write_processes(path, slope_mb_per_h, residuals)
    info = summary_template(5.0)
    info["processes"].update(service={"pid": 999, "named_by": "pid", "status": "ok"}, load=[4242],
                             cpu_count=2, file="processes.csv")
    record = {"status": "complete", "scenario": "extreme", "pacing": "arrival", "users": 4, "requests_planned": N,
              "seed": 0, "endpoint": "/analyze-sentiment", "telemetry": info,
              "distribution": {"process": "gamma", "shape": 0.8, "mean_s": 60.0, "rate_per_s": 1 / 60,
                               "label": "gamma(a=0.8, mean=60.00s, cv=1.12)"}}
    (path / "run.json").write_text(json.dumps(record))
    return path


# ------------------------------------------------------------------------------------------- windows
def test_windows_count_every_row_once_with_exact_percentiles_and_failures_by_kind(tmp_path):
    run = make_run(tmp_path / "r", failed=(61, 62, 63))  # in the second hour
    table = soak.analyse(run, window_s=HOUR).table
    assert list(table["window"]) == [0, 1, 2, 3, 4, 5] and table["requests"].sum() == N
    assert list(table["requests"]) == [60] * 6 and list(table["failed"]) == [0, 3, 0, 0, 0, 0]
    assert table.loc[1, "failure_kinds"] == "http_503:1;timeout:2" and table.loc[0, "failure_kinds"] == ""
    # 10..69 ms: p50 = 39.5, p99 = 10 + 0.99 * 59 (linear interpolation)
    assert table.loc[0, "p50_ms"] == pytest.approx(39.5) and table.loc[0, "p99_ms"] == pytest.approx(68.41)
    assert table.loc[0, "throughput_rps"] == pytest.approx(60 / HOUR)
    assert table.loc[1, "throughput_rps"] == pytest.approx(57 / HOUR)
    # the last window spans 59 min of its 60 (the last send at 5 h 59 min): still full
    assert table.loc[5, "span_s"] == pytest.approx(HOUR - 60) and table["full"].all()
    # RSS per window from processes.csv: window 1 holds the service's sample at 1 h only
    assert table.loc[1, "service_rss_mb"] == pytest.approx(400 + 20 + 1)
    assert table.loc[2, "load_rss_mb"] == pytest.approx(80.0)


def test_a_short_last_window_is_partial_and_left_out_of_the_drift(tmp_path):
    run = make_run(tmp_path / "r")
    result = soak.analyse(run, window_s=2500)  # 21540 s of sends: 8 full windows and 1540 s of a ninth
    t = result.table
    assert len(t) == 9 and t["requests"].sum() == N and list(t["full"]) == [True] * 8 + [False]
    assert t.loc[8, "span_s"] == pytest.approx(1540)
    assert (result.drift.baseline_window, result.drift.last_window) == (1, 7)


def test_default_window_is_five_minutes_or_a_sixth_of_a_short_run():
    assert soak.default_window_s(3600) == 300 and soak.default_window_s(1800) == 300
    assert soak.default_window_s(1776) == 300 and soak.default_window_s(1500) == 250  # 29.6 min: still 30
    assert soak.default_window_s(600) == 100 and soak.default_window_s(40) == 10
    with pytest.raises(ValueError, match=r"--window-s must be a number of seconds >= 1 \(got 0\)"):
        soak.check_window(0)


# ------------------------------------------------------------------------------------------- leak verdict
def test_rss_slope_and_ci_are_exact_and_a_growth_above_the_threshold_is_a_leak(tmp_path):
    result = soak.analyse(make_run(tmp_path / "r", slope_mb_per_h=20.0), window_s=HOUR)
    service, load = result.growths
    assert service.process == "service" and service.samples == 5  # warm-up and post-run samples left out
    assert (service.first_mb, service.last_mb) == (421.0, 499.0)
    assert service.slope_mb_per_h == pytest.approx(20.0, abs=1e-9)
    assert (service.ci_low, service.ci_high) == pytest.approx((20 - HALF_WIDTH, 20 + HALF_WIDTH), abs=1e-9)
    assert service.leak is True and service.verdict == "grows 20.0 MB/h (CI 18.2..21.8); later half +19.5 MB/h"
    # the later half (3, 4, 5 h at 460, 482, 499 MB): (499 - 460) / 2
    assert service.late_slope_mb_per_h == pytest.approx(19.5, abs=1e-9)
    assert load.process == "load 4242" and load.samples == 10 and load.leak is False  # 1..5.5 h, every 0.5 h
    assert load.verdict == "no leak detected (+0.0 MB/h, CI 0.0..0.0 includes 0)"


def test_no_leak_when_the_ci_includes_zero_or_the_growth_is_below_the_threshold(tmp_path):
    noisy = soak.analyse(make_run(tmp_path / "a", slope_mb_per_h=1.0), window_s=HOUR).growths[0]
    assert (noisy.ci_low, noisy.ci_high) == pytest.approx((1 - HALF_WIDTH, 1 + HALF_WIDTH), abs=1e-9)
    assert noisy.leak is False and noisy.verdict == "no leak detected (+1.0 MB/h, CI -0.8..2.8 includes 0)"
    exact = soak.analyse(make_run(tmp_path / "b", slope_mb_per_h=5.0, residuals=np.zeros(5)), window_s=HOUR)
    slow = exact.growths[0]
    assert (slow.ci_low, slow.ci_high) == pytest.approx((5.0, 5.0), abs=1e-9)  # significant, but small
    assert slow.leak is False and slow.verdict == "no leak detected (+5.0 MB/h, CI 5.0..5.0, below 10 MB/h)"
    strict = soak.analyse(tmp_path / "b", window_s=HOUR, leak_threshold_mb_per_h=4).growths[0]
    assert strict.leak is True and strict.verdict == "grows 5.0 MB/h (CI 5.0..5.0); later half +5.0 MB/h"


def test_too_few_samples_are_not_judged():
    growth = soak.rss_growth([10.0, 20.0], [1.0, 2.0], process="service")
    assert growth.leak is None and math.isnan(growth.slope_mb_per_h)
    assert growth.verdict.startswith("not judged: 2 RSS samples after the warm-up")


# ------------------------------------------------------------------------------------------- drift verdict
BASE_MS = np.linspace(100.0, 200.0, 5000)  # p99 = 199 ms


def test_a_doubled_tail_is_drift_up_and_a_halved_one_drift_down():
    up = soak.p99_drift(BASE_MS, 2 * BASE_MS, windows_judged=(1, 5))
    assert up.drifted is True and up.difference_ms == pytest.approx(199.0)
    assert up.ci_low_ms > 150 and up.verdict.startswith("p99 drifted up: p99 199.0 ms (window 1) -> 398.0 ms (window 5)")
    assert up.mann_whitney_p < 1e-6
    down = soak.p99_drift(BASE_MS, BASE_MS / 2)
    assert down.ci_high_ms < -50 and down.drifted is True and down.verdict.startswith("p99 drifted down")


def test_the_same_latencies_or_a_change_within_the_threshold_is_no_drift():
    same = soak.p99_drift(BASE_MS, BASE_MS[::-1].copy())
    assert same.difference_ms == 0 and same.ci_low_ms <= 0 <= same.ci_high_ms
    assert same.drifted is False and same.verdict.startswith("no drift detected") and "includes 0" in same.verdict
    slower = soak.p99_drift(BASE_MS, 1.1 * BASE_MS)  # +19.9 ms: the CI excludes 0, but 10 % < 20 %
    assert slower.ci_low_ms > 0 and slower.drifted is False and "within 20 % of the baseline" in slower.verdict
    assert soak.p99_drift(BASE_MS, 1.1 * BASE_MS, threshold_share=0.05).drifted is True


def test_drift_of_a_run_folder_compares_the_first_full_window_after_warm_up_with_the_last(tmp_path):
    latency = np.where(np.arange(N) < 300, 10.0 + np.arange(N) % 60, 3 * (10.0 + np.arange(N) % 60))
    result = soak.analyse(make_run(tmp_path / "r", latency_ms=latency), window_s=HOUR)
    d = result.drift
    assert (d.baseline_window, d.last_window) == (1, 5)
    assert d.baseline_p99_ms == pytest.approx(68.41) and d.last_p99_ms == pytest.approx(3 * 68.41)
    assert d.drifted is True
    too_short = soak.analyse(tmp_path / "r", window_s=HOUR, warmup_windows=5).drift
    assert too_short.drifted is None and too_short.verdict.startswith("not judged: fewer than two full windows")


# ------------------------------------------------------------------------------------------- files and input
def test_report_writes_table_markdown_and_figure(tmp_path):
    run = make_run(tmp_path / "r")
    result, paths = soak.write_soak_report(run, window_s=HOUR)
    assert [p.name for p in paths] == ["soak.csv", "soak.md", "soak.png"]
    table = pd.read_csv(run / "soak.csv", keep_default_na=False)
    assert table["requests"].tolist() == result.table["requests"].tolist()
    assert paths[2].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = (run / "soak.md").read_text()
    assert "- **service** (bentoml): grows 20.0 MB/h (CI 18.2..21.8); later half +19.5 MB/h" in text and "## Windows" in text
    assert soak.verdict_lines(result)[0] == "service RSS: grows 20.0 MB/h (CI 18.2..21.8); later half +19.5 MB/h"


@pytest.mark.parametrize("args, message", [
    (["--minutes", "0"], "--minutes must be in (0, 10080] (got 0.0)"),
    (["--rate", "-2"], "--rate must be a number of requests/s > 0 (got -2.0)"),
    (["--report-only", "no/such/run"], "no/such/run: no such results folder"),
    (["--report-only", "no/such/run", "--warmup-windows", "-1"], "--warmup-windows must be an integer >= 0"),
    (["--minutes", "1", "--window-s", "0.5"], "--window-s must be a number of seconds >= 1 (got 0.5)"),
    (["--minutes", "1", "--drift-threshold", "-1"], "--drift-threshold must be a share in [0, 10) (got -1.0)"),
])
def test_bad_input_is_one_line_naming_the_value(args, message, capsys, tmp_path):
    if "--warmup-windows" in args:
        args = ["--report-only", str(make_run(tmp_path / "r")), *args[2:]]
    assert soak_main([*args, "--results-dir", str(tmp_path / "results")]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "results").exists()


# ------------------------------------------------------------------------------------------- a real soak
@pytest.mark.load
def test_short_real_soak_writes_the_report_from_its_own_rows_and_processes(tiny_model, tmp_path):
    env = {**os.environ, "BURSTBENCH_MAX_LENGTH": "32"}
    cmd = [sys.executable, "-m", "burstbench", "soak", "--minutes", "0.6", "--rate", "10", "--window-s", "10",
           "--metrics-every", "1", "--model", str(tiny_model), "--port", str(free_port()),
           "--results-dir", str(tmp_path)]
    out = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=240, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    (run_dir,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    assert run_dir.name.endswith("-soak-0.6min-10rps-extreme")
    for name in ("soak.md", "soak.csv", "soak.png", "processes.csv", "requests.csv"):
        assert (run_dir / name).is_file(), name
    rows = pd.read_csv(run_dir / "requests.csv")
    table = pd.read_csv(run_dir / "soak.csv", keep_default_na=False)
    assert len(rows) == 360 and table["requests"].sum() == len(rows) and table["ok"].sum() == rows["ok"].sum()
    duration_s = rows["sent_epoch"].max() - rows["sent_epoch"].min()
    assert len(table) == math.floor(duration_s / 10) + 1
    assert "ETA" in out.stderr  # the run's own progress lines
    # the RSS verdicts are fitted on processes.csv's samples after the 10 s warm-up, up to the last send
    procs = pd.read_csv(run_dir / "processes.csv")
    t_s = procs["epoch"] - rows["sent_epoch"].min()
    result = soak.analyse(run_dir, window_s=10)
    for growth in result.growths:
        role, pid = ("service", None) if growth.process == "service" else growth.process.split()
        mine = procs[(procs["role"] == role) & (t_s >= 10) & (t_s <= duration_s)
                     & ((procs["pid"] == int(pid)) if pid else True)]
        assert growth.samples == len(mine) >= 3 and growth.first_mb == mine["rss_mb"].iloc[0]
        assert growth.leak is not None and growth.verdict in out.stdout
    assert [g.process.split()[0] for g in result.growths] == ["service", "load"]
    in_window_1 = procs[(procs["role"] == "service") & (t_s >= 10) & (t_s < 20)]["rss_mb"].mean()
    assert table.loc[1, "service_rss_mb"] == pytest.approx(in_window_1, abs=1e-3)
    assert "latency: " in out.stdout and result.drift.baseline_window == 1
