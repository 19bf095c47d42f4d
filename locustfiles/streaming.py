"""Reading a streamed (server-sent events) answer as it arrives, and what it says: time to first token,
inter-token latencies, time per output token, token counts, finish reason, or why the stream failed.

Events are parsed by ``sseclient`` (sseclient-py) from the raw byte chunks as they are read, each stamped
with the clock when the chunk that completed it arrived. OpenAI-compatible chunks are understood for both
protocols: ``/v1/chat/completions`` (``choices[0].delta.content``) and ``/v1/completions``
(``choices[0].text``); ``data: [DONE]`` ends the stream, and a final chunk with ``usage`` (what
``stream_options.include_usage`` asks for) gives the token counts. Without ``usage`` the output tokens are
the content chunks counted (one token a chunk, as vLLM, SGLang and TGI stream), and the result says which.
``sse`` is any other endpoint's stream: every ``data:`` event (or a field of it) is one chunk.

The chunks must be handed over as they are read: ``stream_target.py`` gives it FastHttpUser's lines from
geventhttpclient's ``readline`` (which returns as soon as a line is in; its ``read(n)``, behind
``iter_content``, waits for n bytes or the end of the body, so every token would seem to arrive with the
last), or ``HttpUser``'s ``iter_content(chunk_size=None)``.

A failure has its own kind, and its text: ``stream-error`` (an error event, or a chunk carrying
``error``), ``stream-broken`` (the stream ended before ``[DONE]`` or a finish reason), ``invalid-stream``
(a 200 whose body holds no events, or data that is not JSON).
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable

from sseclient import SSEClient

PROTOCOLS = ("chat", "completions", "sse")  # sse: any endpoint's events, one chunk each (or a field of each)
DONE = "[DONE]"


@dataclass
class StreamResult:
    """One streamed answer, times in seconds on the reader's clock (``sent_s`` is when the request went out)."""

    sent_s: float
    ok: bool = False
    failure_kind: str = ""
    failure_text: str = ""
    token_times_s: list[float] = field(default_factory=list)  # arrival of every content chunk
    content: str = ""
    finish_reason: str | None = None
    usage: dict | None = None
    done_s: float | None = None  # when the stream ended ([DONE], or the last byte)
    events: int = 0

    @property
    def ttft_s(self) -> float | None:
        """Time to first token: the first content chunk after the send."""
        return self.token_times_s[0] - self.sent_s if self.token_times_s else None

    @property
    def itl_s(self) -> list[float]:
        """Inter-token latencies: the gaps between successive content chunks."""
        t = self.token_times_s
        return [b - a for a, b in zip(t, t[1:])]

    @property
    def output_tokens(self) -> int:
        if self.usage and isinstance(self.usage.get("completion_tokens"), int):
            return self.usage["completion_tokens"]
        return len(self.token_times_s)

    @property
    def input_tokens(self) -> int | None:
        value = (self.usage or {}).get("prompt_tokens")
        return value if isinstance(value, int) else None

    @property
    def token_source(self) -> str:
        """Where ``output_tokens`` comes from: the server's ``usage``, or the content chunks counted."""
        return "usage" if self.usage and isinstance(self.usage.get("completion_tokens"), int) else "chunks"

    @property
    def tpot_s(self) -> float | None:
        """Time per output token after the first: (last token - first token) / (output tokens - 1)."""
        if len(self.token_times_s) < 2 or self.output_tokens < 2:
            return None
        return (self.token_times_s[-1] - self.token_times_s[0]) / (self.output_tokens - 1)

    @property
    def e2e_s(self) -> float | None:
        return None if self.done_s is None else self.done_s - self.sent_s


class _Stamped:
    """The byte chunks of a body, noting when each was read (the event they complete arrived then)."""

    def __init__(self, chunks: Iterable[bytes], clock: Callable[[], float]):
        self.chunks, self.clock = chunks, clock
        self.last_read_s: float | None = None

    def __iter__(self):
        for chunk in self.chunks:
            self.last_read_s = self.clock()
            yield chunk

    def close(self):  # sseclient's event source protocol
        pass


def _piece(payload: dict, protocol: str) -> tuple[str, str | None]:
    """(content, finish reason) of one OpenAI-compatible chunk; empty content for role-only or usage chunks."""
    choices = payload.get("choices") or []
    if not choices or not isinstance(choices[0], dict):
        return "", None
    choice = choices[0]
    if protocol == "chat":
        content = (choice.get("delta") or {}).get("content") or ""
    else:
        content = choice.get("text") or ""
    return content, choice.get("finish_reason")


def _field_piece(payload: dict, chunk_field: tuple[str, ...]) -> tuple[str, None]:
    from burstbench.locustfiles.outcomes import field_at

    try:
        value = field_at(payload, chunk_field)
    except KeyError:
        return "", None
    return ("" if value is None else value if isinstance(value, str) else json.dumps(value)), None


def read_stream(chunks: Iterable[bytes], sent_s: float, protocol: str = "chat",
                clock: Callable[[], float] = time.perf_counter, chunk_field: tuple[str, ...] = ()) -> StreamResult:
    """Read an event stream from ``chunks`` (bytes as they arrive) to its end.

    ``chat`` and ``completions`` are OpenAI-compatible chunks. ``sse`` is any endpoint's stream: every
    ``data:`` event is one chunk, or with ``chunk_field`` (a dotted path) the non-empty value at that
    path of each event's JSON; the end of the body ends it (there is no finish reason to wait for).
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {', '.join(PROTOCOLS)} (got {protocol!r})")
    result = StreamResult(sent_s=sent_s)
    source = _Stamped(chunks, clock)
    done = False
    try:
        for event in SSEClient(source).events():
            result.events += 1
            at = source.last_read_s
            if event.event == "error":
                return _failed(result, "stream-error", event.data, at)
            if event.data.strip() == DONE:
                done = True
                result.done_s = at
                break
            if protocol == "sse" and not chunk_field:
                if event.data:
                    result.token_times_s.append(at)
                    result.content += event.data
                continue
            try:
                payload = json.loads(event.data)
            except ValueError:
                return _failed(result, "invalid-stream", f"event data is not JSON: {event.data[:200]!r}", at)
            if not isinstance(payload, dict):
                return _failed(result, "invalid-stream", f"event data is not a JSON object: {event.data[:200]!r}", at)
            if payload.get("error"):
                return _failed(result, "stream-error", json.dumps(payload["error"])[:300], at)
            if isinstance(payload.get("usage"), dict):
                result.usage = payload["usage"]
            content, finish = _field_piece(payload, chunk_field) if protocol == "sse" else _piece(payload, protocol)
            if content:
                result.token_times_s.append(at)
                result.content += content
            if finish:
                result.finish_reason = finish
    except (OSError, ValueError) as err:  # the connection broke mid-body, or bytes that do not decode
        return _failed(result, "stream-broken", f"{type(err).__name__}: {err}", source.last_read_s)
    if result.done_s is None:
        result.done_s = source.last_read_s
    if not result.events:
        return _failed(result, "invalid-stream", "the body holds no server-sent events", result.done_s)
    if not done and result.finish_reason is None and protocol != "sse":
        return _failed(result, "stream-broken", f"the stream ended after {result.events} events, before [DONE] "
                       "or a finish reason", result.done_s)
    result.ok = True
    return result


def _failed(result: StreamResult, kind: str, text: str, at: float | None) -> StreamResult:
    result.ok, result.failure_kind, result.failure_text = False, kind, text
    if at is not None:
        result.done_s = at
    return result
