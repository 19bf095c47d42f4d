"""Inter-arrival fidelity on small synthetic run folders built from seeded draws."""
from __future__ import annotations

import json

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from burstbench.analysis.fidelity import (GapFit, declared_distribution, fidelity_table, fit_gaps, gap_figure, lateness_table,
                               scheduled_gaps_s, sent_gaps_s, verdict)
from burstbench.analysis.runs import KNOWN_COLUMNS, RunError, load_run
from burstbench.arrivals import Exponential, Gamma

START_EPOCH = 1_800_000_000.0
TRUE = Gamma(shape=0.8, mean=0.05)
SEED = 0  # with this seed the planted checks below land on the stated sides of alpha = 0.01


def write_run(path, sent_epoch, scheduled_epoch=None, declared=TRUE, pacing="arrival", think_s=None,
              latency_ms=None, start_epoch=START_EPOCH):
    """A results folder with requests.csv (exactly KNOWN_COLUMNS) and a run.json."""
    path.mkdir(parents=True, exist_ok=True)
    sent_epoch = np.asarray(sent_epoch, dtype=float)
    n = len(sent_epoch)
    scheduled_epoch = sent_epoch if scheduled_epoch is None else np.asarray(scheduled_epoch, dtype=float)
    latency_ms = np.full(n, 40.0) if latency_ms is None else np.asarray(latency_ms, dtype=float)
    lateness_ms = (sent_epoch - scheduled_epoch) * 1000
    rows = pd.DataFrame({
        "request_index": np.arange(n), "user": np.arange(n) % 10, "scheduled_epoch": scheduled_epoch,
        "sent_epoch": sent_epoch, "lateness_ms": lateness_ms, "latency_ms": latency_ms,
        "corrected_latency_ms": latency_ms + lateness_ms, "status": 200, "ok": 1, "failure_kind": "",
        "failure_text": "", "batch_size": 1, "text_index": np.arange(n), "text_chars": 50, "tokens": 12,
        "truncated": 0, "label": "neutral", "think_s": think_s if think_s is not None else np.nan,
        "worker": 0, "e2e_latency_ms": latency_ms + 0.2, "claim_late_ms": 0.0, "new_connection": 0,
    })
    for column in KNOWN_COLUMNS[len(rows.columns):]:  # the streaming columns: empty for a classifier's rows
        rows[column] = ""
    assert tuple(rows.columns) == KNOWN_COLUMNS
    rows.to_csv(path / "requests.csv", index=False, float_format="%.6f")
    info = {"status": "complete", "scenario": "synthetic", "pacing": pacing,
            "distribution": None if declared is None else declared.describe(),
            "schedule": {"duration_s": float(scheduled_epoch.max() - start_epoch), "start_epoch": start_epoch}
            if pacing == "arrival" and start_epoch is not None else None}
    (path / "run.json").write_text(json.dumps(info))
    return load_run(path)


def arrival_run(path, declared=TRUE, n=1000, lateness_max_ms=0.5):
    """Scheduled sends start + cumsum(Gamma(0.8, 0.05) draws), sent up to ``lateness_max_ms`` late."""
    rng = np.random.default_rng(SEED)
    scheduled = START_EPOCH + np.cumsum(TRUE.sample(n, rng))
    sent = scheduled + rng.uniform(0, lateness_max_ms / 1000, n)
    return write_run(path, sent, scheduled, declared=declared)


def test_verdict_fits_the_true_distribution(tmp_path):
    run = arrival_run(tmp_path / "true")
    table = fidelity_table(run, ad_max_n=0)
    assert table.loc["scheduled", "ks_pvalue"] >= 0.01
    assert table.loc["scheduled", "fits"] == True  # noqa: E712  (a numpy bool in the table)
    text = verdict(run, table=table)
    assert text.startswith(f"The scheduled arrivals fit the declared {TRUE}")
    assert "n = 1000" in text
    assert "WARNING" not in text and "NOT" not in text


