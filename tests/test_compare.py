"""analysis.compare on synthetic run folders: exact tables, labels from differing facts, bootstrap deltas."""
from __future__ import annotations

import json

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from burstbench.analysis.compare import (baseline_deltas, compare_figure, comparison_table, describe_differences,
                              format_comparison, paper_layout)
from burstbench.analysis.runs import KNOWN_COLUMNS, load_run

PROCESSES = {
    "steady": {"process": "exponential", "shape": 1.0, "mean_s": 2.0, "cv": 1.0,
               "label": "exponential(mean=2.00s, cv=1.00)"},
    "moderate": {"process": "gamma", "shape": 1.2, "mean_s": 2.0, "cv": 0.913,
                 "label": "gamma(a=1.2, mean=2.00s, cv=0.91)"},
    "extreme": {"process": "gamma", "shape": 0.8, "mean_s": 2.0, "cv": 1.118,
                "label": "gamma(a=0.8, mean=2.00s, cv=1.12)"},
}


def lognormal_ms(seed: int, n: int, median_ms: float = 30.0, sigma: float = 0.4) -> np.ndarray:
    return np.random.default_rng(seed).lognormal(np.log(median_ms), sigma, n)


def write_run(path, latencies_ms, *, scenario="steady", variant="onnx-fp32", batching=True, ok=None,
              seed=0, gap_s=0.5, requests_planned=1000):
    """A results folder as the locustfile writes it: requests.csv with every known column, and run.json."""
    path.mkdir(parents=True)
    n = len(latencies_ms)
    ok = np.ones(n, dtype=int) if ok is None else np.asarray(ok)
    sent = 1_800_000_000 + np.arange(n) * gap_s
    rows = pd.DataFrame({c: "" for c in KNOWN_COLUMNS}, index=range(n))
    rows["request_index"] = range(n)
    rows["user"] = np.arange(n) % 4
    rows["scheduled_epoch"] = sent
    rows["sent_epoch"] = sent
    rows["lateness_ms"] = 0.0
    rows["latency_ms"] = latencies_ms
    rows["corrected_latency_ms"] = latencies_ms
    rows["status"] = np.where(ok == 1, 200, 503)
    rows["ok"] = ok
    rows["failure_kind"] = np.where(ok == 1, "", "http_503")
    rows.to_csv(path / "requests.csv", index=False)
    info = {
        "status": "complete", "scenario": scenario, "distribution": {**PROCESSES[scenario], "rate_per_s": 0.5},
        "pacing": "arrival", "users": 10, "requests_planned": requests_planned, "seed": seed,
        "target": {"model": "untrained-roberta-base", "untrained": True, "variant": variant, "device": "cpu",
                   "settings": {"variant": variant, "batching": batching, "max_batch_size": 32}},
    }
    (path / "run.json").write_text(json.dumps(info))
    return load_run(path)


def test_table_percentiles_equal_numpy_on_the_same_data(tmp_path):
    a_ms, b_ms = lognormal_ms(1, 500), lognormal_ms(2, 300, median_ms=60)
    runs = [write_run(tmp_path / "a", a_ms, scenario="steady"), write_run(tmp_path / "b", b_ms, scenario="extreme")]
    table = comparison_table(runs)
    assert list(table.index) == ["steady", "extreme"]
    for label, data in (("steady", a_ms), ("extreme", b_ms)):
        # the CSV round trip keeps full float precision
        expected = np.quantile(data, [0.5, 0.95, 0.99])
        np.testing.assert_allclose(table.loc[label, ["p50", "p95", "p99"]].to_numpy(float), expected, rtol=1e-12)
        np.testing.assert_allclose(table.loc[label, ["min", "avg", "max"]].to_numpy(float),
                                   [data.min(), data.mean(), data.max()], rtol=1e-12)
    assert table.loc["extreme", "requests"] == 300 and table.loc["extreme", "failed"] == 0
    assert table.loc["steady", "achieved_rate_per_s"] == pytest.approx(2.0)  # one request every 0.5 s


