"""Streaming LLM metrics against a real third-party OpenAI-compatible server (``transformers serve`` with the
untrained tiny GPT-2, on CPU): a short bursty run in each mode, and every way a stream can fail.

Every run is checked from its files: one row per request, TTFT <= end-to-end latency on every ok row, as many
inter-token gaps in itl.csv as the server's usage says tokens minus one, and the arrivals as declared.
"""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from burstbench.analysis.fidelity import fidelity_table
from burstbench.analysis.runs import load_run
from burstbench.analysis.slo import goodput
from burstbench.analysis.streaming import load_itl
from conftest import only_run_dir
from browser import needs_chromium, open_in_chromium
from servers.fixtures import fastapi_server, llm_server, run_http_locust  # noqa: F401 (fixtures)

pytestmark = pytest.mark.load

N, RATE, SHAPE, MAX_TOKENS = 24, 3.0, 0.8, 12


def bursty_run(server, tmp_path, *flags: str, n: int = N, seed: int = 2) -> tuple[pd.DataFrame, dict, object]:
    out = run_http_locust(server.url, tmp_path / "results", "--model-name", server.model,
                          "--arrival", "gamma", "--shape", str(SHAPE), "--rate", str(RATE), "--requests", str(n),
                          "--seed", str(seed), "-u", "12", "-r", "12", *flags, timeout=180)
    assert out.returncode == 0, out.stderr[-3000:]
    run_dir = only_run_dir(tmp_path / "results")
    rows = pd.read_csv(run_dir / "requests.csv", keep_default_na=False)
    info = json.loads((run_dir / "run.json").read_text())
    assert len(rows) == n and sorted(rows["request_index"]) == list(range(n))
    assert info["status"] == "complete" and info["counts"]["consistent"] is True
    assert int(rows["ok"].sum()) == n, rows[rows["ok"] == 0][["failure_kind", "failure_text"]].to_string()
    return rows, info, out


@pytest.mark.parametrize("preset", ["openai-chat", "openai-completions"])
@pytest.mark.parametrize("stream", ["on", "off"])
def test_a_bursty_run_against_transformers_serve(llm_server, tmp_path, preset, stream):
    slos = ("--slo", "ttft_ms=5000", "--slo", "itl_p90_ms=3") if stream == "on" else ("--slo", "latency_ms=10000")
    rows, info, out = bursty_run(llm_server, tmp_path, "--preset", preset, "--stream", stream,
                                 "--max-tokens", str(MAX_TOKENS), *slos)
    run_dir = only_run_dir(tmp_path / "results")
    # The closing line judged each request as it came; the report's analysis judges the files: they agree.
    result = goodput(rows.replace("", np.nan).astype({"ok": int}), load_itl(load_run(run_dir)), info["slo"])
    assert f"({result['good']} of {N} requests met" in out.stderr
    # The server's usage says how many tokens it generated: exactly max_tokens (its end of text is suppressed).
    assert (rows["token_source"] == "usage").all()
    assert (rows["output_tokens"].astype(int) == MAX_TOKENS).all()
    assert (rows["requested_output_tokens"].astype(int) == MAX_TOKENS).all()
    assert (rows["input_tokens"].astype(int) > 0).all()
    assert (rows["finish_reason"] == "length").all()
    assert info["slo"] == ({"ttft_ms": 5000.0, "itl_p90_ms": 3.0} if stream == "on" else {"latency_ms": 10000.0})
    if stream == "on":
        ttft = rows["ttft_ms"].astype(float)
        assert (ttft > 0).all() and (ttft <= rows["latency_ms"].astype(float)).all()
        assert (rows["corrected_ttft_ms"].astype(float) >= ttft - 1e-3).all()  # never before the actual send
        itl = pd.read_csv(run_dir / "itl.csv")
        per_request = itl.groupby("request_index").size().reindex(range(N), fill_value=0)
        assert (per_request.to_numpy() == MAX_TOKENS - 1).all()
        assert (itl["itl_ms"] >= 0).all()
        assert info["streaming"]["stream"] is True and info["streaming"]["itl_gaps"] == N * (MAX_TOKENS - 1)
        assert info["streaming"]["token_counts"]["usage"] == N
        # TPOT spans the first to the last token: the ITLs of a request sum to it times (tokens - 1).
        sums = itl.groupby("request_index")["itl_ms"].sum().reindex(range(N)).to_numpy()
        np.testing.assert_allclose(sums, rows["tpot_ms"].astype(float) * (MAX_TOKENS - 1), atol=0.01)
        assert "TTFT p50" in out.stderr
    else:
        assert (rows["ttft_ms"] == "").all() and not (run_dir / "itl.csv").exists()
        assert info["streaming"]["stream"] is False and info["streaming"]["itl_file"] is None
    # The arrivals were the declared gamma(0.8) process, as scheduled and as sent.
    table = fidelity_table(load_run(run_dir), ad_max_n=0)
    assert bool(table.loc["scheduled", "fits"]) and bool(table.loc["sent", "fits"]), table.to_string()


