"""The generator judged from the wire: HTTP requests in a packet capture, and the figures from them.

``read_capture`` turns a pcap or pcapng file (``locustfiles.wire_capture.WireCapture``) into one
row per HTTP/1.x request on the server's port. Each TCP direction is reassembled by sequence
number (the first copy of a byte wins, so retransmissions never move a time), then requests and
responses are read off the byte streams in order (keep-alive, no pipelining assumed). A time is
that of the packet carrying the byte in question, as the kernel stamped it (CLOCK_REALTIME, the
clock of ``time.time()`` and of the generator's rows).

The figures are pure functions of that table and, optionally, the generator's rows:
``wire_gap_metrics`` (the arrival process on the wire against the intended one), ``join_rows``
and ``schedule_metrics`` (wire against schedule, generator against wire).
"""
from __future__ import annotations

import heapq
import math
from bisect import bisect_right
from dataclasses import dataclass, field
from pathlib import Path

import dpkt
import numpy as np
import pandas as pd
from scipy import stats

COLUMNS = ["stream", "request_epoch", "request_id", "method", "path", "response_first_epoch",
           "response_last_epoch", "status", "wire_latency_ms"]
REQUEST_ID_HEADER = "x-burstbench-request"
W1_REFERENCE_N = 200_000
W1_REFERENCE_SEED = 0
SHORT_GAP_FRACTION_OF_MEAN = 0.1  # gaps under a tenth of the mean: where millisecond timers distort most
ROW_COLUMNS = ("request_index", "scheduled_epoch", "sent_epoch", "latency_ms")
SEQ_MOD = 1 << 32


# -- link layers -------------------------------------------------------------------------------
def _raw_ip(buf: bytes):
    return dpkt.ip6.IP6(buf) if buf and buf[0] >> 4 == 6 else dpkt.ip.IP(buf)


_LINK_DECODERS = {  # pcap link type -> the IP packet in a frame
    dpkt.pcap.DLT_EN10MB: lambda buf: dpkt.ethernet.Ethernet(buf).data,  # Linux lo
    dpkt.pcap.DLT_NULL: lambda buf: dpkt.loopback.Loopback(buf).data,    # BSD and macOS lo0
    dpkt.pcap.DLT_LOOP: lambda buf: dpkt.loopback.Loopback(buf).data,
    dpkt.pcap.DLT_LINUX_SLL: lambda buf: dpkt.sll.SLL(buf).data,         # -i any
    dpkt.pcap.DLT_LINUX_SLL2: lambda buf: dpkt.sll2.SLL2(buf).data,
    101: _raw_ip,  # LINKTYPE_RAW, as files store it; 12 and 14 are DLT_RAW as some systems number it
    12: _raw_ip,
    14: _raw_ip,
}


# -- TCP reassembly ----------------------------------------------------------------------------
@dataclass
class _Half:
    """One direction of one connection: its bytes in sequence order, and which packet brought each."""

    base: int | None = None        # sequence number of the first data byte
    end: int = 0                   # offset just past the contiguous bytes so far
    data: bytearray = field(default_factory=bytearray)
    chunk_offsets: list[int] = field(default_factory=list)  # where each packet's new bytes start ...
    chunk_epochs: list[float] = field(default_factory=list)  # ... and that packet's time
    pending: list = field(default_factory=list)  # out-of-order segments: heap of (offset, arrival, epoch, bytes)
    fin: bool = False
    arrivals: int = 0

    def add(self, seq: int, epoch: float, payload: bytes) -> None:
        if self.base is None:  # no SYN seen (capture started mid-connection): start at the first data
            self.base = seq
        offset = (seq - self.base) % SEQ_MOD
        if offset >= SEQ_MOD // 2 or offset + len(payload) <= self.end:
            return  # before the start, or every byte already held: a retransmission
        if offset > self.end:  # a hole before it: wait for the missing segment
            self.arrivals += 1
            heapq.heappush(self.pending, (offset, self.arrivals, epoch, payload))
            return
        self._append(offset, epoch, payload)
        while self.pending and self.pending[0][0] <= self.end:
            offset, _, epoch, payload = heapq.heappop(self.pending)
            if offset + len(payload) > self.end:
                self._append(offset, epoch, payload)

    def _append(self, offset: int, epoch: float, payload: bytes) -> None:
        new = payload[self.end - offset:]  # bytes already held keep their first packet's time
        self.chunk_offsets.append(self.end)
        self.chunk_epochs.append(epoch)
        self.data += new
        self.end += len(new)

    def epoch_at(self, offset: int) -> float:
        return self.chunk_epochs[bisect_right(self.chunk_offsets, offset) - 1]


