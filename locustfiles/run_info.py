"""What run.json records: the environment (versions, git commit, machine) and ``build_record``, the whole record.

run.json's format is ``burstbench.record`` (versioned, with a JSON Schema); this module fills it
from a running ``core.Run``. It imports no Locust itself: ``run`` is duck-typed.
"""
from __future__ import annotations

import os
import platform
import subprocess
import time
from importlib import metadata
from pathlib import Path

from burstbench.record import ITL_FILE, ROWS_FILE, SCHEMA_VERSION, Counts, Generator, Git, Machine, RunRecord, Schedule

REPO_ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("burstbench", "locust", "numpy", "scipy", "requests", "gevent", "pandas")


def package_versions(names=PACKAGES) -> dict:
    versions = {"python": platform.python_version()}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_commit() -> dict:
    def git(*args):
        return subprocess.run(["git", "-C", str(REPO_ROOT), *args], capture_output=True, text=True, timeout=10)

    try:
        head = git("rev-parse", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.TimeoutExpired):
        return {"commit": None, "dirty": None}
    commit = head.stdout.strip() if head.returncode == 0 else None
    return {"commit": commit, "dirty": bool(dirty.stdout.strip()) if commit else None}


def machine() -> dict:
    cpu = platform.processor() or None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        mem_gib = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        mem_gib = None
    return {
        "hostname": platform.node(),
        "system": f"{platform.system()} {platform.release()}",
        "machine": platform.machine(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": mem_gib,
    }


def clocks(stamped: bool) -> dict:
    """What each row time column measures, for run.json ``clocks``."""
    return {
        "scheduled_epoch": "the slot's due time: start epoch + drawn offset",
        "sent_epoch": "just before the request's first socket write (socket-stamped)" if stamped
        else "just before the HTTP client builds the request (client-stamped)",
        "latency_ms": "first socket write to the last socket read of the answer" if stamped
        else "from before the request is built to after the client has read the answer",
        "e2e_latency_ms": "from before the request is built to after the answer is judged",
        "stamped_at": "socket" if stamped else "client",
    }


def environment_facts() -> dict:
    """Versions, git commit and machine: looked up once per run, not at every rewrite of run.json."""
    return {"versions": package_versions(), "git": git_commit(), "machine": machine()}


def build_record(run, status: str, argv: list[str], generator_file: str) -> RunRecord:
    """The run record of ``run`` (a locustfiles.core.Run) now; ``argv`` already redacted and scrubbed."""
    total = run.environment.stats.total
    counts = run.rows.counts()
    interrupted = counts["failure_kinds"].get("interrupted", 0)
    options = run.environment.parsed_options
    return RunRecord(
        schema_version=SCHEMA_VERSION,
        status=status,
        run_dir=str(run.run_dir),
        argv=list(argv),
        scenario=run.plan.name,
        distribution=None if run.plan.distribution is None else run.plan.distribution.describe(),
        pacing=run.plan.pacing,
        users=options.num_users,
        spawn_rate=options.spawn_rate,
        requests_planned=run.plan.requests,
        seed=run.plan.seed,
        host=run.host,
        endpoint=run.target.endpoint,
        request=run.target.describe(),
        request_timeout_s=run.plan.request_timeout_s,
        texts={**run.texts.describe(), "dataset_flag": run.plan.dataset, "text_column": run.plan.text_column,
               "skipped": run.texts.skipped, "per_request": run.target.batch_size},
        schedule=None if run.schedule is None else Schedule(duration_s=run.schedule.duration_s,
                                                            start_epoch=run.dispenser.start_epoch),
        dispatcher=None if run.dispatcher is None else run.dispatcher.describe(),
        clocks=clocks(run.stamped),
        started_epoch=run.started_epoch,
        finished_epoch=time.time() if status != "running" else None,
        distributed=None if run.coordinator is None else run.coordinator.describe(),
        generator=Generator(file=generator_file, verdict=list(run.generator_verdict),
                            kept_up=not run.generator_verdict) if status != "running" else None,
        counts=Counts(
            **counts,
            not_sent=run.plan.requests - counts["sent"],
            # a worker that left: its slots that never came back as rows (sent or not, nobody can tell)
            lost_slots=0 if run.coordinator is None else run.coordinator.lost_slots,
            locust_requests=total.num_requests,
            locust_failures=total.num_failures,
            # Locust never records a request killed mid-flight; our rows do, as "interrupted".
            consistent=counts["rows"] == counts["sent"] == counts["ok"] + counts["failed"]
            and total.num_requests == counts["rows"] - interrupted,
        ),
        target=run.target_info,
        versions=run.environment_facts["versions"],
        git=Git(**run.environment_facts["git"]),
        machine=Machine(**run.environment_facts["machine"]),
        files={"rows": ROWS_FILE, "locust_csv_prefix": "locust", "locust_html": "locust.html",
               **({"itl": ITL_FILE} if getattr(run.rows, "itl_gaps", 0) else {})},
        wait_time=run.wait_time_info,
        spec=run.recorded_spec,
        events=[],
        streaming=streaming_record(run),
        telemetry=getattr(run, "telemetry_summary", None),
        slo=getattr(run.target, "slo", None),
    )


def streaming_record(run) -> dict | None:
    """run.json's ``streaming``: how answers were read, where the token counts came from, the ITL file."""
    info = getattr(run.target, "streaming_info", None)
    info = info() if info is not None else None
    if info is None:
        return None
    sources = getattr(run.rows, "token_sources", {})
    return {**info, "token_counts": {k: sources.get(k, 0) for k in ("usage", "tokenizer", "chunks")},
            "itl_file": ITL_FILE if info["stream"] else None, "itl_gaps": getattr(run.rows, "itl_gaps", 0)}
