"""Per-request deadlines and bounded admission in the bundled service (real BentoML servers on loopback).

Items wait deterministically: BURSTBENCH_COMPUTE_DELAY_MS makes every batch take that long, so a request
sent while a batch runs is queued until it ends (BentoML computes one batch at a time). "Not computed" is
read from the service's own counters on /metrics.
"""
from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from conftest import REPO_ROOT, Server
from burstbench.service import deadlines
from burstbench.service.body_limits import JsonBodyGuard
from burstbench.service.settings import ServiceSettings

ROUTE = "/analyze-sentiment"
HEADER = "X-Request-Timeout-Ms"
COMPUTE_DELAY_S = 1.5
MAX_CONCURRENCY = 4
BURST = 24


# ---------------------------------------------------------------------------------------------------- helpers
def metric(url: str, name: str, **labels) -> float:
    """A sample of the server's /metrics (0 when absent: a counter child that has not been made yet)."""
    text = requests.get(url + "/metrics", timeout=10).text
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


def counts(url: str) -> dict:
    return {"queue": metric(url, "burstbench_deadline_dropped_total", stage="queue"),
            "arrival": metric(url, "burstbench_deadline_dropped_total", stage="arrival"),
            "abandoned": metric(url, "burstbench_abandoned_dropped_total"),
            "computed": metric(url, "burstbench_items_computed_total")}


def status_count(url: str, code: int) -> float:
    return metric(url, "bentoml_service_request_total", endpoint=ROUTE, http_response_code=str(code))


def rises(url: str, before: dict) -> dict:
    after = counts(url)
    return {k: after[k] - before[k] for k in after}


def timed_post(url: str, text: str, timeout_ms: int | None = None, client_timeout_s: float = 60):
    """(response or "client timeout", seconds until the answer)."""
    headers = {} if timeout_ms is None else {HEADER: str(timeout_ms)}
    start = time.monotonic()
    try:
        resp = requests.post(url + ROUTE, json={"text": text}, headers=headers, timeout=client_timeout_s)
    except requests.exceptions.ReadTimeout:
        resp = "client timeout"
    return resp, time.monotonic() - start


def wait_until_rises(url: str, before: dict, key: str, by: int, timeout_s: float = 15) -> None:
    """Until the counter ``key`` has risen by ``by`` (work done after the answers, e.g. for a client that left)."""
    deadline = time.monotonic() + timeout_s
    while counts(url)[key] - before[key] < by:
        assert time.monotonic() < deadline, f"{key} did not rise by {by} within {timeout_s} s: {counts(url)}"
        time.sleep(0.1)


def start_batch(pool, url: str, text: str = "computing now"):
    """Send a request to an idle server and return once its batch is running (the counter rises before the
    compute delay): whatever is sent next waits in the queue for the whole delay."""
    before = counts(url)
    running = pool.submit(timed_post, url, text)
    wait_until_rises(url, before, "computed", 1)
    return running


@pytest.fixture(scope="module")
def slow_server(tiny_model, tmp_path_factory):
    """Every batch takes 1.5 s; adaptive batching with a long max latency, so BentoML sheds nothing itself."""
    srv = Server(tiny_model, tmp_path_factory.mktemp("deadline") / "service.log", max_length=32,
                 compute_delay_ms=int(COMPUTE_DELAY_S * 1000), max_latency_ms=60_000,
                 max_concurrency=MAX_CONCURRENCY)
    yield srv
    srv.stop()


# ------------------------------------------------------------------------------------------ (a), (b): deadlines
def test_request_whose_deadline_passes_in_the_queue_is_answered_504_and_not_computed(slow_server):
    url, before = slow_server.url, counts(slow_server.url)
    with ThreadPoolExecutor(2) as pool:
        first = start_batch(pool, url)
        late, _ = timed_post(url, "waits about 1.5 s behind it", timeout_ms=300)
        assert first.result()[0].status_code == 200
    assert late.status_code == 504
    assert late.json() == {"error": "deadline of 300 ms passed while queued (X-Request-Timeout-Ms); not computed"}
    assert rises(url, before) == {"queue": 1, "arrival": 0, "abandoned": 0, "computed": 1}  # only the first