@dataclass
class _Stream:
    sid: int
    client_isn: int | None = None
    to_server: _Half = field(default_factory=_Half)
    to_client: _Half = field(default_factory=_Half)


def _read_streams(pcap_path: Path, port: int) -> tuple[list[_Stream], int]:
    """The TCP connections to ``port``, in order of first packet, and the count of undecodable packets."""
    streams: list[_Stream] = []
    undecodable = 0
    current: dict[tuple, _Stream] = {}  # (client address, client port, server address) -> open stream
    with open(pcap_path, "rb") as fh:
        try:
            reader = dpkt.pcap.UniversalReader(fh)
        except (ValueError, dpkt.UnpackError) as exc:  # a file shorter than a header is NeedData
            raise ValueError(f"{pcap_path} is neither a pcap nor a pcapng capture: {exc}") from None
        decode = _LINK_DECODERS.get(reader.datalink())
        if decode is None:
            raise ValueError(f"{pcap_path}: link type {reader.datalink()} is not supported "
                             f"(supported: {sorted(_LINK_DECODERS)}; capture on lo or any)")
        for epoch, buf in reader:
            try:
                ip = decode(buf)
            except (dpkt.UnpackError, IndexError):
                undecodable += 1
                continue
            tcp = getattr(ip, "data", None)
            if not isinstance(tcp, dpkt.tcp.TCP):
                continue
            if tcp.dport == port:
                key, to_server = (ip.src, tcp.sport, ip.dst), True
            elif tcp.sport == port:
                key, to_server = (ip.dst, tcp.dport, ip.src), False
            else:
                continue
            syn, fin = tcp.flags & dpkt.tcp.TH_SYN, tcp.flags & dpkt.tcp.TH_FIN
            stream = current.get(key)
            # A client SYN with a new initial sequence number opens a new connection (ports get reused).
            client_syn = to_server and syn and not tcp.flags & dpkt.tcp.TH_ACK
            if client_syn and (stream is None or stream.client_isn != tcp.seq):
                stream = current[key] = _Stream(len(streams), client_isn=tcp.seq)
                streams.append(stream)
            elif stream is None:
                stream = current[key] = _Stream(len(streams))
                streams.append(stream)
            half = stream.to_server if to_server else stream.to_client
            if syn:
                if half.base is None:
                    half.base = (tcp.seq + 1) % SEQ_MOD  # the SYN takes one sequence number
                continue
            if tcp.data:
                payload = tcp.data
                # Cut at the snaplen: the real length is in the IP header. Stand-in bytes keep the
                # stream's offsets right; only bodies are cut at snaplen 1024, and bodies are skipped.
                length = (ip.len - ip.hl * 4 if isinstance(ip, dpkt.ip.IP) else ip.plen) - tcp.off * 4
                if length > len(payload):
                    payload = payload + bytes(length - len(payload))
                half.add(tcp.seq, float(epoch), payload)
            if fin:
                half.fin = True
    return streams, undecodable


