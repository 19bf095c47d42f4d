"""Trace replay: arrival times read from a file, optionally rescaled, replayed exactly."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from burstbench.analysis.fidelity import verdict
from burstbench.analysis.runs import load_run
from burstbench.analysis.summary import summary
from burstbench.analysis.trace_fit import write_trace_fit
from burstbench.arrivals import Gamma, rng_for
from burstbench.arrivals.traces import Trace
from conftest import only_run_dir, run_locust


def _write(path, column, values):
    pd.DataFrame({column: values, "Model": "x"}).to_csv(path, index=False)
    return path


def test_seconds_are_sorted_offset_and_rescaled(tmp_path):
    path = _write(tmp_path / "t.csv", "Timestamp", [105.0, 100.0, 101.0, 103.0, 103.0])
    trace = Trace.load(path)  # the column is matched without regard to case, as BurstGPT spells it
    assert trace.column == "Timestamp" and trace.was_sorted
    np.testing.assert_array_equal(trace.offsets_s, [0, 1, 3, 3, 5])
    assert trace.describe()["trace"]["zero_gaps"] == 1
    scaled = Trace.load(path, mean=0.25)  # mean gap 5/4 s -> 0.25 s
    assert scaled.scale == pytest.approx(0.2)
    np.testing.assert_allclose(scaled.offsets_s, [0, 0.2, 0.6, 0.6, 1.0])
    np.testing.assert_allclose(scaled.schedule(3).offsets_s, [0, 0.2, 0.6])


def test_date_times_are_read_as_seconds(tmp_path):
    path = _write(tmp_path / "t.csv", "timestamp",
                  ["2024-01-01T00:00:00Z", "2024-01-01T00:00:01.5Z", "2024-01-01T00:00:04Z"])
    np.testing.assert_allclose(Trace.load(path).offsets_s, [0, 1.5, 4.0])


def test_best_fit_gamma_recovers_a_known_shape(tmp_path):
    gaps = Gamma(shape=0.6, mean=0.5).sample(5000, rng_for(1, "schedule"))
    trace = Trace.load(_write(tmp_path / "g.csv", "timestamp", np.cumsum(gaps)))
    fit = trace.fitted_gamma
    assert fit.shape == pytest.approx(0.6, abs=0.03) and fit.mean == pytest.approx(gaps[1:].mean(), rel=1e-3)
    _, text, out = write_trace_fit(trace.path, out=tmp_path / "fit")
    best = pd.read_csv(out / "trace-fit.csv").iloc[0]  # the ranking: the gamma first, as the trace's own fit
    assert best["process"] == "gamma" and json.loads(best["params"])["shape"] == pytest.approx(fit.shape, rel=1e-6)
    assert f"| gamma " in text and f"| shape {fit.shape:.3g}, mean {fit.mean:.3g} s " in text
    assert f"$ burstbench run --arrival gamma --shape {fit.shape:.3g} --rate {1 / trace.mean:.3g}" in text
    assert (out / "trace-fit.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("content, column, message", [
    (None, "timestamp", "no such file"),
    ({"time": [1, 2, 3]}, "timestamp", "--trace-column 'timestamp' is not a column of"),
    ({"timestamp": [1, 2]}, "timestamp", "at least 3 are needed"),
    ({"timestamp": [1, "soon", 3]}, "timestamp", "'soon' is neither a number of seconds nor a date-time"),
    ({"timestamp": [7, 7, 7]}, "timestamp", "all timestamps are equal"),
])
def test_bad_traces_are_refused_with_the_reason(tmp_path, content, column, message):
    path = tmp_path / "bad.csv"
    if content is not None:
        pd.DataFrame(content).to_csv(path, index=False)
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Trace.load(path, column)


@pytest.mark.load
@pytest.mark.parametrize("processes", [None, "2"])
def test_replay_reproduces_the_trace(server, tmp_path, processes):
    """Irregular timestamps (with a burst and a tie) replayed at half the speed: every send is due exactly then."""
    stamps = np.array([0.0, 0.05, 0.06, 0.061, 0.4, 0.4, 0.9, 1.0, 1.02, 1.5, 2.2, 2.25, 2.26, 3.0, 3.1, 3.4])
    stamps = np.concatenate([stamps, stamps + 3.5]) + 1_700_000_000.0  # epoch seconds, as traces carry them
    path = _write(tmp_path / "trace.csv", "timestamp", stamps)
    mean = 2 * np.diff(stamps).mean()
    flags = ["--trace", str(path), "--mean", f"{mean:.17g}", "-u", "8", "-r", "8"]
    if processes:
        flags += ["--processes", processes]
    proc = run_locust(server.url, tmp_path / "results", *flags)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_dir = only_run_dir(tmp_path / "results")
    assert run_dir.name.endswith("trace-trace")
    info = json.loads((run_dir / "run.json").read_text())
    rows = pd.read_csv(run_dir / "requests.csv").sort_values("request_index")
    assert len(rows) == info["counts"]["ok"] == len(stamps)
    assert info["distribution"]["process"] == "trace" and info["distribution"]["trace"]["scale"] == pytest.approx(2)
    offsets = rows["scheduled_epoch"].to_numpy() - info["schedule"]["start_epoch"]
    np.testing.assert_allclose(offsets, 2 * (stamps - stamps[0]), atol=2e-6, rtol=0)
    # The analysis reads a trace run like any other; fidelity is judged against the best-fitting gamma.
    assert "trace(trace.csv, 32 timestamps" in summary(run_dir)
    assert "best-fit gamma" in verdict(load_run(run_dir))


def test_replay_refuses_more_requests_than_timestamps(server, tmp_path):
    path = _write(tmp_path / "trace.csv", "timestamp", [0, 1, 2, 3])
    proc = run_locust(server.url, tmp_path / "results", "--trace", str(path), "--requests", "5", timeout=120)
    assert proc.returncode != 0
    assert "--requests must be in [1, 4] for --trace" in proc.stderr
    assert not (tmp_path / "results").exists()
