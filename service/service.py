"""The bundled BentoML sentiment service.

Two BentoML services, because BentoML batches only requests that reach a batchable API
over its own dispatcher: ``Sentiment`` (the front: ``POST /analyze-sentiment`` with one
text, input checks) calls ``SentimentModel.classify`` (batchable: items from concurrent
requests are merged into one model call, and each answer says the batch size it ran in).

Run: ``bentoml serve service.service:Sentiment`` (or ``make serve``). Settings come from
BURSTBENCH_* environment variables (service/settings.py).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import aiohttp
import bentoml
from bentoml.exceptions import InvalidArgument
from pydantic import Field

from .body_limits import JsonBodyGuard
from .model_builder import METADATA_FILE
from .settings import ServiceSettings

SETTINGS = ServiceSettings.from_env()
ROUTE = "/analyze-sentiment"
INTERNAL_RETRIES = 2


def _model_name(model_dir: Path) -> dict:
    meta = model_dir / METADATA_FILE
    if meta.exists():
        data = json.loads(meta.read_text())
        return {"model": data["name"], "untrained": bool(data.get("untrained", False))}
    return {"model": model_dir.name, "untrained": False}


_batch_api = (
    bentoml.api(batchable=True, max_batch_size=SETTINGS.max_batch_size, max_latency_ms=SETTINGS.max_latency_ms)
    if SETTINGS.batching
    else bentoml.api
)


@bentoml.service(name="SentimentModel", workers=1, traffic={"timeout": SETTINGS.timeout_s})
class SentimentModel:
    def __init__(self) -> None:
        from .inference import load_classifier

        self.classifier = load_classifier(
            SETTINGS.model_dir, SETTINGS.variant, SETTINGS.max_length, SETTINGS.device, SETTINGS.threads or None
        )
        self.info_data = {
            **_model_name(SETTINGS.model_dir),
            "variant": SETTINGS.variant,
            "device": self.classifier.device,
            "settings": SETTINGS.describe(),
        }

    @_batch_api
    def classify(self, texts: list[str]) -> list[dict]:
        predictions = self.classifier.predict(texts)
        return [
            {"label": p.label, "score": p.score, "tokens": p.tokens, "truncated": p.truncated, "batch_size": len(texts)}
            for p in predictions
        ]

    @bentoml.api
    def info(self) -> dict:
        return self.info_data


@bentoml.service(name="Sentiment", workers=1, traffic={"timeout": SETTINGS.timeout_s})
class Sentiment:
    model = bentoml.depends(SentimentModel)

    def __init__(self) -> None:
        self.reconnects = 0

    @bentoml.api(route=ROUTE)
    async def analyze_sentiment(self, text: Annotated[str, Field(strict=True)]) -> dict:
        if not text.strip():
            raise InvalidArgument('"text" must be a non-empty string')
        for attempt in range(1 + INTERNAL_RETRIES):
            try:
                (result,) = await self.model.to_async.classify([text])
                break
            except aiohttp.ClientConnectionError:
                # BentoML issues #3669/#4238: a pooled connection between the two services is
                # sometimes dropped mid-call. Classifying is idempotent, so ask again; counted
                # in /model-info as front_reconnects.
                self.reconnects += 1
                if attempt == INTERNAL_RETRIES:
                    raise
        return {**result, "variant": SETTINGS.variant}

    @bentoml.api(route="/model-info")
    async def model_info(self) -> dict:
        return {**await self.model.to_async.info(), "front_reconnects": self.reconnects}


Sentiment.add_asgi_middleware(JsonBodyGuard, max_body_bytes=SETTINGS.max_body_bytes, paths=(ROUTE,))
