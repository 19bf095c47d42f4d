"""Telemetry analysis on synthetic run folders with hand-computed answers: server request rate through a
counter reset, Δsum/Δcount means, Prometheus-style histogram quantiles, the endpoint's request count,
process and GPU peaks, saturation verdicts, the report's "Where the time went", timeline panels, compare."""
from __future__ import annotations

import json
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from prometheus_client.parser import text_string_to_metric_families

from burstbench.analysis import server_signals, telemetry, timeline as timeline_module
from burstbench.analysis.compare_report import write_comparison
from burstbench.analysis.compare_resources import resources_table
from burstbench.analysis.report import report
from burstbench.analysis.runs import KNOWN_COLUMNS, RunError, load_run
from burstbench.analysis.summary import summary
from burstbench.analysis.telemetry_figures import telemetry_panels
from burstbench.analysis.telemetry_report import WHERE_TITLE, latency_split, telemetry_section
from burstbench.telemetry_files import (GPU_COLUMNS, PROCESS_COLUMNS, SERVER_METRICS_COLUMNS, TELEMETRY_FILE,
                                        summary_template)

T0 = 1_800_000_000  # integer epoch: offsets from it are exact
EP = "/analyze-sentiment"
DATA = Path(__file__).parent / "data"
BOUNDS = ("0.1", "0.25", "0.5", "1.0", "+Inf")
C = "bentoml_service_request_total"
H = "bentoml_service_request_duration_seconds"
B = "bentoml_service_adaptive_batch_size"
G = "bentoml_service_request_in_progress"


def write_rows(path: Path, n=40, failed=(7, 23), gap_s=0.1, first_s=0.5) -> np.ndarray:
    """requests.csv: request i sent at T0 + first_s + i * gap_s, latency 330 + 10 * (i % 9) ms; ``failed`` 503."""
    path.mkdir(parents=True, exist_ok=True)
    ok = np.array([0 if i in failed else 1 for i in range(n)])
    latency = 330.0 + 10.0 * (np.arange(n) % 9)
    rows = pd.DataFrame({c: "" for c in KNOWN_COLUMNS}, index=range(n))
    sent = T0 + first_s + np.arange(n) * gap_s
    rows["request_index"] = range(n)
    rows["user"] = 0
    rows["scheduled_epoch"] = sent
    rows["sent_epoch"] = sent
    rows["lateness_ms"] = 0.0
    rows["latency_ms"] = latency
    rows["corrected_latency_ms"] = latency
    rows["status"] = np.where(ok == 1, 200, 503)
    rows["ok"] = ok
    rows["failure_kind"] = np.where(ok == 1, "", "http_503")
    rows.to_csv(path / "requests.csv", index=False)
    return latency[ok == 1]


def sample(metric, mtype, value, **labels):
    return (metric, mtype, json.dumps(labels, sort_keys=True, separators=(",", ":")), float(value))


def write_metrics(path: Path, scrapes) -> None:
    """server_metrics.csv from [(offset_s, [sample, ...]), ...], as the sidecar writes it."""
    rows = [(T0 + offset, *s) for offset, samples in scrapes for s in samples]
    pd.DataFrame(rows, columns=list(SERVER_METRICS_COLUMNS)).to_csv(path / "server_metrics.csv", index=False)


def histogram(family, cumulative, total, **labels):
    return ([sample(f"{family}_bucket", "histogram", n, le=le, **labels) for le, n in zip(BOUNDS, cumulative)]
            + [sample(f"{family}_sum", "histogram", total, **labels),
               sample(f"{family}_count", "histogram", cumulative[-1], **labels)])


