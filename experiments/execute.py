"""What ``burstbench run`` does with a validated spec: serve (or not), load through Locust, summarise.

The processes are the harness's (``burstbench.harness``): the bundled service when there is no ``--host``,
Locust with the exact run folder, Ctrl-C passed on once, everything stopped on every way out.
"""
from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from burstbench import harness
from burstbench.spec import LoadSpec

BUNDLED_LOCUSTFILE = "sentiment.py"
HTTP_LOCUSTFILE = "http_endpoint.py"


def say(message: str) -> None:
    print(f"[burstbench] {message}", file=sys.stderr, flush=True)


def locust_arguments(spec: LoadSpec, extra: list[str]) -> list[str]:
    """The plugin's flags for ``spec``, Locust's users, the whole spec to record, then the user's own flags."""
    users = str(spec.users)
    return ["-u", users, "-r", users, *spec.locust_args(), "--spec-json", json.dumps(spec.to_record()), *extra]


def execute(spec: LoadSpec, service: dict, extra: list[str]) -> int:
    run_dir = harness.new_run_dir(Path(spec.results_dir), spec.run_label())
    with harness.forward_interrupts() as interrupts:
        if spec.host is not None:
            rc = _load(spec, spec.host, HTTP_LOCUSTFILE, run_dir, extra, interrupts)
        else:
            rc = _serve_and_load(spec, service, run_dir, extra, interrupts)
    if rc is None:
        return 3
    if interrupts.interrupted:
        say("interrupted: summarising what was measured")
    if not (run_dir / "requests.csv").is_file():
        say(f"Locust wrote no requests.csv in {run_dir} (exit code {rc})")
        return rc or 4
    from burstbench.analysis.summary import summary

    print(summary(run_dir))
    return rc


def _load(spec: LoadSpec, host: str, locustfile: str, run_dir: Path, extra: list[str], interrupts) -> int:
    locust = harness.Locust(harness.locustfile(locustfile), host, run_dir, locust_arguments(spec, extra),
                            processes=spec.workers)
    interrupts.target = locust
    with locust:  # started here, stopped on every way out
        rc = locust.finish()
    locust.written()
    return rc


def _serve_and_load(spec: LoadSpec, service: dict, run_dir: Path, extra: list[str], interrupts) -> int | None:
    model = service["model"]
    if model is None:
        model = harness.ensure_default_model(service["variant"] or "onnx-fp32")
    log = Path(tempfile.mkdtemp(prefix="burstbench-service-")) / "service.log"
    server = harness.Service(Path(model), service["port"], variant=service["variant"], batching=service["batching"],
                             log_path=log)
    say(f"starting the service on {server.url} (log: {log})")
    try:
        with server:
            ready_s = server.wait_ready(service["ready_timeout"], cancelled=interrupts)
            say(f"service ready after {ready_s:.1f} s")
            # its whole process tree (BentoML's arbiter and workers) is sampled beside the load
            rc = _load(spec, server.url, BUNDLED_LOCUSTFILE, run_dir, ["--service-pid", str(server.proc.pid), *extra],
                       interrupts)
    except harness.NotReady as err:
        say(str(err))  # NotReady's text ends with the service log's tail
        _remove_if_empty(run_dir)
        return None
    harness.move_log(log, run_dir if run_dir.is_dir() else None, "service.log")
    return rc


def _remove_if_empty(run_dir: Path) -> None:
    if run_dir.is_dir() and not any(run_dir.iterdir()):
        run_dir.rmdir()
