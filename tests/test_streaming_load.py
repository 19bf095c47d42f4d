"""The streaming reader under real Locust (HttpUser, ``stream=True``, ``iter_content(chunk_size=None)``) against a server whose token timing
is known (tests/servers/fastapi_app.py: first token 50 ms after the request, then one every 20 ms): the reader's
TTFT and inter-token latencies must be the server's, and a stream the server breaks off is ``stream-broken``."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from servers.fixtures import fastapi_server  # noqa: F401 (fixture)

pytestmark = pytest.mark.load

LOCUSTFILE = '''import json, os, time
from locust import HttpUser, events, task
from burstbench.arrivals import poisson
from burstbench.locustfiles.streaming import read_stream

RESULTS = []


class Streamer(HttpUser):
    wait_time = poisson(rate=10, requests=int(os.environ["BB_REQUESTS"]))

    @task
    def chat(self):
        body = {"model": "test", "messages": [{"role": "user", "content": "hi"}], "stream": True}
        sent = time.perf_counter()
        with self.client.post(os.environ["BB_PATH"], json=body, stream=True, catch_response=True) as resp:
            result = read_stream(resp.iter_content(chunk_size=None), sent)  # each chunk as it arrives
            RESULTS.append({"ok": result.ok, "kind": result.failure_kind, "ttft_s": result.ttft_s,
                            "itl_s": result.itl_s, "tokens": result.output_tokens, "source": result.token_source,
                            "e2e_s": result.e2e_s})
            resp.success() if result.ok else resp.failure(result.failure_kind)


@events.quit.add_listener
def _write(**_kw):
    with open(os.environ["BB_OUT"], "w") as out:
        json.dump(RESULTS, out)
'''


def _run(fastapi_server, tmp_path, path: str, requests: int) -> list[dict]:
    (tmp_path / "streamer.py").write_text(LOCUSTFILE)
    out = tmp_path / "results.json"
    env = {"BB_REQUESTS": str(requests), "BB_PATH": path, "BB_OUT": str(out), "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-m", "locust", "-f", "streamer.py", "--headless", "--only-summary",
                           "-u", "4", "-r", "4", "-t", "60s", "--host", fastapi_server.url],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120, env=env)
    assert out.is_file(), done.stderr[-3000:]
    return json.loads(out.read_text())


def test_ttft_and_itl_read_through_locust_are_the_servers_timing(fastapi_server, tmp_path):
    results = _run(fastapi_server, tmp_path, "/stream/v1/chat/completions", 20)
    assert len(results) == 20 and all(r["ok"] for r in results)
    assert all(r["tokens"] == 10 and r["source"] == "usage" and len(r["itl_s"]) == 9 for r in results)
    assert all(r["ttft_s"] <= r["e2e_s"] for r in results)
    ttft = np.array([r["ttft_s"] for r in results])
    itl = np.concatenate([r["itl_s"] for r in results])
    # The server sleeps 50 ms, then 20 ms a token (asyncio: at least that, a little more on a busy machine).
    assert 0.050 <= np.median(ttft) < 0.070, ttft
    assert 0.019 <= np.median(itl) < 0.026, itl
    assert np.percentile(itl, 5) > 0.010  # tokens are read as they arrive, not bunched at the end


def test_a_stream_broken_off_by_the_server_is_one_failure_of_its_own_kind(fastapi_server, tmp_path):
    results = _run(fastapi_server, tmp_path, "/stream/cut", 3)
    assert len(results) == 3
    assert all(not r["ok"] and r["kind"] == "stream-broken" and r["tokens"] == 3 for r in results)
