"""Classify each request's outcome into the failure kinds a user must tell apart.

429 (concurrency limit), 503 (shed by the batcher), 504 (server timeout), a client-side
timeout and a refused connection are different failures with different fixes.
"""
from __future__ import annotations

FAILURE_KINDS = ("connection_refused", "timeout", "http_429", "http_503", "http_504", "other", "interrupted")


def classify(status: int, error: BaseException | None, body: dict | None) -> tuple[bool, str, str]:
    """(ok, failure kind or "", failure text or "") for one finished request."""
    if error is not None:
        text = f"{type(error).__name__}: {error}"[:300]
        lowered = text.lower()
        if "timeout" in lowered or "timed out" in lowered:
            return False, "timeout", text
        if "refused" in lowered:
            return False, "connection_refused", text
        return False, "other", text
    if status in (429, 503, 504):
        return False, f"http_{status}", _body_text(body)
    if status != 200:
        return False, "other", f"HTTP {status}: {_body_text(body)}"
    if not isinstance(body, dict) or "label" not in body:
        return False, "other", f"HTTP 200 without a label: {_body_text(body)}"
    return True, "", ""


def _body_text(body) -> str:
    return str(body)[:300] if body is not None else ""
