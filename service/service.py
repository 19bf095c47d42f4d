"""The bundled BentoML sentiment service: ``POST /analyze-sentiment`` with ``{"text": "..."}``.

One BentoML service whose public API is itself the batchable one, so BentoML's adaptive
batching merges concurrent requests into one model call and each answer says the batch
size it ran in. The request body is the API's root input: a validator turns
``{"text": ...}`` into a one-item batch and a serializer turns the one-item answer back
into an object. (A front service calling a batchable model service through
``bentoml.depends`` lost about one response in a thousand under bursts in BentoML 1.4.40:
the model answered, the front waited for its 60 s timeout.)

Each text carries its request's clock (service/deadlines.py): the batch function leaves out
the items whose deadline passed while they were queued, or whose request is already over, and
the middleware answers those 504. ``BURSTBENCH_MAX_CONCURRENCY`` bounds admission (BentoML's
``traffic.max_concurrency``: 429 at once past it).

Run: ``burstbench serve`` or ``make serve``. Settings come from BURSTBENCH_*
environment variables (service/settings.py).
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import bentoml
from pydantic import PlainSerializer, PlainValidator, WithJsonSchema

from .body_limits import JsonBodyGuard
from .deadlines import counters, live_items, with_clock
from .model_builder import METADATA_FILE
from .settings import ServiceSettings, token_budget

SETTINGS = ServiceSettings.from_env()
ROUTE = "/analyze-sentiment"


def _one_text(body: Any) -> list[str]:
    """The request body as a batch of one text (carrying the request's clock), or the reason it is not acceptable."""
    if not isinstance(body, dict) or "text" not in body:
        raise ValueError('body must be a JSON object with a "text" field, e.g. {"text": "great service"}')
    text = body["text"]
    if not isinstance(text, str):
        raise ValueError(f'"text" must be a string (got {type(text).__name__})')
    if not text.strip():
        raise ValueError('"text" must be a non-empty string')
    try:  # JSON allows a lone surrogate escape ("\ud800"); the tokenizer fails on it, failing the whole batch
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError('"text" must be valid Unicode (it has a lone surrogate such as \\ud800)') from None
    return [with_clock(text)]


TEXT_SCHEMA = {"type": "object", "required": ["text"],
               "properties": {"text": {"type": "string", "minLength": 1, "pattern": r"\S"}}}
ANSWER_SCHEMA = {"type": "object", "properties": {
    "label": {"type": "string"}, "score": {"type": "number"}, "tokens": {"type": "integer"},
    "truncated": {"type": "boolean"}, "batch_size": {"type": "integer"}, "variant": {"type": "string"}}}
# A plain validator: pydantic's own list[str] validation would turn the clock-carrying texts into plain str.
OneText = Annotated[list[str], PlainValidator(_one_text), WithJsonSchema(TEXT_SCHEMA)]
OneAnswer = Annotated[list[dict], PlainSerializer(lambda answers: answers[0] if len(answers) == 1 else answers),
                      WithJsonSchema(ANSWER_SCHEMA)]

_api = (
    bentoml.api(route=ROUTE, batchable=True, max_batch_size=SETTINGS.max_batch_size,
                max_latency_ms=SETTINGS.max_latency_ms)
    if SETTINGS.batching
    else bentoml.api(route=ROUTE)
)


def _model_name(model_dir: Path) -> dict:
    meta = model_dir / METADATA_FILE
    if meta.exists():
        data = json.loads(meta.read_text())
        return {"model": data["name"], "untrained": bool(data.get("untrained", False))}
    return {"model": model_dir.name, "untrained": False}


@bentoml.service(name="Sentiment", workers=1,
                  traffic={"timeout": SETTINGS.timeout_s, "max_concurrency": SETTINGS.max_concurrency or None})
class Sentiment:
    def __init__(self) -> None:
        from .inference import load_classifier

        if SETTINGS.start_delay_s:  # BURSTBENCH_START_DELAY_S: a slow model start, for disruptions and tests
            print(f"burstbench: waiting {SETTINGS.start_delay_s:g} s before loading the model "
                  "(BURSTBENCH_START_DELAY_S)", file=sys.stderr, flush=True)
            time.sleep(SETTINGS.start_delay_s)
        self.classifier = load_classifier(SETTINGS.model_dir, SETTINGS.variant, SETTINGS.max_length,
                                          SETTINGS.device, SETTINGS.threads or None, SETTINGS.variants_dir)
        self.token_budget = token_budget(SETTINGS.batch_tokens, self.classifier.device)
        self.info_data = {
            **_model_name(SETTINGS.model_dir),
            "variant": SETTINGS.variant,
            "device": self.classifier.device,
            "batch_tokens": self.token_budget,
            "settings": SETTINGS.describe(),
        }
        counters()  # on /metrics from the start, at 0

    @_api
    def analyze_sentiment(self, texts: OneText, /) -> OneAnswer:
        live = live_items(texts)  # the others' deadline passed in the queue, or no one waits for them
        answers: list[dict] = [{"error": "not computed"}] * len(texts)  # replaced by the middleware's 504
        if not live:
            return answers
        if SETTINGS.compute_delay_ms:  # BURSTBENCH_COMPUTE_DELAY_MS: a slower model, for tests
            time.sleep(SETTINGS.compute_delay_ms / 1000)
        predictions = self.classifier.predict([str(texts[i]) for i in live], self.token_budget)
        for i, p in zip(live, predictions):
            answers[i] = {"label": p.label, "score": p.score, "tokens": p.tokens, "truncated": p.truncated,
                          "batch_size": len(live), "variant": SETTINGS.variant}
        return answers

    @bentoml.api(route="/model-info")
    def model_info(self) -> dict:
        return self.info_data


Sentiment.add_asgi_middleware(JsonBodyGuard, max_body_bytes=SETTINGS.max_body_bytes, paths=(ROUTE,),
                              deadline_ms=SETTINGS.deadline_ms)
