"""The README's "your own locustfile" example, run exactly as written, with real Locust against the FastAPI
test service on loopback: one process, then two workers (``--processes 2``).

Judged where the requests arrive (the service's clock), not by the generator: the arrival times must be the
seeded schedule that ``gamma(shape=0.8, rate=20)`` stands for (every slot that fell due sent once, no
copies from the second worker), and their gaps must pass the fidelity check against the declared gamma.
"""
from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import pytest
from scipy import stats

from burstbench.arrivals import Gamma
from burstbench.arrivals.lazy import LazySchedule
from conftest import REPO_ROOT
from servers.fixtures import fastapi_server  # noqa: F401 (fixture)
from servers.processes import free_port

MARKER = "# burstbench example: your own locustfile"
DECLARED = Gamma(shape=0.8, mean=1 / 20)  # what the example says: gamma(shape=0.8, rate=20), seed 0
RUN_S = 20


def readme_example() -> str:
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    blocks = [b for b in re.findall(r"^```python\n(.*?)^```", readme, flags=re.S | re.M) if b.startswith(MARKER)]
    assert len(blocks) == 1, f"expected one ```python block starting with {MARKER!r} in README.md, found {len(blocks)}"
    return blocks[0]


def test_readme_example_is_short_plain_locust_and_in_the_own_service_section():
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    code = readme_example()
    assert len(code.splitlines()) <= 15
    assert "wait_time = gamma(shape=0.8, rate=20)" in code
    # no other burstbench code: no on_start, no StopUser, no schedule object
    assert [line for line in code.splitlines() if "burstbench" in line and not line.startswith("#")] == [
        "from burstbench.arrivals import gamma"]
    assert "on_start" not in code and "StopUser" not in code
    assert readme.index("## Bring your own service") < readme.index(MARKER)


@pytest.mark.load
@pytest.mark.parametrize("processes", [1, 2])
def test_readme_example_sends_the_declared_process_and_passes_the_fidelity_check(fastapi_server, tmp_path,
                                                                                  processes):
    locustfile = tmp_path / "my_locustfile.py"
    locustfile.write_text(readme_example(), encoding="utf-8")
    fastapi_server.clear()
    port = str(free_port())  # not Locust's default 5557: another run's master there would take our workers
    extra = ["--processes", str(processes), "--master-bind-port", port, "--master-port", port] if processes > 1 else []
    out = subprocess.run([sys.executable, "-m", "locust", "-f", str(locustfile), "--headless", "--only-summary",
                          "-u", "10", "-r", "10", "-t", f"{RUN_S}s", "--host", fastapi_server.url, *extra],
                         cwd=tmp_path, capture_output=True, text=True, timeout=RUN_S + 90)
    assert out.returncode == 0, out.stderr[-3000:]
    closing = re.search(r"\[burstbench\] gamma: .*: (\d+) slots fell due, (\d+) sent", out.stderr)
    assert closing, out.stderr[-3000:]
    due, sent = int(closing[1]), int(closing[2])

    arrived = np.sort([r["received_epoch"] for r in fastapi_server.records("/predict")])
    # Every slot that fell due was sent, once: no copies from a second worker (2x), none dropped. A request
    # sent as -t cut the run may be received and still count, or not: one at most per user either way.
    assert abs(len(arrived) - due) <= 10 and abs(sent - due) <= 10, (len(arrived), due, sent)
    assert len(arrived) > 0.6 * RUN_S * 20  # the schedule starts within a few seconds of the run

    # The arrivals are the seeded schedule itself, to milliseconds, once the start epoch and the one-way
    # delay (one constant) are taken out.
    offsets = LazySchedule(DECLARED, seed=0).offsets(len(arrived))
    deviation_s = arrived - offsets
    deviation_s -= np.median(deviation_s)
    assert np.median(np.abs(deviation_s)) < 0.005, deviation_s
    assert np.percentile(np.abs(deviation_s), 95) < 0.05, deviation_s

    # Fidelity, as `burstbench report` judges it: the received gaps against the declared gamma.
    gaps = np.diff(arrived)
    assert stats.kstest(gaps, DECLARED.cdf).pvalue >= 0.01
    reference = DECLARED.sample(100_000, np.random.default_rng(0))
    assert stats.wasserstein_distance(gaps, reference) / DECLARED.mean < 0.1
    if processes > 1:
        assert "over 2 workers (worker k takes slots k, k+2, ...)" in out.stderr
