"""Telemetry: the target's /metrics, the service's process tree and the load processes, judged from outside.

The real runs check each source against a second witness: BentoML's own request counter against the
rows (the two sides agree on every request), the sidecar's RSS and CPU of the service's tree against
/proc read by the test itself, and a target without metrics against the one line it must get.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import psutil
import pytest

from conftest import REPO_ROOT, only_run_dir
from servers.fixtures import fastapi_server, run_http_locust  # noqa: F401 (fixture)

from burstbench.process_telemetry import GpuSampler, ProcessTreeSampler
from burstbench.server_metrics import ScrapeError, metrics_url, parse_metrics
from burstbench.telemetry import Collector
from burstbench.telemetry_files import (NO_SERVER_METRICS, PROCESS_COLUMNS, PROCESSES_FILE, SERVER_METRICS_COLUMNS,
                                        SERVER_METRICS_FILE, TELEMETRY_FILE)

BENTOML_PAGE = REPO_ROOT / "tests" / "data" / "bentoml_metrics.txt"  # the bundled service's /metrics, 40 requests in
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
ENDPOINT = "/analyze-sentiment"


# ------------------------------------------------------------------------------------------------ unit
def test_a_bentoml_page_parses_into_tidy_rows_with_every_family_and_label():
    rows = parse_metrics(BENTOML_PAGE.read_text())
    frame = pd.DataFrame(rows, columns=["metric", "type", "labels", "value"])
    assert set(frame["type"]) == {"counter", "gauge", "histogram"}
    labels = frame["labels"].map(json.loads)
    ok = frame[(frame["metric"] == "bentoml_service_request_total")
               & labels.map(lambda d: d.get("endpoint") == ENDPOINT and d.get("http_response_code") == "200")]
    assert ok["value"].tolist() == [40.0]
    buckets = frame[frame["metric"] == "bentoml_service_adaptive_batch_size_bucket"]
    assert len(buckets) > 0 and all("le" in d for d in labels[buckets.index])
    # a histogram's +Inf bucket equals its _count
    count = frame.loc[frame["metric"] == "bentoml_service_adaptive_batch_size_count", "value"].sum()
    inf = frame.loc[buckets.index][labels[buckets.index].map(lambda d: d["le"] == "+Inf")]["value"].sum()
    assert count == inf > 0


@pytest.mark.parametrize("page, says", [
    ("", "holds no metric samples"),
    ("<html><body>Not here</body></html>", "not Prometheus text"),
    ('{"status": "ok"}', "not Prometheus text"),
    ("metric_a{x=\"1\" 2.0", "not Prometheus text"),
])
def test_a_page_that_is_not_prometheus_text_is_one_error_naming_what_came_back(page, says):
    with pytest.raises(ScrapeError, match=says):
        parse_metrics(page)


def test_the_metrics_setting_is_a_path_on_the_host_a_full_url_or_off():
    assert metrics_url("http://127.0.0.1:3000", "/metrics") == "http://127.0.0.1:3000/metrics"
    assert metrics_url("http://127.0.0.1:3000/", "stats/prometheus") == "http://127.0.0.1:3000/stats/prometheus"
    assert metrics_url("http://127.0.0.1:3000", "http://127.0.0.1:8082/metrics") == "http://127.0.0.1:8082/metrics"
    assert metrics_url("http://127.0.0.1:3000", "off") is None


def test_the_tree_sampler_counts_the_cpu_this_process_used():
    sampler = ProcessTreeSampler(os.getpid(), "load", recursive=False)
    cpu0 = time.process_time()
    deadline = time.process_time() + 0.3
    while time.process_time() < deadline:  # CPU work, whatever else the machine does
        pass
    row = sampler.sample()
    used_s = time.process_time() - cpu0
    # psutil's CPU times tick every 10 ms: the sampler's seconds agree with the process clock to a few ticks
    assert abs(row["cpu_percent"] / 100 * row["interval_s"] - used_s) < 0.04
    statm_rss_mb = int(Path("/proc/self/statm").read_text().split()[1]) * PAGE_SIZE / 2**20
    assert abs(row["rss_mb"] - statm_rss_mb) < 5
    assert row["processes"] == 1 and row["pid"] == os.getpid() and row["role"] == "load"


def test_without_an_nvidia_driver_the_gpu_is_absent_with_its_reason_not_zeros(tmp_path):
    gpu = GpuSampler()
    if gpu.available:
        pytest.skip("this machine has an NVIDIA GPU")
    assert gpu.reason and gpu.sample() == []
    collector = Collector(tmp_path, 0.25, load_pid=os.getpid())
    collector.tick()
    collector.write_summary(final=True)
    collector.close()
    summary = json.loads((tmp_path / TELEMETRY_FILE).read_text())
    assert summary["gpu"] == {"status": "absent", "reason": gpu.reason, "devices": [], "file": None}
    assert not (tmp_path / "gpu.csv").exists()
    assert summary["server_metrics"]["status"] == "off" and not (tmp_path / SERVER_METRICS_FILE).exists()


# ------------------------------------------------------------------------------------------------ real runs
def _proc_tree(pid: int) -> list[int]:
    root = psutil.Process(pid)
    return [pid] + [c.pid for c in root.children(recursive=True)]


def _proc_reading(pids: list[int]) -> tuple[float, float]:
    """(RSS in MB, user + system CPU seconds) of ``pids`` read from /proc directly, not through psutil."""
    rss_pages = cpu_ticks = 0
    for pid in pids:
        try:
            rss_pages += int(Path(f"/proc/{pid}/statm").read_text().split()[1])
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            cpu_ticks += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
        except (OSError, IndexError):
            pass
    return rss_pages * PAGE_SIZE / 2**20, cpu_ticks / CLOCK_TICKS


@pytest.mark.load
def test_the_bundled_services_counter_agrees_with_the_rows_and_its_rss_and_cpu_with_proc(server, tmp_path):
    results = tmp_path / "results"
    pid = server.proc.pid
    pids = _proc_tree(pid)
    assert len(pids) >= 2, "the bundled service is a tree (BentoML's arbiter and its worker)"
    readings, stop = [], threading.Event()

    def watch():
        while not stop.is_set():
            readings.append(_proc_reading(pids))
            stop.wait(0.1)

    _, cpu_before = _proc_reading(pids)
    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    cmd = [sys.executable, "-m", "locust", "-f", str(REPO_ROOT / "locustfiles" / "sentiment.py"), "--headless",
           "--only-summary", "--host", server.url, "--results-dir", str(results), "--scenario", "extreme",
           "--mean", "0.05", "--requests", "200", "--seed", "3", "-u", "8", "-r", "8",
           "--metrics-every", "0.25", "--service-pid", str(pid)]
    try:
        out = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=180)
    finally:
        stop.set()
        watcher.join(5)
    _, cpu_after = _proc_reading(pids)
    assert out.returncode == 0, out.stderr[-3000:]
    run_dir = only_run_dir(results)
    rows = pd.read_csv(run_dir / "requests.csv")
    assert len(rows) == 200

    # The server's side of the story: BentoML's request counter for the endpoint, summed over response codes.
    metrics = pd.read_csv(run_dir / SERVER_METRICS_FILE)
    assert list(metrics.columns) == list(SERVER_METRICS_COLUMNS)
    counter = metrics[(metrics["metric"] == "bentoml_service_request_total")
                      & metrics["labels"].map(lambda s: json.loads(s).get("endpoint") == ENDPOINT)]
    per_scrape = counter.groupby("epoch")["value"].sum().sort_index()
    assert per_scrape.iloc[-1] - per_scrape.iloc[0] == len(rows)  # every request, counted once, on both sides
    assert per_scrape.index[0] < rows["sent_epoch"].min()  # the baseline scrape came before the first send
    answered = (rows["sent_epoch"] + rows["latency_ms"] / 1000).max()
    assert per_scrape.index[-1] > answered  # and the last one after the last answer
    assert per_scrape.is_monotonic_increasing
    info = json.loads((run_dir / "run.json").read_text())["telemetry"]
    on_disk = json.loads((run_dir / TELEMETRY_FILE).read_text())
    assert on_disk.pop("final") is True and info == on_disk  # run.json holds the sidecar's last word
    assert info["server_metrics"]["status"] == "ok" and info["server_metrics"]["failed"] == 0
    assert info["server_metrics"]["scrapes"] == metrics["epoch"].nunique() >= 8  # every 0.25 s over about 10 s
    assert f"[burstbench] server metrics: {info['server_metrics']['scrapes']} scrapes of {server.url}/metrics" \
        in out.stderr

    # The service's tree as the sidecar saw it, against /proc as this test read it meanwhile.
    procs = pd.read_csv(run_dir / PROCESSES_FILE)
    assert list(procs.columns) == list(PROCESS_COLUMNS)
    service = procs[procs["role"] == "service"]
    assert (service["pid"] == pid).all() and (service["processes"] == len(pids)).all()
    rss = [r for r, _ in readings]
    assert len(rss) >= 20
    low, high = min(rss), max(rss)
    assert service["rss_mb"].between(low * 0.97 - 2, high * 1.03 + 2).all(), (service["rss_mb"].describe(), low, high)
    sampled_cpu_s = float((service["cpu_percent"] / 100 * service["interval_s"]).sum())
    assert abs(sampled_cpu_s - (cpu_after - cpu_before)) < 0.1 * (cpu_after - cpu_before) + 0.3
    load = procs[procs["role"] == "load"]
    assert load["pid"].nunique() == 1 and len(load) == len(service)
    assert info["processes"]["service"]["status"] == "ok" and info["processes"]["peak"]["service"]["rss_mb"] > 0


@pytest.mark.load
def test_a_target_without_metrics_gets_one_line_and_the_run_completes(fastapi_server, tmp_path):  # noqa: F811
    results = tmp_path / "results"
    out = run_http_locust(fastapi_server.url, results, "--preset", "plain", "--path", "/predict", "--requests", "30",
                          "--rate", "40", "--seed", "1", "-u", "4", "-r", "4", "--run-name", "nometrics")
    assert out.returncode == 0, out.stderr[-3000:]
    run_dir = only_run_dir(results)
    notes = [line for line in out.stderr.splitlines() if NO_SERVER_METRICS in line]
    assert notes == [f"[burstbench] {NO_SERVER_METRICS}: GET {fastapi_server.url}/metrics answered HTTP 404"]
    info = json.loads((run_dir / "run.json").read_text())
    assert info["counts"]["ok"] == 30 and info["status"] == "complete"
    assert info["telemetry"]["server_metrics"]["status"] == "none"
    assert info["telemetry"]["server_metrics"]["scrapes"] == 0 and info["telemetry"]["server_metrics"]["failed"] >= 1
    assert not (run_dir / SERVER_METRICS_FILE).exists()
    assert (run_dir / PROCESSES_FILE).exists()  # the load process is still watched


@pytest.mark.load
def test_a_metrics_path_that_answers_garbage_is_recorded_as_no_server_metrics(fastapi_server, tmp_path):  # noqa: F811
    results = tmp_path / "results"
    out = run_http_locust(fastapi_server.url, results, "--preset", "plain", "--path", "/predict", "--requests", "20",
                          "--rate", "40", "--seed", "1", "-u", "4", "-r", "4", "--server-metrics", "/openapi.json",
                          "--metrics-every", "0.25")
    assert out.returncode == 0, out.stderr[-3000:]
    info = json.loads((only_run_dir(results) / "run.json").read_text())["telemetry"]["server_metrics"]
    assert info["status"] == "none" and info["note"].startswith(f"{NO_SERVER_METRICS}: not Prometheus text")
    assert sum(NO_SERVER_METRICS in line for line in out.stderr.splitlines()) == 1


@pytest.mark.load
def test_telemetry_off_starts_no_sidecar_and_bad_values_are_one_line(fastapi_server, tmp_path):  # noqa: F811
    results = tmp_path / "results"
    out = run_http_locust(fastapi_server.url, results, "--preset", "plain", "--path", "/predict", "--requests", "10",
                          "--rate", "40", "-u", "2", "-r", "2", "--telemetry", "off")
    assert out.returncode == 0, out.stderr[-3000:]
    run_dir = only_run_dir(results)
    assert json.loads((run_dir / "run.json").read_text())["telemetry"] is None
    assert not any((run_dir / name).exists() for name in (TELEMETRY_FILE, PROCESSES_FILE, SERVER_METRICS_FILE))
    for flags, says in ((["--metrics-every", "0.1"], "--metrics-every must be a number of seconds in [0.25, 60]"),
                        (["--service-pid", "5", "--service-port", "80"], "give --service-pid or --service-port")):
        bad = run_http_locust(fastapi_server.url, tmp_path / "bad", "--preset", "plain", "--path", "/predict",
                              "--requests", "5", *flags)
        assert bad.returncode != 0 and says in bad.stderr and "Traceback" not in bad.stderr
