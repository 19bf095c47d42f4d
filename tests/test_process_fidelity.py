"""Fidelity of the non-renewal processes (stages, mmpp), of FromDistribution, and of concurrency pacing,
on small synthetic run folders built from seeded draws (``write_run`` from test_fidelity)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from burstbench.analysis.fidelity import (NO_PROCESS, RunError, declared_distribution, declared_process,
                                          fidelity_table, verdict)
from burstbench.analysis.process_fidelity import correlation_time_s, idc_windows_s
from burstbench.analysis.report import FIDELITY_TITLE, report
from burstbench.analysis.runs import load_run
from burstbench.arrivals import MMPP, Exponential, FromDistribution, Gamma, RateProfile, Stages

from test_fidelity import START_EPOCH, write_run

PNG = b"\x89PNG\r\n\x1a\n"
STAGES = Stages(Gamma(shape=0.8, mean=1.0), RateProfile(((20, 5, 50), (20, 20, 20))))  # ramp, then hold
STAGES_N = 950  # the profile's expected requests
STAGES_SEED = 1  # seed 0's right schedule is a 1-in-800 draw: counts vs the profile p = 0.0012
BURSTS = MMPP(rates=(40.0, 2.0), dwell_s=(1.0, 5.0))
BURSTS_N = 3000
LOGNORMAL = FromDistribution("lognorm", {"s": 1.0}, mean=0.05)


def arrival_run(path, gaps_s, declared, seed=0):
    """Scheduled at start + cumsum(gaps), each sent up to 0.5 ms late."""
    scheduled = START_EPOCH + np.cumsum(gaps_s)
    sent = scheduled + np.random.default_rng(seed + 100).uniform(0, 0.0005, len(scheduled))
    return write_run(path, sent, scheduled, declared=declared)


def behind(scheduled, per_request_s=0.030):
    """One sender needing ``per_request_s`` per request: sends that cannot keep a fast schedule."""
    sent = scheduled.copy()
    for i in range(1, len(sent)):
        sent[i] = max(scheduled[i], sent[i - 1] + per_request_s)
    return sent


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("process_fidelity")
    stationary = Gamma(shape=0.8, mean=STAGES.mean)  # the profile's mean rate, no profile
    return {
        "stages": arrival_run(root / "stages", STAGES.sample(STAGES_N, np.random.default_rng(STAGES_SEED)), STAGES),
        "stages_ignored": arrival_run(root / "stages_ignored",
                                      stationary.sample(STAGES_N, np.random.default_rng(STAGES_SEED)), STAGES),
        "mmpp": arrival_run(root / "mmpp", BURSTS.sample(BURSTS_N, np.random.default_rng(0)), BURSTS),
        "mmpp_poisson": arrival_run(root / "mmpp_poisson",
                                    Exponential(mean=BURSTS.mean).sample(BURSTS_N, np.random.default_rng(0)), BURSTS),
        "lognorm": arrival_run(root / "lognorm", LOGNORMAL.sample(1000, np.random.default_rng(0)), LOGNORMAL),
        "lognorm_mismatched": arrival_run(root / "lognorm_mismatched", LOGNORMAL.sample(1000, np.random.default_rng(0)),
                                          FromDistribution("lognorm", {"s": 0.5}, mean=0.05)),
        "concurrency": write_run(root / "concurrency", START_EPOCH + np.cumsum(
            np.random.default_rng(0).uniform(0.03, 0.05, 300)), declared=None, pacing="concurrency"),
    }


def test_declared_process_rebuilds_each_kind_and_names_run_json(runs, tmp_path):
    assert declared_distribution is declared_process
    assert declared_process(runs["stages"]) == STAGES
    assert declared_process(runs["mmpp"]) == BURSTS
    assert declared_process(runs["lognorm"]) == LOGNORMAL
    info = json.loads((runs["mmpp"].path / "run.json").read_text())
    del info["distribution"]["dwell_s"]
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "requests.csv").write_text((runs["mmpp"].path / "requests.csv").read_text())
    (tmp_path / "bad" / "run.json").write_text(json.dumps(info))
    with pytest.raises(RunError, match=r"run.json.*invalid 'distribution'.*dwell_s"):
        declared_process(load_run(tmp_path / "bad"))


def test_stages_schedule_that_follows_the_profile_passes_time_rescaling(runs):
    table = fidelity_table(runs["stages"], ad_max_n=0)
    assert list(table.index) == ["scheduled", "sent"]
    assert table["test"].str.startswith("time-rescaled gaps vs unit-mean base").all()
    for which in ("scheduled", "sent"):
        row = table.loc[which]
        assert row["n"] == STAGES_N and row["theoretical_mean_s"] == 1.0  # the unit-mean base
        assert row["ks_pvalue"] >= 0.005 and row["counts_pvalue"] >= 0.005 and row["fits"] == True  # noqa: E712
        assert row["wasserstein_over_mean"] < 0.15
    text = verdict(runs["stages"], table=table)
    assert text.startswith(f"The scheduled arrivals fit the declared {STAGES} (time-rescaling KS p = ")
    assert "realised (sent) arrivals fit it too" in text and "WARNING" not in text


def test_stages_schedule_that_ignores_the_profile_fails(runs):
    table = fidelity_table(runs["stages_ignored"], ad_max_n=0)
    for which in ("scheduled", "sent"):
        assert table.loc[which, "fits"] == False  # noqa: E712
        assert table.loc[which, "counts_pvalue"] < 1e-6  # where in time the requests went: far from the profile
    text = verdict(runs["stages_ignored"], table=table)
    assert text.startswith(f"WARNING: the scheduled arrivals do NOT fit the declared {STAGES}")
    assert "they were not drawn from the process run.json declares" in text


def test_stages_generator_that_falls_behind_is_flagged_on_the_sent_times(tmp_path):
    scheduled = START_EPOCH + np.cumsum(STAGES.sample(STAGES_N, np.random.default_rng(STAGES_SEED)))
    run = write_run(tmp_path / "behind", behind(scheduled), scheduled, declared=STAGES)
    table = fidelity_table(run, ad_max_n=0)
    assert table.loc["scheduled", "fits"] == True and table.loc["sent", "fits"] == False  # noqa: E712
    text = verdict(run, table=table)
    assert text.startswith("The scheduled arrivals fit")
    assert f"WARNING: the realised (sent) arrivals do NOT fit the declared {STAGES}" in text
    assert "the generator could not keep the schedule" in text


def _judged(table, which):
    rows = table[table.index == which]
    return rows[rows["fits"].notna()]


def test_mmpp_theory_lies_inside_the_cis_of_the_right_process(runs):
    table = fidelity_table(runs["mmpp"])
    for which in ("scheduled", "sent"):
        judged = _judged(table, which)
        idc = judged[judged["statistic"] == "IDC"]
        assert list(idc["window_s"]) == idc_windows_s(BURSTS) == [0.5, 1.0, 4.0, 16.0]
        assert (idc["n"] >= 20).all()  # each window only where the run spans 20 of them
        np.testing.assert_allclose(idc["theory"], [BURSTS.idc(w) for w in idc["window_s"]])
        cv = judged[judged["statistic"] == "gap CV"].iloc[0]
        assert cv["theory"] == pytest.approx(BURSTS.cv)
        assert judged["fits"].astype(bool).all(), judged[["statistic", "window_s", "realised", "ci_low", "ci_high"]]
        assert ((judged["ci_low"] <= judged["realised"]) & (judged["realised"] <= judged["ci_high"])).all()
        np.testing.assert_allclose(judged["ci_level"], 1 - 0.01 / len(judged))  # Bonferroni over the set
        ks = table[(table.index == which) & (table["statistic"] == "gap KS (indicative)")].iloc[0]
        assert ks["fits"] is None and 0 <= ks["pvalue"] <= 1  # shown, never judged: the gaps are correlated
    text = verdict(runs["mmpp"], table=table)
    assert text.startswith(f"The scheduled arrivals fit the declared {BURSTS} (theory inside every 99.8% CI")
    assert "realised (sent) arrivals fit it too" in text and "WARNING" not in text


def test_mmpp_flags_a_poisson_process_at_the_same_mean_rate(runs):
    table = fidelity_table(runs["mmpp_poisson"])
    for which in ("scheduled", "sent"):
        judged = _judged(table, which).set_index("statistic", append=True)
        assert not judged.xs("IDC", level="statistic")["fits"].astype(bool).any()  # counts near Poisson: IDC ~ 1
        assert judged.xs("gap CV", level="statistic")["fits"].iloc[0] == False  # noqa: E712
        assert judged.xs("mean gap (s)", level="statistic")["fits"].iloc[0] == True  # noqa: E712 (same rate)
    text = verdict(runs["mmpp_poisson"], table=table)
    assert text.startswith(f"WARNING: the scheduled arrivals do NOT fit the declared {BURSTS} (gap CV 1.0")
    assert "theory 2.34" in text and "realised (sent) arrivals do NOT fit it either" in text


def test_mmpp_bootstrap_gives_the_same_table_twice(runs):
    first, second = fidelity_table(runs["mmpp"], seed=3), fidelity_table(runs["mmpp"], seed=3)
    assert first.equals(second)
    assert not first.equals(fidelity_table(runs["mmpp"], seed=4))
    assert correlation_time_s(BURSTS) == pytest.approx(1 / 1.2)  # 1 / (1/1 s + 1/5 s): sets the bootstrap blocks


def test_from_distribution_is_judged_against_its_own_law(runs):
    table = fidelity_table(runs["lognorm"])  # with Anderson-Darling: the fully specified lognormal
    for which in ("scheduled", "sent"):
        row = table.loc[which]
        assert row["fits"] == True and row["ad_pvalue"] >= 0.01  # noqa: E712
        assert row["theoretical_cv"] == pytest.approx(LOGNORMAL.cv) and row["wasserstein_over_mean"] < 0.15
    assert verdict(runs["lognorm"], table=table).startswith(f"The scheduled arrivals fit the declared {LOGNORMAL}")
    wrong = fidelity_table(runs["lognorm_mismatched"], ad_max_n=0)
    assert (wrong["fits"] == False).all() and (wrong["ks_pvalue"] < 1e-10).all()  # noqa: E712
    assert verdict(runs["lognorm_mismatched"], table=wrong).startswith(
        "WARNING: the scheduled arrivals do NOT fit the declared lognorm(s=0.5, mean=0.05s")


@pytest.mark.parametrize("process", [STAGES, BURSTS], ids=["stages", "mmpp"])
def test_too_few_arrivals_give_a_verdict_not_a_crash(tmp_path, process):
    run = arrival_run(tmp_path / "tiny", process.sample(5, np.random.default_rng(0)), process)
    text = verdict(run)
    assert text.startswith(f"Too few scheduled arrivals to test against the declared {process} (n = 5, need 8)")
    assert "Too few sent gaps to test (n = " in text


def test_a_rate_profile_under_think_pacing_is_not_tested_rather_than_failed(tmp_path):
    think_s = Gamma(shape=0.8, mean=0.05).sample(100, np.random.default_rng(0))
    sent = START_EPOCH + np.cumsum(think_s + 0.04)
    run = write_run(tmp_path / "think", sent, pacing="think", think_s=think_s, declared=STAGES)
    table = fidelity_table(run, ad_max_n=0)
    assert table["fits"].isna().all() and table["test"].str.startswith("not tested").all()
    assert verdict(run, table=table).startswith(f"The declared {STAGES} is not tested: a rate profile needs arrival")


def _section(md: str, title: str) -> str:
    return md.split(f"## {title}", 1)[1].split("\n## ", 1)[0]


@pytest.mark.parametrize("name, figures", [
    ("stages", {"gaps_scheduled.png", "gaps_sent.png", "rate.png"}),
    ("stages_ignored", {"gaps_scheduled.png", "gaps_sent.png", "rate.png"}),
    ("mmpp", {"gaps_scheduled.png", "gaps_sent.png", "idc.png"}),
    ("mmpp_poisson", {"gaps_scheduled.png", "gaps_sent.png", "idc.png"}),
    ("lognorm", {"gaps_scheduled.png", "gaps_sent.png"}),
])
def test_report_builds_with_the_process_figures(runs, name, figures):
    run = runs[name]
    out = report(run.path)
    folder = out["folder"]
    for png in figures | {"latency.png", "timeline.png"}:
        assert (folder / png).read_bytes()[:8] == PNG, png
    md = out["markdown"].read_text()
    section = _section(md, FIDELITY_TITLE)
    for png in figures:
        assert f"![{png[:-4]}]({png})" in section
    assert "**fidelity**" in section and (folder / "fidelity.csv").is_file()
    assert _section(md, "Verdict").strip().startswith(verdict(run)[:60])
    warned = name in ("stages_ignored", "mmpp_poisson")
    assert out["verdict"].startswith("WARNING") == warned
    process = declared_process(run)
    overview = _section(md, "Run")
    assert f"| declared rate (req/s) | {process.rate:.4g}" in overview
    assert f"| declared mean gap (s) | {process.mean:.4g}" in overview
    assert out["html"].read_text().count("data:image/png;base64,") == len(figures) + 2


def test_concurrency_pacing_has_no_declared_process_to_test(runs):
    run = runs["concurrency"]
    assert fidelity_table(run).empty
    assert verdict(run) == NO_PROCESS
    out = report(run.path)
    md = out["markdown"].read_text()
    assert _section(md, FIDELITY_TITLE).strip() == NO_PROCESS
    assert out["verdict"].startswith(NO_PROCESS)
    assert "| declared process      | none (concurrency pacing)" in _section(md, "Run")
    assert not (out["folder"] / "gaps_sent.png").exists()


def test_an_unknown_pacing_is_still_refused(runs, tmp_path):
    info = json.loads((runs["lognorm"].path / "run.json").read_text())
    (tmp_path / "odd").mkdir()
    (tmp_path / "odd" / "requests.csv").write_text((runs["lognorm"].path / "requests.csv").read_text())
    (tmp_path / "odd" / "run.json").write_text(json.dumps({**info, "pacing": "bursts"}))
    with pytest.raises(RunError, match="'pacing' must be 'arrival', 'think' or 'concurrency'"):
        verdict(load_run(tmp_path / "odd"))
