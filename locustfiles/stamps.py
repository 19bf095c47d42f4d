"""Send and receive stamps taken at the socket, so a row's latency leaves the HTTP client out.

Locust times a request from before it is built (headers, URL, the connection pool) to after its
body is parsed; against a loopback server that answers in 0.04 ms that is about 1 ms of client
work in the latency. geventhttpclient (FastHttpUser's client) makes its TCP sockets in one
overridable place, ``ConnectionPool._create_tcp_socket``: ``install`` makes them ``StampedSocket``s,
which note, for the request the current greenlet is sending, the moment just before the first
``sendall`` of the request and the moment each ``recv`` returns data. A Locust user sends one request
at a time from its own greenlet, so the stamps are kept on the greenlet.

``StampedSocket.sendall`` also holds the first write of a request until its ``gate`` (the slot's
due time), so that the time spent building the request is taken before the slot, not after it.

TLS connections (geventhttpclient wraps the socket in SSL) and requests' ``HttpUser`` are not
stamped: their rows carry the client-level times and run.json says so.
"""
from __future__ import annotations

import bisect
import time

import gevent
import gevent.socket
from geventhttpclient import connectionpool

perf_counter = time.perf_counter
_holders: list[float] = []  # gates of the senders now holding their first write, sorted (a handful at most)
gevent_sleep = gevent.sleep
HOLD_SPIN_S = 0.00003  # the last 30 us before a gate are busy-waited: a yield can cost more than that


class RequestStamps:
    """One request's socket times on perf_counter (None until they happen)."""

    __slots__ = ("gate_s", "contended", "sent_s", "last_recv_s", "connect_s", "connected")

    def __init__(self, gate_s: float | None = None, contended=None):
        self.gate_s = gate_s
        self.contended = contended  # (gate) -> will another sender wake before it? (the dispatcher knows)
        self.sent_s: float | None = None
        self.last_recv_s: float | None = None
        self.connect_s: float | None = None  # when a connection had to be opened first (its SYN)
        self.connected = False  # a new connection was opened inside this request

    def hold(self) -> None:
        """Hold the write until the gate, earliest gate first.

        Yield while another sender with an earlier gate is still holding, or while more than
        ``HOLD_SPIN_S`` remains and another sender will wake before this gate: senders due close
        together then all build their requests before the first slot, and write one right after
        another. Otherwise busy-wait: a yield would let any other greenlet (Locust's CSV writer,
        a response being parsed) run first and make this send late by as long as it runs.
        """
        gate = self.gate_s
        if gate is None:
            return
        bisect.insort(_holders, gate)
        try:
            while True:
                now = perf_counter()
                earliest = _holders[0] >= gate
                if now >= gate and earliest:
                    return
                if not earliest or (gate - now > HOLD_SPIN_S and self.contended is not None
                                    and self.contended(gate)):
                    gevent_sleep(0)
        finally:
            _holders.remove(gate)

    def first_action_s(self, fallback_s: float) -> float:
        """When the request first touched the network: its write, else its connect, else (nothing went
        out: a refused pool, a bad URL) the later of ``fallback_s`` and the gate, never before the slot."""
        if self.connect_s is not None:
            return self.connect_s
        if self.sent_s is not None:
            return self.sent_s
        return max(fallback_s, self.gate_s) if self.gate_s is not None else fallback_s


class StampedSocket(gevent.socket.socket):
    """A gevent socket that stamps the current greenlet's request (see the module docstring)."""

    def sendall(self, data, flags=0):
        stamps = getattr(gevent.getcurrent(), "burstbench_stamps", None)
        if stamps is None or stamps.sent_s is not None:
            return super().sendall(data, flags)
        stamps.hold()
        stamps.sent_s = perf_counter()
        result = super().sendall(data, flags)
        if _holders:  # another sender is due about now: let it write before this one reads its answer
            gevent_sleep(0)
        return result

    def recv(self, *args):
        data = super().recv(*args)
        stamps = getattr(gevent.getcurrent(), "burstbench_stamps", None)
        if stamps is not None and data:
            stamps.last_recv_s = perf_counter()
        return data

    def connect(self, address):
        stamps = getattr(gevent.getcurrent(), "burstbench_stamps", None)
        if stamps is not None and stamps.connect_s is None:
            stamps.hold()  # a SYN is traffic too: never before the slot
            stamps.connected = True
            stamps.connect_s = perf_counter()
        return super().connect(address)


_installed = False


def install() -> None:
    """Make every geventhttpclient TCP socket of this process a StampedSocket (idempotent)."""
    global _installed
    if _installed:
        return

    def _create_tcp_socket(self, family, socktype, protocol):
        return StampedSocket(family, socktype, protocol)

    connectionpool.ConnectionPool._create_tcp_socket = _create_tcp_socket
    _installed = True


def begin(gate_s: float | None = None, contended=None) -> RequestStamps:
    """Start stamping the current greenlet's next request (``contended``: see ``RequestStamps``)."""
    stamps = RequestStamps(gate_s, contended)
    gevent.getcurrent().burstbench_stamps = stamps
    return stamps


def end() -> None:
    gevent.getcurrent().burstbench_stamps = None


def warm_connection(user) -> bool:
    """Open (and keep in the pool) the FastHttpUser's connection to its host before the first slot.

    No request is sent: the first request of a run then waits for no TCP handshake. Returns
    False for clients that cannot be warmed this way (requests' HttpUser, no host).
    """
    client = getattr(getattr(user, "client", None), "client", None)
    pool_of = getattr(client, "clientpool", None)
    host = getattr(user, "host", None)
    if pool_of is None or not host:
        return False
    pool = pool_of.get_client(host)._connection_pool
    sock = pool.get_socket()
    pool.return_socket(sock)
    return True


def recv_clock() -> float:
    """When the current greenlet's request last received data (its socket stamp), else now."""
    stamps = getattr(gevent.getcurrent(), "burstbench_stamps", None)
    if stamps is not None and stamps.last_recv_s is not None:
        return stamps.last_recv_s
    return perf_counter()