def test_doubled_latency_gives_speedup_half_and_ci_excluding_zero(tmp_path):
    base_ms = lognormal_ms(3, 800)
    runs = [write_run(tmp_path / "base", base_ms, variant="torch-fp32"),
            write_run(tmp_path / "slow", base_ms * 2, variant="onnx-fp32")]
    deltas = baseline_deltas(runs, baseline="torch-fp32", seed=0)
    assert list(deltas["quantile"]) == ["p50", "p95", "p99"]
    assert (deltas["run"] == "onnx-fp32").all() and (deltas["baseline"] == "torch-fp32").all()
    np.testing.assert_allclose(deltas["speedup"], 0.5, rtol=1e-12)
    true_diff = np.quantile(base_ms, [0.5, 0.95, 0.99])  # 2x - x
    np.testing.assert_allclose(deltas["diff_ms"], true_diff, rtol=1e-12)
    assert (deltas["ci_low_ms"] > 0).all(), "the CI of a doubled latency must exclude 0"
    assert ((deltas["ci_low_ms"] <= true_diff) & (true_diff <= deltas["ci_high_ms"])).all()
    assert (deltas["mannwhitney_p"] < 1e-6).all()
    assert (deltas["note"] == "").all()


def test_same_distribution_ci_contains_zero_and_shift_is_significant(tmp_path):
    base = write_run(tmp_path / "base", lognormal_ms(30, 600), seed=30)
    same = write_run(tmp_path / "same", lognormal_ms(31, 600), seed=31)
    shifted = write_run(tmp_path / "shift", lognormal_ms(32, 600, median_ms=33.0), seed=32)  # +10 % median
    deltas = baseline_deltas([base, same, shifted], baseline=base, seed=0)
    labels = describe_differences([base, same, shifted])["label"].tolist()
    assert labels == ["seed 30", "seed 31", "seed 32"]
    same_rows = deltas[deltas["run"] == "seed 31"]
    assert len(same_rows) == 3
    assert ((same_rows["ci_low_ms"] < 0) & (0 < same_rows["ci_high_ms"])).all()
    assert (same_rows["mannwhitney_p"] > 0.05).all()
    shifted_rows = deltas[deltas["run"] == "seed 32"]
    assert (shifted_rows["mannwhitney_p"] < 0.001).all()
    assert shifted_rows.loc[shifted_rows["quantile"] == "p50", "ci_low_ms"].iloc[0] > 0


def test_bootstrap_is_seeded_and_large_runs_are_subsampled_with_a_note(tmp_path):
    base = write_run(tmp_path / "base", lognormal_ms(20, 2500), variant="torch-fp32")
    run = write_run(tmp_path / "run", lognormal_ms(21, 600, median_ms=20), variant="onnx-fp32")
    first = baseline_deltas([base, run], 0, quantiles=(0.5,), n_resamples=500, seed=7)
    again = baseline_deltas([base, run], 0, quantiles=(0.5,), n_resamples=500, seed=7)
    pd.testing.assert_frame_equal(first, again)
    row = first.iloc[0]
    assert row["bootstrap_n_baseline"] == 2000 and row["n_baseline"] == 2500 and row["bootstrap_n_run"] == 600
    assert "subsample of 2000 of 2500 baseline requests" in row["note"]
    # the point estimate still comes from every request
    assert row["baseline_ms"] == pytest.approx(np.quantile(base.ok_rows["latency_ms"], 0.5), rel=1e-12)


def test_labels_come_only_from_differing_facts(tmp_path):
    data = lognormal_ms(4, 50)
    by_scenario = [write_run(tmp_path / s, data, scenario=s) for s in ("steady", "moderate", "extreme")]
    facts = describe_differences(by_scenario)
    assert facts["label"].tolist() == ["steady", "moderate", "extreme"]  # process follows scenario: not repeated
    assert facts["process"].tolist() == [PROCESSES[s]["label"] for s in ("steady", "moderate", "extreme")]

    setups = [write_run(tmp_path / "v1", data, variant="torch-fp32", batching=True),
              write_run(tmp_path / "v2", data, variant="onnx-fp32", batching=False)]
    labels = describe_differences(setups)["label"].tolist()
    assert labels == ["torch-fp32 / batching on", "onnx-fp32 / batching off"]
    assert not any("steady" in lab or "cpu" in lab for lab in labels)

    same = [write_run(tmp_path / "x" / "run-a", data), write_run(tmp_path / "x" / "run-b", data)]
    assert describe_differences(same)["label"].tolist() == ["run-a", "run-b"]

    # two identical setups among different ones: still unique labels
    mixed = [*same, write_run(tmp_path / "run-c", data, scenario="extreme")]
    labels = describe_differences(mixed)["label"].tolist()
    assert len(set(labels)) == 3 and labels[2] == "extreme" and "run-a" in labels[0]


