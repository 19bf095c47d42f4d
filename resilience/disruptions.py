"""Carrying out one disruption and recording what was done: pids, signals, commands and their answers.

Each function returns a JSON-ready record with ``epoch`` (when the disruption took effect), and
calls ``note(kind, epoch, label, **detail)`` the moment each of its events happens (the harness
appends them to the run's record: ``burstbench.record.append_event``): a ``disruption`` when it
takes effect, a ``resume`` when a frozen server or worker is let go or a memory limit lifted, an
``oom-kill`` for each worker killed over a memory limit. Nothing here decides whether the service
recovered: the requests say that (analysis/resilience.py).

- ``stop-worker``: SIGSTOP the BentoML worker alone for ``for_s``, then SIGCONT: a hung worker while
  its arbiter lives (the listening socket keeps accepting; nothing answers). The worker's pid stays.
- ``memory-limit``: a worker over a memory limit, killed as a container's OOM killer kills it. A
  watchdog polls every worker's RSS every ``MEMORY_POLL_S`` for ``for_s`` seconds and SIGKILLs each
  one over the limit (``limit_mb``, or ``limit_fraction`` x the worker's RSS when the limit is set),
  also the workers BentoML respawns meanwhile, which pass the limit while they load the model; then
  the limit is lifted and the next respawn stays. Chosen over lowering RLIMIT_AS (prlimit): that
  needs no privilege either, but what it does depends on the next allocation (onnxruntime reserves
  its arena up front, so it may never fail, or fail as a MemoryError inside a request); the
  watchdog works the same for any user, needs no cgroup delegation, and is what a container under
  a memory limit sees: a kill -9 within one poll of crossing the limit. The record lists each kill
  (pid, RSS, when) and the worker that runs once the limit is lifted.
- ``slow-start``: the server killed (kill -9) and restarted by supervisord with
  ``BURSTBENCH_START_DELAY_S = delay_s``: the service waits that long before it loads the model,
  a model that loads slower than the readiness deadline. The setting stays for the rest of the
  run: any later restart (kill-server, a respawned worker) is as slow, as a slow model store would be.
"""
from __future__ import annotations

import signal
import subprocess
import threading
import time
import urllib.request

import psutil

from .plan import Disruption
from .server import START_DELAY_ENV, LocalServer, signal_all, wait_until

OUTPUT_TAIL_CHARS = 2000
MEMORY_POLL_S = 0.1  # the watchdog's period: a worker over the limit lives at most this long


def _no_note(kind, epoch, label, **detail) -> None:
    pass


def kill_worker(server: LocalServer, d: Disruption, note=_no_note) -> dict:
    """kill -9 the first BentoML worker; BentoML's arbiter is expected to respawn it."""
    workers = server.workers()
    if not workers:
        return _record(d, time.time(), note, error="no BentoML worker process found (is the server running?)")
    victim = workers[0]
    epoch = time.time()
    killed = signal_all([victim], signal.SIGKILL)
    record = _record(d, epoch, note, pids_killed=killed, workers_before=[w.pid for w in workers])
    record["watch"] = _watch(lambda: _new_worker(server, {w.pid for w in workers}), epoch, "respawned_worker_pid")
    return record


def freeze_server(server: LocalServer, d: Disruption, note=_no_note) -> dict:
    """SIGSTOP every server process (a hang, not a crash); SIGCONT them after ``for_s`` seconds."""
    procs = server.server_tree()
    if not procs:
        return _record(d, time.time(), note, error="no server process found (is the server running?)")
    epoch, details = _pause(procs, d, note, "SIGCONT")
    return _record(d, epoch, None, **details)


def kill_server(server: LocalServer, d: Disruption, note=_no_note) -> dict:
    """SIGKILL every server process, arbiter first: the server is gone, as a crashed container is."""
    procs = server.server_tree()
    if not procs:
        return _record(d, time.time(), note, error="no server process found (is the server running?)")
    old = {p.pid for p in procs}
    epoch = time.time()
    killed = signal_all(procs, signal.SIGKILL)
    record = _record(d, epoch, note, pids_killed=killed, supervisor=server.supervisor)
    record["watch"] = _watch(lambda: _new_server(server, old), epoch, "restarted_server_pid")
    return record