def test_output_lengths_drawn_per_request_are_the_lengths_generated(llm_server, tmp_path):
    """--output-tokens draws max_tokens per request (seeded); transformers serve refuses ignore_eos, so it is off."""
    rows, info, _ = bursty_run(llm_server, tmp_path, "--preset", "openai-chat", "--output-tokens", "uniform:4,20",
                               "--ignore-eos", "off", n=16)
    requested = rows.sort_values("request_index")["requested_output_tokens"].astype(int)
    assert requested.between(4, 20).all() and requested.nunique() > 3
    assert (rows["output_tokens"].astype(int) == rows["requested_output_tokens"].astype(int)).all()
    assert "uniform" in info["streaming"]["output_tokens"]


def failed_run(server, tmp_path, n: int, *flags: str):
    out = run_http_locust(server.url, tmp_path / "results", "--mean", "0.05", "--requests", str(n),
                          "-u", "4", "-r", "4", *flags, timeout=120)
    run_dir = only_run_dir(tmp_path / "results")
    rows = pd.read_csv(run_dir / "requests.csv", keep_default_na=False)
    info = json.loads((run_dir / "run.json").read_text())
    assert len(rows) == n and info["counts"]["consistent"] is True, out.stderr[-2000:]
    return rows, run_dir, out


def test_a_stream_cut_off_midway_is_one_stream_broken_row(fastapi_server, tmp_path):
    """/stream/cut sends 3 tokens 20 ms apart, then drops the connection: each request is one failed row."""
    rows, run_dir, out = failed_run(fastapi_server, tmp_path, 6, "--preset", "openai-chat", "--model-name", "m",
                                    "--path", "/stream/cut")
    assert out.returncode != 0  # Locust's exit code when requests failed
    assert (rows["ok"] == 0).all() and (rows["failure_kind"] == "stream-broken").all()
    assert rows["failure_text"].str.len().gt(10).all()
    # What did arrive is kept: the first token 50 ms after the send, then the gaps between the 3 tokens.
    assert rows["ttft_ms"].astype(float).between(45, 500).all()
    itl = pd.read_csv(run_dir / "itl.csv")
    assert (itl.groupby("request_index").size() == 2).all() and (itl["itl_ms"] > 0).all()
    # The server sleeps 20 ms before each of the 2 later tokens (never less; a late one shortens the next gap).
    assert itl.groupby("request_index")["itl_ms"].sum().between(39, 1000).all()


def test_a_200_that_is_not_a_stream_is_invalid_stream(fastapi_server, tmp_path):
    rows, _, _ = failed_run(fastapi_server, tmp_path, 4, "--preset", "sse", "--path", "/predict",
                            "--payload", '{"text": "{text}"}')
    assert (rows["failure_kind"] == "invalid-stream").all(), rows["failure_text"].tolist()
    assert rows["failure_text"].str.contains("no server-sent events").all()


