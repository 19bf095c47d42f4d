"""What the load generator survives: a server of ours that misbehaves in one way per mode
(``tests/servers/misbehaving.py``), against both Locust clients of ``locustfiles/http_endpoint.py``.

Every run must end within its bound (the whole request within --request-timeout, not each socket read),
with exactly one row per request of the mode's failure kind and a text that says what happened, counts
that add up in run.json, every request received once by the server, and (huge bodies) bounded memory.
Issue 16 measured the opposite: a byte every half second made 12 of 20 requests "successes" in 42 s, and
a 300 MB body took the load process to 5.1 GB.

A module fixture runs every case with both clients, a few at a time, each run against its own server.
"""
from __future__ import annotations

import math
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import NamedTuple

import pandas as pd
import pytest

from burstbench.processes import stop_process
from burstbench.record import load_record
from burstbench.spec import LoadSpec, SpecError
from conftest import REPO_ROOT, only_run_dir
from servers.fixtures import HTTP_LOCUSTFILE, misbehaving_servers  # noqa: F401 (fixture)

CLIENTS = ("fast", "requests")
REQUESTS, USERS, RATE, TIMEOUT_S, SEED = 6, 3, 5, 2, 1
SERVED = 3                                # refuse-after-N answers this many
PARALLEL = 4                              # runs at a time: they mostly wait for timeouts
CAP = 8 * 2**20                           # --max-response-bytes' default
MAX_RSS_MB = 400                          # a load process is about 210 MB here; issue 16 measured 5.1 GB
# Generous on a busy 2-core machine: start-up, the schedule, each user's requests timing out one after another.
BOUND_S = 20 + REQUESTS / RATE + math.ceil(REQUESTS / USERS) * (TIMEOUT_S + 1)
PLAIN = ("--preset", "plain", "--expect-field", "label")  # plain alone takes any 2xx body; the answer is JSON
TIMED_OUT = r"no complete answer within 2 s \(request timeout; "
# Reports the load process's peak RSS: the kernel's high-water mark of the child, after it exits.
PEAK_RSS = ("import resource, subprocess, sys; code = subprocess.call(sys.argv[1:]); "
            "print(f'peak_rss_kb={resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}', file=sys.stderr); "
            "sys.exit(code)")


class Case(NamedTuple):
    name: str
    mode: str                  # the server's --mode
    kind: str                  # every row's failure kind (refuse-after-N: after the first SERVED)
    text: str                  # a regular expression every failure text matches
    status: int | None = 200   # every row's status (None: the clients differ)
    flags: tuple = PLAIN
    server_flags: tuple = ()


CASES = {c.name: c for c in (
    Case("reset", "reset-mid-response", "other", r"Connection reset by peer", status=None),
    Case("endless", "endless-body", "timeout", TIMED_OUT + r"HTTP 200, \d+ bytes of the body read\)$"),
    Case("never-answer", "accept-never-answer", "timeout", TIMED_OUT + r"no response headers\)$", status=0),
    Case("unparsable", "unparsable-200", "other", r"^HTTP 200 but the body is not JSON \(--expect-field label\): "
         r"<html><body>upstream error</body></html>$"),
    Case("no-body", "headers-no-body", "timeout", TIMED_OUT + r"HTTP 200, 0 bytes of the body read\)$"),
    Case("huge", "huge-body", "response_too_large", r"^Content-Length 300000000 is over --max-response-bytes "
         r"8388608: none of the body read, connection closed$"),
    Case("huge-chunked", "huge-body", "response_too_large", r"^the body passed --max-response-bytes 8388608 "
         r"\((\d+) bytes arrived\): the rest not read, connection closed$", server_flags=("--chunked",)),
    Case("sse-no-done", "sse-no-done", "stream-broken", r"^the stream ended after 3 events, before \[DONE\] or a "
         r"finish reason$", flags=("--preset", "openai-chat", "--model-name", "m")),
    Case("slow-drip", "slow-drip", "timeout", TIMED_OUT + r"HTTP 200, [123] bytes? of the body read\)$",
         server_flags=("--drip-s", "1")),
    Case("wrong-length", "wrong-content-length", "other", r"(?i)incomplete", status=None),
    Case("refuse", "refuse-after-N", "connection_refused", r"Connection refused", status=None,
         server_flags=("--serve", str(SERVED))),
)}


