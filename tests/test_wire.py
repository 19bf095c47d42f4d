"""The wire observer: a real loopback capture of nginx, a synthetic capture with exact answers, and
the gap metrics shown able to pass and to fail."""
from __future__ import annotations

import http.client
import math
import os
import socket
import time

import dpkt
import numpy as np
import pandas as pd
import pytest

from burstbench.analysis.wire import COLUMNS, join_rows, read_capture, schedule_metrics, wire_gap_metrics
from burstbench.arrivals import Exponential, Gamma
from burstbench.experiments.wire_capture import WireCapture

REQUIRE_WIRE = bool(os.environ.get("BURSTBENCH_REQUIRE_WIRE"))


# -- (a) a real capture ------------------------------------------------------------------------
@pytest.mark.load
def test_real_capture_sees_every_request_at_the_clients_time(tmp_path):
    from burstbench.experiments.nginx_server import FixedBodyServer, find_nginx

    reason = WireCapture.available()
    try:
        nginx = find_nginx(None)
    except ValueError as exc:
        reason = reason or str(exc)
    if reason:
        if REQUIRE_WIRE:
            pytest.fail(f"BURSTBENCH_REQUIRE_WIRE is set but: {reason}")
        pytest.skip(reason)

    n, connections = 50, 3
    client_epochs = {}
    with FixedBodyServer(nginx) as server:
        with WireCapture(server.port, tmp_path / "wire.pcap") as capture:
            conns = [http.client.HTTPConnection("127.0.0.1", server.port, timeout=10) for _ in range(connections)]
            for i in range(n):
                conn = conns[i % connections]  # keep-alive: several requests per connection, interleaved
                client_epochs[i] = time.time()
                conn.request("GET", "/", headers={"X-Burstbench-Request": str(i)})
                resp = conn.getresponse()
                resp.read()
                assert resp.status == 200
            for conn in conns:
                conn.close()
        wire = read_capture(tmp_path / "wire.pcap", server.port)

    assert capture.dropped == 0
    assert list(wire.columns) == COLUMNS and len(wire) == n
    assert sorted(wire["request_id"]) == list(range(n))
    assert wire["stream"].nunique() == connections
    assert (wire["status"] == 200).all() and (wire["method"] == "GET").all() and (wire["path"] == "/").all()
    # Same clock (CLOCK_REALTIME) on both sides: the wire follows the client's stamp within a loose bound.
    offset_s = wire["request_epoch"] - wire["request_id"].astype(int).map(client_epochs)
    assert offset_s.abs().max() < 0.05, offset_s.describe()
    assert (wire["response_first_epoch"] >= wire["request_epoch"]).all()
    assert (wire["response_last_epoch"] >= wire["response_first_epoch"]).all()
    assert (wire["wire_latency_ms"] >= 0).all()
    assert wire.attrs["streams_with_holes"] == 0 and wire.attrs["unparsed_response_bytes"] == 0


def test_wire_capture_says_why_it_cannot_capture(tmp_path):
    reason = WireCapture.available(interface="bb-no-such-if")
    assert reason.startswith("tcpdump") and "\n" not in reason  # not found, or no such device
    with pytest.raises(ValueError, match="port must be"):
        WireCapture(70000, tmp_path / "x.pcap")


# -- (b) a synthetic capture -------------------------------------------------------------------
LOCAL = socket.inet_aton("127.0.0.1")
PORT = 8080
T0 = 1_800_000_000.0
ACK, SYN, FIN, PSH = dpkt.tcp.TH_ACK, dpkt.tcp.TH_SYN, dpkt.tcp.TH_FIN, dpkt.tcp.TH_PUSH


def frame(sport: int, dport: int, seq: int, flags: int, payload: bytes = b"") -> bytes:
    tcp = dpkt.tcp.TCP(sport=sport, dport=dport, seq=seq, ack=1, flags=flags, data=payload)
    ip = dpkt.ip.IP(src=LOCAL, dst=LOCAL, p=dpkt.ip.IP_PROTO_TCP, data=tcp)
    return bytes(dpkt.ethernet.Ethernet(type=dpkt.ethernet.ETH_TYPE_IP, data=ip))


REQ0 = b"GET /a HTTP/1.1\r\nHost: x\r\nX-Burstbench-Request: 7\r\n\r\n"
RESP0_HEAD = b"HTTP/1.1 200 OK\r\nContent-Length: 1500\r\n\r\n"
REQ1 = b"POST /b HTTP/1.1\r\nHost: x\r\nx-burstbench-request: 8\r\nContent-Length: 5\r\n\r\nhello"
RESP1 = b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n"
REQ2 = b"GET /c HTTP/1.1\r\nHost: x\r\n\r\n"