def known_scrapes():
    """Six scrapes 1 s apart. /analyze-sentiment: 38 x 200 and 2 x 503; /readyz's series must not count.

    The 200s' durations over the run (from the first scrape's zeros): buckets 0, 4, 38, 38, 38, sum 13.3 s."""
    ok = [0, 8, 18, 28, 38, 38]
    failed = [None, None, None, 1, 2, 2]  # the 503 series appears at the fourth scrape
    cum = [[0] * 5, [0, 2, 8, 8, 8], [0, 3, 18, 18, 18], [0, 4, 28, 28, 28], [0, 4, 38, 38, 38], [0, 4, 38, 38, 38]]
    sums = [0.0, 2.0, 5.5, 9.5, 13.3, 13.3]
    batch_count, batch_sum = [0, 2, 5, 8, 12, 12], [0, 8, 18, 28, 38, 38]
    in_flight = [0, 3, 4, 2, 1, 0]
    scrapes = []
    for k in range(6):
        s = [sample(C, "counter", ok[k], endpoint=EP, http_response_code="200"),
             sample(C, "counter", k + 1, endpoint="/readyz", http_response_code="200"),
             sample(C, "counter", 0, endpoint="/model-info", http_response_code="200"),
             sample(G, "gauge", in_flight[k], endpoint=EP), sample(G, "gauge", 0, endpoint="/readyz"),
             *histogram(H, cum[k], sums[k], endpoint=EP, http_response_code="200"),
             *histogram(H, [k + 1] * 5, 0.001 * (k + 1), endpoint="/readyz", http_response_code="200"),
             sample(f"{B}_sum", "histogram", batch_sum[k], method_name="analyze_sentiment", worker_index="1"),
             sample(f"{B}_count", "histogram", batch_count[k], method_name="analyze_sentiment", worker_index="1"),
             sample("bentoml_service_last_request_timestamp_seconds", "gauge", T0 + k)]
        if failed[k] is not None:
            s += [sample(C, "counter", failed[k], endpoint=EP, http_response_code="503"),
                  *histogram(H, [failed[k]] * 5, 0.001 * failed[k], endpoint=EP, http_response_code="503")]
        scrapes.append((float(k), s))
    return scrapes


SERVICE_CPU = [20, 40, 185, 190, 195, 190, 180, 60, 30, 10]  # busiest 5 samples: 185..180, mean 188


def write_processes(path: Path, service_cpu=SERVICE_CPU, load_cpu=(30.0,) * 10) -> None:
    rows = []
    for k, (s, g) in enumerate(zip(service_cpu, load_cpu)):
        rows.append((T0 + 1 + k, "service", 999, "bentoml", 5, s, 500.0 + 10 * k, 1.0))
        rows.append((T0 + 1 + k, "load", 4242, "locust", 1, g, 80.0, 1.0))
    pd.DataFrame(rows, columns=list(PROCESS_COLUMNS)).to_csv(path / "processes.csv", index=False)


def write_gpu(path: Path, util) -> None:
    rows = [(T0 + 1 + k, 0, "NVIDIA H200", u, 1000.0 + 100 * k, 143771.0, 300.0, 50.0) for k, u in enumerate(util)]
    pd.DataFrame(rows, columns=list(GPU_COLUMNS)).to_csv(path / "gpu.csv", index=False)


def make_run(path: Path, *, cpu_count=4, load_cpu=(30.0,) * 10, gpu_util=None, status="ok", in_record=True,
             scrapes=None, run_events=None):
    """A complete run folder with telemetry: rows, server_metrics.csv, processes.csv, [gpu.csv], telemetry."""
    write_rows(path)
    info = summary_template(1.0)
    info["server_metrics"].update(url="http://127.0.0.1:3000/metrics", status=status)
    if status == "ok":
        write_metrics(path, known_scrapes() if scrapes is None else scrapes)
        info["server_metrics"].update(scrapes=6, samples=100, file="server_metrics.csv")
    else:
        info["server_metrics"]["note"] = "no server metrics: GET http://127.0.0.1:3000/metrics answered HTTP 404"
    write_processes(path, load_cpu=load_cpu)
    info["processes"].update(service={"pid": 999, "named_by": "pid", "status": "ok"}, load=[4242],
                             cpu_count=cpu_count, memory_total_mb=16000.0, file="processes.csv")
    if gpu_util is None:
        info["gpu"]["reason"] = "NVML: no NVIDIA driver"
    else:
        write_gpu(path, gpu_util)
        info["gpu"].update(status="present", devices=[{"index": 0, "name": "NVIDIA H200"}], file="gpu.csv")
    record = {"status": "complete", "scenario": "steady", "pacing": "arrival", "users": 4, "requests_planned": 40,
              "seed": 0, "endpoint": EP, "target": {"model": "m", "variant": "onnx-fp32", "device": "cpu"},
              "distribution": {"process": "exponential", "shape": 1.0, "mean_s": 0.1, "cv": 1.0, "rate_per_s": 10.0,
                               "label": "exponential(mean=0.10s, cv=1.00)"}}
    if run_events is not None:
        record["events"] = run_events
    if in_record:
        record["telemetry"] = info
    else:
        (path / TELEMETRY_FILE).write_text(json.dumps(info))
    (path / "run.json").write_text(json.dumps(record))
    return load_run(path)


