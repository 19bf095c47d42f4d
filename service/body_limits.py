"""ASGI middleware: reject oversized, non-JSON or malformed bodies with a clear 4xx; start the request's clock.

BentoML answers a body that is not JSON with a 500 and has no body-size limit, so the
checks happen here, before its handler sees the request. The request's deadline
(service/deadlines.py) starts when it is received here, and a request whose deadline
has passed by the time its body is in is answered at once, before it reaches the queue.
"""
from __future__ import annotations

import json
import sys

from . import deadlines
from .deadlines import respond as _reject


class JsonBodyGuard:
    def __init__(self, app, max_body_bytes: int, paths: tuple[str, ...], deadline_ms: int = 0):
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.paths = paths
        self.deadline_ms = deadline_ms  # BURSTBENCH_DEADLINE_MS, 0: none

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] not in self.paths:
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        try:
            clock = deadlines.clock_for(headers.get(deadlines.HEADER.lower()), self.deadline_ms)
        except ValueError as err:
            return await _reject(send, 400, str(err))
        media_type = headers.get("content-type", "application/json").split(";")[0].strip().lower()
        if media_type != "application/json":
            return await _reject(send, 415, f"Content-Type must be application/json (got {media_type!r})")
        declared = headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            return await _reject(send, 413, self._too_large(int(declared)))

        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                return await _reject(send, 413, self._too_large(size))
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        try:
            parsed = json.loads(body)
        except (UnicodeDecodeError, ValueError) as err:
            return await _reject(send, 400, f"body is not valid JSON: {err}")
        except RecursionError:  # e.g. 30,000 nested arrays: json raises this, not ValueError
            return await _reject(send, 400, f"body is JSON nested too deeply (more than about "
                                            f"{sys.getrecursionlimit()} levels)")
        if not isinstance(parsed, dict):
            return await _reject(send, 400, 'body must be a JSON object such as {"text": "..."}')

        if clock.expired():  # e.g. a slow upload: answered now rather than after a wait in the queue
            return await _reject(send, deadlines.DROPPED_STATUS, clock.drop("arrival"))
        return await deadlines.run_with_clock(self.app, scope, body, receive, send, clock)

    def _too_large(self, size: int) -> str:
        return f"body of {size} bytes is over the limit of {self.max_body_bytes} bytes (BURSTBENCH_MAX_BODY_BYTES)"

