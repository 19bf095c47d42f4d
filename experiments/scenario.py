"""``burstbench run NAME``: one whole run on the bundled service.

Builds the default model when missing, starts the service on loopback, waits until it
is ready, runs the scenario with Locust (headless), stops the service, and prints the
exact p50/p95/p99 table. Ctrl-C stops the load early; what was measured is kept and
summarised.

    burstbench run steady --requests 1000 --seed 0 --pacing arrival --users 10
"""
from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import tempfile
from pathlib import Path


from burstbench.arrivals import SCENARIOS, scenario  # noqa: E402
from burstbench.arrivals.schedule import check_requests, check_seed  # noqa: E402

from burstbench import harness  # noqa: E402
from burstbench.paths import package_folder  # noqa: E402

LOCUSTFILES_DIR = package_folder("locustfiles")
LOCUSTFILE = LOCUSTFILES_DIR / "sentiment.py"
DEFAULT_MODEL = Path("build") / "models" / "untrained-roberta-base"


def parse_args(argv):
    p = argparse.ArgumentParser(prog="burstbench run", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    s = p
    s.add_argument("scenario", help=f"one of {', '.join(SCENARIOS)}, or trace (with --trace FILE)")
    s.add_argument("--requests", default=None, help="default 1000, or every timestamp of --trace")
    s.add_argument("--seed", default="0")
    s.add_argument("--pacing", default="arrival", help="arrival or think")
    s.add_argument("--users", default="10", help="concurrent Locust users (>= 1)")
    s.add_argument("--mean", default=None, help="mean gap in seconds (default: the scenario's 2 s)")
    s.add_argument("--port", default="3000")
    s.add_argument("--model", type=Path, default=None, help="model folder (default: build the untrained default)")
    s.add_argument("--variant", default=None, help="served model variant (onnx-fp32, torch-fp32)")
    s.add_argument("--batching", default=None, help="on or off")
    s.add_argument("--results-dir", type=Path, default=Path("results"))
    s.add_argument("--ready-timeout", type=float, default=300.0, help="seconds to wait for /readyz")
    s.add_argument("--progress-every", default="10")
    s.add_argument("--workers", default=None,
                   help="load processes: Locust master + N workers on this machine, one schedule split across them")
    s.add_argument("--trace", default=None, help="replay this file's timestamps instead of the scenario's process")
    s.add_argument("--trace-column", default="timestamp")
    return p.parse_args(argv)


def validate(args) -> None:
    """The cheap checks, before the model is built or the service started."""
    if args.trace is not None:
        if args.scenario != "trace":
            raise ValueError(f"with --trace the scenario is 'trace' (got {args.scenario!r})")
        if not Path(args.trace).is_file():
            raise ValueError(f"--trace {args.trace}: no such file")
    else:
        scenario(args.scenario, None if args.mean is None else _positive("--mean", args.mean))
    if args.requests is not None:
        check_requests(_int("--requests", args.requests))
    check_seed(_int("--seed", args.seed))
    if args.pacing not in ("arrival", "think"):
        raise ValueError(f"--pacing must be one of arrival, think (got {args.pacing!r})")
    if _int("--users", args.users) < 1:
        raise ValueError(f"--users must be an integer >= 1 (got {args.users!r})")
    port = _int("--port", args.port)
    if not 1 <= port <= 65535:
        raise ValueError(f"--port must be in [1, 65535] (got {args.port!r})")
    with socket.socket() as sock:
        if sock.connect_ex(("127.0.0.1", port)) == 0:
            raise ValueError(f"--port {port}: something already listens on 127.0.0.1:{port}; choose another PORT=")
    if args.workers is not None:
        workers = _int("--workers", args.workers)
        if not 1 <= workers <= 64:
            raise ValueError(f"--workers must be an integer in [1, 64] (got {args.workers!r})")
        if args.pacing != "arrival":
            raise ValueError("--workers needs --pacing arrival (one schedule split across workers)")
        if _int("--users", args.users) < workers:
            raise ValueError(f"--users must be at least --workers ({workers}): each worker needs a user")
    if args.batching not in (None, "on", "off"):
        raise ValueError(f"--batching must be on or off (got {args.batching!r})")


def _int(flag, raw) -> int:
    try:
        return int(raw)
    except (TypeError, ValueError):
        raise ValueError(f"{flag} must be an integer (got {raw!r})") from None


def _positive(flag, raw) -> float:
    try:
        value = float(raw)
    except (TypeError, ValueError):
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise ValueError(f"{flag} must be a number > 0 (got {raw!r})")
    return value


def wait_ready(url: str, server, timeout_s: float) -> float:
    """Poll /readyz until 200 (``burstbench.harness.wait_ready``: a deadline, the exit of ``server`` first)."""
    try:
        return harness.wait_ready(f"{url}/readyz", deadline_s=timeout_s, proc=server)
    except harness.NotReady as err:
        raise RuntimeError(err.reason) from None


def stop(server) -> None:
    """SIGTERM the service's whole process group, then SIGKILL what is left (``burstbench.harness``)."""
    if isinstance(server, harness.Process):
        server.stop()
    else:
        harness.stop_process(server)


def run_scenario(args) -> int:
    model = args.model
    if model is None:
        model = harness.ensure_default_model(args.variant or "onnx-fp32", DEFAULT_MODEL)
    log = tempfile.NamedTemporaryFile("w+", prefix="burstbench-service-", suffix=".log", delete=False)
    log.close()
    service = harness.Service(model, int(args.port), variant=args.variant, batching=args.batching,
                              log_path=Path(log.name))
    url = service.url
    print(f"[burstbench] starting the service on {url} (log: {log.name})", file=sys.stderr, flush=True)
    run_dir = None
    # The service and Locust run in sessions of their own: Ctrl-C reaches us, and each press goes on to
    # Locust once (it stops and writes what it measured); the service is stopped here afterwards.
    with harness.forward_interrupts() as interrupts, service:
        try:
            ready_s = service.wait_ready(args.ready_timeout, cancelled=interrupts)
        except harness.NotReady as err:
            print(f"[burstbench] {err}", file=sys.stderr)
            return 3
        except KeyboardInterrupt:
            print("[burstbench] interrupted before the load started", file=sys.stderr)
            return 130
        print(f"[burstbench] service ready after {ready_s:.1f} s", file=sys.stderr, flush=True)
        flags = ["-u", str(int(args.users)), "-r", str(int(args.users)),
                 "--scenario", args.scenario, "--seed", str(args.seed),
                 "--pacing", args.pacing, "--progress-every", str(args.progress_every)]
        if args.requests is not None:
            flags += ["--requests", str(args.requests)]
        if args.mean is not None:
            flags += ["--mean", str(args.mean)]
        if args.trace is not None:
            flags += ["--trace", str(Path(args.trace).resolve()), "--trace-column", args.trace_column]
        name = f"trace-{Path(args.trace).stem}" if args.trace is not None else args.scenario
        workers = int(args.workers) if args.workers is not None else None
        locust = harness.Locust(LOCUSTFILE, url, harness.new_run_dir(args.results_dir, name), flags,
                                processes=workers)
        interrupts.target = locust
        with locust:
            rc = locust.finish()
        run_dir = locust.written()
    harness.move_log(Path(log.name), run_dir, "service.log")
    if interrupts.interrupted:
        print("[burstbench] interrupted: summarising what was measured", file=sys.stderr)
    if run_dir is None:
        print("[burstbench] Locust created no run folder", file=sys.stderr)
        return rc or 4
    subprocess.run([sys.executable, "-m", "burstbench.analysis", "summary", str(run_dir)])
    return rc


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        validate(args)
    except ValueError as err:
        print(f"burstbench run: {err}", file=sys.stderr)
        return 2
    return run_scenario(args)


if __name__ == "__main__":
    sys.exit(main())
