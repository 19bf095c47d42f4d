"""locustfiles/http_endpoint.py: burstbench's traffic against services other than the bundled one.

Unit tests of the endpoint configuration (templates, presets, headers, response check, datasets),
then real Locust against real servers on loopback: MLServer (a third-party KServe v2 server) and a
FastAPI app for the plain and OpenAI-compatible presets. Each server records what it received, so
every preset's body is checked against what its protocol expects.
"""
from __future__ import annotations

import json
import subprocess
import sys
from argparse import Namespace
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from burstbench.arrivals import ArrivalSchedule, scenario
from conftest import REPO_ROOT, only_run_dir
from burstbench.locustfiles.endpoint import EndpointSpec, PayloadTemplate, redact_argv
from burstbench.locustfiles.outcomes import check_response
from burstbench.locustfiles.texts import load_texts
from servers.fixtures import EXPECTED_TOKEN, fastapi_server, mlserver, run_http_locust  # noqa: F401 (fixtures)
from servers.processes import free_port

TRICKY = 'she said "no" \\ then\nleft\t\u2713 {text} </b>'


STREAMED = {"stream": True, "stream_options": {"include_usage": True}}  # what the openai-* presets add by default


def options(**flags) -> Namespace:
    """http.py's endpoint flags as Locust parses them (strings), with their defaults."""
    defaults = {"preset": None, "model_name": None, "method": None, "path": None, "payload": None,
                "batch_size": "1", "header": [], "expect_status": None, "expect_field": None,
                "input_name": "text", "max_tokens": "16"}
    return Namespace(**{**defaults, **flags})


def body_of(spec: EndpointSpec, texts: list[str]):
    return json.loads(spec.body(texts).decode("utf-8"))


# ------------------------------------------------------------------------------ templates
@pytest.mark.parametrize("template, texts, expected", [
    ('{"inputs": "{text}"}', [TRICKY], {"inputs": TRICKY}),
    ('{"inputs": {text}}', [TRICKY], {"inputs": TRICKY}),
    ('{"q": "Review: {text}!", "n": 1}', [TRICKY], {"q": f"Review: {TRICKY}!", "n": 1}),
    ('{"data": {texts}}', [TRICKY, "b", "c"], {"data": [TRICKY, "b", "c"]}),
    ('{"data": "{texts}"}', [TRICKY, "b"], {"data": [TRICKY, "b"]}),
    ('{"a": "{text}", "b": "{text}"}', ["x"], {"a": "x", "b": "x"}),
])
def test_placeholders_are_json_escaped(template, texts, expected):
    assert json.loads(PayloadTemplate.compile(template).render(texts)) == expected


@pytest.mark.parametrize("template, batch, message", [
    ('{"inputs": {text}', 1, "--payload is not valid JSON after substituting a sample text"),
    ('{"inputs": [{text} {text}]}', 1, "--payload is not valid JSON after substituting a sample text"),
    ('{"inputs": "x"}', 1, "--payload has no {text} or {texts} placeholder"),
    ('{"a": "{text}", "b": {texts}}', 2, "--payload uses both {text} and {texts}"),
    ('{"inputs": "{text}"}', 4, "--batch-size 4 needs a {texts} placeholder in --payload"),
    ('{"inputs": "all: {texts}"}', 2, "{texts} stands for a JSON list and must be a whole value"),
])
def test_bad_templates_are_refused_naming_the_flag(template, batch, message):
    with pytest.raises(ValueError) as info:
        EndpointSpec.from_options(options(path="/x", payload=template, batch_size=str(batch)))
    assert message in str(info.value)


# ------------------------------------------------------------------------------ presets
def kserve_v2(texts):
    return {"inputs": [{"name": "text", "shape": [len(texts)], "datatype": "BYTES", "data": texts}]}