@pytest.mark.parametrize("wrong", [Exponential(mean=0.05), Gamma(shape=3.0, mean=0.05)], ids=str)
def test_verdict_flips_when_run_json_declares_the_wrong_distribution(tmp_path, wrong):
    run = arrival_run(tmp_path / "wrong", declared=wrong)
    table = fidelity_table(run, ad_max_n=0)
    assert table.loc["scheduled", "ks_pvalue"] < 0.01
    assert table.loc["sent", "ks_pvalue"] < 0.01
    text = verdict(run, table=table)
    assert text.startswith(f"WARNING: the scheduled arrivals do NOT fit the declared {wrong}")
    assert "realised (sent) arrivals do NOT fit it either" in text
    assert "could not keep the schedule" not in text  # the schedule is to blame, not the generator


def test_anderson_darling_agrees_with_ks_on_the_planted_cases(tmp_path):
    gaps_s = TRUE.sample(1000, np.random.default_rng(SEED))
    right = fit_gaps(gaps_s, TRUE, "scheduled")
    wrong = fit_gaps(gaps_s, Exponential(mean=0.05), "scheduled")
    assert right.ad_pvalue >= 0.01
    assert wrong.ad_pvalue < 0.01 and wrong.ad_statistic > right.ad_statistic
    assert wrong.wasserstein_over_mean > right.wasserstein_over_mean
    assert right.wasserstein_over_mean < 0.1


def test_anderson_darling_is_skipped_above_its_size_limit():
    gaps_s = Exponential(mean=1.0).sample(200, np.random.default_rng(SEED))
    fit = fit_gaps(gaps_s, Exponential(mean=1.0), "sent", ad_max_n=100)
    assert fit.ad_statistic is None and fit.ad_pvalue is None
    assert np.isfinite(fit.ks_pvalue)


def test_empirical_moments_are_numpys_with_ddof_1():
    gaps_s = TRUE.sample(300, np.random.default_rng(SEED))
    fit = fit_gaps(gaps_s, TRUE, "scheduled", ad_max_n=0)
    assert fit.n == 300
    assert fit.mean_s == pytest.approx(np.mean(gaps_s), rel=1e-12)
    assert fit.var_s2 == pytest.approx(np.var(gaps_s, ddof=1), rel=1e-12)
    assert fit.var_s2 != pytest.approx(np.var(gaps_s, ddof=0), rel=1e-6)
    assert fit.cv == pytest.approx(np.std(gaps_s, ddof=1) / np.mean(gaps_s), rel=1e-12)
    assert (fit.theoretical_mean_s, fit.theoretical_var_s2) == pytest.approx((0.05, 0.05**2 / 0.8))


def test_too_few_gaps_give_nan_statistics_not_zeros():
    fit = fit_gaps([0.1, 0.2, 0.05], TRUE, "sent")
    assert isinstance(fit, GapFit)
    assert fit.n == 3 and fit.fits is None
    for value in (fit.ks_statistic, fit.ks_pvalue, fit.ad_statistic, fit.ad_pvalue, fit.wasserstein_over_mean):
        assert np.isnan(value)
    assert fit.mean_s == pytest.approx(np.mean([0.1, 0.2, 0.05]))


def test_too_few_requests_give_a_verdict_not_a_crash(tmp_path):
    run = arrival_run(tmp_path / "tiny", n=5)
    text = verdict(run)
    assert "Too few scheduled arrivals" in text and "n = 5" in text


def test_scheduled_gaps_include_the_first_gap_from_the_start_epoch(tmp_path):
    gaps_s = TRUE.sample(50, np.random.default_rng(SEED))
    scheduled = START_EPOCH + np.cumsum(gaps_s)
    order = np.random.default_rng(1).permutation(50)  # rows finish out of order; gaps are by scheduled time
    run = write_run(tmp_path / "a", scheduled[order] + 0.001, scheduled[order])
    got = scheduled_gaps_s(run)
    assert len(got) == 50
    np.testing.assert_allclose(got, gaps_s, atol=2e-6)  # the CSV keeps epochs to the microsecond
    assert len(sent_gaps_s(run)) == 49
    assert np.all(sent_gaps_s(run) >= 0)


