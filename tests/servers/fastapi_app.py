"""A small FastAPI service speaking the plain JSON and OpenAI-compatible protocols, for the load tests.

It validates each body against the protocol (pydantic models that forbid unknown fields), answers
in the protocol's shape, and keeps every request it received so that a test can check the exact
bodies and arrival times: ``GET /_records`` lists them, ``DELETE /_records`` clears them.

    python -m uvicorn servers.fastapi_app:app --app-dir tests --host 127.0.0.1 --port 8000

Misbehaving endpoints for the failure tests: ``/flaky`` (every third answer is a 200 with an error
body), ``/secure`` (needs ``Authorization: Bearer $BB_EXPECTED_TOKEN``; every fourth answer is a
500 that leaks the header it got), ``/slow`` (answers after 1 s). Streaming with known timing: ``/stream/v1/chat/completions`` (server-sent
events, first token after 50 ms, then one every 20 ms) and ``/stream/cut`` (breaks off after 3 tokens).
"""
from __future__ import annotations

import asyncio
import itertools
import json
import os
import time
from typing import Literal

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict

app = FastAPI(title="burstbench test service")
RECORDS: list[dict] = []
COUNTERS: dict[str, itertools.count] = {}


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class PlainBody(Strict):
    text: str


class ClassifyBody(Strict):
    inputs: str | list[str]


class StreamOptions(Strict):
    include_usage: bool = False


class CompletionBody(Strict):  # OpenAI /v1/completions (and vLLM's min_tokens, ignore_eos)
    model: str
    prompt: str | list[str]
    max_tokens: int | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    min_tokens: int | None = None
    ignore_eos: bool | None = None


class Message(Strict):
    role: Literal["system", "user", "assistant"]
    content: str


class ChatBody(Strict):  # OpenAI /v1/chat/completions (and vLLM's min_tokens, ignore_eos)
    model: str
    messages: list[Message]
    max_tokens: int | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    min_tokens: int | None = None
    ignore_eos: bool | None = None


def _openai_stream(chunks: list[dict], usage: dict, include_usage: bool):
    """An OpenAI-style event stream: the chunks, the usage chunk when asked for, then [DONE]."""
    async def events():
        for chunk in chunks:
            yield f"data: {json.dumps(chunk)}\n\n".encode()
        if include_usage:
            yield f"data: {json.dumps({'choices': [], 'usage': usage})}\n\n".encode()
        yield b"data: [DONE]\n\n"
    return StreamingResponse(events(), media_type="text/event-stream")


async def record(request: Request) -> object:
    received = time.time()
    raw = await request.body()
    try:
        body = json.loads(raw)
    except ValueError:
        body = None
    RECORDS.append({"path": request.url.path, "received_epoch": received, "body": body,
                    "raw": raw.decode("utf-8", "replace"), "content_type": request.headers.get("content-type"),
                    "authorization": request.headers.get("authorization"),
                    "x_trace": request.headers.get("x-trace")})
    if body is None:
        raise HTTPException(400, "body is not JSON")
    return body


def nth(path: str) -> int:
    return next(COUNTERS.setdefault(path, itertools.count(1)))


def label(text: str) -> str:
    return "positive" if len(text) % 2 else "negative"


@app.get("/healthz")
async def healthz():
    return {"ok": True}


@app.get("/_records")
async def records():
    return RECORDS


@app.delete("/_records")
async def clear_records():
    RECORDS.clear()
    COUNTERS.clear()
    return {"cleared": True}


@app.post("/predict")
async def predict(request: Request):
    body = PlainBody.model_validate(await record(request))
    await asyncio.sleep(0.002)
    return {"label": label(body.text), "score": 0.5}


@app.post("/v1/classify")
async def classify(request: Request):
    body = ClassifyBody.model_validate(await record(request))
    texts = [body.inputs] if isinstance(body.inputs, str) else body.inputs
    await asyncio.sleep(0.002)
    return {"outputs": [{"label": label(t)} for t in texts]}


