"""bench-telemetry's parts that need no run: the metrics page it serves and the verdict it prints."""
from __future__ import annotations

import pandas as pd

from burstbench.experiments.bench_telemetry import bentoml_like_page, verdict
from burstbench.server_metrics import parse_metrics
from conftest import REPO_ROOT


def test_the_served_page_has_the_bundled_services_families_and_about_its_size():
    page = bentoml_like_page()
    rows = parse_metrics(page.decode())
    families = {name.removesuffix("_total").removesuffix("_created") for name, *_ in rows}
    assert {"bentoml_service_request", "bentoml_service_request_in_progress"} <= families
    assert {"histogram", "counter", "gauge"} == {kind for _, kind, *_ in rows}
    real = parse_metrics((REPO_ROOT / "tests" / "data" / "bentoml_metrics.txt").read_text())
    # a page as large as the real one after a run (its size is what a scrape costs to parse)
    assert len(real) <= len(rows) <= 3 * len(real) and 8_000 <= len(page) <= 60_000


def _table(off, on):
    rows = [{"telemetry": "off", "wire_late_p99_ms": v, "sidecar_cpu_percent": float("nan")} for v in off]
    rows += [{"telemetry": "on, every 0.25 s", "wire_late_p99_ms": v, "sidecar_cpu_percent": 5.0} for v in on]
    return pd.DataFrame(rows)


def test_the_verdict_compares_the_difference_with_the_off_steps_own_spread():
    inside = verdict(_table([1.0, 1.4, 1.2], [1.3, 1.25, 1.5]))
    assert inside[0].endswith("difference +0.100 ms") and "0.400 ms" in inside[1]
    assert inside[2].startswith("within noise") and inside[3] == "the sidecar used 5.0 % of a core on average while on"
    outside = verdict(_table([1.0, 1.1, 1.05], [2.0, 2.2, 2.1]))
    assert outside[2].startswith("NOT within noise")
    single = verdict(_table([1.0], [1.2]))
    assert "one pair only" in single[2]
