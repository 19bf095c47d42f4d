"""Open-loop peer load tools, each in its own virtual environment, for side-by-side benchmarks.

A peer is a tool a user would pick instead of burstbench to send an open-loop arrival process.
Each is pinned, installed from PyPI into ``build/peers/<tool>/venv`` (never into the project's
own environment) and run as a subprocess in its own process group against a URL:

    burstbench peers --peer aiperf --url http://127.0.0.1:8080 --rate 200 --requests 400

The fixed-body nginx of ``experiments/nginx_server.py`` answers a peer when its ``server {}``
block also holds ``NGINX_LOCATIONS`` (an OpenAI-compatible, non-streaming chat completion).

AIPerf 0.13 (the only peer so far):

- Arrivals: ``--arrival-pattern poisson`` (exponential gaps) and ``gamma`` with
  ``--arrival-smoothness`` equal to the gamma shape; the mean gap stays 1/rate
  (``scale = 1 / (rate * shape)``, vLLM's ``--burstiness``), so ``("gamma", 0.5)`` maps one to one.
- Seeds: ``--random-seed S`` seeds one global manager; the gap stream is
  ``random.Random(<hash of S and "timing.request.poisson_interval">)`` (``gamma_interval`` for
  gamma), so a seed repeats the same gaps from run to run, but they are not burstbench's gaps
  for the same seed. Without a seed the gaps come from system entropy.
- Offline: it needs a tokenizer to build its synthetic prompts. ``--tokenizer builtin`` is not
  offline (tiktoken downloads o200k_base), and a local path fails under ``HF_HUB_OFFLINE=1``
  (AIPerf then looks the path up in the hub cache), so the install also writes a small
  byte-level BPE tokenizer into ``build/peers/aiperf/tokenizer`` and the run leaves the HF
  offline variables unset; a local path never reaches the hub.
- Extra requests: with the flags here none. It sends exactly ``--request-count`` POSTs to
  ``/v1/chat/completions`` and no warm-up (that needs ``--warmup-request-count``); its
  default-on server-metrics scrape (``GET /metrics`` every few seconds) and GPU telemetry
  (``localhost:9400``) are switched off.
- Concurrency: in request-rate mode there is no cap unless ``--concurrency`` is given (then a
  slot must be free before a send: no longer open loop once the server is slow); aiohttp's pool
  holds up to 2500 connections per worker process (``AIPERF_HTTP_CONNECTION_LIMIT``). It spawns
  ``max(1, int(0.75 * cores) - 1)`` worker processes (at most 32) besides its own services.
"""
from __future__ import annotations

import argparse
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from burstbench import harness
from burstbench.experiments.peer_base import (BUILD_DIR, Peer, PeerInstallError, PeerResult, arrival_label,
                                              parse_arrival)
from burstbench.experiments.peer_aiperf import AIPerf

STOP_GRACE_S = 10.0                         # after SIGINT at the deadline, before SIGKILL

# Put inside the ``server {}`` block of the fixed-body nginx (as a format *argument*: the braces
# are nginx's own, not doubled). Peers POST here; burstbench's own users GET ``/``, so the path
# tells the two apart in an access log.
PEER_PATHS = ("/v1/chat/completions",)
CHAT_COMPLETION_BODY = (
    '{"id":"chatcmpl-burstbench","object":"chat.completion","created":0,"model":"burstbench-fixed",'
    '"choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}],'
    '"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}'
)
NGINX_LOCATIONS = f"""\
        # OpenAI-compatible chat completion, non-streaming, for peer load tools (AIPerf).
        location = /v1/chat/completions {{
            default_type application/json;
            return 200 '{CHAT_COMPLETION_BODY}';
        }}
"""






PEERS: dict[str, Peer] = {
    "aiperf": AIPerf(name="aiperf", package="aiperf", version="0.13.0", arrivals=("exponential", "gamma"),
                     python_range=((3, 11), (3, 14))),
}


def get_peer(name: str) -> Peer:
    try:
        return PEERS[name]
    except KeyError:
        raise ValueError(f"unknown peer {name!r} (known: {', '.join(PEERS)})") from None


# -- running ----------------------------------------------------------------------------
def build_command(name: str, url: str, rate_per_s: float, requests: int, arrival, seed: int, out_dir: Path,
                  timeout_s: float, *, build_dir: Path = BUILD_DIR, concurrency: int | None = None) -> list[str]:
    """The exact command ``run_peer`` would run; validates, installs nothing, starts nothing."""
    peer = get_peer(name)
    process, shape = peer.check(rate_per_s, requests, arrival, seed, timeout_s)
    if concurrency is not None and not (isinstance(concurrency, int) and concurrency >= 1):
        raise ValueError(f"concurrency must be an integer >= 1 or None (got {concurrency!r})")
    return peer.command(Path(build_dir), url, rate_per_s, requests, process, shape, seed, Path(out_dir),
                        timeout_s, concurrency)


