"""The bounds of one request, for both Locust clients: all of it within --request-timeout, its body within
--max-response-bytes. Whatever the target does, a request ends as one row, on time, in bounded memory.

Time: ``exchange`` runs the target's request and judgement under one ``gevent.Timeout`` (the user's
greenlet does both, and both clients block only in gevent's patched sockets), so the bound covers the
connect, the send, the first byte and the last byte of the body, streamed bodies included. The client
libraries' own timeouts bound each socket read, not the request: a server that sends a valid answer one
byte a second never trips them. The expiry is a ``RequestTimedOut`` (a BaseException, as gevent's own
Timeout, so that no ``except Exception`` in a client swallows it); it becomes a ``timeout`` row whose text
says how far the answer got, its connection is closed, and Locust's statistics count it once.

Size: no body over the cap is held. FastHttpUser's responses are ``BoundedFastResponse`` (Locust reads a
non-streamed body whole, inside the request), requests' HttpUser gets a ``BoundedAdapter`` (requests does
the same); streamed bodies are read through ``fast_lines`` and ``requests_chunks``. A declared
Content-Length over the cap is refused before any of the body is read; otherwise the bytes are counted as
they arrive. Either way the answer is a ``response_too_large`` failure (``outcomes.ResponseTooLarge``)
and the connection is closed without reading the rest.
"""
import locust  # noqa: F401  (first: gevent's monkey-patching must precede other imports)
from locust.clients import LocustHttpAdapter
from locust.contrib.fasthttp import FAILURE_EXCEPTIONS, FastResponse
from locust.exception import CatchResponseError

import time
import zlib
from typing import NamedTuple

import gevent
from geventhttpclient.response import HTTPConnectionClosed

from burstbench.locustfiles.outcomes import ResponseTooLarge

READ_BLOCK = 64 * 1024                   # requests' reads; geventhttpclient reads its own block size
DEFAULT_MAX_RESPONSE_BYTES = 8 * 2**20   # a read outside ``exchange`` (none of the targets' today)


class RequestTimedOut(BaseException):
    """--request-timeout ran out for the current request."""


class BodyMeter:
    """One request's answer so far: its status once the headers are in, the body bytes read, the cap."""

    __slots__ = ("max_bytes", "status", "body_bytes")

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self.status: int | None = None
        self.body_bytes = 0

    def declared(self, length: int | None) -> None:
        if length is not None and length > self.max_bytes:
            raise ResponseTooLarge(f"Content-Length {length} is over --max-response-bytes {self.max_bytes}: "
                                   "none of the body read, connection closed")

    def add(self, n: int) -> None:
        self.body_bytes += n
        if self.body_bytes > self.max_bytes:
            raise ResponseTooLarge(f"the body passed --max-response-bytes {self.max_bytes} ({self.body_bytes} "
                                   "bytes arrived): the rest not read, connection closed")


def meter() -> BodyMeter:
    """The current greenlet's request's meter (``exchange`` sets it), else one with the default cap."""
    found = getattr(gevent.getcurrent(), "burstbench_body", None)
    return found if found is not None else BodyMeter(DEFAULT_MAX_RESPONSE_BYTES)


class Outcome(NamedTuple):
    ok: bool
    kind: str
    failure: str      # scrubbed of the target's secrets
    fields: dict
    status: int
    judged_s: float   # perf_counter when the answer was judged (before Locust's statistics)


def exchange(target, user, texts, timeout_s: float, max_bytes: int) -> Outcome:
    """Send ``texts`` with ``target`` and judge the answer, all within ``timeout_s``; report it to Locust once."""
    current = gevent.getcurrent()
    body = current.burstbench_body = BodyMeter(max_bytes)
    expired = RequestTimedOut()
    timer = gevent.Timeout(timeout_s, expired)
    started = time.perf_counter()
    timer.start()
    try:
        try:
            context = target.request(user, texts, timeout_s)
        except RequestTimedOut as err:  # no response object yet: connecting, sending, headers, a body read whole
            if err is not expired:
                raise
            timer.close()
            return _timed_out_unanswered(target, user, started, timeout_s, body)
        with context as resp:
            body.status = body.status or resp.status_code or None
            try:
                ok, kind, failure, fields = target.judge(resp)
            except RequestTimedOut as err:  # reading (or streaming) the body
                if err is not expired:
                    raise
                close_unfinished(resp)
                ok, kind, failure, fields = False, "timeout", timeout_text(timeout_s, body), {}
            timer.close()  # nothing below waits: Locust's statistics are never cut short
            failure = target.scrub(failure)
            if ok:
                resp.success()
            else:
                resp.failure(f"{kind}: {failure}")
            return Outcome(ok, kind, failure, fields, resp.status_code or 0, time.perf_counter())
    finally:
        timer.close()
        current.burstbench_body = None


