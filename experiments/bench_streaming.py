"""``burstbench bench-streaming``: burstbench's TTFT and inter-token latency beside a peer's, on one real server.

A cross-check, not a test. The untrained tiny GPT-2 (``service.llm_builder``) is served on CPU by Hugging
Face's ``transformers serve`` (a real OpenAI-compatible streaming server) on loopback, warmed up, and then
loaded in turn by NVIDIA AIPerf (its own venv under build/peers/aiperf, ``experiments.peers``) and by
``burstbench run --preset openai-chat``, at the same Poisson rate, request count, prompt length and
``max_tokens``. Both tools count tokens the same way: from the server's ``usage`` (AIPerf with
``--use-server-token-count``), and AIPerf's ``--tokenizer`` is the served model's own folder, so its
synthetic prompts are ``--input-tokens`` tokens of the model's tokenizer, as burstbench's ``--input-tokens``
with ``--tokenizer`` are.

    burstbench bench-streaming                                 # 4 req/s, 200 requests, 32 tokens in and out
    burstbench bench-streaming --rate 2 --requests 100 --order burstbench,aiperf

The table compares like with like, both tools' per-request data through the same percentile code:

- TTFT: the first chunk with non-empty content minus the request's start (see ``TTFT_FROM``);
- ITL (every gap): every gap between successive content chunks (AIPerf's ``inter_chunk_latency``,
  burstbench's itl.csv);
- TPOT: each request's (last content chunk - first) / (output tokens - 1). AIPerf labels *this* "Inter
  Token Latency" (``inter_token_latency``): its ITL percentiles are over per-request means, not gaps;
- end-to-end latency, requests ok, output and input tokens per request (server usage).

A difference beyond 1 ms or 5 % is explained only where a measurement here says why: the server answers
one request at a time, so TTFT carries queueing behind the tool's own earlier requests, which depends
on each tool's own draw of Poisson gaps (the two never send the same gaps). The table therefore also
compares the requests sent while none of the tool's own requests was in flight ("idle sends") and the
streams during which no other request was sent ("quiet streams"). Where those agree within tolerance
and the whole-run figures do not, the difference is queueing or overlap; otherwise it stays unexplained.

Reading both exports is ``streaming_measures``; the table and the reasons are ``streaming_compare``; this
module starts and stops the server and the tools. Writes ``results/<UTC>-bench-streaming/``: comparison.csv, comparison.md (table, explanations, where each
tool measures from, both command lines), ecdf.png (TTFT and ITL, both tools), bench.json, the server's
log, AIPerf's artifact folder under aiperf/ and burstbench's run folder under burstbench/.
"""
from __future__ import annotations

import argparse
import http.client
import json
import math
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable
from urllib.parse import urlsplit

import numpy as np

from burstbench import harness
from burstbench.experiments.peer_base import BUILD_DIR, PeerInstallError
from burstbench.experiments.streaming_compare import (ITL_DEFINITION, TOL_MS, TOL_REL, TOOLS, TTFT_FROM, _fmt,
                                                      compare, explain, markdown_table, percentile, plot_ecdf,
                                                      table_records, write_report)
from burstbench.experiments.streaming_measures import ToolMeasures, read_aiperf, read_burstbench

READY_DEADLINE_S = 180
WARMUP_REQUESTS = 3
WARMUP_TIMEOUT_S = 60
STOP_GRACE_S = 15
HEARTBEAT_S = 10.0


def say(text: str) -> None:
    print(f"[bench-streaming] {text}", file=sys.stderr, flush=True)


# -- running -----------------------------------------------------------------------------------------
def transformers_exe() -> str:
    exe = Path(sys.executable).parent / "transformers"
    found = str(exe) if exe.is_file() else shutil.which("transformers")
    if not found:
        raise ValueError("the `transformers` command is missing: install the test extra "
                         "(pip install -e '.[cpu,test]', which brings transformers[serving])")
    return found


def serve_command(model_dir: Path, port: int) -> list[str]:
    # transformers serve pins the model name to the path exactly as given: requests must carry the same string.
    return [transformers_exe(), "serve", str(model_dir), "--host", "127.0.0.1", "--port", str(port), "--device", "cpu"]