def synthetic_packets() -> list[tuple[float, bytes]]:
    """Two connections (A, then B); times in seconds after T0. A's client ISN is 1000, its server's 5000."""
    a, b = 40000, 40001
    c0, s0 = 1001, 5001  # first data byte of each direction of A
    split = 20           # request 0's headers span two segments
    body = b"x" * 1500
    return [
        (0.0, frame(a, PORT, 1000, SYN)),
        (0.0, frame(PORT, a, 5000, SYN | ACK)),
        (1.0, frame(a, PORT, c0, PSH | ACK, REQ0[:split])),
        (1.05, frame(a, PORT, c0, PSH | ACK, REQ0[:split])),  # a retransmission: must not move the time
        (1.1, frame(a, PORT, c0 + split, PSH | ACK, REQ0[split:])),
        (1.2, frame(PORT, a, s0, PSH | ACK, RESP0_HEAD)),
        # The body's packet is cut at a 600-byte snaplen: the IP length still says 1500 bytes.
        (1.25, frame(PORT, a, s0 + len(RESP0_HEAD), PSH | ACK, body)[:600]),
        (1.4, frame(PORT, a, s0 + len(RESP0_HEAD), PSH | ACK, body)),  # retransmitted body
        (2.0, frame(a, PORT, c0 + len(REQ0), PSH | ACK, REQ1)),
        (2.1, frame(PORT, a, s0 + len(RESP0_HEAD) + len(body), PSH | ACK, RESP1)),
        (2.15, frame(PORT, a, s0 + len(RESP0_HEAD) + len(body) + len(RESP1), PSH | ACK, b"0\r\n\r\n")),
        (3.0, frame(b, PORT, 9000, SYN)),
        (3.0, frame(PORT, b, 7000, SYN | ACK)),
        # Out of order: the request's second segment arrives first; its time is the first byte's packet's.
        (3.4, frame(b, PORT, 9001 + 10, PSH | ACK, REQ2[10:])),
        (3.5, frame(b, PORT, 9001, PSH | ACK, REQ2[:10])),  # the capture stops before its response
        (3.6, frame(a, PORT, c0 + len(REQ0) + len(REQ1), FIN | ACK)),
    ]


@pytest.mark.parametrize("fmt", ["pcap", "pcapng"])
def test_synthetic_capture_parses_exactly(tmp_path, fmt):
    path = tmp_path / f"synthetic.{fmt}"
    with path.open("wb") as fh:
        writer = dpkt.pcap.Writer(fh, nano=True) if fmt == "pcap" else dpkt.pcapng.Writer(fh)
        for t, buf in synthetic_packets():
            writer.writepkt(buf, ts=T0 + t)
    wire = read_capture(path, PORT)

    assert list(wire.columns) == COLUMNS
    assert list(wire["stream"]) == [0, 0, 1]
    assert list(wire["method"]) == ["GET", "POST", "GET"] and list(wire["path"]) == ["/a", "/b", "/c"]
    assert wire["request_id"].tolist() == [7, 8, pd.NA]
    assert wire["status"].tolist() == [200, 201, pd.NA]
    us = 1e-6
    assert wire["request_epoch"].tolist() == pytest.approx([T0 + 1.0, T0 + 2.0, T0 + 3.5], abs=us)
    assert wire["response_first_epoch"].iloc[:2].tolist() == pytest.approx([T0 + 1.2, T0 + 2.1], abs=us)
    assert wire["response_last_epoch"].iloc[:2].tolist() == pytest.approx([T0 + 1.25, T0 + 2.15], abs=us)
    assert wire["wire_latency_ms"].iloc[:2].tolist() == pytest.approx([250.0, 150.0], abs=0.01)
    assert wire.iloc[2][["response_first_epoch", "response_last_epoch", "wire_latency_ms"]].isna().all()
    assert wire.attrs == {"streams": 2, "undecodable_packets": 0, "streams_with_holes": 0, "unparsed_request_bytes": 0,
                          "unparsed_response_bytes": 0, "unreadable_request_ids": 0}


def test_read_capture_rejects_bad_input(tmp_path):
    junk = tmp_path / "junk.pcap"
    junk.write_bytes(b"not a capture at all")
    with pytest.raises(ValueError, match="neither a pcap nor a pcapng"):
        read_capture(junk, PORT)
    with pytest.raises(ValueError, match="port must be"):
        read_capture(junk, 0)
    with pytest.raises(ValueError, match="does not exist"):
        read_capture(tmp_path / "missing.pcap", PORT)