def test_paper_layout_puts_scenario_in_the_columns(tmp_path):
    runs = []
    for k, variant in enumerate(("torch-fp32", "onnx-fp32")):
        for j, scenario in enumerate(("steady", "moderate", "extreme")):
            runs.append(write_run(tmp_path / f"{variant}-{scenario}",
                                  lognormal_ms(100 + 3 * k + j, 200, median_ms=45 if k == 0 else 27),
                                  scenario=scenario, variant=variant))
    table3 = paper_layout(runs)
    assert table3.columns.names == ["scenario", "stat"]
    assert list(table3.columns) == [(s, p) for s in ("steady", "moderate", "extreme") for p in ("p50", "p95", "p99")]
    assert list(table3.index) == ["torch-fp32", "onnx-fp32"]
    flat = comparison_table(runs)
    assert table3.loc["onnx-fp32", ("extreme", "p99")] == flat.loc["extreme / onnx-fp32", "p99"]
    table4 = paper_layout(runs, stats_shown=("min", "avg", "max"))
    assert list(table4.columns.get_level_values("stat")[:3]) == ["min", "avg", "max"]
    assert table4.loc["torch-fp32", ("steady", "avg")] == pytest.approx(
        runs[0].ok_rows["latency_ms"].mean(), rel=1e-12)
    with pytest.raises(ValueError, match="share one setup and scenario"):
        paper_layout([runs[0], write_run(tmp_path / "dup", lognormal_ms(1, 20), variant="torch-fp32")])


def test_run_without_ok_requests_gives_nan_and_a_note(tmp_path):
    base = write_run(tmp_path / "base", lognormal_ms(5, 100), variant="torch-fp32")
    dead = write_run(tmp_path / "dead", lognormal_ms(6, 20), variant="onnx-fp32", ok=np.zeros(20, dtype=int))
    table = comparison_table([base, dead])
    assert table.loc["onnx-fp32", ["p50", "p95", "p99", "min", "avg", "max"]].isna().all()
    assert table.loc["onnx-fp32", "failed"] == 20
    deltas = baseline_deltas([base, dead], baseline=base)
    assert len(deltas) == 3
    for col in ("run_ms", "diff_ms", "ci_low_ms", "ci_high_ms", "speedup", "mannwhitney_p"):
        assert deltas[col].isna().all(), col
    assert deltas["note"].str.contains("no ok requests in run dead").all()
    text = format_comparison(table, deltas)
    assert "n/a" in text and "no ok requests" in text
    # and the other way round: a dead baseline
    assert baseline_deltas([base, dead], baseline=dead)["speedup"].isna().all()


def test_bad_arguments_raise_value_error_naming_the_flag(tmp_path):
    runs = [write_run(tmp_path / "a", lognormal_ms(1, 10)), write_run(tmp_path / "b", lognormal_ms(2, 10))]
    with pytest.raises(ValueError, match="quantiles"):
        baseline_deltas(runs, 0, quantiles=(50,))
    with pytest.raises(ValueError, match="baseline"):
        baseline_deltas(runs, "nope")
    with pytest.raises(ValueError, match="baseline"):
        baseline_deltas(runs, 5)


def test_compare_figure_writes_png_and_closes_it(tmp_path):
    runs = [write_run(tmp_path / "a", lognormal_ms(7, 300), scenario="steady"),
            write_run(tmp_path / "b", lognormal_ms(8, 300, median_ms=60), scenario="extreme"),
            write_run(tmp_path / "c", lognormal_ms(9, 10), scenario="moderate", ok=np.zeros(10, dtype=int))]
    plt.close("all")
    out = compare_figure(runs, tmp_path / "compare.png")
    assert out == tmp_path / "compare.png"
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert plt.get_fignums() == []


def test_format_comparison_prints_one_decimal_and_the_ci(tmp_path):
    base_ms = lognormal_ms(3, 400)
    runs = [write_run(tmp_path / "base", base_ms, variant="torch-fp32"),
            write_run(tmp_path / "fast", base_ms / 2, variant="onnx-fp32")]
    table, deltas = comparison_table(runs), baseline_deltas(runs, 0, n_resamples=500)
    text = format_comparison(table, deltas)
    assert f"{table.loc['onnx-fp32', 'p50']:.1f}" in text
    assert f"[{deltas.loc[0, 'ci_low_ms']:+.1f}, {deltas.loc[0, 'ci_high_ms']:+.1f}]" in text
    assert "2.00" in text  # speed-up of halved latency