def test_request_within_its_deadline_is_computed(slow_server):
    url, before = slow_server.url, counts(slow_server.url)
    with ThreadPoolExecutor(2) as pool:
        first = start_batch(pool, url)
        patient, waited_s = timed_post(url, "waits about 1.5 s of its 30 s", timeout_ms=30_000)
        assert first.result()[0].status_code == 200
    assert patient.status_code == 200, patient.text
    assert patient.json()["label"] in {"negative", "neutral", "positive"}
    assert waited_s >= COMPUTE_DELAY_S  # it did wait: queued, then its own batch
    assert rises(url, before) == {"queue": 0, "arrival": 0, "abandoned": 0, "computed": 2}


def test_queued_request_whose_client_left_is_not_computed(slow_server):
    url, before = slow_server.url, counts(slow_server.url)
    with ThreadPoolExecutor(2) as pool:
        first = start_batch(pool, url)
        gone, _ = timed_post(url, "its client leaves after 0.5 s", client_timeout_s=0.5)  # no header
        assert gone == "client timeout"
        assert first.result()[0].status_code == 200
    wait_until_rises(url, before, "abandoned", 1)  # the next batch found it over
    assert rises(url, before) == {"queue": 0, "arrival": 0, "abandoned": 1, "computed": 1}


def test_request_past_its_deadline_on_arrival_is_answered_at_once(slow_server):
    """A slow upload: the headers come, the body 0.4 s later, past the 200 ms deadline, while a batch runs."""
    url, before = slow_server.url, counts(slow_server.url)
    body = json.dumps({"text": "slow upload"}).encode()
    with ThreadPoolExecutor(1) as pool:
        started = time.monotonic()
        first = start_batch(pool, url)
        with socket.create_connection(("127.0.0.1", slow_server.port), timeout=30) as sock:
            sock.sendall(f"POST {ROUTE} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                         f"{HEADER}: 200\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode())
            time.sleep(0.4)
            sock.sendall(body)
            sent = time.monotonic()
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
            answered = time.monotonic()
        first_answered = started + first.result()[1]
    head, _, payload = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 504"), head
    assert json.loads(payload) == {"error": "deadline of 200 ms passed before the request was queued "
                                            "(X-Request-Timeout-Ms); not computed"}
    assert answered - sent < 0.5 and answered < first_answered  # at once: before the running batch ended
    assert rises(url, before) == {"queue": 0, "arrival": 1, "abandoned": 0, "computed": 1}


@pytest.mark.parametrize("value", ["soon", "0", "-5", "1.5", "3600001"])
def test_bad_timeout_header_is_a_clear_400(slow_server, value):
    resp = requests.post(slow_server.url + ROUTE, json={"text": "fine"}, headers={HEADER: value}, timeout=30)
    assert resp.status_code == 400
    assert resp.json() == {"error": f"X-Request-Timeout-Ms must be an integer number of milliseconds in "
                                    f"[1, 3600000] (got {value!r})"}


# --------------------------------------------------------------------------------------------- (c): admission
def test_overload_burst_gets_immediate_429_and_the_admitted_succeed(slow_server):
    url, before, rejected_before = slow_server.url, counts(slow_server.url), status_count(slow_server.url, 429)
    info = requests.post(url + "/model-info", json={}, timeout=30).json()
    assert info["settings"]["max_concurrency"] == MAX_CONCURRENCY and info["settings"]["deadline_ms"] == 0
    barrier = threading.Barrier(BURST)

    def one(i):
        barrier.wait(timeout=30)
        return timed_post(url, f"burst request {i}")

    with ThreadPoolExecutor(BURST) as pool:
        answers = list(pool.map(one, range(BURST)))
    ok = [s for r, s in answers if r.status_code == 200]
    rejected = [s for r, s in answers if r.status_code == 429]
    assert len(ok) + len(rejected) == BURST, [r.status_code for r, _ in answers]  # every request answered
    assert MAX_CONCURRENCY <= len(ok) <= 2 * MAX_CONCURRENCY  # the burst arrives well within one 1.5 s batch
    assert max(rejected) < 1.0 < COMPUTE_DELAY_S - 0.1 <= min(ok)  # refused at once, not after a wait
    assert all(r.json() == {"error": "Too many requests"} for r, _ in answers if r.status_code == 429)
    assert status_count(url, 429) - rejected_before == len(rejected)
    assert rises(url, before) == {"queue": 0, "arrival": 0, "abandoned": 0, "computed": len(ok)}


