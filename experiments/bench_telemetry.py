"""``burstbench bench-telemetry``: does scraping the target every 0.25 s disturb the schedule? Judged on the wire.

Against nginx answering a fixed body on loopback (never the bottleneck), the same seeded bursty schedule
is sent in alternating steps with the telemetry sidecar off and on (scraping a Prometheus page every
``--every`` seconds, 0.25 by default, and sampling the load process): off, on, off, on, ... so that a
drift of the machine over the run lands on both conditions alike. The judge is a packet capture of the
load port (``experiments.wire_capture``, read by ``analysis.wire``): each request's wire time minus its
scheduled send. The metrics page is served on a port of its own by a small HTTP server in this process,
so the scrapes never appear in the capture; it is a page of BentoML's shape (its four families, histograms
with BentoML's 16 duration buckets), built with prometheus_client: 141 samples, 28 kB, a little more than the
bundled service's own page after its first requests (92 samples, 18 kB).

The verdict: the difference between the conditions' median per-step p99 lateness against the spread of
the off steps among themselves (their range): within that range, the scraper is within noise.

    burstbench bench-telemetry                           # 3 pairs of gamma(0.8) at 400 req/s, 4,000 requests
    burstbench bench-telemetry --pairs 5 --rate 800 --every 0.25

Writes ``results/<UTC>-bench-telemetry/``: steps.csv, steps.md (the table and the verdict), lateness.png,
bench.json and every step's run folder under runs/.
"""
from __future__ import annotations

import argparse
import http.server
import json
import math
import os
import sys
import threading
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from burstbench import harness
from burstbench.analysis import generator, wire
from burstbench.analysis.figures import save_figure
from burstbench.analysis.runs import load_run
from burstbench.arrivals import make_distribution
from burstbench.experiments.nginx_server import FixedBodyServer, find_nginx
from burstbench.experiments.wire_capture import WireCapture
from burstbench.locustfiles.recording import make_run_dir
from burstbench.locustfiles.run_info import git_commit, machine, package_versions

LOCUSTFILE = harness.locustfile("fixed_body.py")
SHAPE = 0.8


def bentoml_like_page() -> bytes:
    """A Prometheus page shaped like the bundled service's: counters, gauges and two 17-bucket histograms."""
    from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

    registry = CollectorRegistry()
    labels = ["endpoint", "http_response_code", "runner_name", "service_name", "service_version"]
    total = Counter("bentoml_service_request", "Total number of runner RPC", labels, registry=registry)
    in_progress = Gauge("bentoml_service_request_in_progress", "RPC in progress now", labels[:1] + labels[2:],
                        registry=registry)
    buckets = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 180)
    duration = Histogram("bentoml_service_request_duration_seconds", "RPC duration in seconds", labels,
                         buckets=buckets, registry=registry)
    batch = Histogram("bentoml_service_adaptive_batch_size", "adaptive batch size",
                      ["method_name", "runner_name", "service_name", "service_version", "worker_index"],
                      buckets=(1, 2, 4, 8, 16, 32, 64, 100), registry=registry)
    rng = np.random.default_rng(0)
    for endpoint in ("/analyze-sentiment", "/readyz", "/model-info"):
        for code in ("200", "500"):
            values = (endpoint, code, "Sentiment", "Sentiment", "not available")
            total.labels(*values).inc(int(rng.integers(1, 10_000)))
            for seconds in rng.exponential(0.03, 20):
                duration.labels(*values).observe(float(seconds))
        in_progress.labels(endpoint, "Sentiment", "Sentiment", "not available").set(0)
    for size in rng.integers(1, 32, 50):
        batch.labels("analyze_sentiment", "Sentiment", "Sentiment", "not available", "1").observe(int(size))
    return generate_latest(registry)


class MetricsPage:
    """The page above on its own loopback port (a thread of this process: the load process never serves it)."""

    def __init__(self, body: bytes):
        page = body

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's naming)
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
                self.send_header("Content-Length", str(len(page)))
                self.end_headers()
                self.wfile.write(page)

            def log_message(self, *_args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/metrics"
        self.scrapes_bytes = len(body)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *_exc):
        self.server.shutdown()
        self.server.server_close()