@pytest.mark.parametrize("flags, path, expected, field", [
    ({"preset": "plain"}, "/predict", lambda t: {"text": t[0]}, ()),
    ({"preset": "kserve-v2", "model_name": "text-stats"}, "/v2/models/text-stats/infer", kserve_v2, ("outputs",)),
    ({"preset": "kserve-v2", "model_name": "text-stats", "batch_size": "3"}, "/v2/models/text-stats/infer",
     kserve_v2, ("outputs",)),
    ({"preset": "kserve-v2", "model_name": "my/model v2", "input_name": "TEXT"}, "/v2/models/my%2Fmodel%20v2/infer",
     lambda t: {"inputs": [{"name": "TEXT", "shape": [1], "datatype": "BYTES", "data": t}]}, ("outputs",)),
    ({"preset": "openai-completions", "model_name": "tiny-llm"}, "/v1/completions",
     lambda t: {"model": "tiny-llm", "prompt": t[0], "max_tokens": 16, **STREAMED}, ("choices", "0", "text")),
    ({"preset": "openai-completions", "model_name": "tiny-llm", "batch_size": "2", "max_tokens": "4"},
     "/v1/completions", lambda t: {"model": "tiny-llm", "prompt": t, "max_tokens": 4, **STREAMED},
     ("choices", "0", "text")),
    ({"preset": "openai-chat", "model_name": 'say "hi"'}, "/v1/chat/completions",
     lambda t: {"model": 'say "hi"', "messages": [{"role": "user", "content": t[0]}], "max_tokens": 16,
                **STREAMED}, ("choices", "0", "message", "content")),
    # --stream off: one JSON answer, as before streaming
    ({"preset": "openai-chat", "model_name": "m", "stream": "off"}, "/v1/chat/completions",
     lambda t: {"model": "m", "messages": [{"role": "user", "content": t[0]}], "max_tokens": 16, "stream": False},
     ("choices", "0", "message", "content")),
    # explicit flags override the preset's fields
    ({"preset": "openai-chat", "model_name": "m", "path": "/chat", "expect_field": "id", "method": "put"}, "/chat",
     lambda t: {"model": "m", "messages": [{"role": "user", "content": t[0]}], "max_tokens": 16, **STREAMED},
     ("id",)),
    ({"preset": "kserve-v2", "path": "/infer", "payload": '{"x": {texts}}', "batch_size": "2"}, "/infer",
     lambda t: {"x": t}, ("outputs",)),
])
def test_presets_build_their_protocols_bodies(flags, path, expected, field):
    spec = EndpointSpec.from_options(options(**flags))
    texts = [TRICKY] + [f"text {k}" for k in range(1, spec.batch_size)]
    assert spec.path == path
    assert body_of(spec, texts) == expected(texts)
    assert spec.expect_field == field
    assert spec.method == flags.get("method", "POST").upper()


@pytest.mark.parametrize("flags, message", [
    ({"preset": "kserve-v2"}, "--preset kserve-v2 needs --model-name"),
    ({"preset": "openai-chat"}, "--preset openai-chat needs --model-name"),
    ({"preset": "openai-chat", "model_name": "m", "batch_size": "2"}, "--preset openai-chat sends one text per request"),
    ({"preset": "plain", "batch_size": "2"}, "--preset plain sends one text per request"),
    ({"preset": "grpc"}, "--preset must be one of plain, kserve-v2, openai-completions, openai-chat, sse"),
    ({"payload": '{"t": "{text}"}'}, "--path is required"),
    ({"path": "/x"}, "--payload is required"),
    ({"path": "x", "payload": '{"t": "{text}"}'}, "--path must start with /"),
    ({"preset": "plain", "method": "DELETE"}, "--method must be one of POST, PUT, PATCH"),
    ({"preset": "plain", "batch_size": "0"}, "--batch-size must be an integer in [1, 100000]"),
    ({"preset": "plain", "expect_status": "ok"}, "--expect-status must be an integer in [100, 599]"),
    ({"preset": "openai-chat", "model_name": "m", "max_tokens": "-1"}, "--max-tokens must be an integer"),
])
def test_bad_endpoint_flags_are_refused(flags, message):
    with pytest.raises(ValueError) as info:
        EndpointSpec.from_options(options(**flags))
    assert message in str(info.value)