@app.post("/v1/completions")
async def completions(request: Request):
    body = CompletionBody.model_validate(await record(request))
    prompts = [body.prompt] if isinstance(body.prompt, str) else body.prompt
    await asyncio.sleep(0.002)
    usage = {"prompt_tokens": sum(len(p.split()) for p in prompts), "completion_tokens": len(prompts),
             "total_tokens": sum(len(p.split()) for p in prompts) + len(prompts)}
    if body.stream:
        return _openai_stream([{"object": "text_completion", "model": body.model,
                                "choices": [{"index": i, "text": " ok", "finish_reason": "length"}]}
                               for i, _ in enumerate(prompts)], usage,
                              bool(body.stream_options and body.stream_options.include_usage))
    return {"id": f"cmpl-{nth('completions')}", "object": "text_completion", "created": int(time.time()),
            "model": body.model,
            "choices": [{"index": i, "text": " ok", "logprobs": None, "finish_reason": "length"}
                        for i, _ in enumerate(prompts)],
            "usage": usage}


@app.post("/v1/chat/completions")
async def chat_completions(request: Request):
    body = ChatBody.model_validate(await record(request))
    await asyncio.sleep(0.002)
    usage = {"prompt_tokens": len(body.messages[-1].content.split()), "completion_tokens": 1,
             "total_tokens": len(body.messages[-1].content.split()) + 1}
    if body.stream:
        chunk = lambda delta, finish=None: {"object": "chat.completion.chunk", "model": body.model,  # noqa: E731
                                            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
        return _openai_stream([chunk({"role": "assistant"}), chunk({"content": "ok"}), chunk({}, "stop")], usage,
                              bool(body.stream_options and body.stream_options.include_usage))
    return {"id": f"chatcmpl-{nth('chat')}", "object": "chat.completion", "created": int(time.time()),
            "model": body.model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
            "usage": usage}


# Streaming with known timing, for the streaming reader (locustfiles/streaming.py): the first token
# STREAM_FIRST_S after the request, then one every STREAM_EVERY_S; /stream/cut breaks off after 3 tokens.
STREAM_TOKENS, STREAM_FIRST_S, STREAM_EVERY_S = 10, 0.050, 0.020


def _chat_chunk(delta: dict, finish=None, usage=None) -> bytes:
    chunk = {"id": "chatcmpl-stream", "object": "chat.completion.chunk", "model": "test",
             "choices": [] if usage else [{"index": 0, "delta": delta, "finish_reason": finish}]}
    if usage:
        chunk["usage"] = usage
    return f"data: {json.dumps(chunk)}\n\n".encode()


async def _token_stream(cut_after: int | None):
    yield _chat_chunk({"role": "assistant"})
    await asyncio.sleep(STREAM_FIRST_S)
    for i in range(STREAM_TOKENS):
        if i:
            await asyncio.sleep(STREAM_EVERY_S)
        if cut_after is not None and i == cut_after:
            raise ConnectionAbortedError("the test server breaks the stream off")  # uvicorn drops the connection
        yield _chat_chunk({"content": f"t{i} "})
    yield _chat_chunk({}, finish="length")
    yield _chat_chunk({}, usage={"prompt_tokens": 5, "completion_tokens": STREAM_TOKENS,
                                 "total_tokens": 5 + STREAM_TOKENS})
    yield b"data: [DONE]\n\n"


@app.post("/stream/v1/chat/completions")
async def stream_chat(request: Request):
    await record(request)
    return StreamingResponse(_token_stream(None), media_type="text/event-stream")


@app.post("/stream/cut")
async def stream_cut(request: Request):
    await record(request)
    return StreamingResponse(_token_stream(3), media_type="text/event-stream")


@app.post("/flaky")
async def flaky(request: Request):
    body = ClassifyBody.model_validate(await record(request))
    if nth("flaky") % 3 == 0:
        return {"error": "model overloaded, try again"}  # a 200 that is not an answer
    return {"outputs": [{"label": label(str(body.inputs))}]}


@app.post("/secure")
async def secure(request: Request):
    await record(request)
    got = request.headers.get("authorization", "")
    if got != f"Bearer {os.environ.get('BB_EXPECTED_TOKEN', '')}":
        return JSONResponse({"error": f"unauthorized: got Authorization={got!r}"}, status_code=401)
    if nth("secure") % 4 == 0:  # a careless server that echoes credentials in its error body
        return JSONResponse({"error": f"internal error while handling Authorization={got!r}, "
                                      f"X-Trace={request.headers.get('x-trace')!r}"}, status_code=500)
    return {"outputs": ["ok"]}


@app.post("/slow")
async def slow(request: Request):
    await record(request)
    await asyncio.sleep(1.0)
    return {"outputs": ["late"]}


@app.exception_handler(ValueError)
async def invalid_body(_request: Request, err: ValueError):  # pydantic's ValidationError is a ValueError
    return JSONResponse({"error": "body does not follow the protocol", "detail": str(err)[:500]}, status_code=422)
