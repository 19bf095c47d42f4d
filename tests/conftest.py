"""Shared fixtures: a tiny real model and real BentoML servers on loopback."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
TINY_MODEL = REPO_ROOT / "build" / "models" / "untrained-roberta-tiny"
READY_DEADLINE_S = 180


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def tiny_model() -> Path:
    """The 2-layer, hidden-128 RoBERTa and all its variants: built once, reused when identical."""
    from burstbench.service.model_builder import build_default_model
    from burstbench.service.models import export_variants

    model_dir = build_default_model(TINY_MODEL, size="tiny")
    export_variants(model_dir)
    return model_dir


class Server:
    def __init__(self, model: Path, log_path: Path, **settings: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, **{f"BURSTBENCH_{k.upper()}": str(v) for k, v in settings.items()}}
        self.log = log_path.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "burstbench.service", "serve", "--port", str(self.port), "--model", str(model)],
            cwd=REPO_ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        self.log_path = log_path
        self._wait_ready()

    def _wait_ready(self):
        deadline = time.monotonic() + READY_DEADLINE_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.log_path.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/readyz", timeout=2) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"server not ready after {READY_DEADLINE_S} s:\n{self.log_path.read_text()[-3000:]}")

    def stop(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self.log.close()


@pytest.fixture(scope="session")
def server(tiny_model, tmp_path_factory):
    """The bundled service with adaptive batching on, serving the tiny model."""
    srv = Server(tiny_model, tmp_path_factory.mktemp("server") / "service.log", max_length=32)
    yield srv
    srv.stop()


def run_locust(host: str, results_dir: Path, *flags: str, timeout: float = 180) -> subprocess.CompletedProcess:
    """Plain `locust -f locustfiles/sentiment.py --headless`, as a user would run it (with --processes, on a
    free master port: a process left on Locust's default 5557 would take the workers, who then retry for minutes)."""
    cmd = [sys.executable, "-m", "locust", "-f", str(REPO_ROOT / "locustfiles" / "sentiment.py"), "--headless",
           "--only-summary", "--host", host, "--results-dir", str(results_dir), *flags, *master_port_flags(flags)]
    return subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout)


def master_port_flags(flags) -> list[str]:
    """``--master-bind-port P --master-port P`` on a free port for a ``--processes`` run that names none."""
    if "--processes" not in flags or any(str(f).startswith("--master-") for f in flags):
        return []
    port = str(free_port())
    return ["--master-bind-port", port, "--master-port", port]


SMOKE = {"scenario": "extreme", "shape": 0.8, "mean": 0.05, "requests": 600, "seed": 11, "users": 16}


@pytest.fixture(scope="session")
def smoke_run(server, tmp_path_factory):
    """The smoke load test's run (gamma 0.8, mean gap 50 ms, about 30 s), shared by the tests that read it."""
    results = tmp_path_factory.mktemp("smoke")
    s = SMOKE
    result = run_locust(server.url, results, "--scenario", s["scenario"], "--mean", str(s["mean"]),
                        "--requests", str(s["requests"]), "--seed", str(s["seed"]),
                        "-u", str(s["users"]), "-r", str(s["users"]),
                        "--service-pid", str(server.proc.pid))  # the sidecar samples its tree, as burstbench run does
    runs = [p for p in results.iterdir() if p.is_dir()]
    return result, (runs[0] if len(runs) == 1 else None)