# ------------------------------------------------------------------------------ headers
def test_header_values_come_from_the_environment_and_are_never_described():
    env = {"MY_TOKEN": "tok-123456", "EMPTY": ""}
    spec = EndpointSpec.from_options(options(preset="plain", header=[
        "Authorization: Bearer ${MY_TOKEN}", "X-Api-Key: literal-key-999", "Accept: application/json"]), env)
    assert spec.request_headers() == {"Content-Type": "application/json", "Authorization": "Bearer tok-123456",
                                      "X-Api-Key": "literal-key-999", "Accept": "application/json"}
    described = json.dumps(spec.describe())
    assert spec.describe()["headers"] == ["Accept", "Authorization", "X-Api-Key"]
    for secret in ("tok-123456", "literal-key-999"):
        assert secret not in described
    leaked = "401: got 'Bearer tok-123456' and key literal-key-999; token tok-123456"
    assert spec.scrub(leaked) == "401: got '<redacted>' and key <redacted>; token <redacted>"

    with pytest.raises(ValueError, match="--header Authorization: environment variable EMPTY is not set"):
        EndpointSpec.from_options(options(preset="plain", header=["Authorization: ${EMPTY}"]), env)
    with pytest.raises(ValueError) as info:  # no colon: the value may be a secret, so it is not echoed
        EndpointSpec.from_options(options(preset="plain", header=["Bearer tok-123456"]), env)
    assert "--header must look like 'Name: value'" in str(info.value) and "tok-123456" not in str(info.value)


def test_argv_keeps_header_names_only():
    argv = ["locust", "--header", "Authorization: Bearer abc", "--header=X-Key: k1", "--path", "/p", "--header", "junk"]
    assert redact_argv(argv) == ["locust", "--header", "Authorization: <redacted>", "--header=X-Key: <redacted>",
                                 "--path", "/p", "--header", "<redacted>"]


# ------------------------------------------------------------------------------ response check
@pytest.mark.parametrize("status, body, expect_status, field, outcome", [
    (200, '{"outputs": [1]}', None, ("outputs",), (True, "")),
    (201, '{"outputs": [1]}', None, ("outputs",), (True, "")),
    (200, '{"error": "overloaded"}', None, ("outputs",), (False, "other", "without field 'outputs'")),
    (200, "<html>busy</html>", None, ("outputs",), (False, "other", "body is not JSON")),
    (200, '{"choices": []}', None, ("choices", "0", "text"), (False, "other", "without field 'choices.0.text'")),
    (200, '{"choices": [{"text": ""}]}', None, ("choices", "0", "text"), (True, "")),
    (200, "not json", None, (), (True, "")),
    (200, "{}", 201, (), (False, "other", "HTTP 200 (expected 201)")),
    (503, "{}", None, ("outputs",), (False, "http_503")),
    (429, "{}", None, (), (False, "http_429")),
    (500, '{"error": "boom"}', None, (), (False, "other", "HTTP 500 (expected 2xx)")),
])
def test_response_check(status, body, expect_status, field, outcome):
    ok, kind, text = check_response(status, None, body, expect_status, field)
    assert (ok, kind) == outcome[:2]
    if len(outcome) == 3:
        assert outcome[2] in text


# ------------------------------------------------------------------------------ datasets
def test_datasets_from_csv_jsonl_and_parquet(tmp_path):
    frame = pd.DataFrame({"id": [1, 2, 3, 4, 5], "body": ["alpha", TRICKY, "  ", "gamma", "delta"]})
    frame.to_csv(tmp_path / "t.csv", index=False)
    frame.to_json(tmp_path / "t.jsonl", orient="records", lines=True)
    frame.to_parquet(tmp_path / "t.parquet")
    subsets = [load_texts(str(tmp_path / f"t.{ext}"), seed=3, column="body") for ext in ("csv", "jsonl", "parquet")]
    for subset in subsets:
        assert sorted(subset.texts) == sorted(["alpha", TRICKY, "gamma", "delta"])
        assert subset.skipped == 1
    assert subsets[0].texts == subsets[1].texts == subsets[2].texts  # same seed, same order, whatever the format
    assert [s.source.split(":")[0] for s in subsets] == ["csv", "jsonl", "parquet"]

    with pytest.raises(ValueError, match=r"needs a 'text' column .*available columns: id, body"):
        load_texts(str(tmp_path / "t.parquet"), seed=0)
    pd.DataFrame({"body": ["", " ", None]}).to_parquet(tmp_path / "blank.parquet")
    with pytest.raises(ValueError, match="no non-empty texts found in column 'body'"):
        load_texts(str(tmp_path / "blank.parquet"), seed=0, column="body")
    with pytest.raises(ValueError, match="--dataset hub:<name>"):
        load_texts("hub:", seed=0)


