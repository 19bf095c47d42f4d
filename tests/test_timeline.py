"""Timeline (the paper's Figure 4) on small synthetic run folders built from seeded draws."""
from __future__ import annotations

import json

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from burstbench.analysis.runs import KNOWN_COLUMNS, RunError, load_run
from burstbench.analysis.timeline import default_window_s, events, timeline, timeline_figure
from burstbench.arrivals import Gamma

START_EPOCH = 1_800_000_000.0


def write_run(path, offsets_s, ok=None, latency_ms=None, run_events=None):
    """A results folder whose sends are at START_EPOCH + offsets_s (the first one at offset 0)."""
    path.mkdir(parents=True, exist_ok=True)
    offsets_s = np.asarray(offsets_s, dtype=float)
    n = len(offsets_s)
    ok = np.ones(n, dtype=int) if ok is None else np.asarray(ok, dtype=int)
    latency_ms = np.full(n, 40.0) if latency_ms is None else np.asarray(latency_ms, dtype=float)
    sent = START_EPOCH + offsets_s
    rows = pd.DataFrame({
        "request_index": np.arange(n), "user": 0, "scheduled_epoch": sent, "sent_epoch": sent, "lateness_ms": 0.0,
        "latency_ms": latency_ms, "corrected_latency_ms": latency_ms, "status": np.where(ok == 1, 200, 503),
        "ok": ok, "failure_kind": np.where(ok == 1, "", "http_503"), "failure_text": "", "batch_size": 1,
        "text_index": np.arange(n), "text_chars": 50, "tokens": 12, "truncated": 0, "label": "neutral",
        "think_s": np.nan, "worker": 0, "e2e_latency_ms": latency_ms, "claim_late_ms": 0.0, "new_connection": 0,
    })
    for column in KNOWN_COLUMNS[len(rows.columns):]:  # the streaming columns: empty for a classifier's rows
        rows[column] = ""
    assert tuple(rows.columns) == KNOWN_COLUMNS
    rows.to_csv(path / "requests.csv", index=False, float_format="%.6f")
    info = {"status": "complete", "pacing": "arrival", "distribution": Gamma(0.8, 0.1).describe(),
            "schedule": {"duration_s": float(offsets_s.max()), "start_epoch": START_EPOCH}}
    if run_events is not None:
        info["events"] = run_events
    (path / "run.json").write_text(json.dumps(info))
    return load_run(path)


def seeded_offsets_s(n=600, mean_s=0.1, seed=0):
    offsets_s = np.cumsum(Gamma(0.8, mean_s).sample(n, np.random.default_rng(seed)))
    return offsets_s - offsets_s[0]


def test_counts_per_window_sum_to_the_rows(tmp_path):
    run = write_run(tmp_path / "r", seeded_offsets_s())
    for window_s in (None, 1.0, 7.0):
        table = timeline(run, window_s)
        assert table["count"].sum() == len(run.rows)
        assert table["failures"].sum() == 0
        np.testing.assert_allclose(table["requests_per_s"] * table.attrs["window_s"], table["count"])


def test_default_window_gives_30_to_60_windows_of_at_least_1_s(tmp_path):
    for span_s in (45.0, 130.07, 600.0, 3599.0, 86_400.0):
        window_s = default_window_s(span_s)
        assert window_s >= 1.0
        assert 30 <= np.floor(span_s / window_s) + 1 <= 60, (span_s, window_s)
    assert default_window_s(12.0) == 1.0
    run = write_run(tmp_path / "r", seeded_offsets_s())  # spans about 60 s
    table = timeline(run)
    assert 30 <= len(table) <= 60
    assert table.attrs["window_s"] >= 1.0


def test_a_planted_failure_burst_shows_in_its_window(tmp_path):
    offsets_s = seeded_offsets_s()
    ok = np.where((offsets_s >= 20.0) & (offsets_s < 25.0), 0, 1)
    run = write_run(tmp_path / "r", offsets_s, ok=ok)
    table = timeline(run, window_s=5.0)
    burst = int((ok == 0).sum())
    assert burst > 10
    assert table.loc[20.0, "failures"] == burst
    assert table.loc[20.0, "failures_per_s"] == pytest.approx(burst / 5.0)
    assert table["failures"].drop(index=20.0).eq(0).all()
    assert np.isnan(table.loc[20.0, "p50_ms"]) and np.isnan(table.loc[20.0, "p95_ms"])  # no ok request there


def test_latency_percentiles_are_exact_over_ok_requests_of_the_window(tmp_path):
    latency_ms = np.random.default_rng(3).lognormal(4.0, 0.5, 600)
    offsets_s = seeded_offsets_s()
    ok = np.where(np.arange(600) % 7 == 0, 0, 1)
    run = write_run(tmp_path / "r", offsets_s, ok=ok, latency_ms=latency_ms)
    table = timeline(run, window_s=10.0)
    in_first = (offsets_s < 10.0) & (ok == 1)
    assert table.loc[0.0, "p50_ms"] == pytest.approx(np.quantile(latency_ms[in_first], 0.50), abs=1e-3)
    assert table.loc[0.0, "p95_ms"] == pytest.approx(np.quantile(latency_ms[in_first], 0.95), abs=1e-3)


def test_empty_window_has_nan_latency_and_zero_count(tmp_path):
    offsets_s = np.concatenate([np.linspace(0, 9.9, 50), np.linspace(20, 29.9, 50)])  # nothing sent in [10, 20)
    run = write_run(tmp_path / "r", offsets_s)
    table = timeline(run, window_s=5.0)
    assert list(table.index) == [0.0, 5.0, 10.0, 15.0, 20.0, 25.0]
    for start in (10.0, 15.0):
        assert table.loc[start, "count"] == 0 and table.loc[start, "requests_per_s"] == 0
        assert np.isnan(table.loc[start, "p50_ms"]) and np.isnan(table.loc[start, "p95_ms"])
    assert table.loc[0.0, "p50_ms"] == pytest.approx(40.0)


def test_bad_window_is_refused(tmp_path):
    run = write_run(tmp_path / "r", seeded_offsets_s(n=20))
    for bad in (0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="window_s"):
            timeline(run, bad)


def test_events_are_offsets_from_the_first_send(tmp_path):
    planted = [{"epoch": START_EPOCH + 31.5, "label": "kill worker"}, {"epoch": START_EPOCH + 12.25, "label": "hang"}]
    run = write_run(tmp_path / "r", seeded_offsets_s(), run_events=planted)
    marks = events(run)
    assert list(marks["label"]) == ["hang", "kill worker"]
    np.testing.assert_allclose(marks["offset_s"], [12.25, 31.5], atol=1e-5)
    assert events(write_run(tmp_path / "none", seeded_offsets_s(n=20))).empty


def test_malformed_events_name_run_json(tmp_path):
    # Loading validates run.json against its schema, so the bad event stops the load itself.
    with pytest.raises(RunError, match=r"run\.json.*events\[0\]"):
        events(write_run(tmp_path / "r", seeded_offsets_s(n=20), run_events=[{"label": "no epoch"}]))


def test_timeline_figure_writes_a_png_and_closes_it(tmp_path):
    offsets_s = seeded_offsets_s()
    ok = np.where((offsets_s >= 20.0) & (offsets_s < 25.0), 0, 1)
    run = write_run(tmp_path / "r", offsets_s, ok=ok,
                    run_events=[{"epoch": START_EPOCH + 20.0, "label": "kill server"}])
    out = timeline_figure(run, tmp_path / "timeline.png")
    assert out == tmp_path / "timeline.png"
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert plt.get_fignums() == []