# ------------------------------------------------------------------ BentoML's traffic timeout, slow model start
START_DELAY_S = 4


@pytest.fixture(scope="module")
def timeout_server(tiny_model, tmp_path_factory):
    """Traffic timeout 2 s, batches of 3 s, a 4 s start delay; (server, seconds from the delay's line to ready)."""
    log = tmp_path_factory.mktemp("timeout") / "service.log"
    started = {}
    thread = threading.Thread(target=lambda: started.update(srv=Server(
        tiny_model, log, max_length=32, timeout_s=2, compute_delay_ms=3000, max_latency_ms=60_000,
        start_delay_s=START_DELAY_S)))
    thread.start()
    limit = time.monotonic() + 120
    while thread.is_alive() and not (log.exists() and "before loading the model" in log.read_text()):
        assert time.monotonic() < limit, "no start-delay line in the log"
        time.sleep(0.1)
    line_seen = time.monotonic()
    thread.join(180)
    assert "srv" in started, f"server did not start:\n{log.read_text()[-3000:]}"
    yield started["srv"], time.monotonic() - line_seen
    started["srv"].stop()


def test_start_delay_holds_readiness_back(timeout_server):
    srv, line_to_ready_s = timeout_server
    assert f"burstbench: waiting {START_DELAY_S} s before loading the model (BURSTBENCH_START_DELAY_S)" in \
        srv.log_path.read_text()
    assert line_to_ready_s >= START_DELAY_S - 0.3  # the log is polled every 0.1 s


def test_requests_answered_by_the_traffic_timeout_are_not_computed(timeout_server):
    """BentoML 1.4.40 alone computes these; here the queued ones are left out and answered once (no extra 503)."""
    srv, _ = timeout_server
    url, before = srv.url, counts(srv.url)
    timeouts_before, unavailable_before = status_count(url, 504), status_count(url, 503)
    with ThreadPoolExecutor(3) as pool:
        first = start_batch(pool, url, "computing for 3 s")
        queued = pool.submit(timed_post, url, "queued past the timeout")
        gone = pool.submit(timed_post, url, "its client leaves", client_timeout_s=0.5)
        assert [first.result()[0].status_code, queued.result()[0].status_code] == [504, 504]
        assert queued.result()[0].json() == {"error": "Not able to process the request in 2 seconds"}
        assert gone.result()[0] == "client timeout"
    wait_until_rises(url, before, "abandoned", 2)
    assert rises(url, before) == {"queue": 0, "arrival": 0, "abandoned": 2, "computed": 1}  # only the first
    assert status_count(url, 504) - timeouts_before == 3 and status_count(url, 503) == unavailable_before


