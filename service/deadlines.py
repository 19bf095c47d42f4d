"""Per-request deadlines: queued work whose client has given up is dropped, not computed.

BentoML 1.4.40 computes every item that reaches its batching queue: when its traffic timeout answers
504, or the client disconnects, the handler's future is cancelled but the queued job stays in the
dispatcher's deque and is computed with the next batch (measured: 60 of 60 items computed while 59
clients had their 504 or had gone). So the request carries a clock from the ASGI middleware to the
batch function: a contextvar set when the request is received, attached to the text by the input
validator (``TimedText``); the batch function leaves out the items whose deadline passed or whose
request is over, and the middleware answers those 504 in place of the placeholder answer.

Deadline: receipt + min(``X-Request-Timeout-Ms``, ``BURSTBENCH_DEADLINE_MS``) of those given, on the
server's monotonic clock (no clock synchronisation with the client needed).
"""
from __future__ import annotations

import asyncio
import json
import time
from contextvars import ContextVar
from dataclasses import dataclass

HEADER = "X-Request-Timeout-Ms"
SETTING = "BURSTBENCH_DEADLINE_MS"
MAX_TIMEOUT_MS = 3_600_000
DROPPED_STATUS = 504  # as BentoML's own traffic timeout: the time allowed has passed


@dataclass(eq=False)
class RequestClock:
    received_s: float                # time.monotonic() when the middleware received the request
    budget_ms: int | None = None     # None: no deadline
    source: str = ""                 # HEADER or SETTING: which one set the budget
    dropped: str | None = None       # why the request was not computed (the answer's error)
    over: bool = False               # the request is over: answered, cancelled by BentoML's timeout, or its client left

    @property
    def deadline_s(self) -> float | None:
        return None if self.budget_ms is None else self.received_s + self.budget_ms / 1000

    def expired(self, now_s: float | None = None) -> bool:
        deadline = self.deadline_s
        return deadline is not None and (time.monotonic() if now_s is None else now_s) >= deadline

    def drop(self, stage: str) -> str:
        """Mark the request as not computed; ``stage`` is "arrival" (before the queue) or "queue"."""
        where = "before the request was queued" if stage == "arrival" else "while queued"
        self.dropped = f"deadline of {self.budget_ms} ms passed {where} ({self.source}); not computed"
        counters().deadline_dropped.labels(stage=stage).inc()
        return self.dropped


def clock_for(header_value: str | None, configured_ms: int, now_s: float | None = None) -> RequestClock:
    """The request's clock from its header (None when absent) and the configured ceiling (0: none)."""
    received = time.monotonic() if now_s is None else now_s
    budgets = []
    if header_value is not None:
        raw = header_value.strip()
        if not (raw.isascii() and raw.isdigit() and 1 <= int(raw) <= MAX_TIMEOUT_MS):
            raise ValueError(f"{HEADER} must be an integer number of milliseconds in [1, {MAX_TIMEOUT_MS}] "
                             f"(got {header_value[:40]!r})")
        budgets.append((int(raw), HEADER))
    if configured_ms:
        budgets.append((configured_ms, SETTING))
    if not budgets:
        return RequestClock(received)
    budget, source = min(budgets)  # on a tie the header is named: it is what the client asked for
    return RequestClock(received, budget, source)


CURRENT_CLOCK: ContextVar[RequestClock | None] = ContextVar("burstbench_request_clock", default=None)


class TimedText(str):
    """A request's text with the clock of the request it came in (the batch input's items)."""

    __slots__ = ("clock",)

    def __new__(cls, text: str, clock: RequestClock | None):
        item = super().__new__(cls, text)
        item.clock = clock
        return item


def with_clock(text: str) -> TimedText:
    """The text carrying the current request's clock (set by the middleware; None outside one)."""
    return TimedText(text, CURRENT_CLOCK.get())


def live_items(texts) -> list[int]:
    """Indices of the batch's items to compute; the others are marked dropped and counted."""
    live = []
    now = time.monotonic()
    for i, text in enumerate(texts):
        clock = getattr(text, "clock", None)
        if clock is None:
            live.append(i)
        elif clock.expired(now):  # first: a client that gave up at its deadline has often left as well
            clock.drop("queue")
        elif clock.over:  # answered 504 by BentoML's timeout, or the client left: no one to answer
            clock.dropped = "the request was over before it was computed (client gone or traffic timeout)"
            counters().abandoned_dropped.inc()
        else:
            live.append(i)
    if live:
        counters().items_computed.inc(len(live))
    return live


async def run_with_clock(app, scope, body: bytes, receive, send, clock: RequestClock) -> None:
    """Run the app on the buffered body with the request's clock current; a dropped request is answered 504.

    After the body only ``http.disconnect`` can come from the server: a watcher waits for it so that a
    client that leaves while its text is queued marks the request over (its item is then not computed).
    """
    watcher = asyncio.ensure_future(receive())
    watcher.add_done_callback(lambda _: setattr(clock, "over", True))
    replayed = False

    async def replay():
        nonlocal replayed
        if replayed:
            return await asyncio.shield(watcher)
        replayed = True
        return {"type": "http.request", "body": body, "more_body": False}

    replaced = False
    task = asyncio.current_task()

    async def send_or_replace(message):
        nonlocal replaced
        if task is not None and task.cancelling():
            # BentoML's traffic timeout has answered 504 and cancelled this request; its dispatcher turns the
            # cancellation into a 503 that would be a second answer (counted on /metrics when the client is gone).
            return
        if message["type"] == "http.response.start" and clock.dropped is not None:
            replaced = True  # the batch function's placeholder: answer the reason instead
            return await respond(send, DROPPED_STATUS, clock.dropped)
        if not replaced:
            await send(message)

    token = CURRENT_CLOCK.set(clock)
    try:
        await app(scope, replay, send_or_replace)
    finally:
        clock.over = True  # also when BentoML's timeout cancelled us: the queued item is then left out
        CURRENT_CLOCK.reset(token)
        watcher.cancel()


async def respond(send, status: int, message: str) -> None:
    body = json.dumps({"error": message}).encode()
    await send({
        "type": "http.response.start",
        "status": status,
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
    })
    await send({"type": "http.response.body", "body": body})


@dataclass(frozen=True)
class Counters:
    deadline_dropped: object
    abandoned_dropped: object
    items_computed: object


_COUNTERS: list[Counters] = []


def counters() -> Counters:
    """The service's own Prometheus counters, made on first use in the worker process.

    prometheus_client directly (bentoml.metrics is a deprecated alias of it in 1.4): created in the
    worker, where PROMETHEUS_MULTIPROC_DIR is set, they appear on BentoML's /metrics.
    """
    if not _COUNTERS:
        from prometheus_client import Counter

        dropped = Counter("burstbench_deadline_dropped", "Requests not computed because their deadline "
                          f"({HEADER} / {SETTING}) passed, by where they were", ["stage"])
        for stage in ("arrival", "queue"):
            dropped.labels(stage=stage)  # shown as 0 from the start
        _COUNTERS.append(Counters(
            deadline_dropped=dropped,
            abandoned_dropped=Counter("burstbench_abandoned_dropped", "Queued requests not computed because they "
                                      "were over (client gone or BentoML's traffic timeout answered 504)"),
            items_computed=Counter("burstbench_items_computed", "Texts computed by the model"),
        ))
    return _COUNTERS[0]
