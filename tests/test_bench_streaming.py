"""The streaming cross-check's pure parts: reading AIPerf's and burstbench's exports, overlap, the table, the reasons.

No servers, no processes: the fixtures are small hand-written exports whose right answers are worked out here.
"""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from burstbench.experiments import bench_streaming as bs
from burstbench.experiments import streaming_compare as sc
from burstbench.experiments import streaming_measures as sm


def aiperf_record(start_ns, end_ns, ttft, icl, *, osl=3, isl=42, error=None, phase="profiling", ttft_unit="ms"):
    metrics = {} if error else {
        "time_to_first_token": {"value": ttft, "unit": ttft_unit},
        "request_latency": {"value": 50.0, "unit": "ms"},
        "inter_token_latency": {"value": sum(icl) / (osl - 1), "unit": "ms"},
        "inter_chunk_latency": {"value": icl, "unit": "ms"},
        "output_sequence_length": {"value": osl, "unit": "tokens"},
        "input_sequence_length": {"value": isl, "unit": "tokens"},
    }
    rec = {"metadata": {"request_start_ns": start_ns, "request_end_ns": end_ns, "benchmark_phase": phase},
           "metrics": metrics}
    if error:
        rec["error"] = error
    return json.dumps(rec)


AIPERF_LINES = [
    aiperf_record(1_000_000_000_000, 1_000_050_000_000, 0, [1.0], phase="warmup"),           # not counted
    aiperf_record(1_000_000_000_000, 1_000_050_000_000, 10.0, [2.0, 4.0]),
    aiperf_record(1_000_020_000_000, 1_000_100_000_000, 30_000_000, [1.0, 3.0], ttft_unit="ns"),  # 30 ms
    aiperf_record(1_000_200_000_000, 1_000_200_000_000, None, [],
                  error={"code": 400, "type": "Bad Request", "message": "pinned"}),
    "",
]


def test_aiperf_records_are_read_per_request_with_units_and_failures():
    m = sm.parse_aiperf_records(AIPERF_LINES)
    assert (m.sent, m.ok, m.failures) == (3, 2, {"http_400": 1})
    assert m.ttft_ms.tolist() == [10.0, 30.0]
    assert m.tpot_ms.tolist() == [3.0, 2.0]          # (2 + 4) / 2 and (1 + 3) / 2: AIPerf's "ITL"
    assert m.itl_ms.tolist() == [2.0, 4.0, 1.0, 3.0]
    assert m.itl_owner.tolist() == [0, 0, 1, 1]
    assert m.start_s.tolist() == [1000.0, 1000.02]
    assert m.output_tokens.tolist() == [3, 3] and m.input_tokens.tolist() == [42, 42]


def test_aiperf_line_that_is_not_json_names_its_line():
    with pytest.raises(ValueError, match="line 2"):
        sm.parse_aiperf_records([AIPERF_LINES[1], "{oops"])


def write_burstbench(tmp_path, with_streaming=True):
    cols = "request_index,ok,failure_kind,sent_epoch,latency_ms,ttft_ms,tpot_ms,output_tokens,input_tokens,token_source"
    rows = ["0,1,,100.000,40.0,12.0,1.5,3,41,usage",
            "1,0,stream-broken,100.010,20.0,15.0,,2,41,usage",
            "2,1,,100.100,60.0,14.0,2.5,3,41,usage"]
    if not with_streaming:
        cols, rows = "request_index,ok,failure_kind,sent_epoch,latency_ms", [r.split(",", 5)[0:5] for r in rows]
        rows = [",".join(r) for r in rows]
    (tmp_path / "requests.csv").write_text("\n".join([cols, *rows]) + "\n")
    (tmp_path / "itl.csv").write_text("request_index,token,itl_ms\n0,1,1.0\n0,2,2.0\n1,1,9.0\n2,1,2.0\n2,2,3.0\n")
    return tmp_path


def test_burstbench_rows_keep_ok_requests_and_their_gaps_only(tmp_path):
    m = sm.read_burstbench(write_burstbench(tmp_path))
    assert (m.sent, m.ok, m.failures) == (3, 2, {"stream-broken": 1})
    assert m.ttft_ms.tolist() == [12.0, 14.0] and m.tpot_ms.tolist() == [1.5, 2.5]
    assert m.itl_ms.tolist() == [1.0, 2.0, 2.0, 3.0]          # the failed request's 9.0 is left out
    assert m.itl_owner.tolist() == [0, 0, 1, 1]
    assert m.end_s == pytest.approx([100.04, 100.16])
    assert m.token_source == "usage (2)"