def run_peer(name: str, url: str, rate_per_s: float, requests: int, arrival, seed: int, out_dir: Path,
             timeout_s: float, *, build_dir: Path = BUILD_DIR, concurrency: int | None = None) -> PeerResult:
    """Run peer ``name`` against ``url`` at ``rate_per_s`` (open loop) for ``requests`` requests.

    ``arrival`` is ``"exponential"`` or ``("gamma", shape)``; an arrival the peer lacks raises
    ``ValueError`` before anything is installed. Installs the peer when missing. The tool runs in
    its own process group, which is always killed at the end; at ``timeout_s`` it gets SIGINT,
    then SIGKILL after a grace period, and the result says ``timed_out``.
    """
    peer = get_peer(name)
    cmd = build_command(name, url, rate_per_s, requests, arrival, seed, out_dir, timeout_s,
                        build_dir=build_dir, concurrency=concurrency)
    process, shape = parse_arrival(arrival)
    peer.ensure_installed(Path(build_dir))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    log_path = out_dir / peer.log_name()
    (out_dir / "command.json").write_text(json.dumps({"command": cmd, "cwd": str(out_dir)}, indent=2) + "\n")
    timed_out = False
    # AIPerf leaves its ZMQ socket folder and dataset mmap in the temp dir: give it its own, removed after.
    tmp = Path(tempfile.mkdtemp(prefix=f"burstbench-{peer.name}-"))
    env = {**peer.env(Path(build_dir)), "TMPDIR": str(tmp)}
    started = time.monotonic()
    # Its own process group, SIGKILLed whole at the end (also on Ctrl-C or any error here): nothing of the
    # tool outlives the call.
    proc = harness.Process(cmd, log=log_path, cwd=out_dir, env=env, stdin=subprocess.DEVNULL,
                           stop_signal=signal.SIGKILL, stop_timeout_s=10)
    try:
        with proc:
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                timed_out = True
                proc.signal(signal.SIGINT)
                try:
                    proc.wait(STOP_GRACE_S)
                except subprocess.TimeoutExpired:
                    pass
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    wall_s = time.monotonic() - started
    sent, completed, errors = peer.counts(out_dir, log_path)
    return PeerResult(tool=peer.name, version=peer.version, arrival=arrival_label(process, shape),
                      rate_per_s=float(rate_per_s), requests=requests, command=cmd, exit_code=proc.returncode,
                      timed_out=timed_out, wall_s=round(wall_s, 2), log_path=log_path,
                      artifacts_dir=peer.artifacts(out_dir), sent=sent, completed=completed, errors=errors,
                      arrivals=peer.arrivals)


# -- command line -----------------------------------------------------------------------
def parse_args(argv):
    p = argparse.ArgumentParser(prog="burstbench peers", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--peer", default="aiperf", help=f"one of {', '.join(PEERS)}")
    p.add_argument("--url", required=False, help="base URL of the server, e.g. http://127.0.0.1:8080")
    p.add_argument("--rate", type=float, default=200.0, help="open-loop rate in requests/s")
    p.add_argument("--requests", type=int, default=400, help="requests to send")
    p.add_argument("--arrival", default="exponential", help="exponential or gamma:<shape>")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--concurrency", type=int, default=None, help="cap on requests in flight (default: none)")
    p.add_argument("--timeout", type=float, default=None,
                   help="seconds before the tool is stopped (default: 3 x requests / rate + 60)")
    p.add_argument("--out-dir", type=Path, default=None, help="default: results/<UTC>-peer-<tool>/")
    p.add_argument("--build-dir", type=Path, default=BUILD_DIR, help="peers go to BUILD_DIR/peers/<tool>/")
    p.add_argument("--install-only", action="store_true", help="install the peer and stop")
    p.add_argument("--print-nginx", action="store_true", help="print NGINX_LOCATIONS and stop")
    return p.parse_args(argv)


def main(argv=None) -> int:
    a = parse_args(argv)
    prog = "burstbench peers"
    if a.print_nginx:
        print(NGINX_LOCATIONS, end="")
        return 0
    try:
        peer = get_peer(a.peer)
        if a.install_only:
            print(peer.ensure_installed(a.build_dir))
            return 0
        if not a.url:
            raise ValueError("--url is required (the server's base URL)")
        timeout_s = a.timeout if a.timeout is not None else 3 * a.requests / a.rate + 60
        out_dir = a.out_dir
        if out_dir is None:
            from burstbench.locustfiles.recording import make_run_dir
            out_dir = make_run_dir(Path("results"), f"peer-{peer.name}")
        result = run_peer(a.peer, a.url, a.rate, a.requests, a.arrival, a.seed, out_dir, timeout_s,
                          build_dir=a.build_dir, concurrency=a.concurrency)
    except (ValueError, PeerInstallError) as err:
        print(f"{prog}: {err}", file=sys.stderr)
        return 2
    (Path(out_dir) / "peer.json").write_text(json.dumps(result.to_json(), indent=2) + "\n")
    print(json.dumps(result.to_json(), indent=2))
    return 0 if result.exit_code == 0 and not result.timed_out else 1


if __name__ == "__main__":
    sys.exit(main())