class Result(NamedTuple):
    rows: pd.DataFrame
    record: object   # burstbench.record.RunRecord
    received: dict   # the server's counts
    wall_s: float
    peak_rss_mb: float
    returncode: int
    stderr: str


def locust_command(url: str, results: Path, client: str, flags: tuple) -> list[str]:
    return [sys.executable, "-c", PEAK_RSS, sys.executable, "-m", "locust", "-f", str(HTTP_LOCUSTFILE),
            "--headless", "--only-summary", "--host", url, "--results-dir", str(results), "--client", client,
            "--request-timeout", str(TIMEOUT_S), "--rate", str(RATE), "--requests", str(REQUESTS),
            "-u", str(USERS), "-r", "100", "--seed", str(SEED), "--telemetry", "off", *flags]


class Launched(NamedTuple):
    proc: subprocess.Popen
    server: object
    results: Path
    log: Path
    started: float


def _launch(case: Case, client: str, start_server, folder: Path) -> Launched:
    server = start_server(case.mode, *case.server_flags)
    log = folder / "locust.log"
    with log.open("w") as out:  # a file, not a pipe: nobody reads while it runs
        proc = subprocess.Popen(locust_command(server.url, folder / "results", client, case.flags), cwd=REPO_ROOT,
                                stdout=out, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    return Launched(proc, server, folder / "results", log, time.monotonic())


def _collect(run: Launched) -> Result:
    wall_s = time.monotonic() - run.started
    received = run.server.stats()
    run.server.stop()
    output = run.log.read_text(errors="replace")
    run_dir = only_run_dir(run.results)
    rows = pd.read_csv(run_dir / "requests.csv", keep_default_na=False).sort_values("request_index")
    rss_kb = re.findall(r"peak_rss_kb=(\d+)", output)
    return Result(rows, load_record(run_dir), received, wall_s, int(rss_kb[-1]) / 1024 if rss_kb else float("nan"),
                  run.proc.returncode, output)


@pytest.fixture(scope="module")
def runs(misbehaving_servers, tmp_path_factory):  # noqa: F811 (fixture)
    """Every case with both clients, PARALLEL runs at a time (mostly waiting), each against its own server:
    {(case name, client): Result, or the reason it has none}."""
    pending = [(CASES[name], client) for name in sorted(CASES, key=lambda n: CASES[n].kind != "timeout")
               for client in CLIENTS]
    running: dict[tuple, Launched] = {}
    out: dict[tuple, Result | str] = {}
    while pending or running:
        while pending and len(running) < PARALLEL:
            case, client = pending.pop(0)
            running[case.name, client] = _launch(case, client, misbehaving_servers,
                                                 tmp_path_factory.mktemp(f"{case.name}-{client}"))
        time.sleep(0.1)
        for key, run in list(running.items()):
            if run.proc.poll() is not None:
                out[key] = _collect(running.pop(key))
            elif time.monotonic() - run.started > BOUND_S + 30:
                stop_process(run.proc)
                run.server.stop()
                running.pop(key)
                out[key] = f"the run did not end within {BOUND_S + 30:.0f} s"
    return out


@pytest.mark.load
@pytest.mark.parametrize("client", CLIENTS)
@pytest.mark.parametrize("name", sorted(CASES))
def test_each_request_ends_on_time_as_one_row_of_the_right_kind(runs, name, client):
    case, run = CASES[name], runs[name, client]
    assert isinstance(run, Result), run
    rows, counts = run.rows, run.record.counts
    assert run.wall_s < BOUND_S, f"{case.name} ({client}) took {run.wall_s:.1f} s:\n{run.stderr[-2000:]}"
    assert list(rows["request_index"]) == list(range(REQUESTS)), run.stderr[-2000:]
    failed = rows if case.mode != "refuse-after-N" else rows.iloc[SERVED:]
    assert set(failed["failure_kind"]) == {case.kind}, rows[["failure_kind", "failure_text"]].to_string()
    for text in failed["failure_text"]:
        assert re.search(case.text, text), text
    if case.status is not None:
        assert set(rows["status"]) == {case.status}
    # run.json agrees: every request sent is one row, Locust counted each once, none was cut off.
    assert (counts.sent, counts.rows, counts.ok + counts.failed, counts.locust_requests) == (REQUESTS,) * 4
    assert counts.consistent and run.record.status == "complete"
    assert run.returncode == 1  # Locust's exit code when a request failed
    # The server received each request once: none retried, none stuck behind a half-read connection.
    assert run.received["requests"] == (SERVED if case.mode == "refuse-after-N" else REQUESTS)
    if case.kind == "timeout":  # the whole request, not each read: a drip of bytes does not keep it alive
        e2e_s = rows["e2e_latency_ms"].astype(float) / 1000
        assert ((e2e_s >= TIMEOUT_S - 0.05) & (e2e_s < TIMEOUT_S + 1)).all(), e2e_s.tolist()
    if case.mode == "refuse-after-N":
        scheduled = rows["scheduled_epoch"].astype(float).to_numpy()
        assert scheduled[SERVED] - scheduled[SERVED - 1] > 0.05  # (the seed's schedule: nothing in flight then)
        assert list(rows["ok"]) == [1] * SERVED + [0] * (REQUESTS - SERVED)
    if case.mode == "huge-body":
        assert run.peak_rss_mb < MAX_RSS_MB, f"peak RSS {run.peak_rss_mb:.0f} MB"
    if case.name == "huge-chunked":  # no length to refuse: read to the cap and one read past it, then cut
        arrived = [int(re.search(case.text, t).group(1)) for t in rows["failure_text"]]
        assert all(CAP < n <= CAP + 64 * 1024 + 4096 for n in arrived), arrived


# ------------------------------------------------------------------------------ bad values, one line each
@pytest.mark.unit
@pytest.mark.parametrize("raw", ["1023", "1073741825", "8MiB", "-1"])
def test_max_response_bytes_outside_its_range_is_refused_naming_it(raw):
    with pytest.raises(SpecError) as info:
        LoadSpec.from_values({"max_response_bytes": raw})
    assert str(info.value) == f"--max-response-bytes must be an integer in [1024, 1073741824] (got {raw!r})"


@pytest.mark.unit
def test_max_response_bytes_defaults_to_8_mib():
    assert LoadSpec.from_values({}).max_response_bytes == CAP == 8388608


@pytest.mark.integration
def test_bad_client_and_cap_flags_stop_before_any_traffic_in_one_line(tmp_path):
    base = [sys.executable, "-m", "locust", "-f", str(HTTP_LOCUSTFILE), "--headless", "--host",
            "http://127.0.0.1:9", "--results-dir", str(tmp_path), *PLAIN]
    procs = [subprocess.Popen([*base, *flags], cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for flags in
             (("--client", "curl"), ("--max-response-bytes", "12"))]
    lines = []
    for proc in procs:
        _, stderr = proc.communicate(timeout=60)
        assert proc.returncode != 0
        lines.append([line for line in stderr.splitlines() if line.startswith("burstbench:")])
    assert lines == [["burstbench: --client must be one of fast, requests (got 'curl')"],
                     ["burstbench: --max-response-bytes must be an integer in [1024, 1073741824] (got '12')"]]
    assert not list(tmp_path.iterdir())  # no run folder
