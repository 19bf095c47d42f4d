"""analysis summary: exact percentiles from rows, and clear one-line errors for bad folders."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from burstbench.analysis.latency import run_facts, summarise
from burstbench.analysis.runs import RunError, load_run
from conftest import REPO_ROOT
from burstbench.locustfiles.recording import ROW_COLUMNS


def write_run(path, latencies_ms, ok=None, lateness_ms=0.0):
    path.mkdir()
    n = len(latencies_ms)
    ok = [1] * n if ok is None else ok
    sent = 1_700_000_000 + np.arange(n) * 0.5
    rows = pd.DataFrame({c: "" for c in ROW_COLUMNS}, index=range(n))
    rows["request_index"] = range(n)
    rows["scheduled_epoch"] = sent - lateness_ms / 1000
    rows["sent_epoch"] = sent
    rows["lateness_ms"] = lateness_ms
    rows["latency_ms"] = latencies_ms
    rows["corrected_latency_ms"] = np.asarray(latencies_ms) + lateness_ms
    rows["status"] = [200 if k else 503 for k in ok]
    rows["ok"] = ok
    rows["failure_kind"] = ["" if k else "http_503" for k in ok]
    rows["batch_size"] = [1 + (i % 3) for i in range(n)]
    rows.to_csv(path / "requests.csv", index=False)
    info = {"scenario": "steady", "pacing": "arrival", "users": 4,
            "distribution": {"label": "exponential(mean=0.50s, cv=1.00)", "rate_per_s": 2.0}}
    (path / "run.json").write_text(json.dumps(info))
    return path


def test_percentiles_are_exact_not_bucketed(tmp_path):
    run = load_run(write_run(tmp_path / "r", list(np.arange(1.0, 101.0))))
    table = summarise(run)
    service = table.loc["service"]
    # numpy's linear interpolation over 1..100 ms: p50 = 50.5, p95 = 95.05, p99 = 99.01.
    assert service["p50"] == pytest.approx(50.5)
    assert service["p95"] == pytest.approx(95.05)
    assert service["p99"] == pytest.approx(99.01)
    assert (service["min"], service["avg"], service["max"]) == (1.0, 50.5, 100.0)


def test_failures_are_counted_not_folded_into_latency(tmp_path):
    ok = [1] * 8 + [0] * 2
    latencies = [10.0] * 8 + [5000.0] * 2
    run = load_run(write_run(tmp_path / "r", latencies, ok=ok, lateness_ms=3.0))
    table = summarise(run)
    assert table.loc["service", "failed"] == 2 and table.loc["service", "ok"] == 8
    assert table.loc["service", "max"] == 10.0
    assert table.loc["schedule-corrected", "p50"] == pytest.approx(13.0)
    facts = run_facts(run)
    assert facts["failure_kinds"] == {"http_503": 2}
    assert facts["achieved_rate_per_s"] == pytest.approx(2.0)


def test_no_successful_request_says_so(tmp_path):
    run = load_run(write_run(tmp_path / "r", [5.0, 6.0], ok=[0, 0]))
    assert summarise(run).loc["service", ["p50", "p99"]].isna().all()


def test_summary_cli_prints_table_and_writes_csv_and_png(tmp_path):
    run_dir = write_run(tmp_path / "r", list(np.linspace(10, 30, 50)))
    out = subprocess.run([sys.executable, "-m", "burstbench.analysis", "summary", str(run_dir)], cwd=REPO_ROOT,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "p50" in out.stdout and "schedule-corrected" in out.stdout
    assert (run_dir / "summary.csv").is_file()
    assert (run_dir / "latency.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("damage, fragment", [
    ("missing-folder", "no such results folder"),
    ("no-run-json", "run.json: missing"),
    ("bad-run-json", "not valid JSON"),
    ("no-rows", "no rows"),
    ("missing-column", "missing columns"),
])
def test_bad_folders_get_one_clear_line(tmp_path, damage, fragment):
    run_dir = tmp_path / "r"
    if damage != "missing-folder":
        write_run(run_dir, [1.0, 2.0])
    if damage == "no-run-json":
        (run_dir / "run.json").unlink()
    elif damage == "bad-run-json":
        (run_dir / "run.json").write_text("{")
    elif damage == "no-rows":
        (run_dir / "requests.csv").write_text(",".join(ROW_COLUMNS) + "\n")
    elif damage == "missing-column":
        pd.read_csv(run_dir / "requests.csv").drop(columns=["latency_ms"]).to_csv(run_dir / "requests.csv")
    with pytest.raises(RunError, match=fragment):
        load_run(run_dir)
    out = subprocess.run([sys.executable, "-m", "burstbench.analysis", "summary", str(run_dir)], cwd=REPO_ROOT,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert fragment in out.stderr and "Traceback" not in out.stderr


def test_truncated_rows_file_is_reported_as_partial_not_zero(tmp_path):
    run_dir = write_run(tmp_path / "r", [10.0, 20.0, 30.0, 40.0])
    text = (run_dir / "requests.csv").read_text()
    (run_dir / "requests.csv").write_text(text[: text.rindex("\n", 0, len(text) - 1) + 12])  # cut the last row short
    run = load_run(run_dir)
    assert run.dropped_rows == 1 and run.partial
    assert len(run.rows) == 3
    assert summarise(run).loc["service", "max"] == 30.0


def test_unknown_column_is_named(tmp_path):
    run_dir = write_run(tmp_path / "r", [1.0, 2.0])
    rows = pd.read_csv(run_dir / "requests.csv")
    rows["latency_us"] = 1
    rows.to_csv(run_dir / "requests.csv", index=False)
    with pytest.raises(RunError, match=r"unknown columns \['latency_us'\]"):
        load_run(run_dir)


def test_rows_schema_matches_what_the_locustfiles_write(tmp_path):
    from burstbench.analysis.runs import KNOWN_COLUMNS
    from burstbench.locustfiles.recording import RowRecorder

    recorder = RowRecorder(tmp_path)
    recorder.close()
    assert tuple(pd.read_csv(tmp_path / "requests.csv").columns) == KNOWN_COLUMNS