# -- HTTP/1.x ----------------------------------------------------------------------------------
def _head(data: bytearray, pos: int):
    """(start offset, start line, headers, body offset) of the message at ``pos``; None if cut off."""
    while data.startswith(b"\r\n", pos):  # stray CRLF between messages is allowed (RFC 9112 2.2)
        pos += 2
    end = data.find(b"\r\n\r\n", pos)
    if end < 0:
        return None
    lines = data[pos:end].decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return pos, lines[0], headers, end + 4


def _chunked_end(data: bytearray, pos: int) -> int | None:
    while True:
        eol = data.find(b"\r\n", pos)
        if eol < 0:
            return None
        size = int(data[pos:eol].split(b";")[0], 16)
        if size == 0:  # last chunk, then trailers up to a blank line
            if data.startswith(b"\r\n", eol + 2):
                return eol + 4
            end = data.find(b"\r\n\r\n", eol + 2)
            return None if end < 0 else end + 4
        pos = eol + 2 + size + 2


def _body_end(data: bytearray, body_start: int, headers: dict, until_close: bool) -> int | None:
    """Offset past the message body; None if the capture holds only part of it; -1 if unreadable."""
    try:
        if "chunked" in headers.get("transfer-encoding", "").lower():
            end = _chunked_end(data, body_start)
        elif "content-length" in headers:
            end = body_start + int(headers["content-length"])
        elif until_close:  # a response without a length ends with the connection
            return None
        else:
            end = body_start
    except ValueError:  # a length that is not a number (or a snaplen stand-in where a chunk size was)
        return -1
    return end if end is not None and end <= len(data) else None


def _response(half: _Half, pos: int, method: str, counts: dict) -> tuple:
    """(status, first epoch, last epoch, offset of the next response or None) of the response at ``pos``."""
    while pos < len(half.data):
        head = _head(half.data, pos)
        if head is None:
            break
        start, line, headers, body_start = head
        parts = line.split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
            break
        status = int(parts[1])
        if 100 <= status < 200 and status != 101:  # 100 Continue and friends: the final response follows
            pos = body_start
            continue
        if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
            end = body_start
        else:
            end = _body_end(half.data, body_start, headers, until_close=True)
            if end is None and half.fin and not {"content-length", "transfer-encoding"} & headers.keys():
                end = len(half.data)  # read until close, and the close is in the capture
        if end == -1:
            break
        first = half.epoch_at(start)
        if end is None:  # the rest of this direction is one unfinished response
            return status, first, math.nan, None
        return status, first, half.epoch_at(end - 1), end
    counts["unparsed_response_bytes"] += len(half.data) - pos
    return None, math.nan, math.nan, None


def _stream_rows(stream: _Stream, counts: dict) -> list[tuple]:
    """Requests in order, each paired with the next response (HTTP/1.1 answers in request order)."""
    rows = []
    req, resp = stream.to_server, stream.to_client
    pos, resp_pos = 0, 0
    while pos < len(req.data):
        head = _head(req.data, pos)
        parts = head[1].split(" ") if head else []
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            counts["unparsed_request_bytes"] += len(req.data) - pos
            break
        start, _, headers, body_start = head
        method, path = parts[0], parts[1]
        raw_id = headers.get(REQUEST_ID_HEADER)
        request_id = int(raw_id) if raw_id is not None and raw_id.isdigit() else None
        if raw_id is not None and request_id is None:
            counts["unreadable_request_ids"] += 1
        end = _body_end(req.data, body_start, headers, until_close=False)
        if end == -1:
            counts["unparsed_request_bytes"] += len(req.data) - body_start
        pos = len(req.data) if end is None or end == -1 else end
        status, first, last = None, math.nan, math.nan
        if resp_pos is not None:
            status, first, last, resp_pos = _response(resp, resp_pos, method, counts)
        rows.append((stream.sid, req.epoch_at(start), request_id, method, path, first, last, status))
    if req.pending or resp.pending:
        counts["streams_with_holes"] += 1
    return rows


