"""locustfiles/streaming.py: an OpenAI-compatible event stream read as its bytes arrive, whatever the chunking,
with exact times on a fake clock; each way a stream can fail is its own kind."""
from __future__ import annotations

import json

import numpy as np
import pytest

from burstbench.locustfiles.streaming import read_stream


def _chat_events(tokens, usage=True, finish="length", crlf=False) -> list[bytes]:
    """One event per chunk: a role chunk, one content chunk per token, a finish chunk, usage, [DONE]."""
    nl = "\r\n" if crlf else "\n"
    chunks = [{"choices": [{"index": 0, "delta": {"role": "assistant"}, "finish_reason": None}]}]
    chunks += [{"choices": [{"index": 0, "delta": {"content": t}, "finish_reason": None}]} for t in tokens]
    chunks.append({"choices": [{"index": 0, "delta": {}, "finish_reason": finish}]})
    if usage:
        chunks.append({"choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": len(tokens),
                                                "total_tokens": 7 + len(tokens)}})
    events = [f"data: {json.dumps(c)}{nl}{nl}".encode() for c in chunks]
    return [*events, f"data: [DONE]{nl}{nl}".encode()]


class Clock:
    """Each read of a chunk advances the clock by the next step."""

    def __init__(self, steps):
        self.steps, self.now, self.i = list(steps), 0.0, 0

    def __call__(self):
        self.now += self.steps[self.i]
        self.i += 1
        return self.now


def test_ttft_itl_tpot_and_counts_from_a_chat_stream():
    events = _chat_events(["Hel", "lo", " wor", "ld"])  # 8 events: role, 4 tokens, finish, usage, [DONE]
    steps = [0.100, 0.002, 0.020, 0.030, 0.025, 0.001, 0.001, 0.001]  # the first read 100 ms after the send
    result = read_stream(events, sent_s=0.0, protocol="chat", clock=Clock(steps))
    assert result.ok and result.failure_kind == ""
    assert result.content == "Hello world" and result.finish_reason == "length"
    assert result.ttft_s == pytest.approx(0.102)          # the first content chunk, not the role chunk
    assert result.itl_s == pytest.approx([0.020, 0.030, 0.025])
    assert result.output_tokens == 4 and result.input_tokens == 7 and result.token_source == "usage"
    assert len(result.itl_s) == result.output_tokens - 1
    assert result.tpot_s == pytest.approx(0.075 / 3)
    assert result.e2e_s == pytest.approx(sum(steps)) and result.ttft_s <= result.e2e_s


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("crlf", [False, True])
def test_any_chunking_of_the_bytes_gives_the_same_answer(seed, crlf):
    body = b"".join(_chat_events([f"t{i} " for i in range(20)], crlf=crlf))
    rng = np.random.default_rng(seed)
    cuts = np.sort(rng.choice(np.arange(1, len(body)), size=40, replace=False))
    pieces = [body[a:b] for a, b in zip([0, *cuts], [*cuts, len(body)])]
    result = read_stream(pieces, sent_s=0.0, clock=Clock([0.001] * len(pieces)))
    assert result.ok and result.content == "".join(f"t{i} " for i in range(20))
    assert result.output_tokens == 20 and len(result.token_times_s) == 20
    # stamped when the chunk completing each event was read: in order, and at most the end of the body
    times = result.token_times_s
    assert all(b >= a for a, b in zip(times, times[1:])) and times[-1] <= result.done_s


def test_completions_protocol_and_tokens_counted_from_chunks_without_usage():
    chunks = [{"choices": [{"text": t, "index": 0, "finish_reason": None}]} for t in ("a", "b", "c")]
    chunks.append({"choices": [{"text": "", "index": 0, "finish_reason": "stop"}]})
    body = [f"data: {json.dumps(c)}\n\n".encode() for c in chunks] + [b": keep-alive comment\n\n", b"data: [DONE]\n\n"]
    result = read_stream(body, sent_s=0.0, protocol="completions", clock=Clock([0.01] * len(body)))
    assert result.ok and result.content == "abc" and result.finish_reason == "stop"
    assert result.output_tokens == 3 and result.token_source == "chunks" and result.input_tokens is None


def test_a_stream_cut_off_mid_way_is_broken():
    events = _chat_events(["a", "b", "c", "d"])[:3]  # role, "a", "b": then the server went away
    result = read_stream(events, sent_s=0.0, clock=Clock([0.01] * 3))
    assert not result.ok and result.failure_kind == "stream-broken"
    assert "before [DONE] or a finish reason" in result.failure_text
    assert result.output_tokens == 2 and result.ttft_s == pytest.approx(0.02)  # what arrived is kept


def test_a_connection_error_mid_body_is_broken():
    def body():
        yield _chat_events(["a"])[0]
        raise ConnectionResetError("reset by peer")

    result = read_stream(body(), sent_s=0.0, clock=Clock([0.01] * 3))
    assert not result.ok and result.failure_kind == "stream-broken" and "ConnectionResetError" in result.failure_text


@pytest.mark.parametrize("body, kind, text", [
    ([b"event: error\ndata: overloaded\n\n"], "stream-error", "overloaded"),
    ([b'data: {"error": {"message": "KV cache full"}}\n\n'], "stream-error", "KV cache full"),
    ([b"data: not json\n\n"], "invalid-stream", "event data is not JSON"),
    ([b"data: [1, 2]\n\n"], "invalid-stream", "not a JSON object"),
    ([b'{"choices": []}'], "invalid-stream", "holds no server-sent events"),  # a plain JSON body on a 200
    ([], "invalid-stream", "holds no server-sent events"),
])
def test_each_failure_has_its_kind_and_its_text(body, kind, text):
    result = read_stream(body, sent_s=0.0, clock=Clock([0.01] * 4))
    assert not result.ok and result.failure_kind == kind and text in result.failure_text


def test_an_unknown_protocol_is_refused():
    with pytest.raises(ValueError, match="protocol must be one of chat, completions"):
        read_stream([], sent_s=0.0, protocol="grpc")