# ------------------------------------------------------------------------------------------- server signals
def test_rate_through_a_counter_reset_and_uneven_intervals(tmp_path):
    # 200s: 0, 5, 12, then the server restarts (3), then 10; scrapes at 0, 1, 2, 4, 5 s
    values, offsets = [0, 5, 12, 3, 10], [0.0, 1.0, 2.0, 4.0, 5.0]
    scrapes = [(t, [sample(C, "counter", v, endpoint=EP, http_response_code="200"),
                    sample(C, "counter", 10 * (k + 1), endpoint="/readyz", http_response_code="200")]
                + ([sample(C, "counter", 2, endpoint=EP, http_response_code="400")] if k >= 2 else []))
               for k, (t, v) in enumerate(zip(offsets, values))]
    tmp_path.mkdir(exist_ok=True)
    write_metrics(tmp_path, scrapes)
    frame = telemetry.load_server_metrics(tmp_path)
    rate = server_signals.request_rate(frame, EP)
    # increases 5, 7 + 2 (the 400 series appears at 2), 3 (reset: the new value), 7
    np.testing.assert_allclose(rate["increase"], [5, 9, 3, 7])
    np.testing.assert_allclose(rate["interval_s"], [1, 1, 2, 1])
    np.testing.assert_allclose(rate["rate_per_s"], [5, 9, 1.5, 7])
    counts = server_signals.request_counts(frame, EP)
    assert counts.to_dict() == {"200": 22.0, "400": 2.0}
    assert counts.index.name == "http_response_code" and counts.attrs["family"] == C
    everything = server_signals.request_counts(frame, None)  # no endpoint known: every series
    assert everything.sum() == 24 + 50 - 10


def test_histogram_quantile_interpolates_inside_the_bucket_as_prometheus_does():
    bounds = [0.1, 0.25, 0.5, 1.0, np.inf]
    cum = [2, 6, 18, 20, 20]
    q = server_signals.histogram_quantile
    assert q(0.50, bounds, cum) == pytest.approx(0.25 + 0.25 * 4 / 12)  # rank 10 in (0.25, 0.5]
    assert q(0.95, bounds, cum) == pytest.approx(0.75)  # rank 19: half-way through (0.5, 1]
    assert q(0.99, bounds, cum) == pytest.approx(0.95)
    assert q(0.05, bounds, cum) == pytest.approx(0.05)  # rank 1 in the first bucket: from 0
    assert q(0.99, bounds, [2, 6, 18, 19, 20]) == 1.0  # in the +Inf bucket: the highest finite bound
    assert np.isnan(q(0.5, bounds, [0] * 5)) and np.isnan(q(0.5, [0.1, 0.5], [1, 2]))  # no +Inf bucket


def test_processing_time_mean_quantiles_and_intervals_for_the_endpoints_2xx(tmp_path):
    frame = telemetry.load_server_metrics(make_run(tmp_path / "r").path)
    timing = server_signals.processing_time(frame, EP)
    assert timing["family"] == H and timing["count"] == 38
    assert timing["mean_ms"] == pytest.approx(13.3 / 38 * 1000)  # 350 ms; the 503s' 1 ms and /readyz left out
    assert timing["p50_ms"] == pytest.approx((0.25 + 0.25 * (19 - 4) / 34) * 1000)  # rank 19 of 38 in (0.25, 0.5]
    assert timing["p99_ms"] == pytest.approx((0.25 + 0.25 * (0.99 * 38 - 4) / 34) * 1000)
    means = timing["intervals"]
    np.testing.assert_allclose(means["count"], [8, 10, 10, 10, 0])
    np.testing.assert_allclose(means["mean"], [250, 350, 400, 380, np.nan])


