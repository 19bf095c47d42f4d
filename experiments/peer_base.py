"""A peer load tool in its own virtual environment: the pinned install, its command, its result (see ``peers``)."""
from __future__ import annotations

import json
import math
import numbers
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from burstbench import harness

BUILD_DIR = Path("build")  # the working directory's build/
PIP_TIMEOUT_S = 1800
HEARTBEAT_S = 15.0


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


# -- helpers ----------------------------------------------------------------------------
def _pip_install(python: Path, requirements: list[str], log_path: Path) -> int:
    """pip install into the peer's venv, output to the log; a heartbeat line while it runs."""
    cmd = [str(python), "-m", "pip", "install", "--disable-pip-version-check", "--progress-bar", "off",
           "--retries", "2", *requirements]
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PIP_REQUIRE_VIRTUALENV")}
    with log_path.open("a") as log:
        proc = harness.Process(cmd, log=log, env=env, stdin=subprocess.DEVNULL, stop_signal=signal.SIGKILL,
                               stop_timeout_s=10)
        with proc:  # SIGKILL to its whole group on every way out
            deadline = time.monotonic() + PIP_TIMEOUT_S
            while True:
                try:
                    return proc.wait(HEARTBEAT_S)
                except subprocess.TimeoutExpired:
                    if time.monotonic() > deadline:
                        proc.stop()
                        log.write(f"\nERROR: pip did not finish within {PIP_TIMEOUT_S} s (killed)\n")
                        return -signal.SIGKILL
                    text = log_path.read_text(errors="replace")
                    say(f"  ... {text.count('Collecting ')} packages collected, "
                        f"{'installing' if 'Installing collected packages' in text else 'downloading'}")


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
