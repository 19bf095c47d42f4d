"""What the HTTP target does for streamed (and OpenAI-compatible) answers: read the events as they arrive,
count the tokens, and hand the run the times it needs (TTFT, inter-token latencies, TPOT).

The events are read line by line from geventhttpclient's response (FastHttpUser): each line is handed
over as soon as it is in, so every chunk is stamped when the ``recv`` that brought it returned (the
socket stamps of ``stamps.py`` over plain HTTP, else the clock at the read). Requests' ``HttpUser``
hands over each chunk as it is read. Both count toward --max-response-bytes (``request_guard``): a
stream over it is a ``response_too_large`` failure, its connection closed.

Token counts: the server's ``usage`` when it reports it, else a ``--tokenizer``'s count of the text, else
the content chunks counted (one token a chunk, as vLLM, SGLang and TGI stream); each row says which.
"""
from __future__ import annotations

import json
from functools import lru_cache
from http.client import HTTPException

from burstbench.locustfiles import stamps
from burstbench.locustfiles.outcomes import ResponseTooLarge
from burstbench.locustfiles.request_guard import close_unfinished, fast_lines, requests_chunks
from burstbench.locustfiles.streaming import StreamResult, read_stream

STREAM_KEY = "_stream"  # the StreamResult travels to the run in the judged fields under this key


def _lines(resp):
    """The body's lines (or chunks) as they arrive; a broken connection or a malformed chunked body is an OSError."""
    raw = getattr(resp, "_response", None)
    try:
        if raw is not None and hasattr(raw, "message_complete"):  # geventhttpclient (FastHttpUser)
            yield from fast_lines(raw)
        else:  # requests (HttpUser)
            yield from requests_chunks(resp)
    except HTTPException as err:
        raise OSError(f"{type(err).__name__}: {err}") from None


@lru_cache(maxsize=4)
def cached_tokenizer(name: str):
    """Loaded once per process: a worker loads it at start-up (``http_endpoint.py``), not inside the schedule."""
    from burstbench.locustfiles.prompts import load_tokenizer

    return load_tokenizer(name)


class StreamingTarget:
    """The streaming half of an ``HttpTarget`` (``spec.stream`` is an ``endpoint.StreamOptions``)."""

    def __init__(self, spec):
        self.spec = spec
        self.options = spec.stream
        self.tokenizer = None
        if self.options.tokenizer_name:
            self.tokenizer = cached_tokenizer(self.options.tokenizer_name)
        self.prompts = None
        self.trace = None
        if self.options.input_lengths is not None:
            from burstbench.locustfiles.prompts import SyntheticPrompts
            self.prompts = SyntheticPrompts(self.options.input_lengths, tokenizer=self.tokenizer)
            self.prompts.prompt(0)  # tokenizes the corpus now, not at the first slot (about 0.1 s)

    def use_trace_lengths(self, trace):
        """Replay a trace's token columns: request k gets row k's prompt length and output length."""
        for column, drawn, flag in ((trace.input_tokens, self.options.input_lengths, "--input-tokens"),
                                    (trace.output_tokens, self.options.output_lengths, "--output-tokens")):
            if column is not None and drawn is not None:
                raise ValueError(f"{flag} draws lengths and the trace's token column replays them: give one of the two")
        self.trace = trace
        if trace.input_tokens is not None:
            from burstbench.locustfiles.prompts import SyntheticPrompts
            self.prompts = TracePrompts(SyntheticPrompts(None, tokenizer=self.tokenizer), trace)
            self.prompts.prompt(0)
        return self.prompts

    def output_tokens(self, index: int) -> int | None:
        """max_tokens of request ``index``: the trace's (0, a failed request in BurstGPT, sent as 1), else drawn."""
        out = None if self.trace is None else self.trace.tokens_for(index)[1]
        return self.options.requested_output_tokens(index) if out is None else max(1, out)

    def body_fields(self, index: int) -> dict:
        return self.options.body_fields(index, self.output_tokens(index))

    def request_fields(self, index: int) -> dict:
        """What the row records about what was asked: max_tokens sent."""
        n = self.output_tokens(index) if self.options.openai else None
        return {} if n is None else {"requested_output_tokens": n}

    def judge_stream(self, resp) -> tuple[bool, str, str, dict]:
        try:
            result = read_stream(_lines(resp), 0.0, self.options.protocol, clock=stamps.recv_clock,
                                 chunk_field=self.options.chunk_field)
        except ResponseTooLarge as err:  # (the reader has closed the connection)
            close_unfinished(resp)
            return False, err.failure_kind, str(err)[:300], {}
        if not result.ok:
            close_unfinished(resp)
        fields = self._token_fields(result.usage, result.content, len(result.token_times_s), result.finish_reason)
        fields[STREAM_KEY] = result
        return result.ok, result.failure_kind, result.failure_text[:300], fields

    def judge_body(self, body_text: str) -> dict:
        """A non-streamed OpenAI answer: its usage and finish reason."""
        if not self.options.openai:
            return {}
        try:
            body = json.loads(body_text)
            choice = (body.get("choices") or [{}])[0]
            content = choice.get("text") if self.options.protocol == "completions" else \
                (choice.get("message") or {}).get("content")
        except (ValueError, AttributeError, TypeError, IndexError):
            return {}
        usage = body.get("usage") if isinstance(body.get("usage"), dict) else None
        return self._token_fields(usage, content or "", None, choice.get("finish_reason"))

    def _token_fields(self, usage: dict | None, content: str, chunks: int | None, finish: str | None) -> dict:
        out = {"finish_reason": finish or ""}
        usage = usage or {}
        if isinstance(usage.get("completion_tokens"), int):
            out.update(output_tokens=usage["completion_tokens"], token_source="usage")
        elif self.tokenizer is not None:
            from burstbench.locustfiles.prompts import count_tokens
            out.update(output_tokens=count_tokens(self.tokenizer, content), token_source="tokenizer")
        elif chunks is not None:
            out.update(output_tokens=chunks, token_source="chunks")
        if isinstance(usage.get("prompt_tokens"), int):
            out["input_tokens"] = usage["prompt_tokens"]
        return out

    def describe(self) -> dict:
        return {"stream": self.options.stream, "protocol": self.options.protocol,
                "tokenizer": self.options.tokenizer_name,
                "input_tokens": None if self.options.input_lengths is None else self.options.input_lengths.describe(),
                "output_tokens": None if self.options.output_lengths is None
                else self.options.output_lengths.describe()}


class TracePrompts:
    """Prompts as long as a trace's input-token column says, request by request (at least one token)."""

    def __init__(self, prompts, trace):
        self.prompts, self.trace = prompts, trace
        self.unit = prompts.unit

    def prompt(self, index: int) -> tuple[str, int]:
        return self.prompts.prompt(index, max(1, self.trace.tokens_for(index)[0]))


def stream_of(fields: dict) -> StreamResult | None:
    return fields.pop(STREAM_KEY, None)