def test_server_request_count_is_the_endpoints_increase_over_every_code(tmp_path):
    run = make_run(tmp_path / "r")
    assert telemetry.server_request_count(run) == 40  # 38 x 200 + 2 x 503; /readyz's 6 and /model-info left out
    assert telemetry.server_request_counts(run).to_dict() == {"200": 38.0, "503": 2.0}
    frame = telemetry.load_server_metrics(run.path)
    in_flight = server_signals.gauges(frame, endpoint=EP)
    assert list(in_flight.columns) == [G]
    np.testing.assert_allclose(in_flight[G], [0, 3, 4, 2, 1, 0])
    batches = server_signals.batch_size(frame, EP)
    np.testing.assert_allclose(batches[B], [4, 10 / 3, 10 / 3, 2.5, np.nan])


def test_the_real_bentoml_page_gives_its_counts_and_bucket_interpolated_p50(tmp_path):
    text = (DATA / "bentoml_metrics.txt").read_text()
    parsed = [(s.name, f.type, s.labels, s.value) for f in text_string_to_metric_families(text) for s in f.samples]
    baseline = [sample(n, t, 0.0 if t in ("counter", "histogram") else v, **labels) for n, t, labels, v in parsed]
    tmp_path.mkdir(exist_ok=True)
    write_metrics(tmp_path, [(0.0, baseline), (30.0, [sample(n, t, v, **labels) for n, t, labels, v in parsed])])
    frame = telemetry.load_server_metrics(tmp_path)
    counts = server_signals.request_counts(frame, EP)
    assert counts.to_dict() == {"200": 40.0, "400": 41.0, "500": 0.0}  # /analyze_sentiment's 404s are not EP
    timing = server_signals.processing_time(frame, EP)
    assert timing["count"] == 40 and timing["mean_ms"] == pytest.approx(10.304429585019534 / 40 * 1000)
    assert timing["p50_ms"] == pytest.approx((0.25 + 0.25 * (20 - 19) / 21) * 1000)  # 19 <= 0.25 s, 40 <= 0.5 s
    assert server_signals.batch_size(frame, EP)[B].iloc[-1] == pytest.approx(40 / 3)


# ------------------------------------------------------------------------------------------- files
def test_loaders_answer_none_when_absent_and_name_the_file_when_malformed(tmp_path):
    assert telemetry.load_server_metrics(tmp_path) is None and telemetry.load_processes(tmp_path) is None
    assert telemetry.load_gpu(tmp_path) is None
    path = tmp_path / "server_metrics.csv"
    path.write_text("epoch,metric,type,labels,value\n1.5,x_total,counter,\"{}\",3\n2.5,x_total,counter,\"{\"\"a")
    frame = telemetry.load_server_metrics(tmp_path)  # the truncated last line is dropped
    assert len(frame) == 1 and frame["labels"].iloc[0] == {} and frame["value"].iloc[0] == 3.0
    path.write_text("epoch,metric,type,labels,value\n1.5,x_total,counter,\"[1]\",3\n")
    with pytest.raises(RunError, match=r"server_metrics.csv: line 2: labels .* not a JSON object"):
        telemetry.load_server_metrics(tmp_path)
    path.write_text("epoch,metric,type,labels,value\nsoon,x_total,counter,\"{}\",3\n")
    with pytest.raises(RunError, match=r"server_metrics.csv: line 2: epoch 'soon' is not a number"):
        telemetry.load_server_metrics(tmp_path)
    run = make_run(tmp_path / "r", in_record=False)
    (run.path / TELEMETRY_FILE).write_text("{not json")
    with pytest.raises(RunError, match=r"telemetry.json: not JSON"):
        telemetry.telemetry_info(run)
    (tmp_path / "processes.csv").write_text("epoch,role,cpu\n1,service,5\n")
    with pytest.raises(RunError, match=r"processes.csv: columns \['epoch', 'role', 'cpu'\], expected epoch, role"):
        telemetry.load_processes(tmp_path)