# ------------------------------------------------------------------------------ bad configuration, real CLI
def write_texts_csv(path: Path, n: int = 40) -> Path:
    texts = [f"review {i}: " + ("great " * (i % 7)) + ("a \"quoted\" one\\" if i % 5 == 0 else "fine") for i in range(n)]
    pd.DataFrame({"id": range(n), "body": texts, "stars": [i % 5 for i in range(n)]}).to_csv(path, index=False)
    return path


@pytest.mark.load
@pytest.mark.parametrize("case", ["invalid-json", "no-placeholder", "unknown-column", "empty-dataset",
                                  "unreachable-host", "hub-offline"])
def test_bad_configuration_stops_before_any_traffic(case, fastapi_server, tmp_path):
    data = write_texts_csv(tmp_path / "texts.csv")
    (tmp_path / "empty.jsonl").write_text('{"body": "  "}\n{"body": ""}\n')
    host = fastapi_server.url
    flags = ["--path", "/v1/classify", "--payload", '{"inputs": "{text}"}', "--dataset", str(data),
             "--text-column", "body"]
    message = {
        "invalid-json": "burstbench: --payload is not valid JSON after substituting a sample text",
        "no-placeholder": "burstbench: --payload has no {text} or {texts} placeholder",
        "unknown-column": "burstbench: --dataset " + str(data) + ": needs a 'content' column "
                          "(choose one with --text-column; available columns: id, body, stars)",
        "empty-dataset": "burstbench: --dataset " + str(tmp_path / "empty.jsonl") + ": no non-empty texts",
        "unreachable-host": "is not reachable (ConnectionRefusedError",
        "hub-offline": "burstbench: --dataset hub:nobody/no-such-texts: could not load nobody/no-such-texts",
    }[case]
    extra = {
        "invalid-json": ["--payload", '{"inputs": {text}'],
        "no-placeholder": ["--payload", '{"inputs": "text"}'],
        "unknown-column": ["--text-column", "content"],
        "empty-dataset": ["--dataset", str(tmp_path / "empty.jsonl")],
        "unreachable-host": [],
        "hub-offline": ["--dataset", "hub:nobody/no-such-texts"],
    }[case]
    if case == "unreachable-host":
        host = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    results = tmp_path / "results"
    fastapi_server.clear()
    out = run_http_locust(host, results, *flags, *extra, "--requests", "5", "-u", "1", "-r", "1", timeout=60)
    ours = [line for line in out.stderr.splitlines() if line.startswith("burstbench:")]
    assert out.returncode != 0
    assert len(ours) == 1 and message in ours[0], out.stderr[-2000:]
    assert "Traceback" not in out.stderr
    assert not results.exists() or list(results.iterdir()) == []  # no run folder
    assert fastapi_server.records() == []  # and no traffic


# ------------------------------------------------------------------------------ real runs: FastAPI
def expected_texts(dataset: Path, seed: int, column: str, requests: int, per_request: int = 1) -> list[list[str]]:
    subset = load_texts(str(dataset), seed, column=column)
    return [[subset.for_request(i * per_request + j)[1] for j in range(per_request)] for i in range(requests)]


def check_run_folder(run_dir: Path, n: int, ok: int | None = None) -> tuple[pd.DataFrame, dict]:
    rows = pd.read_csv(run_dir / "requests.csv", keep_default_na=False)
    info = json.loads((run_dir / "run.json").read_text())
    ok = n if ok is None else ok
    assert len(rows) == n and sorted(rows["request_index"]) == list(range(n))
    assert info["status"] == "complete" and info["counts"]["consistent"] is True
    assert info["counts"]["sent"] == n and info["counts"]["ok"] == ok and info["counts"]["failed"] == n - ok
    assert int(rows["ok"].sum()) == ok
    for name in ("locust_stats.csv", "locust_stats_history.csv", "locust_failures.csv", "locust.html"):
        assert (run_dir / name).is_file(), name
    return rows, info