def timeout_text(timeout_s: float, body: BodyMeter) -> str:
    got = "no response headers" if body.status is None else \
        f"HTTP {body.status}, {body.body_bytes} byte{'' if body.body_bytes == 1 else 's'} of the body read"
    return f"no complete answer within {timeout_s:g} s (request timeout; {got})"


def _timed_out_unanswered(target, user, started: float, timeout_s: float, body: BodyMeter) -> Outcome:
    """A timeout before the client handed over a response: Locust never saw the request, so report it here."""
    _reclaim_pool_slots(user)
    text = target.scrub(timeout_text(timeout_s, body))
    user.environment.events.request.fire(
        request_type=target.describe().get("method", "GET"), name=target.endpoint,
        response_time=(time.perf_counter() - started) * 1000, response_length=body.body_bytes,
        exception=CatchResponseError(f"timeout: {text}"), context=user.context(), response=None,
        start_time=time.time() - (time.perf_counter() - started), url=f"{user.host}{target.endpoint}")
    return Outcome(False, "timeout", text, {}, body.status or 0, time.perf_counter())


def _reclaim_pool_slots(user) -> None:
    """geventhttpclient frees a connection's pool slot only on a socket error: a timeout while the request was
    being written leaves it taken. A user sends one request at a time, so every slot still taken is this one's."""
    pools = getattr(getattr(getattr(user, "client", None), "client", None), "clientpool", None)
    if pools is None or not user.host:
        return
    pool = pools.get_client(user.host)._connection_pool
    while pool._semaphore.counter < pool.size:
        pool._semaphore.release()


def close_unfinished(resp) -> None:
    """An answer abandoned before its end must not leave its connection to the next request."""
    raw = getattr(resp, "_response", None)
    if raw is not None and hasattr(raw, "message_complete"):  # geventhttpclient
        if not raw.message_complete:
            raw.release()  # an unfinished message is closed, not returned to the pool
    elif hasattr(resp, "close"):  # requests
        resp.close()


# -- FastHttpUser (geventhttpclient) ----------------------------------------------------
def _pump(raw) -> None:
    """One read from the connection into the parser (which appends the body to ``raw._body_buffer``)."""
    sock = raw._sock
    if sock is None:
        raise HTTPConnectionClosed("connection closed before the end of the body")
    data = sock.recv(raw.block_size)
    raw.feed(data)  # the parser raises on an end of file inside the body
    if not data and not raw.message_complete:
        raise HTTPConnectionClosed("connection closed before the end of the body")


def fast_lines(raw, body: BodyMeter | None = None):
    """The lines of a geventhttpclient body as they arrive, the last without its newline, within the cap.

    As ``readline`` does (it returns as soon as a line is in), but a line never ends is not buffered
    past the cap. Leaving early (or any error) closes an unfinished connection.
    """
    body = body or meter()
    buf = raw._body_buffer
    counted = len(buf)
    try:
        body.add(counted)
        while True:
            cut = buf.find(b"\n")
            if cut >= 0:
                line = bytes(buf[:cut + 1])
                del buf[:cut + 1]
                counted -= len(line)
                yield line
                continue
            if raw.message_complete:
                break
            _pump(raw)
            body.add(len(buf) - counted)
            counted = len(buf)
        if buf:
            tail = bytes(buf)
            del buf[:]
            yield tail
    except BaseException:
        raw.release()
        raise


def _fast_body(raw, body: BodyMeter) -> bytes:
    """A whole geventhttpclient body, within the cap; the connection goes back to the pool only when complete.

    An answer the client already let go (a non-2xx status: geventhttpclient releases it unread) gives what
    had arrived with its headers, as geventhttpclient's own ``read`` does.
    """
    body.status = raw.status_code
    pieces = []
    try:
        if not raw.message_complete:  # (a HEAD answer declares a length it does not send)
            body.declared(raw.content_length)
        buf = raw._body_buffer
        while True:
            if buf:
                body.add(len(buf))
                pieces.append(bytes(buf))
                del buf[:]
            if raw.message_complete or raw._sock is None:
                break
            _pump(raw)
    except BaseException:
        raw.release()
        raise
    raw.release()
    return b"".join(pieces)


