"""The bundled BentoML sentiment service: ``POST /analyze-sentiment`` with ``{"text": "..."}``.

One BentoML service whose public API is itself the batchable one, so BentoML's adaptive
batching merges concurrent requests into one model call and each answer says the batch
size it ran in. The request body is the API's root input: a validator turns
``{"text": ...}`` into a one-item batch and a serializer turns the one-item answer back
into an object. (A front service calling a batchable model service through
``bentoml.depends`` lost about one response in a thousand under bursts in BentoML 1.4.40:
the model answered, the front waited for its 60 s timeout.)

Run: ``burstbench serve`` or ``make serve``. Settings come from BURSTBENCH_*
environment variables (service/settings.py).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import bentoml
from pydantic import BeforeValidator, PlainSerializer, WithJsonSchema

from .body_limits import JsonBodyGuard
from .model_builder import METADATA_FILE
from .settings import ServiceSettings

SETTINGS = ServiceSettings.from_env()
ROUTE = "/analyze-sentiment"


def _one_text(body: Any) -> list[str]:
    """The request body as a batch of one text, with the reason when it is not acceptable."""
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
    return [text]


TEXT_SCHEMA = {"type": "object", "required": ["text"],
               "properties": {"text": {"type": "string", "minLength": 1, "pattern": r"\S"}}}
ANSWER_SCHEMA = {"type": "object", "properties": {
    "label": {"type": "string"}, "score": {"type": "number"}, "tokens": {"type": "integer"},
    "truncated": {"type": "boolean"}, "batch_size": {"type": "integer"}, "variant": {"type": "string"}}}
OneText = Annotated[list[str], BeforeValidator(_one_text), WithJsonSchema(TEXT_SCHEMA)]
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


@bentoml.service(name="Sentiment", workers=1, traffic={"timeout": SETTINGS.timeout_s})
class Sentiment:
    def __init__(self) -> None:
        from .inference import load_classifier

        self.classifier = load_classifier(SETTINGS.model_dir, SETTINGS.variant, SETTINGS.max_length,
                                          SETTINGS.device, SETTINGS.threads or None, SETTINGS.variants_dir)
        self.info_data = {
            **_model_name(SETTINGS.model_dir),
            "variant": SETTINGS.variant,
            "device": self.classifier.device,
            "settings": SETTINGS.describe(),
        }

    @_api
    def analyze_sentiment(self, texts: OneText, /) -> OneAnswer:
        predictions = self.classifier.predict(texts)
        return [
            {"label": p.label, "score": p.score, "tokens": p.tokens, "truncated": p.truncated,
             "batch_size": len(texts), "variant": SETTINGS.variant}
            for p in predictions
        ]

    @bentoml.api(route="/model-info")
    def model_info(self) -> dict:
        return self.info_data


Sentiment.add_asgi_middleware(JsonBodyGuard, max_body_bytes=SETTINGS.max_body_bytes, paths=(ROUTE,))