def wait_for_text(path: Path, text: str, proc: subprocess.Popen, timeout_s: float = 120) -> None:
    """Until ``text`` is in the log at ``path``; fails with the log when ``proc`` exits first or time runs out."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if text in path.read_text():
            return
        if proc.poll() is not None:
            raise AssertionError(f"exited before {text!r}:\n{path.read_text()[-3000:]}")
        time.sleep(0.2)
    raise AssertionError(f"no {text!r} after {timeout_s} s:\n{path.read_text()[-3000:]}")


def only_run_dir(results_dir: Path) -> Path:
    runs = [p for p in results_dir.iterdir() if p.is_dir()]
    assert len(runs) == 1, f"expected one run folder, found {runs}"
    return runs[0]


# ------------------------------------------------------------------------------------------------ test kinds
# Every test has exactly one kind, a marker registered in pyproject.toml:
#   unit         no processes, no servers, no Locust: math, parsing, in-process checks (`make test-fast`)
#   integration  a real server on loopback, or any subprocess (the CLIs run as a user runs them)
#   load         real Locust runs
# A test's kind, in this order:
#   1. an explicit @pytest.mark.unit / integration / load on the test, its class or its module (pytestmark);
#   2. otherwise the strongest of: the `server` marker (integration), the fixtures it uses (SERVER_FIXTURES:
#      integration, LOCUST_FIXTURES: load) and its entry in KIND_BY_TEST, else KIND_BY_MODULE, else unit.
# An explicit kind weaker than its fixtures, or two explicit kinds, stop the collection with the reason.
# Unit tests may not start processes (the `_unit_tests_start_no_processes` guard below): a test that does is
# integration, here or with an explicit marker.
KINDS = ("unit", "integration", "load")  # weakest first

# Fixtures (tests/conftest.py, tests/servers/fixtures.py and the test modules') that start servers or
# build models, and those that run Locust. Fixtures that depend on these are caught through the closure.
SERVER_FIXTURES = {"server", "tiny_model", "fastapi_server", "mlserver", "hard_server", "bento", "monitored",
                   "llm_server"}
LOCUST_FIXTURES = {"smoke_run", "supervised_run", "reported", "one_step"}

# Modules whose tests are, by default, not unit (most of their tests run the CLIs as subprocesses).
KIND_BY_MODULE = {
    "test_deploy.py": "integration",        # kubectl kustomize, bentoml build, a served Bento
    "test_dispatch.py": "integration",      # each dispatcher in its own interpreter
    "test_scenario_cli.py": "integration",  # `burstbench run` as a subprocess
    "test_sweep.py": "integration",         # `burstbench sweep` as a subprocess
}

# Single tests (function names, so every parametrization) in otherwise unit modules.
KIND_BY_TEST = {
    "test_analysis.py": {
        "test_summary_cli_prints_table_and_writes_csv_and_png": "integration",
        "test_bad_folders_get_one_clear_line": "integration",
    },
    "test_arrivals.py": {"test_import_arrivals_does_not_import_locust_or_gevent": "integration"},
    "test_http_locustfile.py": {"test_loading_the_http_locustfile_leaves_the_standard_library_http_alone":
                                "integration"},
    "test_models.py": {"test_benchmark_runs_end_to_end": "integration",
                       "test_a_variant_that_cannot_run_says_why_before_starting": "integration",
                       "test_benchmark_bad_arguments_name_the_flag": "integration",
                       "test_export_fails_loudly_past_the_tolerance": "integration"},
    "test_peers.py": {"test_nginx_locations_answer_an_openai_chat_completion": "integration"},
    "test_resilience.py": {"test_bad_plan_file_is_one_line_without_traceback": "integration",
                           "test_dry_run_prints_the_commands_and_runs_nothing": "integration"},
    "test_self_monitor.py": {"test_summary_prints_the_generator_verdict_first": "integration",
                             "test_analysis_imports_no_gevent_and_the_verdict_no_pandas": "integration",
                             "test_report_opens_with_the_generator_verdict": "integration",
                             "test_timeline_figure_gains_the_generator_panels": "integration",
                             "test_summary_of_a_run_that_kept_up_or_has_no_generator_csv_starts_as_before":
                             "integration",
                             "test_bad_sampling_period_is_refused": "integration"},
    "test_superposition.py": {"test_superposition_command_writes_table_and_figure": "integration"},
    "test_wire.py": {"test_wire_capture_says_why_it_cannot_capture": "integration"},
    "test_trace.py": {"test_replay_refuses_more_requests_than_timestamps": "integration"},
}


def _explicit_kinds(item) -> set[str]:
    return {m.name for m in item.iter_markers() if m.name in KINDS}


def kind_of(item) -> tuple[str | None, str | None]:
    """(kind, None), or (None, why the test has no single kind)."""
    explicit = _explicit_kinds(item)
    if len(explicit) > 1:
        return None, f"two kinds: {', '.join(sorted(explicit, key=KINDS.index))} (keep one marker)"
    fixtures = set(getattr(item, "fixturenames", ()))
    floor = "unit"
    reasons = []
    if item.get_closest_marker("server") is not None or fixtures & SERVER_FIXTURES:
        floor = "integration"
        reasons.append(f"starts a server ({', '.join(sorted(fixtures & SERVER_FIXTURES)) or 'server marker'})")
    if fixtures & LOCUST_FIXTURES:
        floor = "load"
        reasons.append(f"runs Locust ({', '.join(sorted(fixtures & LOCUST_FIXTURES))})")
    if explicit:
        (kind,) = explicit
        if KINDS.index(kind) < KINDS.index(floor):
            return None, f"marked {kind} but {'; '.join(reasons)}: it is {floor}"
        return kind, None
    module = item.path.name
    name = getattr(item, "originalname", item.name)
    listed = KIND_BY_TEST.get(module, {}).get(name) or KIND_BY_MODULE.get(module, "unit")
    return max(floor, listed, key=KINDS.index), None


def pytest_collection_modifyitems(config, items):
    problems = []
    for item in items:
        kind, why = kind_of(item)
        if kind is not None and not _explicit_kinds(item):
            item.add_marker(getattr(pytest.mark, kind))
        if why is not None:
            problems.append(f"  {item.nodeid}: {why}")
    if problems:
        raise pytest.UsageError("every test needs exactly one kind (unit, integration, load; tests/conftest.py):\n"
                                + "\n".join(problems))


# Programs that libraries start to probe the machine (ctypes.util.find_library, matplotlib's font cache):
# allowed in unit tests, which otherwise start no processes.
LIBRARY_PROBES = {"ldconfig", "gcc", "cc", "ld", "objdump", "fc-list", "fc-match", "uname", "nvidia-smi"}


@pytest.fixture(autouse=True)
def _unit_tests_start_no_processes(request, monkeypatch):
    """A unit test that starts a process fails, naming the program and where to reclassify the test."""
    if request.node.get_closest_marker("unit") is None:
        return
    original = subprocess.Popen._execute_child

    def refuse(self, args, executable, *rest, **kwargs):
        argv = [args] if isinstance(args, (str, bytes, os.PathLike)) else list(args)
        program = Path(os.fsdecode(executable or argv[0]).split()[0]).name
        if program in LIBRARY_PROBES:
            return original(self, args, executable, *rest, **kwargs)
        raise AssertionError(f"a unit test started a process ({program}): mark it integration "
                             "(KIND_BY_TEST in tests/conftest.py, or @pytest.mark.integration)")

    monkeypatch.setattr(subprocess.Popen, "_execute_child", refuse)