def aiperf_command(aiperf: Path, url: str, model: str, tokenizer: str, rate: float, requests: int,
                   input_tokens: int, output_tokens: int, seed: int, artifacts: Path, timeout_s: float) -> list[str]:
    """AIPerf at a Poisson rate, streaming chat, fixed prompt and output lengths, token counts from usage."""
    return [str(aiperf), "profile", "--model", model, "--tokenizer", tokenizer, "--url", url,
            "--endpoint-type", "chat", "--streaming",
            "--request-rate", repr(float(rate)), "--arrival-pattern", "poisson", "--request-count", str(requests),
            "--random-seed", str(seed),
            "--isl", str(input_tokens), "--isl-stddev", "0", "--osl", str(output_tokens), "--osl-stddev", "0",
            "--use-legacy-max-tokens",    # max_tokens, as burstbench sends, not max_completion_tokens
            "--use-server-token-count",   # OSL and ISL from usage, as burstbench's rows
            "--request-timeout-seconds", f"{max(1.0, timeout_s):g}",
            "--no-server-metrics", "--no-gpu-telemetry", "--ui", "none", "--artifact-dir", str(artifacts)]


def burstbench_command(url: str, model: str, rate: float, requests: int, input_tokens: int, output_tokens: int,
                       seed: int, users: int, results_dir: Path, request_timeout_s: float) -> list[str]:
    """``burstbench run`` at the same Poisson rate: openai-chat streaming, synthetic prompts of exact length."""
    exe = Path(sys.executable).parent / "burstbench"
    prog = [str(exe)] if exe.is_file() else [sys.executable, "-m", "burstbench"]
    return [*prog, "run", "--host", url, "--preset", "openai-chat", "--model-name", model,
            "--arrival", "exponential", "--rate", repr(float(rate)), "--requests", str(requests),
            "--seed", str(seed), "--users", str(users), "--results-dir", str(results_dir),
            "--run-name", "bench-streaming", "--request-timeout", f"{request_timeout_s:g}",
            "--max-tokens", str(output_tokens), "--stream", "on",
            "--input-tokens", str(input_tokens), "--tokenizer", model]


def _run_bounded(name: str, cmd: list[str], log: Path, env: dict, cwd: Path, timeout_s: float,
                 progress: Callable[[], str] | None = None) -> tuple[int | None, bool, float, float]:
    """Run ``cmd`` in its own process group, heartbeat lines while it runs; SIGINT at the deadline, then kill.

    Returns (exit code, timed out, wall seconds, CPU seconds of its reaped process tree).
    """
    cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    timed_out = False
    with harness.Process(cmd, log=log, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stop_timeout_s=STOP_GRACE_S) as p:
        while True:
            try:
                p.wait(HEARTBEAT_S)
                break
            except subprocess.TimeoutExpired:
                elapsed = time.monotonic() - started
                if elapsed > timeout_s:
                    timed_out = True
                    say(f"{name}: past its {timeout_s:.0f} s limit; interrupting")
                    p.signal(signal.SIGINT)
                    try:
                        p.wait(STOP_GRACE_S)
                    except subprocess.TimeoutExpired:
                        pass
                    break
                say(f"{name}: {elapsed:.0f} s{(': ' + progress()) if progress else ''}")
    cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    return p.returncode, timed_out, time.monotonic() - started, cpu


def cpu_snapshot(server_pid: int | None) -> tuple[float, float]:
    """(CPU seconds the whole machine has been busy, CPU seconds of the server process): for who-used-what."""
    import psutil

    t = psutil.cpu_times()
    busy = t.user + t.nice + t.system + sum(getattr(t, k, 0.0) for k in ("irq", "softirq", "steal"))
    try:
        own = psutil.Process(server_pid).cpu_times() if server_pid else None
    except psutil.Error:
        own = None
    return busy, (own.user + own.system) if own else math.nan


def _last_line(path: Path, needle: str = "") -> str:
    try:
        lines = [ln.strip() for ln in path.read_text(errors="replace").splitlines() if ln.strip() and needle in ln]
    except OSError:
        return ""
    return lines[-1][-160:] if lines else ""


