"""burstbench.harness with real processes on loopback: readiness deadlines, group stops, cleanup, Locust's run folder."""
from __future__ import annotations

import json
import os
import signal
import sys
import textwrap
import time
from pathlib import Path

import pytest

from burstbench import harness
from conftest import REPO_ROOT
from servers.fixtures import HTTP_LOCUSTFILE, fastapi_server  # noqa: F401 (fixture)


PY = sys.executable
integration = pytest.mark.integration  # every test here starts real processes; the Locust one is "load"


def alive(pid: int) -> bool:
    """The process exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


def wait_for_file(path: Path, timeout_s: float = 30) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if path.is_file() and path.read_text().strip():
            return path.read_text()
        time.sleep(0.05)
    raise AssertionError(f"{path} not written within {timeout_s} s")


@integration
def test_readiness_deadline_fails_with_the_log_tail(tmp_path):
    """A child that prints and never listens: NotReady after the deadline, its last log lines in the error."""
    log = tmp_path / "child.log"
    script = "import time\nfor i in range(50): print(f'starting step {i}', flush=True)\ntime.sleep(120)\n"
    started = time.monotonic()
    with harness.Process([PY, "-c", script], log=log) as proc:
        wait_for_file(log)
        with pytest.raises(harness.NotReady) as info:
            proc.wait_ready(f"http://127.0.0.1:{harness.free_port()}/readyz", 1.5, every_s=0.1)
    assert time.monotonic() - started < 30
    err = info.value
    assert "not ready" in err.reason and "after 2 s" in err.reason
    assert "starting step 49" in err.tail and "starting step 49" in str(err)
    assert err.log_path == log
    assert not alive(proc.pid)


@integration
def test_readiness_fails_at_once_when_the_child_exits(tmp_path):
    proc = harness.Process([PY, "-c", "print('bad config'); raise SystemExit(3)"], log=tmp_path / "x.log").start()
    try:
        with pytest.raises(harness.NotReady) as info:
            proc.wait_ready(("127.0.0.1", harness.free_port()), 60, every_s=0.1)
    finally:
        proc.stop()
    assert "exited with code 3" in info.value.reason and "bad config" in info.value.tail


@integration
def test_ready_when_a_real_http_server_answers(tmp_path):
    port = harness.free_port()
    with harness.Process([PY, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(tmp_path)],
                         log=tmp_path / "http.log") as proc:
        seconds = proc.wait_ready(f"http://127.0.0.1:{port}/", 30, every_s=0.1)
        assert 0 <= seconds < 30 and harness.http_ok(f"http://127.0.0.1:{port}/")
        assert harness.tcp_open("127.0.0.1", port)
    assert not harness.tcp_open("127.0.0.1", port)


@integration
def test_a_child_ignoring_sigterm_is_sigkilled_after_the_deadline(tmp_path):
    flag = tmp_path / "ready"
    script = textwrap.dedent(f"""
        import signal, time, pathlib
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        pathlib.Path({str(flag)!r}).write_text("x")
        time.sleep(120)
    """)
    proc = harness.Process([PY, "-c", script], log=tmp_path / "stubborn.log", stop_timeout_s=1.0).start()
    try:
        wait_for_file(flag)
        started = time.monotonic()
        rc = proc.stop()
        took = time.monotonic() - started
    finally:
        proc.stop(0)
    assert rc == -signal.SIGKILL
    assert 0.9 <= took < 15
    assert not alive(proc.pid)


@integration
def test_stop_ends_the_whole_process_group_child_and_grandchild(tmp_path):
    """The grandchild ignores SIGTERM and outlives the child: the group's SIGKILL still reaches it."""
    pid_file = tmp_path / "grandchild.pid"
    grandchild = ("import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(120)")
    script = textwrap.dedent(f"""
        import pathlib, subprocess, sys, time
        g = subprocess.Popen([sys.executable, "-c", {grandchild!r}])
        pathlib.Path({str(pid_file)!r}).write_text(str(g.pid))
        time.sleep(120)
    """)
    proc = harness.Process([PY, "-c", script], log=tmp_path / "tree.log", stop_timeout_s=5).start()
    try:
        grandchild_pid = int(wait_for_file(pid_file))
        assert os.getpgid(grandchild_pid) == proc.pid  # same group, no session of its own
        proc.stop()
    finally:
        proc.stop(0)
    deadline = time.monotonic() + 10
    while alive(grandchild_pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(proc.pid) and not alive(grandchild_pid)


@integration
def test_cleanup_happens_when_the_body_raises(tmp_path):
    port = harness.free_port()
    log = tmp_path / "http.log"
    with pytest.raises(ZeroDivisionError):
        with harness.Process([PY, "-m", "http.server", str(port), "--bind", "127.0.0.1"], log=log) as proc:
            proc.wait_ready(("127.0.0.1", port), 30, every_s=0.1)
            1 / 0
    assert not alive(proc.pid) and not harness.tcp_open("127.0.0.1", port)
    assert proc._log_file is None or proc._log_file.closed


@integration
def test_forward_interrupts_passes_each_press_on_once(tmp_path):
    """SIGINT to us reaches the target's group exactly once per press; no KeyboardInterrupt here."""
    count_file = tmp_path / "count"
    script = textwrap.dedent(f"""
        import pathlib, signal, time
        seen = []
        def on_int(*_):
            seen.append(1)
            pathlib.Path({str(count_file)!r}).write_text(str(len(seen)))
        signal.signal(signal.SIGINT, on_int)
        pathlib.Path({str(count_file)!r}).write_text("0")
        while True:
            time.sleep(0.05)
    """)
    before = signal.getsignal(signal.SIGINT)  # default_int_handler, or SIG_IGN under a shell's background job
    with harness.forward_interrupts() as interrupts:
        with harness.Process([PY, "-c", script], log=tmp_path / "int.log", stop_timeout_s=5) as child:
            interrupts.target = child
            wait_for_file(count_file)
            os.kill(os.getpid(), signal.SIGINT)
            deadline = time.monotonic() + 15
            while count_file.read_text() != "1" and time.monotonic() < deadline:
                time.sleep(0.05)
            assert count_file.read_text() == "1"
    assert interrupts.interrupted and interrupts.count == 1
    assert signal.getsignal(signal.SIGINT) is before  # our handler is gone again


@pytest.mark.load
def test_locust_writes_exactly_the_run_folder_it_is_given(fastapi_server, tmp_path):  # noqa: F811
    results = tmp_path / "results"
    other = harness.new_run_dir(results, "harness-check")  # a folder that was there already is never taken
    run_dir = harness.new_run_dir(results, "harness-check")
    assert run_dir != other and list(run_dir.iterdir()) == []
    flags = ["--path", "/v1/classify", "--payload", '{"inputs": "{text}"}', "--scenario", "steady",
             "--mean", "0.02", "--requests", "12", "--seed", "1", "-u", "2", "-r", "2"]
    locust = harness.Locust(HTTP_LOCUSTFILE, fastapi_server.url, run_dir, flags, log=tmp_path / "locust.log",
                            cwd=REPO_ROOT)
    with locust:
        rc = locust.finish(120, grace_s=20)
    assert rc == 0, locust.log_tail()
    assert locust.cmd[locust.cmd.index("--run-dir") + 1] == str(run_dir)
    assert locust.written() == run_dir
    info = json.loads((run_dir / "run.json").read_text())
    assert info["counts"]["ok"] == 12 and info["counts"]["sent"] == 12
    assert (run_dir / "requests.csv").is_file()
    assert sorted(p.name for p in results.iterdir()) == sorted([run_dir.name, other.name])
    assert list(other.iterdir()) == []


@integration
def test_a_locust_that_stops_before_writing_leaves_no_empty_folder(tmp_path):
    run_dir = harness.new_run_dir(tmp_path, "bad-flags")
    locust = harness.Locust(HTTP_LOCUSTFILE, "http://127.0.0.1:9", run_dir, ["--pacing", "sideways"],
                            log=tmp_path / "locust.log", cwd=REPO_ROOT)
    with locust:
        rc = locust.finish(120)
    assert rc != 0
    assert locust.written() is None and not run_dir.exists()
