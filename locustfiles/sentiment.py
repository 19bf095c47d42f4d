"""Locustfile for the bundled sentiment service (or any service with the same endpoint).

    locust -f locustfiles/sentiment.py --headless --host http://127.0.0.1:3000 --scenario extreme

Adds burstbench's flags to Locust's parser (see ``--help``), paces requests by an arrival
process, stops by itself after ``--requests`` requests, and writes one folder per run
under ``--results-dir``: requests.csv (one row per request), run.json, and Locust's own
CSV and HTML outputs. The machinery is in ``core``; this file says how to talk to the
bundled service. For any other service, see ``http.py``.
"""
import locust  # noqa: F401  (first: gevent's monkey-patching must precede other imports)

import functools
import math

from burstbench.locustfiles.plugin import PacedFastUser, install
from burstbench.locustfiles.outcomes import classify, transport_error

ROUTE = "/analyze-sentiment"
DEADLINE_HEADER = "X-Request-Timeout-Ms"  # the bundled service's per-request deadline (docs/service.md)
MAX_DEADLINE_MS = 3_600_000


@functools.lru_cache(maxsize=4)
def deadline_headers(timeout_s: float) -> dict:
    """The service drops queued work once this client has given up, instead of computing it (its deadline).
    One dict per run's timeout, not one per request (the client does not modify it)."""
    return {DEADLINE_HEADER: str(min(MAX_DEADLINE_MS, max(1, math.ceil(timeout_s * 1000))))}


class SentimentTarget:
    """``POST /analyze-sentiment {"text": ...}``; the answer says its label and the batch it was computed in."""

    endpoint = ROUTE
    batch_size = 1

    def request(self, user, texts, timeout_s):
        return user.client.post(ROUTE, json={"text": texts[0]}, headers=deadline_headers(timeout_s),
                                catch_response=True, name=ROUTE)

    def judge(self, resp):
        body = _json_or_none(resp)
        ok, kind, failure = classify(resp.status_code or 0, transport_error(resp), body)
        fields = {}
        if ok:
            fields = {"batch_size": body.get("batch_size", ""), "tokens": body.get("tokens", ""),
                      "truncated": int(bool(body.get("truncated"))), "label": body.get("label", "")}
        return ok, kind, failure, fields

    def describe(self) -> dict:
        return {"method": "POST", "path": ROUTE, "preset": "bundled-sentiment", "payload_template": '{"text": "{text}"}',
                "batch_size": 1, "headers": [], "expect_status": 200, "expect_field": "label"}

    def target_info(self, host: str) -> dict:
        """What the service says it serves (variant, model); recorded, never required."""
        import requests

        try:
            resp = requests.post(f"{host}/model-info", json={}, timeout=5)
            return resp.json() if resp.ok else {"error": f"HTTP {resp.status_code} from /model-info"}
        except Exception as err:  # a foreign service, or not up yet: note it and carry on
            return {"error": f"{type(err).__name__}: {err}"[:300]}

    def scrub(self, text: str) -> str:
        return text  # this target sends no secret


def _json_or_none(resp):
    try:
        return resp.json()
    except Exception:
        return None


class SentimentUser(PacedFastUser):
    host = "http://127.0.0.1:3000"
    uses_cookies = False  # the bundled service sets none


install(SentimentUser, build_target=lambda _options: SentimentTarget(),
        dataset_help="bundled, hub, or a CSV file with a 'text' column (also JSONL, Parquet, hub:<name>[:split])")