def parse_args(argv):
    p = argparse.ArgumentParser(prog="burstbench bench-telemetry", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pairs", type=int, default=3, help="off/on pairs of steps (default 3)")
    p.add_argument("--rate", type=float, default=400.0, help="offered rate in req/s (default 400)")
    p.add_argument("--requests", type=int, default=4000, help="requests per step (default 4000: 10 s at 400/s)")
    p.add_argument("--every", type=float, default=0.25, help="the sidecar's interval when on (default 0.25 s)")
    p.add_argument("--users", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--results-dir", type=Path, default=Path("results"))
    p.add_argument("--nginx", default=None, help="nginx binary (default: nginx on PATH, then /usr/sbin/nginx)")
    a = p.parse_args(argv)
    for name, ok, accepted in (("--pairs", 1 <= a.pairs <= 20, "an integer in [1, 20]"),
                               ("--rate", 1 <= a.rate <= 5000, "a rate in [1, 5000] req/s"),
                               ("--requests", 100 <= a.requests <= 100_000, "an integer in [100, 100000]"),
                               ("--every", 0.25 <= a.every <= 60, "seconds in [0.25, 60]"),
                               ("--users", 1 <= a.users <= 1000, "an integer in [1, 1000]")):
        if not ok:
            p.error(f"{name} must be {accepted}")
    return a


def say(text: str) -> None:
    print(f"[bench-telemetry] {text}", file=sys.stderr, flush=True)


def run_step(a, url: str, metrics_url: str, runs_dir: Path, name: str, telemetry: bool) -> Path:
    limit_s = math.ceil(3 * a.requests / a.rate + 10)
    flags = ["-u", str(a.users), "-r", "1000", "-t", f"{limit_s}s", "--arrival", "gamma", "--shape", str(SHAPE),
             "--rate", repr(a.rate), "--requests", str(a.requests), "--seed", str(a.seed), "--run-name", name,
             "--progress-every", "3600"]
    flags += (["--server-metrics", metrics_url, "--metrics-every", repr(a.every)] if telemetry
              else ["--telemetry", "off"])
    log = runs_dir / f"{name}.log"
    locust = harness.Locust(LOCUSTFILE, url, harness.new_run_dir(runs_dir, name), flags,
                            user_classes=["FixedBodyUser"], log=log)
    with locust:
        locust.finish(limit_s + 60, on_timeout="kill", grace_s=30)
    found = locust.written()
    if found is None or locust.timed_out:
        raise RuntimeError(f"{name}: no complete run folder (exit code {locust.returncode}); log {log}")
    return found


def step_row(a, run_dir: Path, pcap: Path, port: int, telemetry: bool, index: int) -> dict:
    run = load_run(run_dir)
    dist = make_distribution("gamma", 1.0 / a.rate, SHAPE)
    seen = wire.read_capture(pcap, port)
    m = generator.wire_metrics(seen, dist, run.rows)
    info = run.record.telemetry or {}
    sidecar = info.get("sidecar") or {}
    scrapes = (info.get("server_metrics") or {}).get("scrapes", 0)
    return {"step": index, "telemetry": f"on, every {a.every:g} s" if telemetry else "off",
            "requests": len(run.rows), "ok": int((run.rows["ok"] == 1).sum()),
            "wire_matched": m.get("wire_matched"), "wire_late_p50_ms": m.get("wire_late_p50_ms"),
            "wire_late_p99_ms": m.get("wire_late_p99_ms"), "wire_late_max_ms": m.get("wire_late_max_ms"),
            "rows_late_p99_ms": float(np.percentile(run.rows["lateness_ms"].to_numpy(dtype=float), 99)),
            "scrapes": scrapes, "sidecar_cpu_percent": sidecar.get("cpu_percent"), "run": run_dir.name}


def verdict(table: pd.DataFrame) -> list[str]:
    """Median per-step p99 of each condition, their difference, and the off steps' own spread."""
    on = table.loc[table["telemetry"] != "off", "wire_late_p99_ms"].to_numpy(dtype=float)
    off = table.loc[table["telemetry"] == "off", "wire_late_p99_ms"].to_numpy(dtype=float)
    diff = float(np.median(on) - np.median(off))
    spread = float(off.max() - off.min()) if len(off) > 1 else math.nan
    lines = [f"wire lateness p99, median over steps: off {np.median(off):.3f} ms, on {np.median(on):.3f} ms; "
             f"difference {diff:+.3f} ms",
             f"spread of the off steps among themselves (max - min): {spread:.3f} ms"]
    if math.isnan(spread):
        lines.append("one pair only: no spread to judge the difference against (use --pairs 3)")
    elif abs(diff) <= spread:
        lines.append("within noise: the difference is inside the off steps' own spread")
    else:
        lines.append("NOT within noise: the difference exceeds the off steps' own spread")
    cpu = table["sidecar_cpu_percent"].dropna()
    if len(cpu):
        lines.append(f"the sidecar used {cpu.mean():.1f} % of a core on average while on")
    return lines


def lateness_figure(table: pd.DataFrame, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.8))
    for condition, color in zip(sorted(table["telemetry"].unique()), ("#4C72B0", "#DD8452")):
        part = table[table["telemetry"] == condition]
        ax.plot(part["step"], part["wire_late_p99_ms"], "o", color=color, label=f"telemetry {condition}")
        ax.axhline(part["wire_late_p99_ms"].median(), color=color, linestyle="--", linewidth=1)
    ax.set_xlabel("step (in the order run)")
    ax.set_ylabel("wire - scheduled, p99 (ms)")
    ax.set_ylim(bottom=0)
    ax.set_title("send lateness on the wire, per step (dashed: each condition's median)", fontsize=9)
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def run_bench(a) -> int:
    capture_problem = WireCapture.available()
    if capture_problem:
        say(f"no packet capture here ({capture_problem}): the judge is the wire; run `make tcpdump` as root")
        return 1
    out_dir = make_run_dir(a.results_dir, "bench-telemetry")
    runs_dir = out_dir / "runs"
    runs_dir.mkdir()
    steps = [telemetry for _ in range(a.pairs) for telemetry in (False, True)]
    say(f"{len(steps)} steps of gamma({SHAPE}) at {a.rate:g} req/s, {a.requests} requests, telemetry off/on "
        f"alternating; about {len(steps) * (a.requests / a.rate + 6) / 60:.1f} min; results in {out_dir}")
    info = {"command": sys.argv, "pairs": a.pairs, "rate": a.rate, "requests": a.requests, "every_s": a.every,
            "users": a.users, "seed": a.seed, "git": git_commit(), "machine": machine(), "versions": package_versions(),
            "load_average_start": os.getloadavg(), "started_utc": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    rows = []
    with FixedBodyServer(find_nginx(a.nginx)) as server, MetricsPage(bentoml_like_page()) as page:
        info.update(nginx=server.version(), metrics_page_bytes=page.scrapes_bytes)
        for index, telemetry in enumerate(steps, 1):
            name = f"step{index:02d}-telemetry-{'on' if telemetry else 'off'}"
            say(f"step {index}/{len(steps)}: telemetry {'on' if telemetry else 'off'}")
            pcap = runs_dir / f"{name}.pcap"
            with WireCapture(server.port, pcap):
                run_dir = run_step(a, server.url, page.url, runs_dir, name, telemetry)
            row = step_row(a, run_dir, pcap, server.port, telemetry, index)
            pcap.unlink(missing_ok=True)
            rows.append(row)
            say(f"  wire - scheduled p99 {row['wire_late_p99_ms']:.3f} ms ({row['wire_matched']} of "
                f"{row['requests']} on the wire), {row['scrapes']} scrapes")
    table = pd.DataFrame(rows)
    table.to_csv(out_dir / "steps.csv", index=False)
    lines = verdict(table)
    md = table.drop(columns=["run"]).to_markdown(index=False, floatfmt=".3f")
    (out_dir / "steps.md").write_text(md + "\n\n" + "\n".join(f"- {line}" for line in lines) + "\n")
    lateness_figure(table, out_dir / "lateness.png")
    info.update(load_average_end=os.getloadavg(), verdict=lines,
                finished_utc=datetime.now(timezone.utc).isoformat(timespec="seconds"))
    (out_dir / "bench.json").write_text(json.dumps(info, indent=2, default=str) + "\n")
    print(md)
    print()
    for line in lines:
        print(f"- {line}")
    say(f"table: {out_dir / 'steps.md'}; figure: lateness.png")
    return 0


def main(argv=None) -> int:
    a = parse_args(argv)
    try:
        return run_bench(a)
    except (RuntimeError, ValueError, harness.NotReady) as err:
        print(f"burstbench bench-telemetry: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
