"""The README's "use the wait-time classes in your own locustfile" example, run exactly as written.

The block is found in README.md by the marker comment on its first line, written to a temporary
folder and run with real Locust, headless, against the FastAPI test service on loopback. The
service's arrival times must follow the schedule the example itself draws.
"""
from __future__ import annotations

import json
import math
import re
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO_ROOT
from servers.fixtures import fastapi_server  # noqa: F401 (fixture)

MARKER = "# burstbench example: your own locustfile"


def readme_example() -> str:
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    blocks = [b for b in re.findall(r"^```python\n(.*?)^```", readme, flags=re.S | re.M) if b.startswith(MARKER)]
    assert len(blocks) == 1, f"expected one ```python block starting with {MARKER!r} in README.md, found {len(blocks)}"
    return blocks[0]


def test_readme_example_is_short_and_in_the_own_service_section():
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme_example().splitlines()) < 20
    assert readme.index("## Bring your own service") < readme.index(MARKER)


@pytest.mark.load
def test_readme_example_sends_requests_paced_by_its_schedule(fastapi_server, tmp_path):
    locustfile = tmp_path / "my_locustfile.py"
    locustfile.write_text(readme_example(), encoding="utf-8")
    # The schedule, from the example itself (a subprocess: importing locust here would monkey-patch pytest).
    drawn = subprocess.run([sys.executable, "-c", "import json, runpy, sys; "
                            "print(json.dumps(runpy.run_path(sys.argv[1])['schedule'].offsets_s.tolist()))",
                            str(locustfile)], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert drawn.returncode == 0, drawn.stderr[-2000:]
    offsets = np.array(json.loads(drawn.stdout.splitlines()[-1]))

    fastapi_server.clear()
    run_time_s = math.ceil(offsets[-1]) + 4  # the users stop when the schedule is used up; Locust at --run-time
    out = subprocess.run([sys.executable, "-m", "locust", "-f", str(locustfile), "--headless", "--only-summary",
                          "-u", "10", "-r", "10", "-t", f"{run_time_s}s", "--host", fastapi_server.url],
                         cwd=tmp_path, capture_output=True, text=True, timeout=run_time_s + 60)
    assert out.returncode == 0, out.stderr[-3000:]

    received = fastapi_server.records("/predict")
    assert len(received) == len(offsets)  # every slot sent once, nothing more
    arrived = np.sort([r["received_epoch"] for r in received])
    deviation_s = arrived - offsets
    deviation_s -= np.median(deviation_s)  # the start epoch and the one-way delay: one constant
    # Paced by the schedule (not as fast as possible, not closed-loop): tolerances for a busy 2-core machine.
    assert np.median(np.abs(deviation_s)) < 0.05, deviation_s
    assert np.max(np.abs(deviation_s)) < 0.3, deviation_s