def read_capture(pcap_path: str | Path, port: int) -> pd.DataFrame:
    """One row per HTTP request to ``port`` in the capture, in wire order (see ``COLUMNS``).

    ``request_epoch``: the packet carrying the request's first byte. ``response_first_epoch``: the
    first byte of the final (non-1xx) status line; ``response_last_epoch``: the response's last
    byte (Content-Length, chunked terminator, or the close). A request without a complete response
    in the capture keeps its row with NaN/NA response fields. ``df.attrs`` holds ``streams`` and
    counts what could not be read: ``undecodable_packets``, ``streams_with_holes`` (a segment
    missing from the capture: nothing after it is read), ``unparsed_request_bytes``,
    ``unparsed_response_bytes``, ``unreadable_request_ids`` (an X-Burstbench-Request not an integer).
    """
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise ValueError(f"port must be an integer in 1..65535 (got {port!r})")
    pcap_path = Path(pcap_path)
    if not pcap_path.is_file():
        raise ValueError(f"capture file {pcap_path} does not exist")
    streams, undecodable = _read_streams(pcap_path, port)
    counts = dict.fromkeys(["streams_with_holes", "unparsed_request_bytes", "unparsed_response_bytes",
                            "unreadable_request_ids"], 0)
    rows = [row for stream in streams for row in _stream_rows(stream, counts)]
    df = pd.DataFrame(rows, columns=COLUMNS[:-1])
    df = df.astype({"stream": "int64", "request_epoch": "float64", "request_id": "Int64",
                    "response_first_epoch": "float64", "response_last_epoch": "float64", "status": "Int64"})
    df["wire_latency_ms"] = (df["response_last_epoch"] - df["request_epoch"]) * 1000.0
    df = df.sort_values("request_epoch", kind="stable").reset_index(drop=True)
    df.attrs.update(streams=len(streams), undecodable_packets=undecodable, **counts)
    return df


# -- figures -----------------------------------------------------------------------------------
def wire_gap_metrics(request_epochs, dist) -> dict:
    """The arrival process on the wire against the intended distribution ``dist``.

    Gaps are between consecutive request epochs in wire order (all connections together).
    ``w1_over_mean``: Wasserstein-1 distance between the wire gaps and ``dist`` itself, estimated
    against a seeded reference sample of ``dist`` (200,000 draws, seed 0; its own sampling error is
    a few thousandths of the mean), divided by ``dist.mean``. ``ks_distance``/``ks_pvalue``: the
    one-sample KS test against ``dist.cdf``. ``short_gap_fraction``: share of gaps below a tenth of
    the mean, beside ``short_gap_fraction_intended`` = ``dist.cdf(mean / 10)``.
    """
    epochs = np.sort(np.asarray(request_epochs, dtype=float))
    if len(epochs) < 3 or not np.isfinite(epochs).all():
        raise ValueError(f"request_epochs must be at least 3 finite epochs (got {len(epochs)}, "
                         f"{int((~np.isfinite(epochs)).sum())} not finite)")
    gaps = np.diff(epochs)
    span = float(epochs[-1] - epochs[0])
    if span <= 0:
        raise ValueError("request_epochs span no time: every request has the same epoch")
    ks = stats.kstest(gaps, dist.cdf)
    reference = dist.sample(W1_REFERENCE_N, np.random.default_rng(W1_REFERENCE_SEED))
    threshold_s = dist.mean * SHORT_GAP_FRACTION_OF_MEAN
    return {
        "requests": len(epochs),
        "offered_per_s": 1.0 / dist.mean,
        "achieved_per_s": (len(epochs) - 1) / span,
        "ks_distance": float(ks.statistic),
        "ks_pvalue": float(ks.pvalue),
        "w1_over_mean": float(stats.wasserstein_distance(gaps, reference) / dist.mean),
        "cv_wire": float(np.std(gaps, ddof=1) / np.mean(gaps)),
        "cv_intended": float(dist.cv),
        "short_gap_threshold_s": threshold_s,
        "short_gap_fraction": float(np.mean(gaps < threshold_s)),
        "short_gap_fraction_intended": float(dist.cdf(threshold_s)),
    }