def warm_up(url: str, model: str, n: int = WARMUP_REQUESTS, max_tokens: int = 8) -> None:
    """A few streamed requests read to the end, so neither tool pays the model's first call."""
    parts = urlsplit(url)
    body = json.dumps({"model": model, "messages": [{"role": "user", "content": "warm up"}], "stream": True,
                       "max_tokens": max_tokens})
    for _ in range(n):
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=WARMUP_TIMEOUT_S)
        try:
            conn.request("POST", "/v1/chat/completions", body, {"Content-Type": "application/json"})
            resp = conn.getresponse()
            data = resp.read()
            if resp.status != 200:
                raise RuntimeError(f"warm-up request answered {resp.status}: {data[:200]!r}")
        finally:
            conn.close()


@dataclass
class Plan:
    rate: float
    requests: int
    input_tokens: int
    output_tokens: int
    seed: int
    users: int
    order: tuple[str, ...]
    out_dir: Path
    build_dir: Path
    model_dir: Path

    @property
    def timeout_s(self) -> float:
        return 3 * self.requests / self.rate + 180


def run_aiperf(plan: Plan, url: str, model: str) -> tuple[list[str], dict]:
    from burstbench.experiments.peers import get_peer

    peer = get_peer("aiperf")
    peer.ensure_installed(plan.build_dir)
    out = plan.out_dir / "aiperf"
    out.mkdir(parents=True, exist_ok=True)
    artifacts = out / "artifacts"
    cmd = aiperf_command(peer.bin(plan.build_dir, "aiperf"), url, model, model, plan.rate, plan.requests,
                         plan.input_tokens, plan.output_tokens, plan.seed, artifacts, 60.0)
    (out / "command.json").write_text(json.dumps({"command": cmd}, indent=2) + "\n")
    tmp = Path(tempfile.mkdtemp(prefix="burstbench-aiperf-"))
    # A local tokenizer path fails under HF_HUB_OFFLINE=1 (AIPerf looks it up in the hub cache): leave it unset;
    # a local folder never reaches the hub.
    env = {k: v for k, v in peer.env(plan.build_dir).items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    env["TMPDIR"] = str(tmp)
    own_log = artifacts / "logs" / "aiperf.log"
    try:
        rc, timed_out, wall, cpu = _run_bounded("aiperf", cmd, out / "aiperf.log", env, out, plan.timeout_s,
                                                lambda: _last_line(own_log, "Phase profiling") or "starting")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return cmd, {"exit_code": rc, "timed_out": timed_out, "wall_s": round(wall, 1), "cpu_s": round(cpu, 1),
                 "version": peer.version, "artifacts": str(artifacts)}


def run_burstbench(plan: Plan, url: str, model: str) -> tuple[list[str], dict]:
    results = plan.out_dir / "burstbench"
    results.mkdir(parents=True, exist_ok=True)
    cmd = burstbench_command(url, model, plan.rate, plan.requests, plan.input_tokens, plan.output_tokens,
                             plan.seed, plan.users, results, 60.0)
    log = plan.out_dir / "burstbench.log"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    rc, timed_out, wall, cpu = _run_bounded("burstbench", cmd, log, env, Path.cwd(), plan.timeout_s,
                                            lambda: _last_line(log) or "starting")
    runs = sorted(p.parent for p in results.glob("*/requests.csv"))
    return cmd, {"exit_code": rc, "timed_out": timed_out, "wall_s": round(wall, 1), "cpu_s": round(cpu, 1),
                 "run_dir": str(runs[-1]) if runs else None}


def checks_against_own_summary(a: ToolMeasures, artifacts: Path) -> list[str]:
    """AIPerf's own p50s beside those computed here from its records (the same data, two percentile codes)."""
    try:
        summary = json.loads((Path(artifacts) / "profile_export_aiperf.json").read_text())
    except (OSError, ValueError):
        return ["AIPerf's summary (profile_export_aiperf.json) could not be read"]
    out = []
    for tag, values, label in (("time_to_first_token", a.ttft_ms, "TTFT"), ("inter_token_latency", a.tpot_ms, "ITL/TPOT"),
                               ("inter_chunk_latency", a.itl_ms, "inter_chunk_latency")):
        own = (summary.get(tag) or {}).get("p50")
        here = percentile(values, 0.5)
        out.append(f"AIPerf's own {label} p50 {_fmt(own)} ms; from its records here {_fmt(here)} ms")
    return out


def run_bench(plan: Plan) -> int:
    from burstbench.locustfiles.run_info import git_commit, machine, package_versions
    from burstbench.service.llm_builder import build_tiny_llm

    say(f"writing to {plan.out_dir}")
    say(f"building (or reusing) the untrained tiny LLM in {plan.model_dir}")
    model_dir = build_tiny_llm(plan.model_dir).resolve()
    model = str(model_dir)
    port = harness.free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    server_cmd = serve_command(model_dir, port)
    commands, runs, measures = {"server": server_cmd}, {}, {}
    say(f"starting transformers serve on {url}")
    with harness.Process(server_cmd, log=plan.out_dir / "transformers-serve.log", env=env, cwd=plan.out_dir,
                         stdin=subprocess.DEVNULL, stop_timeout_s=20) as server:
        ready_s = server.wait_ready(f"{url}/health", READY_DEADLINE_S, every_s=0.25)
        say(f"server ready in {ready_s:.1f} s; warming up with {WARMUP_REQUESTS} requests")
        warm_up(url, model)
        for tool in plan.order:
            say(f"{tool}: {plan.requests} requests at {plan.rate:g}/s (Poisson), {plan.input_tokens} tokens in, "
                f"{plan.output_tokens} out")
            busy0, server0 = cpu_snapshot(server.pid)
            cmd, info = (run_aiperf if tool == "aiperf" else run_burstbench)(plan, url, model)
            busy1, server1 = cpu_snapshot(server.pid)
            info["server_cpu_s"] = round(server1 - server0, 1)
            info["other_cpu_s"] = round((busy1 - busy0) - (server1 - server0) - info["cpu_s"], 1)
            commands[tool], runs[tool] = cmd, info
            say(f"{tool}: exit {info['exit_code']}{' (timed out)' if info['timed_out'] else ''} after "
                f"{info['wall_s']:.0f} s; CPU s: {tool} {info['cpu_s']:.0f}, server {info['server_cpu_s']:.0f}, "
                f"other processes {info['other_cpu_s']:.0f}")
    a = measures["aiperf"] = read_aiperf(Path(runs["aiperf"]["artifacts"]))
    if not runs["burstbench"]["run_dir"]:
        raise RuntimeError(f"burstbench wrote no run folder; see {plan.out_dir / 'burstbench.log'}")
    b = measures["burstbench"] = read_burstbench(Path(runs["burstbench"]["run_dir"]))
    for m, log in ((a, plan.out_dir / "aiperf" / "aiperf.log"), (b, plan.out_dir / "burstbench.log")):
        if m.ok == 0:
            raise RuntimeError(f"{m.tool} recorded no successful request ({m.sent} sent, failures {m.failures}); "
                               f"see {log}: {_last_line(log)}")
    rows = compare(a, b)
    background = {t: r["other_cpu_s"] / max(r["wall_s"], 1e-9) for t, r in runs.items()}
    tokens = {t: float(np.nansum(m.output_tokens)) for t, m in (("aiperf", a), ("burstbench", b))}
    per_token = {t: 1000.0 * runs[t]["server_cpu_s"] / tokens[t] if tokens[t] else None for t in TOOLS}
    explanations = explain(rows, a, b, background=background, server_ms_per_token=per_token)
    checks = checks_against_own_summary(a, Path(runs["aiperf"]["artifacts"]))
    cores = os.cpu_count()
    for t in TOOLS:
        r = runs[t]
        checks.append(f"CPU during {t}'s run ({r['wall_s']:.0f} s, {cores} cores): {t} {r['cpu_s']} s, server "
                      f"{r['server_cpu_s']} s, every other process on the machine {r['other_cpu_s']} s")
    write_report(plan.out_dir, rows, explanations, commands, checks)
    figure = plot_ecdf(plan.out_dir / "ecdf.png", a, b)
    bench = {"parameters": {k: (str(v) if isinstance(v, Path) else v) for k, v in plan.__dict__.items()},
             "model": model, "url": url, "commands": commands, "runs": runs, "figure": str(figure) if figure else None,
             "tolerance": {"ms": TOL_MS, "relative": TOL_REL}, "rows": table_records(rows),
             "explanations": explanations, "checks": checks, "ttft_from": TTFT_FROM, "itl_definition": ITL_DEFINITION,
             "git_commit": git_commit(), "machine": machine(),
             "versions": package_versions(("transformers", "torch", "locust", "numpy"))}
    (plan.out_dir / "bench.json").write_text(json.dumps(bench, indent=2, default=str) + "\n")
    print(markdown_table(rows))
    print("\nDifferences beyond 1 ms or 5 %:")
    print("\n".join(f"- {line}" for line in explanations) or "- none")
    print("\nChecks:")
    print("\n".join(f"- {c}" for c in checks))
    print("\nWhere each tool measures TTFT:")
    print("\n".join(f"- {tool}: {TTFT_FROM[tool]}" for tool in TOOLS))
    print(f"\nAIPerf's command:\n  {' '.join(commands['aiperf'])}")
    print(f"burstbench's command:\n  {' '.join(commands['burstbench'])}")
    print(f"\nwritten: {plan.out_dir}/comparison.md, comparison.csv, bench.json" + (", ecdf.png" if figure else ""))
    ok = all(r["exit_code"] == 0 and not r["timed_out"] for r in runs.values())
    return 0 if ok else 1


# -- command line --------------------------------------------------------------------------------
def _positive(flag: str, kind=float, low: float = 0.0):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{flag} must be a number > {low:g} (got {text!r})") from None
        if not (math.isfinite(value) and value > low):
            raise argparse.ArgumentTypeError(f"{flag} must be a number > {low:g} (got {text!r})")
        return value
    return parse


def parse_order(text: str) -> tuple[str, ...]:
    order = tuple(t.strip() for t in text.split(",") if t.strip())
    if sorted(order) != sorted(TOOLS):
        raise ValueError(f"--order must name {' and '.join(TOOLS)} once each, comma-separated (got {text!r})")
    return order


def parse_args(argv):
    p = argparse.ArgumentParser(prog="burstbench bench-streaming", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rate", type=_positive("--rate"), default=4.0, help="Poisson rate in requests/s (default 4)")
    p.add_argument("--requests", type=_positive("--requests", int), default=200, help="requests per tool (default 200)")
    p.add_argument("--input-tokens", type=_positive("--input-tokens", int), default=32,
                   help="prompt length in the model's tokens, both tools (default 32)")
    p.add_argument("--output-tokens", type=_positive("--output-tokens", int), default=32,
                   help="max_tokens, both tools; the model never stops early (default 32)")
    p.add_argument("--seed", type=int, default=0, help="each tool's seed (they draw different gaps from it)")
    p.add_argument("--users", type=_positive("--users", int), default=64,
                   help="burstbench's Locust users: a cap on its requests in flight (AIPerf has none; default 64)")
    p.add_argument("--order", default="aiperf,burstbench", help="which tool runs first (default aiperf,burstbench)")
    p.add_argument("--results-dir", type=Path, default=Path("results"))
    p.add_argument("--build-dir", type=Path, default=BUILD_DIR, help="AIPerf's venv is BUILD_DIR/peers/aiperf")
    p.add_argument("--model-dir", type=Path, default=None,
                   help="the tiny LLM's folder (default build/models/untrained-gpt2-tiny, built when missing)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    a = parse_args(argv)
    from burstbench.locustfiles.recording import make_run_dir
    from burstbench.service.llm_builder import DEFAULT_LLM_DIR

    if a.seed < 0:
        raise ValueError(f"--seed must be an integer >= 0 (got {a.seed})")
    order = parse_order(a.order)
    out_dir = make_run_dir(a.results_dir, "bench-streaming")
    plan = Plan(rate=a.rate, requests=a.requests, input_tokens=a.input_tokens, output_tokens=a.output_tokens,
                seed=a.seed, users=a.users, order=order, out_dir=out_dir.resolve(), build_dir=a.build_dir.resolve(),
                model_dir=a.model_dir or DEFAULT_LLM_DIR)
    try:
        return run_bench(plan)
    except (PeerInstallError, harness.NotReady, RuntimeError, FileNotFoundError) as err:
        print(f"burstbench bench-streaming: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