# ------------------------------------------------------------------------------------------ (d): bad settings
@pytest.mark.parametrize("name, value, message", [
    ("MAX_CONCURRENCY", "-1", "BURSTBENCH_MAX_CONCURRENCY must be an integer in [0, 100000] (0: unbounded) (got '-1')"),
    ("DEADLINE_MS", "3600001", "BURSTBENCH_DEADLINE_MS must be an integer in [0, 3600000] (0: none) (got '3600001')"),
    ("START_DELAY_S", "nan", "BURSTBENCH_START_DELAY_S must be a number of seconds in [0, 600] (got 'nan')"),
    ("COMPUTE_DELAY_MS", "1e3", "BURSTBENCH_COMPUTE_DELAY_MS must be an integer in [0, 60000] (got '1e3')"),
    ("TIMEOUT_S", "0", "BURSTBENCH_TIMEOUT_S must be an integer in [1, 3600] (got '0')"),
    ("BATCH_TOKENS", "8", "BURSTBENCH_BATCH_TOKENS must be 0 (automatic) or an integer in [16, 1048576] (got '8')"),
])
def test_bad_setting_names_the_variable_and_range(name, value, message):
    with pytest.raises(ValueError) as err:
        ServiceSettings.from_env({f"BURSTBENCH_{name}": value})
    assert str(err.value) == message


def test_new_settings_have_their_defaults():
    described = ServiceSettings.from_env({}).describe()
    assert {k: described[k] for k in ("max_concurrency", "deadline_ms", "start_delay_s", "compute_delay_ms")} == \
        {"max_concurrency": 1000, "deadline_ms": 0, "start_delay_s": 0.0, "compute_delay_ms": 0}


@pytest.mark.integration
@pytest.mark.parametrize("env, flags, line", [
    ({"BURSTBENCH_DEADLINE_MS": "soon"}, [],
     "burstbench serve: BURSTBENCH_DEADLINE_MS must be an integer in [0, 3600000] (0: none) (got 'soon')"),
    ({}, ["--max-concurrency", "-1"],
     "burstbench serve: BURSTBENCH_MAX_CONCURRENCY must be an integer in [0, 100000] (0: unbounded) (got '-1')"),
])
def test_serve_refuses_a_bad_setting_in_one_line(env, flags, line):
    out = subprocess.run([sys.executable, "-m", "burstbench.service", "serve", "--port", "3999", *flags],
                         cwd=REPO_ROOT, env={**os.environ, **env}, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert out.stderr.strip() == line


# --------------------------------------------------------------------------------- the clock itself, in-process
def test_deadline_is_the_smaller_of_header_and_ceiling_and_names_it():
    assert deadlines.clock_for(None, 0, now_s=10).deadline_s is None
    header = deadlines.clock_for("250", 1000, now_s=10)
    assert (header.deadline_s, header.source) == (10.25, "X-Request-Timeout-Ms")
    ceiling = deadlines.clock_for("5000", 1000, now_s=10)
    assert (ceiling.deadline_s, ceiling.source) == (11.0, "BURSTBENCH_DEADLINE_MS")
    assert ceiling.expired(now_s=11.0) and not ceiling.expired(now_s=10.999)


def test_middleware_applies_the_configured_ceiling_before_the_queue():
    """JsonBodyGuard with BURSTBENCH_DEADLINE_MS=50 and a body that takes 0.1 s to arrive: 504, app never called."""
    called, sent = [], []

    async def app(scope, receive, send):  # stands for BentoML's handler
        called.append(deadlines.CURRENT_CLOCK.get())

    async def scenario(delay_s):
        messages = [{"type": "http.request", "body": b'{"text": "hi"}', "more_body": False}]

        async def receive():
            await asyncio.sleep(delay_s)
            return messages.pop(0) if messages else {"type": "http.disconnect"}

        async def send(message):
            sent.append(message)

        scope = {"type": "http", "method": "POST", "path": ROUTE, "headers": [(b"content-type", b"application/json")]}
        await JsonBodyGuard(app, 1024, (ROUTE,), deadline_ms=50)(scope, receive, send)

    asyncio.run(scenario(0.1))
    assert called == [] and sent[0]["status"] == 504
    assert json.loads(sent[1]["body"]) == {"error": "deadline of 50 ms passed before the request was queued "
                                                    "(BURSTBENCH_DEADLINE_MS); not computed"}
    sent.clear()
    asyncio.run(scenario(0))
    (clock,) = called  # in time: the app runs with the request's clock current
    assert (clock.budget_ms, clock.source, clock.over) == (50, "BURSTBENCH_DEADLINE_MS", True)
