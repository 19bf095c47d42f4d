"""Classify each request's outcome into the failure kinds a user must tell apart.

429 (concurrency limit), 503 (shed by the batcher), 504 (server timeout), a client-side
timeout, a refused connection and an answer over --max-response-bytes are different failures with
different fixes.
"""
from __future__ import annotations

import json

FAILURE_KINDS = ("connection_refused", "timeout", "http_429", "http_503", "http_504", "response_too_large", "other",
                 "interrupted")


class ResponseTooLarge(Exception):
    """An answer longer than --max-response-bytes: read no further, its connection closed (``request_guard``)."""

    failure_kind = "response_too_large"


def classify(status: int, error: BaseException | None, body: dict | None) -> tuple[bool, str, str]:
    """(ok, failure kind or "", failure text or "") for one finished request."""
    if isinstance(error, ResponseTooLarge):
        return False, error.failure_kind, str(error)[:300]
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


def transport_error(resp) -> BaseException | None:
    """The response's error unless it is only FastHttpUser's complaint about the status code.

    geventhttpclient through Locust's FastHttpSession sets ``resp.error`` to a
    ``LocustBadStatusCode`` for any non-2xx answer; the status itself is the outcome then
    (429, 503 and 504 are failures of their own kinds), not a transport failure. A body over the
    cap is noted by ``request_guard`` as ``too_large`` (the clients' own ``error`` would re-raise it).
    """
    too_large = getattr(resp, "too_large", None)
    if too_large is not None:
        return too_large
    error = getattr(resp, "error", None)
    if error is not None and type(error).__name__ == "LocustBadStatusCode" and (resp.status_code or 0) > 0:
        return None
    return error


def _body_text(body) -> str:
    return str(body)[:300] if body is not None else ""


def field_at(body, path: tuple[str, ...]):
    """The value at a dotted path such as ``choices.0.text`` (keys, or list indices), or raise KeyError."""
    value = body
    for part in path:
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.lstrip("-").isdigit() and -len(value) <= int(part) < len(value):
            value = value[int(part)]
        else:
            raise KeyError(part)
    return value


def check_response(status: int, error: BaseException | None, body_text: str, expect_status: int | None,
                   expect_field: tuple[str, ...]) -> tuple[bool, str, str]:
    """(ok, failure kind or "", failure text or "") for a response from any service.

    ``expect_status`` None accepts any 2xx. ``expect_field`` (a dotted path, split) must be present in the
    JSON body, so that a 200 carrying an error body counts as a failure.
    """
    if error is not None:
        return classify(status, error, None)
    status_ok = status == expect_status if expect_status is not None else 200 <= status < 300
    if not status_ok:
        if status in (429, 503, 504):
            return False, f"http_{status}", body_text[:300]
        wanted = expect_status if expect_status is not None else "2xx"
        return False, "other", f"HTTP {status} (expected {wanted}): {body_text}"[:300]
    if expect_field:
        dotted = ".".join(expect_field)
        try:
            body = json.loads(body_text)
        except ValueError:
            return False, "other", f"HTTP {status} but the body is not JSON (--expect-field {dotted}): {body_text}"[:300]
        try:
            field_at(body, expect_field)
        except KeyError:
            return False, "other", f"HTTP {status} without field {dotted!r} (--expect-field): {body_text}"[:300]
    return True, "", ""
