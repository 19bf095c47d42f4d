"""Scrape a Prometheus text endpoint and turn it into tidy rows, with the client library's own parser.

    scraper = MetricsScraper("http://127.0.0.1:3000/metrics", timeout_s=1.0)
    rows = scraper.scrape()        # [(metric, type, labels_json, value), ...]; ScrapeError says why not

Any server that exposes the Prometheus text format works (BentoML, vLLM, Triton, TGI, MLServer, KServe):
nothing here knows a family by name. OpenMetrics answers are read by the OpenMetrics parser. An answer
that is not a 200, is empty, or that neither parser reads is a ``ScrapeError`` naming what came back: the
sidecar records it and goes on (a server restarting answers again later).
"""
from __future__ import annotations

import json
import urllib.error
import urllib.request

from prometheus_client.openmetrics.parser import text_string_to_metric_families as openmetrics_families
from prometheus_client.parser import text_string_to_metric_families as prometheus_families

MAX_BODY_BYTES = 16 * 1024 * 1024  # a metrics page larger than this is not one (a misrouted download)
ACCEPT = "text/plain;version=0.0.4;q=0.9,*/*;q=0.1"  # ask for the classic text format


class ScrapeError(Exception):
    """One scrape that gave no samples, with the reason in words."""


def metrics_url(host: str | None, setting: str) -> str | None:
    """The URL to scrape: ``setting`` is ``off``, a path on ``host`` (``/metrics``) or a full URL."""
    if setting == "off":
        return None
    if setting.startswith(("http://", "https://")):
        return setting
    if not host:
        return None
    return host.rstrip("/") + "/" + setting.lstrip("/")


def parse_metrics(text: str, content_type: str = "") -> list[tuple[str, str, str, float]]:
    """Every sample of a Prometheus (or OpenMetrics) text page as (metric, type, labels as JSON, value).

    Raises ScrapeError when the page holds no sample or does not parse; the reason quotes the parser.
    """
    parse = openmetrics_families if "openmetrics" in content_type else prometheus_families
    try:
        rows = [(sample.name, family.type, json.dumps(sample.labels, sort_keys=True, separators=(",", ":")),
                 float(sample.value))
                for family in parse(text) for sample in family.samples]
    except Exception as err:  # the parsers raise ValueError, TypeError or IndexError on garbage
        first = text.strip().splitlines()[0][:80] if text.strip() else ""
        raise ScrapeError(f"not Prometheus text ({type(err).__name__}: {str(err)[:120]}; "
                          f"first line {first!r})") from None
    if not rows:
        raise ScrapeError("the page holds no metric samples")
    return rows


class MetricsScraper:
    """GETs one URL per ``scrape()`` (a new connection each time: a scrape never holds one of the server's)."""

    def __init__(self, url: str, timeout_s: float = 1.0):
        self.url = url
        self.timeout_s = float(timeout_s)

    def scrape(self) -> list[tuple[str, str, str, float]]:
        request = urllib.request.Request(self.url, headers={"Accept": ACCEPT, "User-Agent": "burstbench-telemetry"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                body = response.read(MAX_BODY_BYTES + 1)
                content_type = response.headers.get("Content-Type", "")
        except urllib.error.HTTPError as err:
            raise ScrapeError(f"GET {self.url} answered HTTP {err.code}") from None
        except (urllib.error.URLError, OSError, ValueError) as err:
            reason = getattr(err, "reason", err)
            raise ScrapeError(f"GET {self.url} failed: {reason}") from None
        if len(body) > MAX_BODY_BYTES:
            raise ScrapeError(f"GET {self.url} answered more than {MAX_BODY_BYTES // (1024 * 1024)} MiB: not a "
                              "metrics page")
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise ScrapeError(f"GET {self.url} answered bytes that are not UTF-8 text") from None
        return parse_metrics(text, content_type)
