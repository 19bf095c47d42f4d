"""Open a report's HTML in Debian's chromium (playwright drives it; no browser download) and say what it drew."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(CHROMIUM is None and not os.environ.get("BURSTBENCH_REQUIRE_BROWSER"),
                                    reason="no chromium here (make test installs Debian's; CI requires it)")


def open_in_chromium(page_path: Path) -> dict:
    """title, the decoded width of every image (and its alt, width and height), the h2 headings, any page or console error."""
    from playwright.sync_api import sync_playwright

    assert CHROMIUM, "BURSTBENCH_REQUIRE_BROWSER is set but chromium is not installed"
    errors = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run"])
        try:
            page = browser.new_page()
            page.on("pageerror", lambda err: errors.append(str(err)))
            page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
            page.goto(Path(page_path).as_uri())
            page.wait_for_load_state("load")
            return {"title": page.title(), "errors": errors,
                    "widths": page.eval_on_selector_all("img", "imgs => imgs.map(i => i.naturalWidth)"),
                    "images": page.eval_on_selector_all(
                        "img", "imgs => imgs.map(i => [i.alt, i.naturalWidth, i.naturalHeight])"),
                    "headings": page.eval_on_selector_all("h2", "hs => hs.map(h => h.textContent)")}
        finally:
            browser.close()