def test_burstbench_rows_without_streaming_columns_say_which_are_missing(tmp_path):
    with pytest.raises(ValueError, match="ttft_ms"):
        sm.read_burstbench(write_burstbench(tmp_path, with_streaming=False))


def test_overlap_counts_in_flight_requests_and_sends_during_a_stream():
    # [0, 10), [5, 8), [9, 20), [30, 31): the 2nd and 3rd are sent while the 1st is in flight.
    start, end = np.array([0.0, 5.0, 9.0, 30.0]), np.array([10.0, 8.0, 20.0, 31.0])
    assert sm.in_flight_at_send(start, end).tolist() == [0, 1, 1, 0]
    assert sm.sends_during(start, end).tolist() == [2, 0, 0, 0]


def measures(tool, start, ttft, gaps_per_request, duration=1.0):
    start = np.asarray(start, float)
    gaps = [g for gs in gaps_per_request for g in gs]
    owner = [i for i, gs in enumerate(gaps_per_request) for _ in gs]
    n = len(start)
    return sm.ToolMeasures(tool=tool, sent=n, failures={}, start_s=start, end_s=start + duration,
                           ttft_ms=np.asarray(ttft, float), tpot_ms=np.array([np.mean(g) for g in gaps_per_request]),
                           latency_ms=np.full(n, duration * 1000), output_tokens=np.full(n, 3.0),
                           input_tokens=np.full(n, 41.0), itl_ms=np.asarray(gaps, float),
                           itl_owner=np.asarray(owner, int), token_source="usage")


def test_subset_keeps_the_chosen_requests_and_renumbers_their_gaps():
    m = measures("aiperf", [0, 10, 20], [1, 2, 3], [[1.0, 1.0], [5.0], [2.0, 2.0]])
    s = m.subset(np.array([False, True, True]))
    assert s.ttft_ms.tolist() == [2.0, 3.0] and s.itl_ms.tolist() == [5.0, 2.0, 2.0]
    assert s.itl_owner.tolist() == [0, 1, 1]
    with pytest.raises(ValueError, match="one entry per ok request"):
        m.subset(np.array([True]))


def test_percentile_is_none_for_no_values_never_zero():
    assert sc.percentile([], 0.5) is None
    assert sc.percentile([math.nan, 4.0, 2.0], 0.5) == 3.0
    with pytest.raises(ValueError, match="quantile"):
        sc.percentile([1.0], 50)


@pytest.mark.parametrize("a, b, unit, beyond", [
    (10.0, 10.5, "ms", False),     # 0.5 ms and exactly 5 %: within
    (1.00, 1.06, "ms", True),      # 0.06 ms but 6 %
    (100.0, 101.5, "ms", True),    # 1.5 % but 1.5 ms
    (200.0, 200.0, "", False),
    (200.0, 190.0, "", False),     # 5 % fewer: within
    (200.0, 189.0, "", True),
])
def test_a_row_needs_explaining_beyond_1_ms_or_5_percent(a, b, unit, beyond):
    row = sc.Row("x", unit, a, b)
    assert row.diff == pytest.approx(b - a) and row.ratio == pytest.approx(b / a)
    assert row.beyond() is beyond


def test_a_row_with_a_missing_side_has_no_difference():
    row = sc.Row("x", "ms", None, 3.0)
    assert row.diff is None and row.ratio is None and row.beyond() is None


def test_queueing_explains_a_ttft_difference_that_idle_sends_do_not_have():
    # AIPerf: requests 1 s apart, each answered within 0.5 s: every send is idle, TTFT 10 ms.
    a = measures("aiperf", np.arange(90.0), [10.0] * 90, [[1.5, 1.5]] * 90, duration=0.5)
    # burstbench: triples 0.1 s apart; the 2nd and 3rd of each queue behind the 1st (TTFT 40 ms).
    start = np.array([t + d for t in range(0, 90, 3) for d in (0.0, 0.1, 0.2)])
    b = measures("burstbench", start, [10.0, 40.0, 40.0] * 30, [[1.5, 1.5]] * 90, duration=0.5)
    rows = sc.compare(a, b, n_boot=200)
    p50 = sc.find_row(rows, "TTFT p50", "all")
    assert (p50.aiperf, p50.burstbench, p50.ci) == (10.0, 40.0, (30.0, 30.0))
    idle = sc.find_row(rows, "TTFT p50", "idle sends")
    assert (idle.aiperf, idle.burstbench) == (10.0, 10.0)
    assert sc.find_row(rows, "idle sends", "idle sends").burstbench == 30
    assert sc.find_row(rows, "sends finding own request in flight", "all").burstbench == pytest.approx(200 / 3)
    lines = [ln for ln in sc.explain(rows, a, b) if ln.startswith("TTFT p50")]
    assert len(lines) == 1 and ": queueing:" in lines[0] and "66.67 % of burstbench's" in lines[0]


