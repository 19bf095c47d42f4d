"""The load process watches itself: a CPU-starved generator is named as the limit of its run.

Real Locust against real nginx on loopback. The starved run has a greenlet that burns the CPU
(50 ms stretches without yielding), so the process is saturated while the service is idle: the run
must say, at its end and in run.json, that the generator limited it. Nothing here is timed tightly:
the starvation is gross on purpose, so that a busy 2-core machine still reads it the same way.
"""
from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest

from conftest import REPO_ROOT, only_run_dir

pytestmark = pytest.mark.load

STARVED = f"""
import locust
from locust import events
import sys, time
import gevent
from burstbench.locustfiles.fixed_body import FixedBodyUser, ConstantThroughputUser  # noqa: F401 (Locust collects them)

@events.test_start.add_listener
def _burn(**_kwargs):
    def burn():
        while True:
            end = time.perf_counter() + 0.05
            while time.perf_counter() < end:
                pass
            gevent.sleep(0.001)  # a timer, not sleep(0): the loop polls between stretches
    gevent.spawn(burn)
"""


@pytest.fixture(scope="module")
def nginx_url():
    from burstbench.experiments.nginx_server import FixedBodyServer, find_nginx

    try:
        server = FixedBodyServer(find_nginx(None)).start()
    except ValueError as err:
        pytest.skip(str(err))
    yield server.url
    server.stop()


def run_locust(locustfile, url, results, requests=300):
    out = subprocess.run([sys.executable, "-m", "locust", "-f", str(locustfile), "--headless", "--only-summary",
                          "--host", url, "-u", "8", "-r", "100", "-t", "60s", "--mean", "0.01",
                          "--requests", str(requests), "--results-dir", str(results), "--progress-every", "3600",
                          "FixedBodyUser"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    run_dir = only_run_dir(results)
    return out.stderr, json.loads((run_dir / "run.json").read_text()), run_dir


def test_a_cpu_starved_generator_is_named_as_the_limit(tmp_path, nginx_url):
    locustfile = tmp_path / "starved.py"
    locustfile.write_text(STARVED)
    stderr, info, run_dir = run_locust(locustfile, nginx_url, tmp_path / "results")
    assert info["counts"]["sent"] == info["counts"]["ok"] == 300  # the service answered everything
    verdict = info["generator"]["verdict"]
    assert info["generator"]["kept_up"] is False
    assert any("CPU-bound" in line for line in verdict), verdict
    assert any(line.startswith("the generator, not the service, limited this run") for line in verdict)
    assert f"[burstbench] {verdict[0]}" in stderr  # said at the end of the run, too
    samples = pd.read_csv(run_dir / "generator.csv")
    assert samples["cpu_percent"].iloc[1:].median() > 80 and samples["loop_delay_ms"].max() >= 40
    assert samples["sends"].sum() == 300  # every send noted by the monitor


def test_an_idle_generator_is_not_called_cpu_bound(tmp_path, nginx_url):
    stderr, info, run_dir = run_locust(REPO_ROOT / "locustfiles" / "fixed_body.py", nginx_url, tmp_path / "results")
    assert info["counts"]["sent"] == 300
    assert not any("CPU-bound" in line for line in info["generator"]["verdict"])
    samples = pd.read_csv(run_dir / "generator.csv")
    assert samples["cpu_percent"].iloc[1:].median() < 50  # 100 req/s is a few % of a core