@pytest.mark.parametrize("flags, message", [
    (("--slo", "ttfft_ms=500"), "--slo ttfft_ms=500: unknown metric"),
    (("--slo", "ttft_ms=-5"), "--slo ttft_ms=-5"),
    (("--stream", "maybe"), "--stream must be on or off (got 'maybe')"),
    (("--stream", "off", "--slo", "ttft_ms=500"), "--slo ttft_ms needs a streamed answer"),
    (("--output-tokens", "uniform:9,3"), "--output-tokens"),
])
def test_bad_streaming_flags_are_one_line_before_any_traffic(fastapi_server, tmp_path, flags, message):
    out = run_http_locust(fastapi_server.url, tmp_path / "results", "--preset", "openai-chat", "--model-name", "m",
                          "--requests", "5", *flags, timeout=60)
    assert out.returncode != 0
    assert message in out.stderr and "Traceback" not in out.stderr, out.stderr[-2000:]
    assert not (tmp_path / "results").exists() or not any((tmp_path / "results").iterdir())


@pytest.mark.parametrize("tokenizer", [False, True])
def test_without_usage_tokens_are_counted_by_the_tokenizer_else_as_chunks(fastapi_server, llm_server, tmp_path,
                                                                          tokenizer):
    """The FastAPI server reports usage only when asked (--stream-usage off): the row says where counts came from."""
    from burstbench.locustfiles.prompts import count_tokens, load_tokenizer

    flags = ("--tokenizer", str(llm_server.model_dir)) if tokenizer else ()
    rows, run_dir, out = failed_run(fastapi_server, tmp_path, 5, "--preset", "openai-chat", "--model-name", "m",
                                    "--stream-usage", "off", *flags)
    assert out.returncode == 0 and (rows["ok"] == 1).all(), out.stderr[-2000:]
    expected = count_tokens(load_tokenizer(str(llm_server.model_dir)), "ok") if tokenizer else 1  # one chunk: "ok"
    assert (rows["token_source"] == ("tokenizer" if tokenizer else "chunks")).all()
    assert (rows["output_tokens"].astype(int) == expected).all()
    info = json.loads((run_dir / "run.json").read_text())
    assert info["streaming"]["token_counts"] == {"usage": 0, "tokenizer": 5 * tokenizer, "chunks": 5 * (not tokenizer)}


def test_synthetic_prompts_have_the_length_asked_for_as_the_server_counts_it(llm_server, tmp_path):
    """--input-tokens with the server's own tokenizer: the prompt_tokens it reports are the lengths drawn."""
    rows, info, _ = bursty_run(llm_server, tmp_path, "--preset", "openai-completions", "--max-tokens", "4",
                               "--input-tokens", "uniform:8,64", "--tokenizer", str(llm_server.model_dir), n=12)
    asked = rows["requested_input_tokens"].astype(int)
    assert asked.between(8, 64).all() and asked.nunique() > 3
    assert (rows["text_index"].astype(int) == -1).all()
    np.testing.assert_allclose(rows["input_tokens"].astype(int), asked, atol=1)