# ------------------------------------------------------------------------------------------- resources, verdicts
def test_process_and_gpu_peaks_means_and_busiest_five_seconds(tmp_path):
    run = make_run(tmp_path / "r", gpu_util=[50, 95, 96, 97, 98, 99, 92, 40, 10, 10])
    procs = telemetry.process_stats(run)
    service = procs.loc["service"]
    assert (service["cpu_peak_pct"], service["cpu_mean_pct"]) == (195.0, 110.0)
    assert service["cpu_busiest_5s_pct"] == pytest.approx(188.0)
    assert (service["rss_peak_mb"], service["rss_mean_mb"]) == (590.0, 545.0)
    assert procs.loc["load 4242", "cpu_peak_pct"] == 30.0 and procs.loc["load 4242", "role"] == "load"
    gpu = telemetry.gpu_stats(run).loc["GPU 0"]
    assert (gpu["util_peak_pct"], gpu["util_mean_pct"]) == (99.0, 68.7)
    assert gpu["util_busiest_5s_pct"] == pytest.approx((95 + 96 + 97 + 98 + 99) / 5)
    assert (gpu["memory_peak_mb"], gpu["memory_total_mb"]) == (1900.0, 143771.0)


def test_verdicts_name_what_was_saturated(tmp_path):
    busy = make_run(tmp_path / "busy", cpu_count=2, load_cpu=[95.0] * 10, gpu_util=[97.0] * 10)
    lines = telemetry.saturation_lines(busy)
    assert lines[0] == ("Service CPU-bound: 188 % of one core over its busiest 5 s, at least 90 % of the machine's "
                        "2 cores.")
    assert lines[1].startswith("Generator CPU-bound: its numbers describe the generator too (load 4242 at 95 %")
    assert lines[2] == "GPU-bound: GPU 0 (NVIDIA H200) at 97 % utilisation over its busiest 5 s."
    calm = make_run(tmp_path / "calm", cpu_count=4)  # 188 % of one core is under 90 % of four cores
    assert telemetry.saturation_lines(calm) == [
        "Nothing saturated: peaks were service CPU 195 % of one core (of 400 % for 4 cores), generator CPU 30 % of "
        "one core, GPU absent (NVML: no NVIDIA driver)."]


# ------------------------------------------------------------------------------------------- report, summary
def test_where_the_time_went_sets_client_against_server(tmp_path):
    run = make_run(tmp_path / "r", in_record=False)  # telemetry.json beside run.json, not in it
    section = telemetry_section(run, tmp_path)
    assert section.title == WHERE_TITLE
    split = dict(section.tables)["where_time_went"]
    client = run.ok_rows["latency_ms"].to_numpy()
    assert split.loc["mean", "client (ms)"] == pytest.approx(client.mean())
    assert split.loc["p99", "client (ms)"] == pytest.approx(np.quantile(client, 0.99))
    assert split.loc["mean", "server (ms)"] == pytest.approx(350.0)
    assert split.loc["mean", "outside the server (ms)"] == pytest.approx(client.mean() - 350.0)
    requests = dict(section.tables)["server_requests"]["requests"]
    assert requests.to_dict() == {"server, http_response_code 200": 38.0, "server, http_response_code 503": 2.0,
                                  "server, all codes": 40.0, "client, rows sent": 40.0, "client, ok": 38.0}
    assert "The server counted 40 requests for /analyze-sentiment" in section.text
    assert "estimate" in section.text and "histogram_quantile" in section.text
    assert "GPU: absent (NVML: no NVIDIA driver)." in section.text
    assert section.text.endswith("GPU absent (NVML: no NVIDIA driver).")
    assert section.figures[0].read_bytes().startswith(b"\x89PNG")


def test_a_target_without_metrics_gets_the_note_and_no_server_numbers(tmp_path):
    run = make_run(tmp_path / "r", status="none")
    section = telemetry_section(run, tmp_path)
    assert section.text.startswith("no server metrics: GET http://127.0.0.1:3000/metrics answered HTTP 404.")
    assert dict(section.tables)["where_time_went"]["server (ms)"].isna().all()
    assert telemetry.summary_lines(run)[0].startswith("no server metrics: GET")
    assert telemetry.server_request_count(run) is None


def test_a_run_without_telemetry_gets_no_section(tmp_path):
    write_rows(tmp_path / "r")
    (tmp_path / "r" / "run.json").write_text(json.dumps({"status": "complete", "pacing": "arrival"}))
    run = load_run(tmp_path / "r")
    assert telemetry_section(run, tmp_path) is None and telemetry.summary_lines(run) == []
    assert telemetry_panels(run) == [] and telemetry.process_stats(run) is None