# -- (c) gap metrics: they pass on the intended process and fail on a distorted one ------------
@pytest.mark.parametrize("dist", [Exponential(mean=0.005), Gamma(shape=0.5, mean=0.005)], ids=str)
def test_wire_gap_metrics_pass_on_the_intended_process(dist):
    gaps = dist.sample(5000, np.random.default_rng(1))
    m = wire_gap_metrics(T0 + np.concatenate([[0.0], np.cumsum(gaps)]), dist)
    assert m["requests"] == 5001
    assert m["ks_pvalue"] > 0.01
    assert m["w1_over_mean"] < 0.05
    assert m["achieved_per_s"] == pytest.approx(200, rel=0.05)
    assert m["cv_wire"] == pytest.approx(dist.cv, rel=0.06) and m["cv_intended"] == dist.cv
    assert m["short_gap_fraction"] == pytest.approx(m["short_gap_fraction_intended"], abs=0.02)


def test_wire_gap_metrics_fail_on_millisecond_rounded_sends():
    """The distortion measured in December 2026: gevent's timer puts sends on millisecond ticks."""
    dist = Exponential(mean=0.005)
    epochs = T0 + np.concatenate([[0.0], np.cumsum(dist.sample(5000, np.random.default_rng(1)))])
    exact, rounded = wire_gap_metrics(epochs, dist), wire_gap_metrics(np.round(epochs, 3), dist)
    assert exact["ks_pvalue"] > 0.01
    # 200 requests/s on millisecond ticks: the KS distance the December capture measured (0.08-0.09).
    assert rounded["ks_distance"] > 0.08 and rounded["ks_pvalue"] < 1e-6
    assert rounded["w1_over_mean"] > 2 * exact["w1_over_mean"]


def test_wire_gap_metrics_reject_too_few_epochs():
    with pytest.raises(ValueError, match="at least 3 finite"):
        wire_gap_metrics([T0, T0 + 1], Exponential(mean=1.0))
    with pytest.raises(ValueError, match="not finite"):
        wire_gap_metrics([T0, math.nan, T0 + 1, T0 + 2], Exponential(mean=1.0))


# -- join and schedule metrics -----------------------------------------------------------------
def test_join_rows_and_schedule_metrics_count_both_sides():
    wire = pd.DataFrame({
        "stream": [0, 0, 1, 1],
        "request_epoch": [T0 + 0.0011, T0 + 0.0105, T0 + 0.0302, T0 + 0.05],
        "request_id": pd.array([0, 1, 3, pd.NA], dtype="Int64"),
        "method": "GET", "path": "/",
        "response_first_epoch": [T0 + 0.0012, T0 + 0.0106, math.nan, math.nan],
        "response_last_epoch": [T0 + 0.0013, T0 + 0.0107, math.nan, math.nan],
        "status": pd.array([200, 200, pd.NA, pd.NA], dtype="Int64"),
    })
    wire["wire_latency_ms"] = (wire["response_last_epoch"] - wire["request_epoch"]) * 1000
    rows = pd.DataFrame({"request_index": [0, 1, 2, 3], "scheduled_epoch": [T0, T0 + 0.01, T0 + 0.02, T0 + 0.03],
                         "sent_epoch": [T0 + 0.0010, T0 + 0.0103, T0 + 0.0201, T0 + 0.0301],
                         "latency_ms": [0.5, 0.6, math.nan, math.nan]})
    joined = join_rows(wire, rows)
    assert sorted(joined["match"]) == ["matched", "matched", "matched", "rows_only", "wire_only"]
    m = schedule_metrics(joined)
    assert (m["rows"], m["wire_requests"], m["matched"], m["rows_without_wire"], m["wire_without_rows"]) == \
        (4, 4, 3, 1, 1)
    assert m["wire_minus_scheduled_first_ms"] == pytest.approx(1.1, abs=1e-3)
    assert m["wire_minus_scheduled_max_ms"] == pytest.approx(1.1, abs=1e-3)
    assert m["wire_minus_scheduled_p50_ms"] == pytest.approx(0.5, abs=1e-3)  # of 1.1, 0.5, 0.2
    assert m["client_overhead_n"] == 2
    assert m["client_overhead_p50_ms"] == pytest.approx(((0.5 - 0.2) + (0.6 - 0.2)) / 2, abs=1e-3)

    with pytest.raises(ValueError, match="duplicate"):
        join_rows(wire, pd.concat([rows, rows.iloc[:1]]))
    with pytest.raises(ValueError, match="rows lack column"):
        join_rows(wire, rows.drop(columns="sent_epoch"))