def _decoded(data: bytes, encoding: str, body: BodyMeter) -> bytes:
    """The body without its Content-Encoding, decompressed no further than the cap."""
    limit = body.max_bytes + 1
    if encoding == "identity":
        return data
    if encoding in ("gzip", "deflate"):
        wbits = 16 + zlib.MAX_WBITS if encoding == "gzip" else -zlib.MAX_WBITS
        try:
            out = zlib.decompressobj(wbits).decompress(data, limit)
        except zlib.error:
            if encoding == "gzip":
                raise
            out = zlib.decompressobj().decompress(data, limit)  # "deflate" sent in the zlib format
    elif encoding == "br":
        import brotli

        out = brotli.Decompressor().process(data, output_buffer_limit=limit)
    else:
        raise ValueError(f"Unknown content encoding: {encoding}")
    if len(out) >= limit:
        raise ResponseTooLarge(f"the body ({len(data)} bytes, {encoding}) decompresses to more than "
                               f"--max-response-bytes {body.max_bytes}")
    return out


def _content_encoding(headers) -> str:
    values = headers.getlist("content-encoding") if headers is not None else []
    return values[0].lower() if values else "identity"


class BoundedFastResponse(FastResponse):
    """FastHttpUser's response, its body read within the cap (Locust reads a non-streamed body whole, at once).

    A transport failure in the body (a reset, a short body) is kept as the response's ``error``, so the row
    sees it: Locust only reports it to its statistics and leaves the partial body to be judged.
    """

    def _content(self):
        if self.headers is None:
            return None
        try:
            return _decoded(_fast_body(self._response, meter()), _content_encoding(self.headers), meter())
        except ResponseTooLarge as err:
            self.too_large = err
            return b""
        except FAILURE_EXCEPTIONS as err:
            if getattr(self, "error", None) is None:
                self.error = err
            self._cached_content = b""
            raise


def use_bounded_fast_client(session) -> None:
    """Make a FastHttpSession's responses ``BoundedFastResponse``s."""
    session.client.response_type = BoundedFastResponse


# -- HttpUser (requests) ----------------------------------------------------------------------
def requests_chunks(resp, body: BodyMeter | None = None):
    """A requests body as it arrives (each read returns what is there, up to 64 KiB), within the cap.

    ``iter_content(chunk_size=None)`` would read a body with a Content-Length whole. urllib3's errors
    become requests' own, as ``iter_content`` makes them.
    """
    from requests.exceptions import ChunkedEncodingError, ConnectionError, ContentDecodingError
    from urllib3.exceptions import DecodeError, ProtocolError, ReadTimeoutError

    body = body or meter()
    while True:
        try:
            chunk = resp.raw.read1(READ_BLOCK, decode_content=True)
        except ProtocolError as err:
            raise ChunkedEncodingError(err) from None
        except DecodeError as err:
            raise ContentDecodingError(err) from None
        except ReadTimeoutError as err:
            raise ConnectionError(err) from None
        if not chunk:
            return
        body.add(len(chunk))
        yield chunk


def load_requests_body(resp) -> None:
    """Read a requests response's body within the cap into ``resp.content``; over it, ``resp.too_large``."""
    body = meter()
    body.status = resp.status_code
    try:
        length = resp.headers.get("content-length")
        body.declared(int(length) if length and length.isdigit() else None)
        content = b"".join(requests_chunks(resp, body))
    except ResponseTooLarge as err:
        resp.close()
        resp.too_large, content = err, b""
    except BaseException:
        resp.close()
        raise
    resp._content, resp._content_consumed = content, True


class BoundedAdapter(LocustHttpAdapter):
    """requests' transport adapter that reads a non-streamed body itself, within the cap (requests reads it whole)."""

    def send(self, request, stream=False, **kwargs):
        resp = super().send(request, stream=stream, **kwargs)
        if not stream:
            load_requests_body(resp)
        return resp


def use_bounded_requests_client(session, pool_manager=None) -> None:
    for prefix in ("https://", "http://"):
        session.mount(prefix, BoundedAdapter(pool_manager=pool_manager))


def load_body(resp) -> None:
    """Read a streamed response's body (either client) within the cap, so that ``resp.text`` works."""
    if hasattr(resp, "_content_consumed"):  # requests
        if not resp._content_consumed:
            load_requests_body(resp)
        return
    try:
        resp._cached_content  # noqa: B018  (already read)
    except AttributeError:
        try:
            resp._cached_content = _decoded(_fast_body(resp._response, meter()), _content_encoding(resp.headers),
                                            meter())
        except ResponseTooLarge as err:
            resp.too_large, resp._cached_content = err, b""