def stop_worker(server: LocalServer, d: Disruption, note=_no_note) -> dict:
    """SIGSTOP the first BentoML worker alone for ``for_s`` seconds, then SIGCONT (a hang; the arbiter runs on)."""
    workers = server.workers()
    if not workers:
        return _record(d, time.time(), note, error="no BentoML worker process found (is the server running?)")
    epoch, details = _pause(workers[:1], d, note, "SIGCONT worker")
    return _record(d, epoch, None, **details, workers_before=[w.pid for w in workers],
                   workers_after=[w.pid for w in server.workers()])


def _pause(procs, d: Disruption, note, resume_label: str) -> tuple[float, dict]:
    """SIGSTOP ``procs``, noted as the disruption; SIGCONT them (children first) after ``for_s`` seconds, noted as
    the resume. Returns the epoch and the record's details (both events are noted already)."""
    epoch = time.time()
    stopped = signal_all(procs, signal.SIGSTOP)
    note("disruption", epoch, d.label, action=d.action, planned_at_s=d.at_s, pids=stopped)
    time.sleep(d.for_s)
    resumed_epoch = time.time()
    resumed = signal_all(list(reversed(procs)), signal.SIGCONT)
    note("resume", resumed_epoch, resume_label, action=d.action, pids=resumed)
    return epoch, {"pids_stopped": stopped, "pids_resumed": resumed, "resumed_epoch": resumed_epoch}


def memory_limit(server: LocalServer, d: Disruption, note=_no_note) -> dict:
    """For ``for_s`` seconds, kill -9 every worker whose RSS exceeds the limit (see the module's docstring)."""
    workers = server.workers()
    rss_before = {w.pid: _rss_mb(w) for w in workers}
    if not workers or rss_before[workers[0].pid] is None:
        return _record(d, time.time(), note, error="no BentoML worker process found (is the server running?)")
    limit_mb = round(d.limit_mb or d.limit_fraction * rss_before[workers[0].pid], 1)
    epoch = time.time()
    note("disruption", epoch, d.label, action=d.action, planned_at_s=d.at_s, limit_mb=limit_mb)
    kills: list[dict] = []
    while True:  # bounded by for_s
        for worker in server.workers():
            rss = _rss_mb(worker)
            if rss is not None and rss > limit_mb and signal_all([worker], signal.SIGKILL):
                at = time.time()
                kills.append({"pid": worker.pid, "rss_mb": round(rss, 1), "after_s": round(at - epoch, 2)})
                note("oom-kill", at, "OOM kill", action=d.action, pid=worker.pid, rss_mb=round(rss, 1), limit_mb=limit_mb)
        left_s = epoch + d.for_s - time.time()
        if left_s <= 0:
            break
        time.sleep(min(MEMORY_POLL_S, left_s))
    lifted_epoch = time.time()
    note("resume", lifted_epoch, "memory limit lifted", action=d.action)
    record = _record(d, epoch, None, limit_mb=limit_mb, rss_mb_before=rss_before, oom_kills=kills,
                     pids_killed=[k["pid"] for k in kills], lifted_epoch=lifted_epoch)
    if kills:  # the worker that runs once the limit is gone
        old = set(rss_before) | {k["pid"] for k in kills}
        record["watch"] = _watch(lambda: _new_worker(server, old), epoch, "respawned_worker_pid")
    return record


def slow_start(server: LocalServer, d: Disruption, note=_no_note) -> dict:
    """kill -9 the server; supervisord starts it again with BURSTBENCH_START_DELAY_S = ``delay_s``."""
    procs = server.server_tree()
    if not procs:
        return _record(d, time.time(), note, error="no server process found (is the server running?)")
    old = {p.pid for p in procs}
    epoch = time.time()
    server.reload_with_env({START_DELAY_ENV: f"{d.delay_s:g}"})  # supervisord stops the program, then restarts it ...
    killed = signal_all(procs, signal.SIGKILL)                    # ... and the stop is a crash, not a drain
    record = _record(d, epoch, note, pids_killed=killed, delay_s=d.delay_s, supervisor=server.supervisor)
    record["watch"] = _watch(lambda: _new_server(server, old), epoch, "restarted_server_pid")
    return record


