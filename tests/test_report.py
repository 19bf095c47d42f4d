"""`analysis report` on the smoke test's real run: every section, every file, and a real browser."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from browser import needs_chromium, open_in_chromium
from conftest import REPO_ROOT

from burstbench.analysis.figures import DPI

pytestmark = pytest.mark.load
SECTIONS = ("## Verdict", "## Run", "## Load generator", "## Latency (Tables 3-4)", "## Where the time went",
            "## Inter-arrival fidelity (Figures 1-3)",
            "## Batching", "## Timeline (Figure 4)")


@pytest.fixture(scope="module")
def reported(smoke_run):
    result, run_dir = smoke_run
    assert run_dir is not None, result.stderr[-3000:]
    out = subprocess.run([sys.executable, "-m", "burstbench.analysis", "report", str(run_dir)], cwd=REPO_ROOT,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return run_dir, out


def test_report_has_every_section_and_file(reported):
    run_dir, out = reported
    folder = run_dir / "report"
    md = (folder / "report.md").read_text()
    for section in SECTIONS:
        assert section in md, section
    # The verdict comes first and says, in words, that the declared process fits.
    verdict = md.split("## Verdict", 1)[1].split("##", 1)[0]
    assert "fit" in verdict and "gamma(a=0.8, mean=0.05s, cv=1.12)" in verdict and "NOT" not in verdict
    assert "locust (bucketed)" in md
    for name in ("latency.csv", "fidelity.csv", "lateness.csv", "batch_sizes.csv", "timeline.csv",
                 "locust_percentiles.csv", "gaps_scheduled.png", "gaps_sent.png", "latency.png", "timeline.png"):
        assert (folder / name).is_file(), name
    for png in folder.glob("*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png
    # The terminal shows the main table and where everything went.
    assert "p50" in out.stdout and str(folder / "report.html") in out.stdout


def test_html_report_is_self_contained(reported):
    page = (reported[0] / "report" / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 5
    assert "<script" not in page and "http://" not in page and "https://" not in page


@needs_chromium
def test_html_report_opens_in_headless_chromium(reported):
    page = open_in_chromium(reported[0] / "report" / "report.html")
    assert page["title"] == f"Run report: {reported[0].name}"
    assert page["errors"] == []
    assert len(page["widths"]) == 5 and all(w > 100 for w in page["widths"])  # every figure decoded and drawn
    assert [f"## {h}" for h in page["headings"]] == list(SECTIONS)
    # The timeline drew a panel for each signal the sidecar collected from the bundled service: the PNG the
    # browser decoded is as tall as the figure with all of them (9.5 in with generator.csv, 1.8 in per panel).
    from burstbench.analysis.runs import load_run
    from burstbench.analysis.telemetry_figures import telemetry_panels

    names = [p.name for p in telemetry_panels(load_run(reported[0]))]
    assert {"server_rate", "in_flight", "batch_size", "server_latency", "service_cpu", "service_rss"} <= set(names)
    (_, _, height), = [img for img in page["images"] if img[0] == "timeline"]
    assert height >= 0.8 * DPI * (9.5 + 1.8 * len(names)), (height, names)
    assert "where_time_went" in [img[0] for img in page["images"]]


def test_notebook_runs_top_to_bottom_from_a_clean_kernel(reported):
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(REPO_ROOT / "notebooks" / "results.ipynb", as_version=4)
    os.environ["BURSTBENCH_RUN"] = str(reported[0])
    try:
        NotebookClient(nb, timeout=300, kernel_name="python3",
                       resources={"metadata": {"path": str(REPO_ROOT / "notebooks")}}).execute()
    finally:
        del os.environ["BURSTBENCH_RUN"]
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) == 3  # scheduled gaps, sent gaps, timeline
    assert any(reported[0].name in str(o.get("data", {})) for o in outputs)