def test_a_traces_token_columns_are_replayed_with_its_timestamps(llm_server, tmp_path):
    """A BurstGPT-shaped trace: request k gets row k's prompt length and max_tokens (0, a failed request, as 1)."""
    rng = np.random.default_rng(7)
    n = 12
    trace = pd.DataFrame({"Timestamp": np.cumsum(rng.gamma(0.8, 0.4, n)), "Model": "ChatGPT",
                          "Request tokens": rng.integers(8, 48, n), "Response tokens": rng.integers(0, 16, n),
                          "Log Type": "Conversation log"})
    trace.loc[3, "Response tokens"] = 0
    path = tmp_path / "burstgpt.csv"
    trace.to_csv(path, index=False)
    out = run_http_locust(llm_server.url, tmp_path / "results", "--model-name", llm_server.model,
                          "--preset", "openai-completions", "--trace", str(path), "--trace-column", "Timestamp",
                          "--trace-input-tokens", "Request tokens", "--trace-output-tokens", "Response tokens",
                          "--tokenizer", str(llm_server.model_dir), "-u", "12", "-r", "12", timeout=180)
    assert out.returncode == 0, out.stderr[-3000:]
    run_dir = only_run_dir(tmp_path / "results")
    rows = pd.read_csv(run_dir / "requests.csv", keep_default_na=False).sort_values("request_index")
    assert len(rows) == n and (rows["ok"] == 1).all()
    expected_out = np.maximum(trace["Response tokens"].to_numpy(), 1)
    assert rows["requested_output_tokens"].astype(int).tolist() == expected_out.tolist()
    assert rows["output_tokens"].astype(int).tolist() == expected_out.tolist()
    assert rows["requested_input_tokens"].astype(int).tolist() == trace["Request tokens"].tolist()
    np.testing.assert_allclose(rows["input_tokens"].astype(int), trace["Request tokens"], atol=1)
    info = json.loads((run_dir / "run.json").read_text())
    assert info["distribution"]["trace"]["token_columns"] == {"input": "Request tokens", "output": "Response tokens"}


def analysis_cli(*args: str):
    import subprocess
    import sys

    from conftest import REPO_ROOT

    return subprocess.run([sys.executable, "-m", "burstbench.analysis", *args], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=300)


@needs_chromium
def test_report_and_compare_of_streaming_runs_render_and_open(llm_server, tmp_path):
    """Two real streaming runs (bursty and Poisson): the report's streaming section and figures, compare on TTFT,
    TPOT and goodput, and the HTML in a real browser."""
    folders = []
    for arrival, seed in (("gamma", 3), ("exponential", 4)):
        shape = ("--shape", str(SHAPE)) if arrival == "gamma" else ()
        out = run_http_locust(llm_server.url, tmp_path / arrival, "--model-name", llm_server.model,
                              "--preset", "openai-chat", "--arrival", arrival, *shape, "--rate", str(RATE),
                              "--requests", "30", "--seed", str(seed), "-u", "12", "-r", "12",
                              "--max-tokens", str(MAX_TOKENS), "--slo", "ttft_ms=200", "--slo", "itl_p99_ms=20",
                              timeout=180)
        assert out.returncode == 0, out.stderr[-3000:]
        folders.append(only_run_dir(tmp_path / arrival))
    summary = analysis_cli("summary", str(folders[0]))  # what burstbench run prints at its end
    assert summary.returncode == 0 and "streaming, in ms" in summary.stdout and "TTFT (schedule-corrected)" in \
        summary.stdout and "goodput" in summary.stdout, summary.stdout + summary.stderr[-2000:]
    report = analysis_cli("report", str(folders[0]))
    assert report.returncode == 0, report.stderr[-3000:]
    md = (folders[0] / "report" / "report.md").read_text()
    assert "## Streaming (TTFT, ITL, TPOT, tokens/s)" in md and "Goodput" in md and "itl_p99_ms <= 20 ms" in md
    for name in ("ttft.png", "itl.png", "streaming_timeline.png"):
        assert (folders[0] / "report" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    page = open_in_chromium(folders[0] / "report" / "report.html")
    assert page["errors"] == [] and all(w > 100 for w in page["widths"]) and len(page["widths"]) >= 7
    assert "Streaming (TTFT, ITL, TPOT, tokens/s)" in page["headings"]
    compare = analysis_cli("compare", str(folders[0]), str(folders[1]), "--out", str(tmp_path / "cmp"))
    assert compare.returncode == 0, compare.stderr[-3000:]
    assert "TTFT, TPOT, ITL against baseline" in compare.stdout and "goodput" in compare.stdout.lower()