def run_command(d: Disruption, timeout_s: float, dry_run: bool = False, note=_no_note) -> dict:
    """Run the rendered command (no shell) with the user's kubectl context; its exit code and output, as they were."""
    epoch = time.time()
    if dry_run:
        return _record(d, epoch, note, argv=list(d.argv), dry_run=True, returncode=None)
    record = _record(d, epoch, note, argv=list(d.argv), dry_run=False)

    def run():
        try:
            done = subprocess.run(list(d.argv), capture_output=True, text=True, timeout=timeout_s,
                                  stdin=subprocess.DEVNULL)
            record.update(returncode=done.returncode, stdout=done.stdout[-OUTPUT_TAIL_CHARS:],
                          stderr=done.stderr[-OUTPUT_TAIL_CHARS:])
        except subprocess.TimeoutExpired as err:
            record.update(returncode=None, error=f"still running after {timeout_s:g} s: killed",
                          stdout=_text(err.stdout), stderr=_text(err.stderr))
        except OSError as err:
            record.update(returncode=None, error=f"{type(err).__name__}: {err}")
        record["finished_epoch"] = time.time()
        record["duration_s"] = round(record["finished_epoch"] - epoch, 3)

    # In a thread: a slow command (a control-plane restart) must not delay the next disruption's clock.
    thread = threading.Thread(target=run, name=f"command-{d.label}", daemon=True)
    thread.start()
    record["_thread"] = thread
    return record


def watch_ready(url: str, since_epoch: float, deadline_epoch: float) -> dict:
    """Poll ``url``/readyz twice a second until 200 or the deadline: when the service said it was ready again."""
    def ready():
        try:
            with urllib.request.urlopen(f"{url}/readyz", timeout=1) as resp:
                return resp.status == 200
        except OSError:
            return False

    result = wait_until(ready, max(0.0, deadline_epoch - time.time()), every_s=0.5)
    return {"readyz_ok_after_s": round(time.time() - since_epoch, 2) if result else None}


def _rss_mb(proc) -> float | None:
    try:
        return proc.memory_info().rss / 2**20
    except (psutil.NoSuchProcess, psutil.AccessDenied):  # gone, or a zombie
        return None


def _new_worker(server: LocalServer, old: set[int]):
    fresh = [w.pid for w in server.workers() if w.pid not in old]
    return fresh[0] if fresh else None


def _new_server(server: LocalServer, old: set[int]):
    pid = server.server_pid()
    return pid if pid is not None and pid not in old else None


def _watch(find, epoch: float, key: str, timeout_s: float = 60.0) -> threading.Thread:
    """Look, in the background, for the process that replaced a killed one; record when it appeared."""
    result: dict = {}

    def run():
        found = wait_until(find, timeout_s)
        result[key] = found
        result[f"{key.rsplit('_pid', 1)[0]}_seen_after_s"] = round(time.time() - epoch, 2) if found else None

    thread = threading.Thread(target=run, daemon=True)
    thread.result = result  # type: ignore[attr-defined]
    thread.start()
    return thread


def finish(record: dict, timeout_s: float = 5.0) -> dict:
    """The record with its background observations merged in, ready for JSON."""
    for key in ("watch", "_thread"):
        thread = record.pop(key, None)
        if thread is not None:
            thread.join(timeout_s)
            record.update(getattr(thread, "result", {}))
            if thread.is_alive():
                record.setdefault("error", "still running when the run ended")
    return record


def _record(d: Disruption, epoch: float, note, **details) -> dict:
    """The disruption's record; ``note`` (None: already noted) hears its event now, as it happens."""
    if note is not None:
        pids = details.get("pids_killed")
        note("disruption", epoch, d.label, action=d.action, planned_at_s=d.at_s,
             **({} if pids is None else {"pids": pids}), **({"error": details["error"]} if "error" in details else {}))
    return {"action": d.action, "label": d.label, "planned_at_s": d.at_s, "for_s": d.for_s or None,
            "epoch": epoch, **details}


def _text(raw) -> str:
    if raw is None:
        return ""
    return (raw.decode(errors="replace") if isinstance(raw, bytes) else raw)[-OUTPUT_TAIL_CHARS:]