def analysis(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "burstbench.analysis", *args], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=180)


@pytest.mark.load
def test_the_issue_command_against_a_custom_endpoint(fastapi_server, tmp_path):
    """--path, --payload, a CSV and its column, a scenario: the same folder and rows as with the bundled service."""
    data = write_texts_csv(tmp_path / "my_texts.csv")
    n, seed, mean = 80, 3, 0.02
    fastapi_server.clear()
    out = run_http_locust(fastapi_server.url, tmp_path / "results", "--path", "/v1/classify",
                          "--payload", '{"inputs": "{text}"}', "--dataset", str(data), "--text-column", "body",
                          "--scenario", "extreme", "--mean", str(mean), "--requests", str(n), "--seed", str(seed),
                          "-u", "8", "-r", "8")
    assert out.returncode == 0, out.stderr[-3000:]
    run_dir = only_run_dir(tmp_path / "results")
    rows, info = check_run_folder(run_dir, n)
    assert info["endpoint"] == "/v1/classify" and info["scenario"] == "extreme"
    assert info["request"]["payload_template"] == '{"inputs": "{text}"}'
    assert info["texts"]["text_column"] == "body" and info["texts"]["source"] == f"csv:{data}"

    # The schedule is the seeded one: same contract as with the bundled service.
    start = info["schedule"]["start_epoch"]
    scheduled = rows.sort_values("request_index")["scheduled_epoch"].astype(float).to_numpy()
    np.testing.assert_allclose(scheduled - start, ArrivalSchedule.draw(scenario("extreme", mean), n, seed).offsets_s,
                               atol=2e-6)

    # The service got exactly the texts of the seeded subset, one JSON body each.
    received = fastapi_server.records("/v1/classify")
    assert len(received) == n
    assert all(r["content_type"] == "application/json" for r in received)
    assert Counter(r["body"]["inputs"] for r in received) == Counter(t[0] for t in expected_texts(data, seed, "body", n))
    assert all(set(r["body"]) == {"inputs"} for r in received)
    # The analysis reads this folder as any other: test_kserve_v2_preset_against_mlserver runs report and compare.


@pytest.mark.load
@pytest.mark.parametrize("preset, batch, route", [
    ("plain", 1, "/predict"),
    ("openai-completions", 1, "/v1/completions"),
    ("openai-completions", 3, "/v1/completions"),
    ("openai-chat", 1, "/v1/chat/completions"),
])
def test_presets_send_what_their_protocol_expects(preset, batch, route, fastapi_server, tmp_path):
    """The FastAPI app validates each body against the protocol (unknown fields refused); the test checks it exactly."""
    data = write_texts_csv(tmp_path / "texts.csv")
    n, seed = 12, 5
    fastapi_server.clear()
    out = run_http_locust(fastapi_server.url, tmp_path / "results", "--preset", preset, "--model-name", "tiny-llm",
                          "--batch-size", str(batch), "--dataset", str(data), "--text-column", "body",
                          "--scenario", "steady", "--mean", "0.02", "--requests", str(n), "--seed", str(seed),
                          "-u", "4", "-r", "4")
    assert out.returncode == 0, out.stderr[-3000:]
    rows, info = check_run_folder(only_run_dir(tmp_path / "results"), n)
    assert info["request"]["preset"] == preset and info["endpoint"] == route
    assert info["texts"]["per_request"] == batch
    received = fastapi_server.records(route)
    assert len(received) == n

    streamed = STREAMED

    def protocol_body(texts):
        if preset == "plain":
            return {"text": texts[0]}
        if preset == "openai-completions":
            return {"model": "tiny-llm", "prompt": texts[0] if batch == 1 else texts, "max_tokens": 16, **streamed}
        return {"model": "tiny-llm", "messages": [{"role": "user", "content": texts[0]}], "max_tokens": 16,
                **streamed}

    expected = [protocol_body(t) for t in expected_texts(data, seed, "body", n, batch)]
    canonical = lambda bodies: Counter(json.dumps(b, sort_keys=True) for b in bodies)  # noqa: E731
    assert canonical(r["body"] for r in received) == canonical(expected)
    # One row per request; its text_chars counts every text it carried.
    chars = Counter(sum(len(t) for t in texts) for texts in expected_texts(data, seed, "body", n, batch))
    assert Counter(rows["text_chars"].astype(int)) == chars


