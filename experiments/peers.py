"""Open-loop peer load tools, each in its own virtual environment, for side-by-side benchmarks.

A peer is a tool a user would pick instead of burstbench to send an open-loop arrival process.
Each is pinned, installed from PyPI into ``build/peers/<tool>/venv`` (never into the project's
own environment) and run as a subprocess in its own process group against a URL:

    burstbench peers --peer aiperf --url http://127.0.0.1:8080 --rate 200 --requests 400

The fixed-body nginx of ``locustfiles/bench_generator.py`` answers a peer when its ``server {}``
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
import math
import numbers
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

BUILD_DIR = Path("build")  # the working directory's build/
ARRIVALS = ("exponential", "gamma")        # burstbench's processes, named as in arrivals/
PIP_TIMEOUT_S = 1800
HEARTBEAT_S = 15.0
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


class PeerInstallError(RuntimeError):
    """A peer could not be installed; the message is one line and names the install log."""


def say(text: str) -> None:
    print(f"[peers] {text}", file=sys.stderr, flush=True)


# -- arrivals ---------------------------------------------------------------------------
def parse_arrival(arrival) -> tuple[str, float | None]:
    """``"exponential"`` or ``("gamma", shape)`` (also ``"gamma:0.5"``) as ``(process, shape)``."""
    if isinstance(arrival, str) and arrival.startswith("gamma:"):
        try:
            arrival = ("gamma", float(arrival.partition(":")[2]))
        except ValueError:
            raise ValueError(f"arrival must be exponential or gamma:<shape > 0> (got {arrival!r})") from None
    if arrival == "exponential":
        return ("exponential", None)
    if isinstance(arrival, tuple) and len(arrival) == 2 and arrival[0] == "gamma":
        shape = arrival[1]
        if isinstance(shape, numbers.Real) and not isinstance(shape, bool) and math.isfinite(shape) and shape > 0:
            return ("gamma", float(shape))
        raise ValueError(f"the gamma shape must be a number > 0 (got {shape!r})")
    raise ValueError(f"arrival must be 'exponential' or ('gamma', shape > 0) (got {arrival!r})")


def arrival_label(process: str, shape: float | None) -> str:
    return process if shape is None else f"{process}:{shape:g}"


# -- result -----------------------------------------------------------------------------
@dataclass(frozen=True)
class PeerResult:
    tool: str
    version: str
    arrival: str                    # what was asked: "exponential" or "gamma:0.5"
    rate_per_s: float
    requests: int
    command: list[str]              # exactly what ran
    exit_code: int | None           # negative: killed by that signal
    timed_out: bool
    wall_s: float
    log_path: Path                  # the tool's stdout and stderr
    artifacts_dir: Path             # the tool's own output folder
    sent: int | None                # as the tool itself reports them; None where it said nothing
    completed: int | None           # answered successfully
    errors: int | None
    arrivals: tuple[str, ...]       # the processes this tool supports, in burstbench's names

    def to_json(self) -> dict:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self).items()}


# -- peers ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Peer:
    """One pinned tool in its own venv. Subclasses say how to call it and how to read its counts."""

    name: str
    package: str
    version: str
    arrivals: tuple[str, ...]
    python_range: tuple[tuple[int, int], tuple[int, int]]   # [min, max) of the interpreter

    # paths
    def root(self, build_dir: Path) -> Path:
        return Path(build_dir) / "peers" / self.name

    def venv_dir(self, build_dir: Path) -> Path:
        return self.root(build_dir) / "venv"

    def bin(self, build_dir: Path, program: str) -> Path:
        return self.venv_dir(build_dir) / "bin" / program

    def marker(self, build_dir: Path) -> Path:
        return self.root(build_dir) / ".installed.json"

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"

    # install
    def is_installed(self, build_dir: Path) -> bool:
        try:
            info = json.loads(self.marker(build_dir).read_text())
        except (OSError, ValueError):
            return False
        return info.get("requirement") == self.requirement and self.bin(build_dir, "python").exists()

    def ensure_installed(self, build_dir: Path = BUILD_DIR) -> Path:
        """Create ``<build_dir>/peers/<tool>/venv`` with the pinned release; returns the venv folder.

        Idempotent: a marker file written after a complete install makes later calls return at once.
        Raises ``PeerInstallError`` (one line, naming the log) when the install fails, e.g. offline.
        """
        venv = self.venv_dir(build_dir)
        if self.is_installed(build_dir):
            return venv
        lo, hi = self.python_range
        if not lo <= sys.version_info[:2] < hi:
            raise PeerInstallError(
                f"{self.requirement} needs Python >= {lo[0]}.{lo[1]} and < {hi[0]}.{hi[1]}; "
                f"this is {sys.version.split()[0]} ({sys.executable})")
        root = self.root(build_dir)
        root.mkdir(parents=True, exist_ok=True)
        log_path = root / "install.log"
        started = time.monotonic()
        if venv.exists():
            say(f"{self.name}: removing an incomplete install at {venv}")
            shutil.rmtree(venv)
        say(f"{self.name}: creating {venv}")
        with log_path.open("w") as log:
            made = subprocess.run([sys.executable, "-m", "venv", str(venv)], stdout=log, stderr=subprocess.STDOUT,
                                  timeout=300)
        if made.returncode != 0:
            raise PeerInstallError(f"{self.name}: python -m venv failed (exit {made.returncode}): "
                                   f"{_last_error(log_path)}; log {log_path}")
        say(f"{self.name}: pip install {self.requirement} (a few minutes; log {log_path})")
        code = _pip_install(self.bin(build_dir, "python"), [self.requirement], log_path)
        if code != 0:
            raise PeerInstallError(f"{self.name}: pip install {self.requirement} failed (exit {code}): "
                                   f"{_last_error(log_path)}; log {log_path}")
        self.post_install(build_dir, log_path)
        size_mib = _size_mib(venv)
        info = {"requirement": self.requirement, "python": sys.version.split()[0],
                "install_s": round(time.monotonic() - started, 1), "venv_mib": round(size_mib),
                "installed_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        self.marker(build_dir).write_text(json.dumps(info, indent=2) + "\n")
        say(f"{self.name}: installed {self.requirement} in {info['install_s']:.0f} s ({size_mib:.0f} MiB)")
        return venv

    def post_install(self, build_dir: Path, log_path: Path) -> None:
        """Anything the tool needs besides its package (run in the new venv)."""

    # run
    def check(self, rate_per_s: float, requests: int, arrival, seed: int, timeout_s: float) -> tuple[str, float | None]:
        """Validate before anything is installed or started; returns the parsed arrival."""
        process, shape = parse_arrival(arrival)
        if process not in self.arrivals:
            raise ValueError(f"{self.name} {self.version} has no {process} arrivals "
                             f"(it supports {', '.join(self.arrivals)})")
        if not (isinstance(rate_per_s, numbers.Real) and math.isfinite(rate_per_s) and rate_per_s > 0):
            raise ValueError(f"rate_per_s must be a number > 0 (got {rate_per_s!r})")
        if not (isinstance(requests, numbers.Integral) and requests >= 1):
            raise ValueError(f"requests must be an integer >= 1 (got {requests!r})")
        if not (isinstance(seed, numbers.Integral) and 0 <= seed < 2**63):
            raise ValueError(f"seed must be an integer in [0, 2**63) (got {seed!r})")
        if not (isinstance(timeout_s, numbers.Real) and timeout_s > 0):
            raise ValueError(f"timeout_s must be a number > 0 (got {timeout_s!r})")
        return process, shape

    def command(self, build_dir: Path, url: str, rate_per_s: float, requests: int, process: str,
                shape: float | None, seed: int, out_dir: Path, timeout_s: float,
                concurrency: int | None) -> list[str]:
        raise NotImplementedError

    def env(self, build_dir: Path) -> dict:
        """The project's environment, less its venv, with the peer's venv first on PATH."""
        env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")}
        env["PATH"] = f"{self.venv_dir(build_dir) / 'bin'}{os.pathsep}{env.get('PATH', '')}"
        env["VIRTUAL_ENV"] = str(self.venv_dir(build_dir))
        return env

    def log_name(self) -> str:
        return f"{self.name}.log"

    def artifacts(self, out_dir: Path) -> Path:
        return Path(out_dir) / "artifacts"

    def counts(self, out_dir: Path, log_path: Path) -> tuple[int | None, int | None, int | None]:
        """(sent, completed, errors) as the tool reports them."""
        raise NotImplementedError


@dataclass(frozen=True)
class AIPerf(Peer):
    """NVIDIA AIPerf: asyncio workers fed by a timing manager over ZMQ; OpenAI chat requests."""

    model_name: str = "burstbench-fixed"
    prompt_tokens: int = 8

    def tokenizer_dir(self, build_dir: Path) -> Path:
        return self.root(build_dir) / "tokenizer"

    def post_install(self, build_dir: Path, log_path: Path) -> None:
        out = self.tokenizer_dir(build_dir)
        say(f"{self.name}: writing a local tokenizer to {out} (no hub access needed)")
        with log_path.open("a") as log:
            made = subprocess.run([str(self.bin(build_dir, "python")), "-c", _TOKENIZER_SCRIPT, str(out)],
                                  stdout=log, stderr=subprocess.STDOUT, timeout=300, env=self.env(build_dir))
        if made.returncode != 0:
            raise PeerInstallError(f"{self.name}: building its local tokenizer failed (exit {made.returncode}): "
                                   f"{_last_error(log_path)}; log {log_path}")

    def command(self, build_dir, url, rate_per_s, requests, process, shape, seed, out_dir, timeout_s,
                concurrency=None) -> list[str]:
        cmd = [str(self.bin(build_dir, "aiperf")), "profile",
               "--model", self.model_name, "--tokenizer", str(self.tokenizer_dir(build_dir)),
               "--url", url, "--endpoint-type", "chat",
               "--request-rate", repr(float(rate_per_s)), "--request-count", str(requests),
               "--random-seed", str(seed)]
        if process == "exponential":
            cmd += ["--arrival-pattern", "poisson"]
        else:
            cmd += ["--arrival-pattern", "gamma", "--arrival-smoothness", repr(float(shape))]
        if concurrency is not None:
            cmd += ["--concurrency", str(concurrency)]
        cmd += ["--isl", str(self.prompt_tokens), "--use-server-token-count",
                "--request-timeout-seconds", f"{max(1.0, timeout_s):g}",
                "--no-server-metrics", "--no-gpu-telemetry", "--ui", "none",
                "--artifact-dir", str(self.artifacts(out_dir))]
        return cmd

    def counts(self, out_dir: Path, log_path: Path):
        artifacts = self.artifacts(out_dir)
        sent = None
        own_log = artifacts / "logs" / "aiperf.log"
        for path in (own_log, log_path):
            try:
                text = path.read_text(errors="replace")
            except OSError:
                continue
            found = re.findall(r"Phase profiling \(profiling\) sending complete \| sent=([\d,]+)", text)
            if found:  # "sent=1,000": thousands separators
                sent = int(found[-1].replace(",", ""))
                break
        completed = errors = None
        try:
            summary = json.loads((artifacts / "profile_export_aiperf.json").read_text())
        except (OSError, ValueError):
            return sent, completed, errors
        if isinstance(summary.get("request_count"), dict):
            completed = int(summary["request_count"]["avg"])
        errors = int(sum(e.get("count", 0) for e in summary.get("error_summary") or []))
        return sent, completed, errors


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
    with log_path.open("w") as log:
        proc = subprocess.Popen(cmd, cwd=out_dir, env=env, stdin=subprocess.DEVNULL,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            timed_out = True
            _signal_group(proc.pid, signal.SIGINT)
            try:
                proc.wait(timeout=STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                pass
        finally:  # also on Ctrl-C or any error here: nothing of the tool outlives the call
            _signal_group(proc.pid, signal.SIGKILL)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
            shutil.rmtree(tmp, ignore_errors=True)
    wall_s = time.monotonic() - started
    sent, completed, errors = peer.counts(out_dir, log_path)
    return PeerResult(tool=peer.name, version=peer.version, arrival=arrival_label(process, shape),
                      rate_per_s=float(rate_per_s), requests=requests, command=cmd, exit_code=proc.returncode,
                      timed_out=timed_out, wall_s=round(wall_s, 2), log_path=log_path,
                      artifacts_dir=peer.artifacts(out_dir), sent=sent, completed=completed, errors=errors,
                      arrivals=peer.arrivals)


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


# -- helpers ----------------------------------------------------------------------------
def _pip_install(python: Path, requirements: list[str], log_path: Path) -> int:
    """pip install into the peer's venv, output to the log; a heartbeat line while it runs."""
    cmd = [str(python), "-m", "pip", "install", "--disable-pip-version-check", "--progress-bar", "off",
           "--retries", "2", *requirements]
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PIP_REQUIRE_VIRTUALENV")}
    with log_path.open("a") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                start_new_session=True)
        deadline = time.monotonic() + PIP_TIMEOUT_S
        try:
            while True:
                try:
                    return proc.wait(timeout=HEARTBEAT_S)
                except subprocess.TimeoutExpired:
                    if time.monotonic() > deadline:
                        _signal_group(proc.pid, signal.SIGKILL)
                        proc.wait(timeout=10)
                        log.write(f"\nERROR: pip did not finish within {PIP_TIMEOUT_S} s (killed)\n")
                        return -signal.SIGKILL
                    text = log_path.read_text(errors="replace")
                    say(f"  ... {text.count('Collecting ')} packages collected, "
                        f"{'installing' if 'Installing collected packages' in text else 'downloading'}")
        finally:
            if proc.poll() is None:
                _signal_group(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)