def test_scheduled_gaps_without_a_start_epoch_are_n_minus_1(tmp_path):
    scheduled = START_EPOCH + np.cumsum(TRUE.sample(50, np.random.default_rng(SEED)))
    run = write_run(tmp_path / "a", scheduled, start_epoch=None)
    assert len(scheduled_gaps_s(run)) == 49


def test_think_pacing_uses_the_drawn_think_times_and_explains_the_closed_loop(tmp_path):
    rng = np.random.default_rng(SEED)
    think_s = TRUE.sample(400, rng)
    latency_ms = rng.uniform(30, 60, 400)  # sent gap = think + response: larger than declared by design
    sent = START_EPOCH + np.cumsum(think_s + latency_ms / 1000)
    run = write_run(tmp_path / "think", sent, pacing="think", think_s=think_s, latency_ms=latency_ms)
    np.testing.assert_allclose(scheduled_gaps_s(run), think_s, atol=2e-6)
    table = fidelity_table(run, ad_max_n=0)
    assert table.loc["scheduled", "fits"] == True  # noqa: E712
    assert table.loc["sent", "fits"] == False  # noqa: E712
    assert table.loc["sent", "mean_s"] > 1.5 * TRUE.mean
    text = verdict(run, table=table)
    assert text.startswith("The drawn think times fit")
    assert "closed loop" in text and "not expected to fit" in text
    assert "WARNING" not in text


def test_a_generator_that_falls_behind_is_flagged(tmp_path):
    """One sender, 30 ms per request, against 50 ms mean bursty gaps: the schedule is kept, the sends are not."""
    scheduled = START_EPOCH + np.cumsum(TRUE.sample(1000, np.random.default_rng(SEED)))
    sent = scheduled.copy()
    for i in range(1, len(sent)):
        sent[i] = max(scheduled[i], sent[i - 1] + 0.030)
    run = write_run(tmp_path / "late", sent, scheduled)
    text = verdict(run)
    assert text.startswith("The scheduled arrivals fit")
    assert "WARNING: the realised (sent) arrivals do NOT fit" in text
    late = lateness_table(run)
    assert late.loc["lateness", "max_ms"] == pytest.approx(np.max((sent - scheduled) * 1000), abs=0.01)
    assert late.loc["lateness", "p99_ms"] == pytest.approx(np.quantile((sent - scheduled) * 1000, 0.99), abs=0.01)
    assert late.loc["lateness", "max_ms"] > 30


def test_declared_distribution_round_trips_and_errors_name_run_json(tmp_path):
    assert declared_distribution(arrival_run(tmp_path / "ok", n=10)) == TRUE
    assert declared_distribution(arrival_run(tmp_path / "exp", declared=Exponential(mean=2.0), n=10)) == Exponential(2.0)
    run = arrival_run(tmp_path / "none", declared=None, n=10)
    with pytest.raises(RunError, match="run.json.*distribution"):
        declared_distribution(run)
    info = json.loads((tmp_path / "ok" / "run.json").read_text())
    info["distribution"] = {**info["distribution"], "shape": -1}
    (tmp_path / "ok" / "run.json").write_text(json.dumps(info))
    with pytest.raises(RunError, match="run.json.*shape"):
        declared_distribution(load_run(tmp_path / "ok"))


def test_gap_figure_writes_a_png_and_closes_it(tmp_path):
    gaps_s = TRUE.sample(300, np.random.default_rng(SEED))
    out = gap_figure(gaps_s, TRUE, "synthetic gamma", tmp_path / "gaps.png")
    assert out == tmp_path / "gaps.png"
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert plt.get_fignums() == []
