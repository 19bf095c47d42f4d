"""The bundled service on loopback: answers, every bad-input case, adaptive batching on and off."""
from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from conftest import Server

pytestmark = pytest.mark.server
ROUTE = "/analyze-sentiment"


def post(url, body: bytes | str, content_type="application/json"):
    return requests.post(url + ROUTE, data=body, headers={"Content-Type": content_type}, timeout=30)


def error_text(resp) -> str:
    """The message(s) of a JSON error answer: ours ({"error"}) or BentoML's validation ({"detail": [{"msg"}]})."""
    body = resp.json()
    return " ".join([body.get("error", "")] + [d.get("msg", "") for d in body.get("detail", [])])


def test_answer_has_label_score_variant_batch(server):
    resp = requests.post(server.url + ROUTE, json={"text": "The delivery was quick and friendly"}, timeout=30)
    assert resp.status_code == 200
    body = resp.json()
    assert body["label"] in {"negative", "neutral", "positive"}
    assert 1 / 3 <= body["score"] <= 1.0  # the argmax of three probabilities
    assert body["variant"] == "onnx-fp32"
    assert body["batch_size"] >= 1
    assert body["truncated"] is False and 0 < body["tokens"] <= 32


def test_model_info_names_the_untrained_model(server):
    info = requests.post(server.url + "/model-info", json={}, timeout=30).json()
    assert info["model"] == "untrained-roberta-tiny"
    assert info["untrained"] is True
    assert info["device"] == "cpu"
    assert info["settings"]["batching"] is True
    assert info["settings"]["batch_tokens"] == 0 and info["batch_tokens"] == 256  # automatic: a budget on a CPU


def test_long_text_is_truncated_and_says_so(server):
    resp = requests.post(server.url + ROUTE, json={"text": "great service " * 200}, timeout=30)
    assert resp.status_code == 200
    assert resp.json()["truncated"] is True
    assert resp.json()["tokens"] == 32  # BURSTBENCH_MAX_LENGTH of the fixture


@pytest.mark.parametrize(
    "body, status, fragment",
    [
        ('{"text": "unterminated', 400, "not valid JSON"),
        ('{"txt": "x"}', 400, 'a JSON object with a "text" field'),
        ('{"text": 5}', 400, '"text" must be a string (got int)'),
        ('{"text": null}', 400, '"text" must be a string (got NoneType)'),
        ('{"text": ""}', 400, "non-empty"),
        ('{"text": "   "}', 400, "non-empty"),
        ('["a list"]', 400, "JSON object"),
        (b'{"text": "\xff\xfe"}', 400, "not valid JSON"),
    ],
)
def test_bad_input_gets_a_clear_4xx(server, body, status, fragment):
    resp = post(server.url, body)
    assert resp.status_code == status
    assert fragment in error_text(resp)


def test_wrong_content_type_is_415(server):
    resp = post(server.url, '{"text": "hi"}', content_type="text/plain")
    assert resp.status_code == 415
    assert "application/json" in resp.json()["error"]


def test_body_over_the_limit_is_413(server):
    resp = post(server.url, json.dumps({"text": "a" * 70_000}))
    assert resp.status_code == 413
    assert "65536" in resp.json()["error"]


def test_service_still_ready_after_bad_input(server):
    assert requests.get(server.url + "/readyz", timeout=10).status_code == 200


def _concurrent_batch_sizes(url: str, rounds: int = 3, concurrency: int = 16) -> list[int]:
    sizes = []
    with ThreadPoolExecutor(concurrency) as pool:
        for r in range(rounds):
            texts = [f"request {r}-{i}: the service was fine" for i in range(concurrency)]
            for resp in pool.map(lambda t: requests.post(url + ROUTE, json={"text": t}, timeout=60), texts):
                assert resp.status_code == 200, resp.text
                sizes.append(resp.json()["batch_size"])
    return sizes


def test_concurrent_requests_are_batched(server):
    assert max(_concurrent_batch_sizes(server.url)) > 1


def test_batching_off_computes_one_request_at_a_time(tiny_model, tmp_path):
    srv = Server(tiny_model, tmp_path / "service.log", batching="off")
    try:
        assert set(_concurrent_batch_sizes(srv.url, rounds=2)) == {1}
        info = requests.post(srv.url + "/model-info", json={}, timeout=30).json()
        assert info["settings"]["batching"] is False
    finally:
        srv.stop()
