"""An HTTP server that misbehaves in one chosen way, for the tests of what the load generator survives.

    python -m servers.misbehaving --port 8000 --stats-port 8001 --mode slow-drip   (from tests/)

Raw asyncio streams, no framework: a framework would not send half a body, a wrong length or a reset.
Every mode answers ``GET /healthz`` 200 normally (readiness); every other request gets the fault:

- ``reset-mid-response``: headers and half the body, then a TCP reset (SO_LINGER 0).
- ``endless-body``: a chunked body that never ends, a chunk every 0.1 s.
- ``accept-never-answer``: reads the request, never writes.
- ``unparsable-200``: 200 with ``Content-Type: application/json`` and a body that is not JSON.
- ``headers-no-body``: headers with a Content-Length, then nothing; the connection held open.
- ``huge-body``: 200 with a Content-Length of ``--huge-bytes`` (300 MB), streamed fast from one repeated
  buffer (nothing of that size is allocated); ``--chunked`` sends it chunked, without a length.
- ``sse-no-done``: an OpenAI-style event stream of a few chunks that ends (cleanly) without ``data: [DONE]``.
- ``slow-drip``: a valid JSON answer one byte every ``--drip-s`` (1 s).
- ``wrong-content-length``: a Content-Length 10 bytes larger than the body, then close (``--length smaller``:
  10 bytes smaller; the rest of the body follows on the connection).
- ``refuse-after-N``: answers ``--serve N`` requests normally, then closes its listening socket and every idle
  connection, so that new connections are refused.

A side port (``--stats-port``) always behaves: ``GET /_stats`` is JSON ``{"connections", "requests",
"healthz"}`` counted on the main port (connections accepted, requests other than /healthz, /healthz
requests), so tests judge from the server's side; ``GET /healthz`` answers there too.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import socket
import struct

MODES = ("reset-mid-response", "endless-body", "accept-never-answer", "unparsable-200", "headers-no-body",
         "huge-body", "sse-no-done", "slow-drip", "wrong-content-length", "refuse-after-N")
VALID = b'{"label": "POSITIVE", "score": 0.9}'  # what --preset plain (with --expect-field label) accepts
NOT_JSON = b"<html><body>upstream error</body></html>"
MAX_HEAD_BYTES = 64 * 1024
HUGE_BLOCK = b"x" * (64 * 1024)
ENDLESS_EVERY_S = 0.1


def _head(status: str, headers: dict) -> bytes:
    lines = [f"HTTP/1.1 {status}", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _json_head(length: int | None, **extra) -> bytes:
    headers = {"Content-Type": "application/json", **extra}
    if length is not None:
        headers["Content-Length"] = str(length)
    return _head("200 OK", headers)


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


async def _read_request(reader) -> tuple[str, str, bytes] | None:
    """(method, path, body) of the next request, or None when the client closed the connection."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
        return None
    lines = head.decode("latin-1").split("\r\n")
    method, path, _ = (lines[0].split(" ", 2) + ["", ""])[:3]
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
    length = int(headers.get("content-length") or 0)
    try:
        body = await reader.readexactly(length) if length else b""
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    return method, path, body