@pytest.mark.load
def test_a_200_with_an_error_body_counts_as_a_failure(fastapi_server, tmp_path):
    """/flaky answers every third request with 200 {"error": ...}; --expect-field outputs catches them."""
    fastapi_server.clear()
    out = run_http_locust(fastapi_server.url, tmp_path / "results", "--path", "/flaky", "--payload",
                          '{"inputs": "{text}"}', "--expect-field", "outputs", "--mean", "0.02", "--requests", "30",
                          "-u", "3", "-r", "3")
    assert out.returncode != 0  # Locust's exit code when requests failed
    rows, info = check_run_folder(only_run_dir(tmp_path / "results"), 30, ok=20)
    failed = rows[rows["ok"] == 0]
    assert set(failed["failure_kind"]) == {"other"} and set(failed["status"]) == {200}
    assert failed["failure_text"].str.contains("without field 'outputs'").all()
    assert info["counts"]["failure_kinds"] == {"other": 10} and info["counts"]["locust_failures"] == 10


@pytest.mark.load
def test_secrets_in_headers_are_sent_but_never_written(fastapi_server, tmp_path):
    """The token reaches the service; no file of the run, no log line, no row holds it, even when the service echoes it."""
    literal = "trace-literal-4242"  # as if the shell had expanded it into argv
    fastapi_server.clear()
    out = run_http_locust(fastapi_server.url, tmp_path / "results", "--path", "/secure", "--payload",
                          '{"inputs": "{text}"}', "--header", "Authorization: Bearer ${BB_TOKEN}",
                          "--header", f"X-Trace: {literal}", "--mean", "0.02", "--requests", "24", "-u", "2", "-r", "2",
                          "--loglevel", "DEBUG", env={"BB_TOKEN": EXPECTED_TOKEN})
    run_dir = only_run_dir(tmp_path / "results")
    rows, info = check_run_folder(run_dir, 24, ok=18)  # every fourth answer is a 500 that echoes the headers
    received = fastapi_server.records("/secure")
    assert len(received) == 24
    assert {r["authorization"] for r in received} == {f"Bearer {EXPECTED_TOKEN}"}
    assert {r["x_trace"] for r in received} == {literal}

    failed = rows[rows["ok"] == 0]
    assert (failed["status"] == 500).all() and failed["failure_text"].str.contains("<redacted>").all()
    assert info["request"]["headers"] == ["Authorization", "X-Trace"]
    assert "X-Trace: <redacted>" in info["argv"] and "Authorization: Bearer ${BB_TOKEN}" not in info["argv"]
    for secret in (EXPECTED_TOKEN, literal):
        assert secret not in out.stdout and secret not in out.stderr
        for path in run_dir.rglob("*"):
            if path.is_file():
                assert secret not in path.read_text(errors="replace"), path


@pytest.mark.load
def test_per_request_timeout(fastapi_server, tmp_path):
    out = run_http_locust(fastapi_server.url, tmp_path / "results", "--path", "/slow", "--payload",
                          '{"inputs": "{text}"}', "--request-timeout", "0.3", "--mean", "0.02", "--requests", "4",
                          "-u", "4", "-r", "4")
    rows, info = check_run_folder(only_run_dir(tmp_path / "results"), 4, ok=0)
    assert out.returncode != 0
    assert set(rows["failure_kind"]) == {"timeout"}
    assert (rows["latency_ms"].astype(float) < 900).all()  # gave up at 0.3 s, not after the 1 s answer