def join_rows(wire: pd.DataFrame, rows: pd.DataFrame) -> pd.DataFrame:
    """Outer join of the generator's rows and the wire's requests on request_index == request_id.

    Row columns keep their names, clashing wire columns get ``_wire``; ``match`` says which side
    each row has: ``matched``, ``rows_only`` (never seen on the wire) or ``wire_only``.
    """
    missing = [c for c in ROW_COLUMNS if c not in rows.columns]
    if missing:
        raise ValueError(f"rows lack column(s) {', '.join(missing)} (need {', '.join(ROW_COLUMNS)})")
    if missing := [c for c in COLUMNS if c not in wire.columns]:
        raise ValueError(f"wire lacks column(s) {', '.join(missing)}: pass read_capture's table")
    if rows["request_index"].isna().any():
        raise ValueError("rows have a missing request_index")
    for name, keys in (("rows' request_index", rows["request_index"]),
                       ("wire's request_id", wire["request_id"].dropna())):
        if dupes := int(keys.duplicated().sum()):
            raise ValueError(f"{name} has {dupes} duplicate value(s), e.g. {keys[keys.duplicated()].iloc[0]}: "
                             "cannot join one to one")
    joined = rows.merge(wire, how="outer", left_on="request_index", right_on="request_id",
                        suffixes=("", "_wire"), indicator="match")
    joined["match"] = joined["match"].map({"both": "matched", "left_only": "rows_only",
                                           "right_only": "wire_only"}).astype(str)
    return joined


def _quantiles_ms(values: pd.Series, prefix: str, qs: dict) -> dict:
    values = values.dropna().to_numpy(dtype=float)
    return {f"{prefix}_{name}_ms": (float(np.quantile(values, q)) if len(values) else math.nan)
            for name, q in qs.items()}


def schedule_metrics(joined: pd.DataFrame) -> dict:
    """Wire against schedule and generator against wire, from ``join_rows``'s table.

    ``wire_minus_scheduled``: request's first byte on the wire minus its scheduled epoch, over every
    matched request including the first (``_first_ms`` is the first scheduled one alone).
    ``wire_minus_sent``: the wire minus the generator's own send stamp. ``client_overhead``: the
    generator's latency_ms minus wire_latency_ms, over matched requests with a response on the wire.
    NaN where nothing was matched; the counts say so.
    """
    if "match" not in joined.columns:
        raise ValueError("joined lacks the 'match' column: pass join_rows's table")
    matched = joined[joined["match"] == "matched"]
    late_ms = (matched["request_epoch"] - matched["scheduled_epoch"]) * 1000.0
    out = {
        "rows": int((joined["match"] != "wire_only").sum()),
        "wire_requests": int((joined["match"] != "rows_only").sum()),
        "matched": len(matched),
        "rows_without_wire": int((joined["match"] == "rows_only").sum()),
        "wire_without_rows": int((joined["match"] == "wire_only").sum()),
    }
    out |= _quantiles_ms(late_ms, "wire_minus_scheduled", {"p50": 0.5, "p99": 0.99, "max": 1.0})
    out["wire_minus_scheduled_first_ms"] = (float(late_ms.loc[matched["scheduled_epoch"].idxmin()])
                                            if len(matched) else math.nan)
    out |= _quantiles_ms((matched["request_epoch"] - matched["sent_epoch"]) * 1000.0, "wire_minus_sent",
                         {"p50": 0.5, "p99": 0.99})
    overhead = matched["latency_ms"] - matched["wire_latency_ms"]
    out["client_overhead_n"] = int(overhead.notna().sum())
    out |= _quantiles_ms(overhead, "client_overhead", {"p50": 0.5, "p99": 0.99})
    return out