def test_report_and_summary_carry_telemetry(tmp_path):
    run = make_run(tmp_path / "r", gpu_util=[50.0] * 10)
    files = report(run.path)
    md = files["markdown"].read_text()
    assert f"## {WHERE_TITLE}" in md and "where_time_went.png" in md
    assert (files["folder"] / "where_time_went.csv").is_file() and (files["folder"] / "resources.csv").is_file()
    # latency, two gap figures, timeline and where_time_went, all embedded
    assert files["html"].read_text().count("data:image/png;base64,") == 5
    text = summary(run.path)
    assert "server metrics: 6 scrapes every 1 s; bentoml_service_request_total: 40 requests for /analyze-sentiment " \
           "(client sent 40)" in text
    assert ("resources: service peak CPU 195 % of a core (4 cores), peak RSS 590 MB; generator peak CPU 30 % of a "
            "core; GPU 0 peak 50 % util, 1900 of 143771 MB") in text


# ------------------------------------------------------------------------------------------- timeline, compare
def test_timeline_gains_one_axis_per_collected_signal(tmp_path, monkeypatch):
    run = make_run(tmp_path / "r", gpu_util=[50.0] * 10, run_events=[{"epoch": T0 + 2.5, "label": "kill"}])
    names = [p.name for p in telemetry_panels(run)]
    assert names == ["server_rate", "in_flight", "batch_size", "server_latency", "service_cpu", "service_rss",
                     "load_cpu", "gpu_util", "gpu_memory"]
    figures = []
    monkeypatch.setattr(timeline_module, "save_figure", lambda fig, path: figures.append(fig) or Path(path))
    timeline_module.timeline_figure(run, tmp_path / "t.png")
    fig = figures[0]
    try:
        assert len(fig.axes) == 2 + len(names)
        assert fig.get_size_inches()[1] == pytest.approx(5.5 + timeline_module.TELEMETRY_PANEL_IN * len(names))
        for ax in fig.axes:  # the disruption (2 s after the first send) marked on every panel
            assert any(list(line.get_xdata()) == [2.0, 2.0] and line.get_linestyle() == ":" for line in ax.get_lines())
        rate_axis = fig.axes[2]
        assert [t.get_text() for t in rate_axis.get_legend().get_texts()] == [f"server ({C})", "client sends, same intervals"]
    finally:
        plt.close(fig)
    quiet = make_run(tmp_path / "q", status="none")  # no server metrics, no GPU: process panels only
    assert [p.name for p in telemetry_panels(quiet)] == ["service_cpu", "service_rss", "load_cpu"]


def test_compare_shows_each_runs_resources(tmp_path):
    a = make_run(tmp_path / "a")
    b = make_run(tmp_path / "b", load_cpu=[60.0] * 10, gpu_util=[80.0] * 10)
    table = resources_table([a, b])
    assert list(table.columns) == ["service_cpu_peak_pct", "service_cpu_mean_pct", "service_rss_peak_mb",
                                   "service_rss_mean_mb", "generator_cpu_peak_pct", "generator_cpu_mean_pct",
                                   "gpu_util_peak_pct", "gpu_util_mean_pct", "gpu_memory_peak_mb", "gpu_memory_mean_mb"]
    assert table["generator_cpu_peak_pct"].tolist() == [30.0, 60.0]
    assert np.isnan(table["gpu_util_peak_pct"].iloc[0]) and table["gpu_util_peak_pct"].iloc[1] == 80.0
    assert "gpu_util_peak_pct" not in resources_table([a, a]).columns  # no GPU anywhere: no GPU columns
    text, written = write_comparison([a.path, b.path], tmp_path / "cmp")
    assert "resources, peak and mean over the run" in text and (tmp_path / "cmp" / "resources.csv") in written


def test_latency_split_without_server_timing_is_nan_not_zero(tmp_path):
    run = make_run(tmp_path / "r", status="none")
    split = latency_split(run, None)
    assert split["server (ms)"].isna().all() and split["outside the server (ms)"].isna().all()