# ------------------------------------------------------------------------------ real runs: MLServer (KServe v2)
@pytest.mark.load
def test_kserve_v2_preset_against_mlserver(mlserver, tmp_path):
    """A third-party KServe v2 server: it parses every request with its own protocol types and records the texts."""
    data = write_texts_csv(tmp_path / "texts.csv")
    results = tmp_path / "results"
    runs = {}
    # MLServer's Prometheus page is on a port of its own: a full URL scrapes it
    scrape = ["--server-metrics", f"http://127.0.0.1:{mlserver.metrics_port}/metrics", "--metrics-every", "0.25"]
    for name, flags, n, batch in (("extreme", ["--scenario", "extreme", "--mean", "0.05", *scrape], 60, 1),
                                  ("steady-batch4", ["--scenario", "steady", "--mean", "0.05"], 20, 4)):
        mlserver.clear()
        out = run_http_locust(mlserver.url, results, "--preset", "kserve-v2", "--model-name", "text-stats",
                              "--dataset", str(data), "--text-column", "body", "--batch-size", str(batch),
                              "--requests", str(n), "--seed", "7", "--run-name", name, "-u", "8", "-r", "8", *flags)
        assert out.returncode == 0, out.stderr[-3000:]
        run_dir = next(results.glob(f"*-{name}"))
        rows, info = check_run_folder(run_dir, n)
        assert info["endpoint"] == "/v2/models/text-stats/infer"
        assert info["target"]["model"] == "text-stats" and info["target"]["metadata"]["name"] == "text-stats"
        received = mlserver.received()
        assert len(received) == n
        assert {(r["name"], r["datatype"], tuple(r["shape"])) for r in received} == {("text", "BYTES", (batch,))}
        assert Counter(tuple(r["texts"]) for r in received) == \
            Counter(tuple(t) for t in expected_texts(data, 7, "body", n, batch))
        runs[name] = run_dir

    # The server's own count of the extreme run's requests, from its page as the sidecar scraped it
    metrics = pd.read_csv(runs["extreme"] / "server_metrics.csv")
    success = metrics[(metrics["metric"] == "model_infer_request_success_total")
                      & (metrics["labels"].map(lambda s: json.loads(s).get("model")) == "text-stats")]
    first_scrape = metrics["epoch"].min()
    # prometheus_client exposes a labelled counter from its first increment: absent at the first scrape, it was 0
    assert success["epoch"].min() > first_scrape
    assert success.loc[success["epoch"] == success["epoch"].max(), "value"].sum() == 60
    from burstbench.analysis.runs import load_run
    from burstbench.analysis.telemetry import server_request_count

    assert server_request_count(load_run(runs["extreme"])) == 60  # the report's count: the same family, from 0
    report = analysis("report", str(runs["extreme"]))
    assert report.returncode == 0, report.stderr[-3000:]
    compare = analysis("compare", str(runs["extreme"]), str(runs["steady-batch4"]), "--out", str(tmp_path / "cmp"))
    assert compare.returncode == 0, compare.stderr[-3000:]
    assert (tmp_path / "cmp" / "compare.md").is_file()


def test_no_shipped_module_is_named_after_a_standard_library_module():
    """Locust registers a locustfile under its file name: one called http.py would shadow the standard library."""
    shipped = {p.stem for folder in ("arrivals", "locustfiles", "service", "analysis", "resilience", "experiments", "burstbench")
               for p in (REPO_ROOT / folder).rglob("*.py")}
    assert not shipped & set(sys.stdlib_module_names)


def test_loading_the_http_locustfile_leaves_the_standard_library_http_alone():
    code = ("import locust, sys\n"
            "from locust.util.load_locustfile import load_locustfile\n"
            "users, _ = load_locustfile(sys.argv[1])\n"
            "import http, http.cookies\n"
            "from http import HTTPStatus\n"
            "print(sorted(users), http.__file__ != sys.argv[1], int(HTTPStatus.OK))\n")
    out = subprocess.run([sys.executable, "-c", code, str(REPO_ROOT / "locustfiles" / "http_endpoint.py")],
                         cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["['ServiceUser']", "True", "200"]
