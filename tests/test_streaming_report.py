"""Streaming analysis on synthetic run folders with known TTFT and ITL: exact tables, SLO parsing, goodput,
the report's streaming section, compare on TTFT/TPOT/goodput, and the sweep's goodput criterion."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from burstbench.analysis.__main__ import main as analysis_main
from burstbench.analysis.compare_streaming import goodput_deltas, newcombe_difference_ci, streaming_deltas, streaming_table
from burstbench.analysis.compare_report import write_comparison
from burstbench.analysis.report import report
from burstbench.analysis.runs import KNOWN_COLUMNS, load_run
from burstbench.analysis.slo import goodput, goodput_line, meets_slos, parse_slos
from burstbench.analysis.streaming import load_itl, measures_table, streaming_timeline, tokens_table
from burstbench.analysis.sweep import goodput_capacity, steps_table, write_sweep_report

T0 = 1_800_000_000  # an integer epoch: offsets from it are exact in floating point
LATE_S = 0.005  # every request sent 5 ms after its slot
PNG = b"\x89PNG\r\n\x1a\n"


def write_stream_run(path, ttft_ms, gaps_ms, ok=None, *, tail_ms=5.0, failed_latency_ms=2000.0, gap_s=1.0,
                     slo=None, seed=0, variant="onnx-fp32", itl=True):
    """A streaming results folder: request i sent at T0 + i * gap_s (LATE_S after its slot), first token after
    ttft_ms[i], then chunks gaps_ms[i] apart, the last byte tail_ms later; one token per chunk (usage)."""
    path.mkdir(parents=True)
    n = len(ttft_ms)
    ok = np.ones(n, dtype=int) if ok is None else np.asarray(ok)
    rows = pd.DataFrame({c: "" for c in KNOWN_COLUMNS}, index=range(n))
    sent = T0 + np.arange(n) * gap_s
    latency = np.array([np.nan_to_num(t) + sum(g) + tail_ms for t, g in zip(ttft_ms, gaps_ms)], dtype=float)
    latency[ok == 0] = failed_latency_ms
    tokens = np.array([len(g) + 1 for g in gaps_ms])
    rows["request_index"] = range(n)
    rows["user"] = 0
    rows["scheduled_epoch"] = sent - LATE_S
    rows["sent_epoch"] = sent
    rows["lateness_ms"] = LATE_S * 1000
    rows["latency_ms"] = latency
    rows["corrected_latency_ms"] = latency + LATE_S * 1000
    rows["status"] = 200
    rows["ok"] = ok
    rows["failure_kind"] = np.where(ok == 1, "", "stream-broken")
    rows["ttft_ms"] = ttft_ms
    rows["corrected_ttft_ms"] = np.asarray(ttft_ms, dtype=float) + LATE_S * 1000
    rows["tpot_ms"] = [sum(g) / len(g) if len(g) else "" for g in gaps_ms]
    rows["input_tokens"] = 32
    rows["output_tokens"] = np.where(ok == 1, tokens, "")
    rows["token_source"] = np.where(ok == 1, "usage", "chunks")
    rows["finish_reason"] = np.where(ok == 1, "length", "")
    rows["requested_output_tokens"] = 5
    rows.to_csv(path / "requests.csv", index=False)
    if itl:
        pd.DataFrame([{"request_index": i, "token": k + 1, "itl_ms": g} for i, gs in enumerate(gaps_ms)
                      for k, g in enumerate(gs)], columns=["request_index", "token", "itl_ms"]).to_csv(
            path / "itl.csv", index=False)
    info = {
        "status": "complete", "scenario": "steady", "pacing": "arrival", "users": 4, "requests_planned": n,
        "seed": seed,
        "distribution": {"process": "exponential", "shape": 1.0, "mean_s": gap_s, "cv": 1.0, "rate_per_s": 1 / gap_s,
                         "label": f"exponential(mean={gap_s:.2f}s, cv=1.00)"},
        "target": {"model": "untrained-gpt2", "untrained": True, "variant": variant, "device": "cpu"},
        "streaming": {"stream": True, "protocol": "chat", "itl_file": "itl.csv",
                      "token_counts": {"usage": int(ok.sum()), "tokenizer": 0, "chunks": int(n - ok.sum())},
                      "tokenizer": None, "input_tokens": "fixed(32)", "output_tokens": "fixed(5)"},
        "slo": slo,
    }
    (path / "run.json").write_text(json.dumps(info))
    return load_run(path)


def known_run(path, **kw):
    """Eleven requests. 0..9 ok with TTFT 100, 200, ..., 1000 ms; request 0 streams one token (no gap, no
    TPOT), request i >= 1 five tokens with gaps 10, 10, 10, 10 * (i + 1) ms. Request 10 broke off."""
    ttft = [100.0 * (i + 1) for i in range(10)] + [50.0]
    gaps = [[]] + [[10.0, 10.0, 10.0, 10.0 * (i + 1)] for i in range(1, 10)] + [[5.0]]
    return write_stream_run(path, ttft, gaps, ok=[1] * 10 + [0], **kw)


# -- exact tables ------------------------------------------------------------------------------
def test_streaming_table_has_the_exact_percentiles_of_the_known_values(tmp_path):
    run = known_run(tmp_path / "run")
    table = measures_table(run, load_itl(run), n_resamples=200)
    ttft = table.loc["TTFT"]
    assert ttft["n"] == 10  # the broken stream's TTFT is not in the distribution
    assert (ttft["p50"], ttft["p90"], ttft["p95"], ttft["p99"]) == pytest.approx((550, 910, 955, 991))
    assert (ttft["mean"], ttft["max"]) == pytest.approx((550, 1000))
    assert table.loc["TTFT (schedule-corrected)", "p50"] == pytest.approx(555)
    # ITL: 27 gaps of 10 ms and one each of 20..100 ms (the failed request's 5 ms gap left out)
    itl = table.loc["ITL (every gap)"]
    assert itl["n"] == 36
    assert (itl["p50"], itl["p90"], itl["p99"], itl["max"], itl["mean"]) == pytest.approx((10, 65, 96.5, 100, 22.5))
    tpot = table.loc["TPOT"]  # request 0 has none; (30 + 10 (i + 1)) / 4 for i = 1..9
    assert tpot["n"] == 9 and tpot["p50"] == pytest.approx(22.5) and tpot["max"] == pytest.approx(32.5)
    assert table.loc["end-to-end latency", "max"] == pytest.approx(1000 + 130 + 5)
    assert ttft["p50_ci_low"] <= 550 <= ttft["p50_ci_high"] and ttft["p99_ci_high"] <= 1000


def test_tokens_per_second_per_request_and_for_the_whole_run(tmp_path):
    run = known_run(tmp_path / "run")
    table = tokens_table(run)["value"]
    # the run lasts from the first slot (T0 - 5 ms) to the broken stream's end (T0 + 10 s + 2 s)
    assert table["run duration (s)"] == pytest.approx(12.005)
    assert table["output tokens (ok requests)"] == 46  # 1 + 9 * 5
    assert table["whole run (output tokens/s)"] == pytest.approx(46 / 12.005)
    assert table["requests with a token count"] == 10
    # request 0: 1 token in 105 ms
    assert table["per request p10 (tokens/s)"] < table["per request p90 (tokens/s)"]
    assert 1000 * 5 / (1000 + 130 + 5) <= table["per request p10 (tokens/s)"]


def test_tokens_over_time_count_each_chunk_where_it_arrived(tmp_path):
    run = known_run(tmp_path / "run")
    table = streaming_timeline(run, load_itl(run))
    assert table.attrs["window_s"] == 1.0 and len(table) == 11
    tokens = table["output_tokens_per_s"]
    # request 8 starts at 8 s + 900 ms and its last chunk (90 ms gap) lands at 9.02 s: one token in window 9
    assert tokens.loc[8.0] == pytest.approx(4) and tokens.loc[9.0] == pytest.approx(1)
    assert tokens.loc[0.0] == pytest.approx(1) and tokens.loc[10.0] == pytest.approx(5)
    assert tokens.sum() == pytest.approx(46)
    assert table.loc[0.0, "ttft_p50_ms"] == 100 and table.loc[9.0, "ttft_p50_ms"] == 1000
    assert np.isnan(table.loc[10.0, "ttft_p50_ms"])  # only the failed request was sent then


# -- SLOs and goodput ------------------------------------------------------------------------
def test_slos_parse_from_flags_and_config():
    assert parse_slos(["ttft_ms=500", "tpot_ms=50", "itl_p99_ms=80"]) == {"ttft_ms": 500, "tpot_ms": 50,
                                                                         "itl_p99_ms": 80}
    assert parse_slos({"latency_ms": 2000, "itl_p100_ms": 90}) == {"latency_ms": 2000, "itl_max_ms": 90}
    assert parse_slos(None) == {} and parse_slos([]) == {}


@pytest.mark.parametrize("items, names", [
    (["ttfft_ms=500"], ["--slo ttfft_ms=500", "unknown metric 'ttfft_ms'", "itl_p<NN>_ms with NN in 1..100"]),
    (["itl_p0_ms=5"], ["--slo itl_p0_ms=5", "unknown metric"]),
    (["itl_p101_ms=5"], ["--slo itl_p101_ms=5", "unknown metric"]),
    (["ttft_ms=-1"], ["--slo ttft_ms=-1", "> 0"]),
    (["ttft_ms=inf"], ["--slo ttft_ms=inf", "finite"]),
    (["ttft_ms=fast"], ["--slo ttft_ms=fast", "not a number"]),
    (["ttft_ms"], ["--slo ttft_ms", "metric=value"]),
    (["ttft_ms=500", "ttft_ms=400"], ["--slo ttft_ms=400", "twice"]),
    (["itl_max_ms=5", "itl_p100_ms=6"], ["--slo itl_p100_ms=6", "twice"]),
    ({"ttft_ms": True}, ["ttft_ms=True", "not a number"]),
])
def test_bad_slos_are_one_line_naming_the_item(items, names):
    with pytest.raises(ValueError) as err:
        parse_slos(items)
    message = str(err.value)
    assert "\n" not in message
    for name in names:
        assert name in message


def test_goodput_counts_every_request_and_gives_exact_cis(tmp_path):
    run = known_run(tmp_path / "run")
    itl = load_itl(run)
    slos = parse_slos(["ttft_ms=500", "itl_max_ms=80"])
    met = meets_slos(run.rows, itl, slos)
    # TTFT <= 500: requests 0..4 (request 0, one token, meets the ITL bound trivially); 10 failed
    assert met.tolist() == [True] * 5 + [False] * 6
    result = goodput(run.rows, itl, slos)
    assert (result["good"], result["requests"], result["ok"]) == (5, 11, 10)
    assert result["fraction"] == pytest.approx(5 / 11)
    # Clopper-Pearson from the beta quantiles
    low, high = stats.beta.ppf(0.025, 5, 7), stats.beta.ppf(0.975, 6, 6)
    assert result["fraction_ci"] == pytest.approx((low, high), rel=1e-9)
    assert result["duration_s"] == pytest.approx(12.005)
    assert result["rate_per_s"] == pytest.approx(5 / 12.005)
    assert result["rate_ci_per_s"] == pytest.approx((low * 11 / 12.005, high * 11 / 12.005))
    # which SLO bites: TTFT met by 5 of the 10 ok requests, the ITL bound by 8 (0 trivially, 1..7)
    assert result["per_slo"]["ttft_ms"]["met"] == 5 and result["per_slo"]["itl_max_ms"]["met"] == 8
    assert meets_slos(run.rows, itl, {"tpot_ms": 20}).sum() == 5  # request 0 (no TPOT) and 12.5..20 ms
    assert meets_slos(run.rows, itl, {"itl_p50_ms": 10}).sum() == 10  # each request's median gap is 10 ms
    line = goodput_line(result)
    assert "\n" not in line and "5 of 11" in line and "ttft_ms <= 500 ms" in line


def test_a_streaming_slo_on_a_run_without_streaming_is_refused(tmp_path):
    run = write_stream_run(tmp_path / "plain", [np.nan] * 3, [[], [], []], itl=False)
    with pytest.raises(ValueError, match="ttft_ms: the run has no streaming measures"):
        goodput(run.rows, None, {"ttft_ms": 500})
    assert goodput(run.rows, None, {"latency_ms": 100})["good"] == 3


# -- the report -------------------------------------------------------------------------------
def test_report_has_the_streaming_section_goodput_and_figures(tmp_path):
    run = known_run(tmp_path / "run", slo={"ttft_ms": 500.0, "itl_max_ms": 80.0})
    files = report(run.path)
    md = files["markdown"].read_text()
    section = md.split("## Streaming (TTFT, ITL, TPOT, tokens/s)", 1)[1].split("\n## ", 1)[0]
    assert "**streaming**" in section and "**goodput**" in section and "**finish_reasons**" in section
    assert "Goodput 0.4545 of all 11 requests (5 good" in section
    shown = pd.read_csv(files["folder"] / "streaming.csv", index_col="measure")
    assert shown.loc["TTFT", "p50"] == 550 and shown.loc["ITL (every gap)", "p99"] == pytest.approx(96.5)
    for name in ("ttft.png", "itl.png", "streaming_timeline.png"):
        assert (files["folder"] / name).read_bytes()[:8] == PNG, name
        assert f"]({name})" in section
    for name in ("streaming.csv", "goodput.csv", "tokens.csv", "token_sources.csv", "streaming_timeline.csv"):
        assert (files["folder"] / name).is_file(), name
    page = files["html"].read_text()
    assert "<h2>Streaming (TTFT, ITL, TPOT, tokens/s)</h2>" in page
    assert page.count("data:image/png;base64,") == 7  # latency, 2 gaps, timeline + ttft, itl, streaming timeline
    # --slo replaces run.json's SLOs
    report(run.path, parse_slos(["ttft_ms=1000"]))
    assert "Goodput 0.9091 of all 11 requests (10 good" in files["markdown"].read_text()


def test_report_cli_refuses_a_bad_slo_in_one_line(tmp_path, capsys):
    run = known_run(tmp_path / "run")
    assert analysis_main(["report", str(run.path), "--slo", "ttfft_ms=500"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "--slo ttfft_ms=500: unknown metric 'ttfft_ms'" in err
    assert not (run.path / "report").exists()


def test_report_without_slos_says_how_to_give_them(tmp_path):
    run = known_run(tmp_path / "run")
    md = report(run.path)["markdown"].read_text()
    assert "No SLOs given" in md and "**goodput**" not in md


# -- compare ----------------------------------------------------------------------------------
def lognormal_run(path, seed, n=300, ttft_scale=1.0, variant="onnx-fp32", slo=None):
    rng = np.random.default_rng(seed)
    ttft = rng.lognormal(np.log(200), 0.3, n) * ttft_scale
    gaps = [list(rng.lognormal(np.log(20), 0.2, 4)) for _ in range(n)]
    return write_stream_run(path, ttft, gaps, gap_s=0.1, variant=variant, slo=slo)  # runs told apart by variant


def test_compare_on_ttft_tpot_itl_and_goodput(tmp_path):
    base = lognormal_run(tmp_path / "base", 1, variant="torch-fp32", slo={"ttft_ms": 250.0})
    slow = lognormal_run(tmp_path / "slow", 2, ttft_scale=2.0)
    table = streaming_table([base, slow])
    assert table.loc["torch-fp32", "ttft_p50_ms"] == pytest.approx(
        np.quantile(pd.to_numeric(base.rows["ttft_ms"]), 0.5))
    deltas = streaming_deltas([base, slow], 0, n_resamples=500)
    assert list(pd.unique(deltas["measure"])) == ["ttft_ms", "tpot_ms", "itl_ms"]
    ttft = deltas[deltas["measure"] == "ttft_ms"]
    assert (ttft["ci_low_ms"] > 0).all() and (ttft["mannwhitney_p"] < 1e-6).all()
    tpot = deltas[deltas["measure"] == "tpot_ms"]
    assert (tpot["mannwhitney_p"] > 0.001).all()  # same token timing law in both runs

    good_base = int((pd.to_numeric(base.rows["ttft_ms"]) <= 250).sum())
    good_slow = int((pd.to_numeric(slow.rows["ttft_ms"]) <= 250).sum())
    assert good_slow < good_base
    g = goodput_deltas([base, slow], 0, {"ttft_ms": 250.0}).iloc[0]
    assert (g["good_baseline"], g["good_run"], g["n_run"]) == (good_base, good_slow, 300)
    assert g["diff"] == pytest.approx((good_slow - good_base) / 300)
    assert g["diff_ci_low"] < g["diff"] < g["diff_ci_high"] < 0 and g["fisher_p"] < 1e-6

    text, written = write_comparison([base.path, slow.path], tmp_path / "cmp")  # SLOs from the baseline's run.json
    assert "TTFT, TPOT, ITL against baseline torch-fp32" in text
    assert "goodput (share of all requests meeting ttft_ms <= 250 ms)" in text
    assert {"streaming.csv", "streaming_deltas.csv", "goodput_deltas.csv"} <= {p.name for p in written}
    text, _ = write_comparison([base.path, slow.path], tmp_path / "cmp2", slos={"ttft_ms": 10_000.0})
    assert "1.0000 (300/300)" in text


def test_newcombe_interval_matches_the_published_example():
    # Newcombe (1998), Statistics in Medicine 17:873, Table II example (a): 56/70 - 48/80, method 10
    low, high = newcombe_difference_ci(56, 70, 48, 80)
    assert (low, high) == pytest.approx((0.0524, 0.3339), abs=5e-5)


# -- the sweep's goodput criterion --------------------------------------------------------------
def test_goodput_capacity_is_the_highest_step_at_or_above_the_target():
    base = {"batching": "off", "process": "steady", "kind": "step", "valid": True, "rho": 0.5, "goodput_ci_low": 0.9,
            "good_per_s": 1.0}
    steps = pd.DataFrame([{**base, **r} for r in [
        {"offered_rps": 1.0, "goodput": 1.0}, {"offered_rps": 2.0, "goodput": 0.995},
        {"offered_rps": 3.0, "goodput": 0.95}, {"offered_rps": 4.0, "goodput": 0.999},  # a lucky pass above
        {"offered_rps": 5.0, "goodput": 0.2, "kind": "probe"}]])
    cap = goodput_capacity(steps, 0.99, {"ttft_ms": 500.0}).iloc[0]
    assert cap["capacity_rps"] == 2.0 and cap["first_failing_rps"] == 3.0 and cap["goodput_at_capacity"] == 0.995
    assert cap["slos"] == "ttft_ms <= 500 ms"


def test_sweep_report_finds_the_goodput_capacity_from_the_step_runs(tmp_path):
    sweep_dir = tmp_path / "sweep"
    steps = []
    for k, (rate, slow) in enumerate([(2.0, 0), (4.0, 1), (8.0, 20)], start=1):
        n = 200
        ttft = np.full(n, 100.0)
        ttft[:slow] = 900.0  # over the 500 ms bound
        write_stream_run(sweep_dir / f"step{k}", ttft, [[10.0, 10.0]] * n, gap_s=1 / rate, seed=k)
        steps.append({"batching": "off", "process": "steady", "kind": "step", "step": k, "rate_per_s": rate,
                      "users": 8, "shape": 1.0, "ca2": None, "run_dir": f"step{k}"})
    plan = {"min_requests": 100, "min_duration_s": 10.0, "slo_p99_ms": 5000.0, "max_failed_share": 0.05,
            "saturation_ratio": 0.9, "stop_p99_multiple": 4.0, "variant": "gpt2", "model_name": "untrained",
            "processes": [{"name": "steady", "kind": "exponential", "shape": 1.0, "ca2": None, "label": "poisson"}]}
    (sweep_dir / "sweep.json").write_text(json.dumps({"name": "sweep", "plan": plan, "steps": steps}))
    table = steps_table(sweep_dir, slos={"ttft_ms": 500.0})
    assert table["goodput"].tolist() == pytest.approx([1.0, 0.995, 0.9])
    assert table["meets_goodput"].tolist() == [True, True, False]
    no_slo = steps_table(sweep_dir)
    assert "goodput" not in no_slo.columns  # today's table when no SLO is given
    text, files = write_sweep_report(sweep_dir, slos={"ttft_ms": 500.0}, goodput_target=0.99)
    capacity = pd.read_csv(sweep_dir / "goodput_capacity.csv").iloc[0]
    assert capacity["capacity_rps"] == 4.0 and capacity["first_failing_rps"] == 8.0
    assert "capacity at goodput >= 0.99 (ttft_ms <= 500 ms)" in text
    # a stricter target: only the first step passes
    write_sweep_report(sweep_dir, slos={"ttft_ms": 500.0}, goodput_target=0.999)
    assert pd.read_csv(sweep_dir / "goodput_capacity.csv").iloc[0]["capacity_rps"] == 2.0


@pytest.mark.parametrize("slos", [["ttft_ms=500", "itl_max_ms=80"], ["tpot_ms=20"], ["itl_p50_ms=10"],
                                  ["itl_p90_ms=25", "latency_ms=700"], ["itl_p99_ms=39"]])
def test_the_load_process_judges_each_request_as_the_analysis_does(tmp_path, slos):
    """burstbench.slo.request_meets (the closing line, one row at a time) against meets_slos (the report)."""
    from burstbench.slo import request_meets

    run = known_run(tmp_path / "run")
    itl = load_itl(run)
    parsed = parse_slos(slos)
    gaps = itl.groupby("request_index")["itl_ms"].apply(list).to_dict()
    one_at_a_time = [request_meets({**row, "ok": int(row["ok"])}, gaps.get(row["request_index"]), parsed)
                     for row in run.rows.to_dict("records")]
    assert one_at_a_time == meets_slos(run.rows, itl, parsed).tolist()