def test_a_difference_within_its_bootstrap_interval_is_sampling_noise():
    rng = np.random.default_rng(1)
    a = measures("aiperf", np.arange(40.0), rng.exponential(10.0, 40), [[1.5, 1.5]] * 40, duration=0.5)
    b = measures("burstbench", np.arange(40.0), rng.exponential(10.0, 40), [[1.5, 1.5]] * 40, duration=0.5)
    row = sc.find_row(sc.compare(a, b, n_boot=500), "TTFT p99", "all")
    assert row.beyond() and row.noise            # same law, 40 requests: the tails differ by chance
    lines = [ln for ln in sc.explain([row], a, b) if ln.startswith("TTFT p99")]
    assert len(lines) == 1 and "sampling noise" in lines[0]


def test_a_difference_idle_sends_still_have_is_left_unexplained():
    a = measures("aiperf", np.arange(10.0), [10.0] * 10, [[1.5, 1.5]] * 10, duration=0.5)
    b = measures("burstbench", np.arange(10.0), [14.0] * 10, [[1.5, 1.5]] * 10, duration=0.5)
    lines = [ln for ln in sc.explain(sc.compare(a, b, n_boot=200), a, b) if ln.startswith("TTFT p50")]
    assert len(lines) == 1 and "not explained" in lines[0] and "difference 4.00 ms" in lines[0]


def test_itl_rows_compare_every_gap_and_tpot_per_request_mean():
    # One request with gaps 1, 1, 7: every-gap p50 1 ms, its TPOT 3 ms (what AIPerf calls ITL).
    a = measures("aiperf", [0.0], [10.0], [[1.0, 1.0, 7.0]])
    b = measures("burstbench", [0.0], [10.0], [[1.0, 1.0, 7.0]])
    rows = sc.compare(a, b, quantiles=(0.5,), n_boot=200)
    assert sc.find_row(rows, "ITL (every gap) p50", "all").aiperf == 1.0
    assert sc.find_row(rows, "TPOT (AIPerf's 'ITL') p50", "all").burstbench == 3.0
    assert sc.explain(rows, a, b) == []


def test_compare_takes_aiperf_then_burstbench():
    m = measures("aiperf", [0.0], [1.0], [[1.0]])
    with pytest.raises(ValueError, match="aiperf, burstbench"):
        sc.compare(m, m)


def test_markdown_and_csv_records_carry_every_row(tmp_path):
    a = measures("aiperf", np.arange(4.0), [10.0] * 4, [[1.0, 2.0]] * 4)
    b = measures("burstbench", np.arange(4.0), [12.0] * 4, [[1.0, 2.0]] * 4)
    rows = sc.compare(a, b, n_boot=200)
    table = sc.markdown_table(rows)
    assert table.count("\n") == len(rows) + 1
    assert "| TTFT p50 | all | 10.00 ms | 12.00 ms | +2.00 ms * | [+2.00, +2.00] | 1.200 |" in table
    sc.write_report(tmp_path, rows, sc.explain(rows, a, b), {"aiperf": ["aiperf", "profile"]}, ["a check"])
    text = (tmp_path / "comparison.csv").read_text().splitlines()
    assert text[0] == "metric,subset,unit,aiperf,burstbench,diff,ratio,diff_ci_low,diff_ci_high,beyond_tolerance"
    assert len(text) == len(rows) + 1
    assert "`aiperf profile`" in (tmp_path / "comparison.md").read_text()


def test_aiperf_command_asks_for_what_burstbench_sends():
    cmd = bs.aiperf_command("aiperf", "http://127.0.0.1:1", "/m", "/m", 4, 200, 32, 16, 7, "out", 60)
    flags = dict(zip(cmd, cmd[1:]))
    assert (flags["--request-rate"], flags["--arrival-pattern"], flags["--request-count"]) == ("4.0", "poisson", "200")
    assert (flags["--isl"], flags["--osl"], flags["--isl-stddev"], flags["--osl-stddev"]) == ("32", "16", "0", "0")
    assert (flags["--tokenizer"], flags["--model"], flags["--random-seed"]) == ("/m", "/m", "7")
    assert {"--streaming", "--use-legacy-max-tokens", "--use-server-token-count"} <= set(cmd)


def test_order_must_name_both_tools_once():
    assert bs.parse_order("burstbench, aiperf") == ("burstbench", "aiperf")
    for bad in ("aiperf", "aiperf,aiperf", "aiperf,burstbench,x"):
        with pytest.raises(ValueError, match="--order"):
            bs.parse_order(bad)