def _last_error(log_path: Path) -> str:
    try:
        lines = [line.strip() for line in log_path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return "(no log)"
    errors = [line for line in lines if line.startswith("ERROR") or "Error" in line]
    return (errors or lines or ["(empty log)"])[-1][:300]


def _size_mib(path: Path) -> float:
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(dirpath, f)).st_size
            except OSError:
                pass
    return total / 2**20


# A byte-level BPE with a few hundred tokens, trained on a fixed text: AIPerf only needs it to
# cut its synthetic prompts to length (and, without --use-server-token-count, to count tokens).
_TOKENIZER_SCRIPT = r"""
import json, sys
from pathlib import Path
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
out = Path(sys.argv[1]); out.mkdir(parents=True, exist_ok=True)
words = ("shall i compare thee to a summer day thou art more lovely and more temperate rough winds "
         "do shake the darling buds of may and summer lease hath all too short a date").split()
text = [" ".join(words[i:] + words[:i]) for i in range(len(words))]
tok = Tokenizer(models.BPE())
tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
tok.decoder = decoders.ByteLevel()
tok.train_from_iterator(text, trainers.BpeTrainer(vocab_size=512, special_tokens=["<|endoftext|>"],
                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False))
tok.save(str(out / "tokenizer.json"))
(out / "tokenizer_config.json").write_text(json.dumps({
    "tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>",
    "model_max_length": 1000000}, indent=1) + "\n")
from transformers import AutoTokenizer
check = AutoTokenizer.from_pretrained(str(out))
assert check.decode(check.encode("shall I compare thee?")) == "shall I compare thee?"
print(f"tokenizer: {tok.get_vocab_size()} tokens in {out}")
"""


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
