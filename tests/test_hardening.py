"""Hardened inputs against a real BentoML server on loopback: generated and hand-made malformed traffic.

Target everywhere: a clear 4xx (or a 200 for what is in fact acceptable), never a 5xx, never a dropped
connection, and /readyz 200 afterwards. The long generated run is `make fuzz` (service/fuzz.py).
"""
from __future__ import annotations

import asyncio
import json
import resource

import pytest
import requests

from conftest import Server
from burstbench.service.fuzz import fuzz

pytestmark = pytest.mark.server
ROUTE = "/analyze-sentiment"
LIMIT = 64 * 1024  # BURSTBENCH_MAX_BODY_BYTES default
CONNECTIONS = 2000  # concurrent loopback connections: half idle mid-headers, half real requests
SHORT_FUZZ_CASES = 150


def raise_open_files_limit(needed: int) -> int:
    """Raise the soft limit on open files towards ``needed`` (never past the hard limit); returns it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


@pytest.fixture(scope="module")
def hard_server(tiny_model, tmp_path_factory):
    """A server of its own (the connection storm must not disturb the shared one); it inherits the raised limit."""
    raise_open_files_limit(2 * CONNECTIONS + 1024)
    srv = Server(tiny_model, tmp_path_factory.mktemp("hardening") / "service.log", max_length=32)
    yield srv
    srv.stop()


def post(url: str, body, content_type: str | None = "application/json"):
    headers = {} if content_type is None else {"Content-Type": content_type}
    return requests.post(url + ROUTE, data=body, headers=headers, timeout=60)


def message(resp) -> str:
    body = resp.json()
    return " ".join([body.get("error", "")] + [d.get("msg", "") for d in body.get("detail", [])])


def test_generated_cases_get_no_5xx(hard_server):
    report = fuzz(hard_server.url, SHORT_FUZZ_CASES, seed=0, progress_every_s=30)
    print(report.table())
    assert report.server_errors == []
    assert report.total >= SHORT_FUZZ_CASES
    statuses = report.by_status()
    assert statuses[200] > 0 and statuses[400] > 0  # both the model and the validator were reached
    assert report.ready_after is True


NESTED = 100_000
CASES = [
    # name, body, content type, status, fragment of the message
    ("over the limit", json.dumps({"text": "a" * (LIMIT + 1)}), "application/json", 413, "over the limit of 65536"),
    ("5 MB", b'{"text": "' + b"a" * 5_000_000 + b'"}', "application/json", 413, "over the limit of 65536"),
    ("deep arrays", "[" * NESTED + "]" * NESTED, "application/json", 413, "over the limit"),
    ("deep arrays within the limit", "[" * 30_000 + "]" * 30_000, "application/json", 400, "nested too deeply"),
    ("deep text within the limit", '{"text": ' + "[" * 30_000 + "]" * 30_000 + "}", "application/json", 400,
     "nested too deeply"),
    ("deep objects", '{"a":' * 5_000 + "1" + "}" * 5_000, "application/json", 400, "nested too deeply"),
    ("invalid UTF-8", b'{"text": "caf\xe9 \xff\xfe"}', "application/json", 400, "not valid JSON"),
    ("lone surrogate", '{"text": "ok \\ud800"}', "application/json", 400, "lone surrogate"),
    ("text/plain", '{"text": "hi"}', "text/plain", 415, "Content-Type must be application/json"),
    ("form", "text=hi", "application/x-www-form-urlencoded", 415, "Content-Type must be application/json"),
    ("multipart", b"--x\r\n\r\nhi\r\n--x--", "multipart/form-data; boundary=x", 415, "application/json"),
    ("whitespace only", json.dumps({"text": " \t\n\r\x0b\x0c\u2003\u3000\x1c"}), "application/json", 400, "non-empty"),
    ("number", '{"text": 42}', "application/json", 400, "must be a string (got int)"),
    ("float NaN", '{"text": NaN}', "application/json", 400, "must be a string (got float)"),
    ("null", '{"text": null}', "application/json", 400, "must be a string (got NoneType)"),
    ("array", '{"text": ["a", "b"]}', "application/json", 400, "must be a string (got list)"),
    ("object", '{"text": {"text": "a"}}', "application/json", 400, "must be a string (got dict)"),
    ("huge integer", '{"text": ' + "9" * 5_000 + "}", "application/json", 400, "not valid JSON"),
    ("empty body", b"", "application/json", 400, "not valid JSON"),
    ("top-level string", '"just text"', "application/json", 400, "JSON object"),
]


@pytest.mark.parametrize("body, content_type, status, fragment", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_hand_made_bad_input_gets_a_clear_4xx(hard_server, body, content_type, status, fragment):
    resp = post(hard_server.url, body, content_type)
    assert resp.status_code == status, resp.text[:300]
    assert fragment in message(resp)


@pytest.mark.parametrize("text", ["\x00\x01\x02", "\u200b", "\U0001F600" * 10, "a" * 60_000],
                         ids=["control characters", "zero-width space", "emoji", "60 KB text"])
def test_odd_but_valid_text_is_answered(hard_server, text):
    resp = post(hard_server.url, json.dumps({"text": text}))
    assert resp.status_code == 200, resp.text[:300]
    assert resp.json()["tokens"] <= 32


@pytest.mark.parametrize("content_type", [None, "APPLICATION/JSON", "application/json; charset=utf-8"],
                         ids=["missing", "upper case", "with charset"])
def test_json_content_type_variants_are_accepted(hard_server, content_type):
    assert post(hard_server.url, '{"text": "fine"}', content_type).status_code == 200


def test_chunked_multi_megabyte_body_is_stopped_at_the_limit(hard_server):
    sent = 0

    def chunks():  # no Content-Length: the guard must count what arrives
        nonlocal sent
        yield b'{"text": "'
        for _ in range(300):
            sent += 10_000
            yield b"a" * 10_000
        yield b'"}'

    try:
        resp = post(hard_server.url, chunks())
    except requests.ConnectionError:  # the server may close before the client has sent it all
        resp = None
    if resp is not None:
        assert resp.status_code == 413 and "over the limit of 65536" in message(resp)
    assert requests.get(hard_server.url + "/readyz", timeout=10).status_code == 200


async def _status_of_request(host: str, port: int, body: bytes, start: asyncio.Event) -> int | str:
    try:
        reader, writer = await asyncio.open_connection(host, port)
    except OSError as err:
        return type(err).__name__
    try:
        await start.wait()  # every connection is open before any request is sent
        writer.write(b"POST " + ROUTE.encode() + b" HTTP/1.1\r\nHost: " + host.encode() + b"\r\n"
                     b"Content-Type: application/json\r\nConnection: close\r\n"
                     b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        await writer.drain()
        status_line = await reader.readline()
        return int(status_line.split()[1]) if status_line.startswith(b"HTTP/1.1 ") else f"bad line {status_line!r}"
    except (OSError, asyncio.IncompleteReadError) as err:
        return type(err).__name__
    finally:
        writer.close()


async def _idle_connection(host: str, port: int, release: asyncio.Event) -> bool:
    """A client that sends half a request line and stalls (slowloris), until released."""
    try:
        reader, writer = await asyncio.open_connection(host, port)
    except OSError:
        return False
    try:
        writer.write(b"POST " + ROUTE.encode() + b" HTTP/1.1\r\nHost: ")
        await writer.drain()
        await release.wait()
        return True
    finally:
        writer.close()


VALID_IN_STORM = 50  # valid requests among the storm's; more than a few hundred at once are shed (below)
BAD_BODIES = [b'{"text": 5}', b'{"txt": "x"}', b'{"text": "   "}', b'[1, 2]', b'{"text": "unterminated', b'{"text": "\\ud800"}']


async def _storm(host: str, port: int, n_requests: int, n_idle: int) -> tuple[list, list]:
    start, release = asyncio.Event(), asyncio.Event()
    idle = [asyncio.create_task(_idle_connection(host, port, release)) for _ in range(n_idle)]
    await asyncio.sleep(1)
    bodies = [json.dumps({"text": f"request {i}"}).encode() if i < VALID_IN_STORM else BAD_BODIES[i % len(BAD_BODIES)]
              for i in range(n_requests)]
    requests_ = [asyncio.create_task(_status_of_request(host, port, body, start)) for body in bodies]
    await asyncio.sleep(1)
    start.set()
    try:
        statuses = await asyncio.wait_for(asyncio.gather(*requests_), timeout=240)
    finally:
        release.set()
    return statuses, await asyncio.gather(*idle)


def test_thousands_of_concurrent_connections(hard_server):
    """Half the connections stall mid-request; the other half all send at once: bad bodies and a few valid ones.

    Not tested here, by design: a thousand *valid* requests at once. BentoML's adaptive batching
    estimates each queued request's finish time from a cost model fitted on batches of 1-3 and sheds
    with 503 what would miss BURSTBENCH_MAX_LATENCY_MS; on this 2-core machine 934 of 1,000 were shed.
    That is overload, reported by the load runs as its own failure kind, not bad input.
    """
    limit = raise_open_files_limit(2 * CONNECTIONS + 1024)
    n = min(CONNECTIONS, (limit - 256) // 2)  # within this process's open-file limit, said in the output
    print(f"open-files limit {limit}: {n // 2} idle connections and {n - n // 2} concurrent requests")
    port = int(hard_server.url.rsplit(":", 1)[1])
    statuses, idle = asyncio.run(_storm("127.0.0.1", port, n - n // 2, n // 2))
    counts = {s: statuses.count(s) for s in set(statuses)}
    valid, bad = statuses[:VALID_IN_STORM], statuses[VALID_IN_STORM:]  # gather keeps the order of the bodies
    assert bad == [400] * len(bad), counts  # every bad body refused as bad input, none a 500 or a dropped connection
    # A valid body is answered, or shed by adaptive batching as overload (503: the storm's 950 bad requests came
    # first on 2 cores; one CI run in three shed 43 of the 50). Never a 400, a 500 or a broken connection.
    assert set(valid) <= {200, 503}, counts
    assert all(idle)  # every idle connection was accepted and held
    assert requests.get(hard_server.url + "/readyz", timeout=10).status_code == 200
    assert post(hard_server.url, '{"text": "still here"}').status_code == 200