class Misbehaving:
    def __init__(self, args):
        self.args = args
        self.connections = 0
        self.requests = 0
        self.healthz = 0
        self.served = 0          # refuse-after-N: answered normally so far
        self.listener = None
        self.idle: set = set()   # refuse-after-N: writers of connections waiting for their next request

    def stats(self) -> dict:
        return {"connections": self.connections, "requests": self.requests, "healthz": self.healthz,
                "mode": self.args.mode}

    async def handle(self, reader, writer):
        self.connections += 1
        try:
            while True:
                self.idle.add(writer)
                request = await _read_request(reader)
                self.idle.discard(writer)
                if request is None:
                    break
                if request[1] == "/healthz":
                    self.healthz += 1
                    writer.write(_json_head(2) + b"{}")
                    await writer.drain()
                    continue
                self.requests += 1
                if not await self.misbehave(reader, writer):
                    break
        except (ConnectionError, OSError):
            pass  # the client gave up on us: that is the point
        finally:
            self.idle.discard(writer)
            writer.close()

    async def misbehave(self, reader, writer) -> bool:
        """Answer (or not) one request in the chosen way; False when the connection must end."""
        mode, a = self.args.mode, self.args
        if mode == "reset-mid-response":
            writer.write(_json_head(len(VALID)) + VALID[:len(VALID) // 2])
            await writer.drain()
            await asyncio.sleep(0.05)  # the client has the headers and half the body when the reset comes
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
            return False
        if mode == "endless-body":
            writer.write(_head("200 OK", {"Content-Type": "application/json", "Transfer-Encoding": "chunked"})
                         + _chunk(b'{"label": "POSITIVE", "pad": "'))
            while True:  # until the client hangs up (the write then fails)
                await writer.drain()
                await asyncio.sleep(ENDLESS_EVERY_S)
                writer.write(_chunk(b"x"))
        if mode == "accept-never-answer":
            await reader.read()  # until the client closes
            return False
        if mode == "unparsable-200":
            writer.write(_json_head(len(NOT_JSON)) + NOT_JSON)
        elif mode == "headers-no-body":
            writer.write(_json_head(len(VALID)))
            await writer.drain()
            await reader.read()
            return False
        elif mode == "huge-body":
            await self.huge(writer)
            return False
        elif mode == "sse-no-done":
            writer.write(_head("200 OK", {"Content-Type": "text/event-stream", "Transfer-Encoding": "chunked"}))
            for word in ("three", " chunks", " then"):
                event = {"id": "c", "object": "chat.completion.chunk", "choices": [
                    {"index": 0, "delta": {"content": word}, "finish_reason": None}]}
                writer.write(_chunk(b"data: " + json.dumps(event).encode() + b"\n\n"))
                await writer.drain()
                await asyncio.sleep(0.02)
            writer.write(b"0\r\n\r\n")  # a well-formed end of the body: only [DONE] is missing
        elif mode == "slow-drip":
            writer.write(_json_head(len(VALID)))
            for i in range(len(VALID)):
                await writer.drain()
                await asyncio.sleep(a.drip_s)
                writer.write(VALID[i:i + 1])
        elif mode == "wrong-content-length":
            if a.length == "larger":
                writer.write(_json_head(len(VALID) + 10) + VALID)
                await writer.drain()
                return False
            writer.write(_json_head(len(VALID) - 10) + VALID)
        elif mode == "refuse-after-N":
            self.served += 1
            last = self.served >= a.serve
            if last:  # before the answer: once the client has it, every new connect is refused
                self.refuse()
            writer.write(_json_head(len(VALID), **({"Connection": "close"} if last else {})) + VALID)
            await writer.drain()
            if last:
                return False
        await writer.drain()
        return True

    async def huge(self, writer):
        total = self.args.huge_bytes
        if self.args.chunked:
            writer.write(_head("200 OK", {"Content-Type": "application/json", "Transfer-Encoding": "chunked"}))
        else:
            writer.write(_json_head(total))
        block = _chunk(HUGE_BLOCK) if self.args.chunked else HUGE_BLOCK
        for _ in range(total // len(HUGE_BLOCK)):
            writer.write(block)
            await writer.drain()
        rest = HUGE_BLOCK[:total % len(HUGE_BLOCK)]
        if rest:
            writer.write(_chunk(rest) if self.args.chunked else rest)
        if self.args.chunked:
            writer.write(b"0\r\n\r\n")
        await writer.drain()

    def refuse(self):
        """From now on a connect is refused: no listener, and no idle keep-alive connection left to reuse.

        Both at once (asyncio would close a connection's socket only at its next loop turn): the FIN is on
        its way before the last answer is written."""
        if self.listener is not None:
            self.listener.close()
            self.listener = None
        for writer in list(self.idle):
            try:
                writer.get_extra_info("socket").shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            writer.close()

    async def side(self, reader, writer):
        """The stats port: /_stats and /healthz, always well-behaved."""
        try:
            while (request := await _read_request(reader)) is not None:
                body = json.dumps(self.stats()).encode() if request[1] == "/_stats" else b"{}"
                writer.write(_json_head(len(body)) + body)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    async def serve(self):
        a = self.args
        self.listener = await asyncio.start_server(self.handle, "127.0.0.1", a.port)
        side = await asyncio.start_server(self.side, "127.0.0.1", a.stats_port)
        async with side:
            await side.serve_forever()


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m servers.misbehaving", description=__doc__.split("\n")[0])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--stats-port", type=int, required=True)
    p.add_argument("--mode", choices=MODES, required=True)
    p.add_argument("--drip-s", type=float, default=1.0, help="slow-drip: seconds between bytes")
    p.add_argument("--huge-bytes", type=int, default=300_000_000, help="huge-body: the body's length")
    p.add_argument("--chunked", action="store_true", help="huge-body: chunked, without a Content-Length")
    p.add_argument("--length", choices=("larger", "smaller"), default="larger",
                   help="wrong-content-length: the declared length against the body's")
    p.add_argument("--serve", type=int, default=3, help="refuse-after-N: requests answered before refusing")
    asyncio.run(Misbehaving(p.parse_args(argv)).serve())


if __name__ == "__main__":
    main()
