"""burstbench.record: the run folder's format, versioned; old (version 1) folders still read by every analysis.

The reference run results/reference-v1-schema1 was recorded by the load process before run.json
had a schema_version (see its README.md); a fresh small run against the FastAPI test service
shows what the load process writes now (version 2).
"""
from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from burstbench import record as rec
from burstbench.analysis.runs import KNOWN_COLUMNS, RunError, RunFolder, load_run
from burstbench.record import (ROW_COLUMNS, SCHEMA_VERSION, Counts, Event, Git, Machine, RecordError, RunRecord,
                               Schedule, append_event, json_schema, load_record, schema_text, shipped_schema,
                               validate, write_record)
from servers.fixtures import fastapi_server, run_http_locust  # noqa: F401 (fixture)

REPO_ROOT = Path(__file__).resolve().parent.parent
REFERENCE = REPO_ROOT / "results" / "reference-v1-schema1"
SHIPPED = REPO_ROOT / "burstbench" / "schemas" / "run.schema.json"


def cli(*args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "burstbench", *args], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, "MPLBACKEND": "Agg"})


def a_record(**changes) -> RunRecord:
    fields = dict(
        schema_version=SCHEMA_VERSION, status="complete", run_dir="results/x", argv=["locust", "-f", "x.py"],
        scenario="steady", distribution={"process": "exponential", "mean_s": 0.5, "label": "exponential(0.5)"},
        pacing="arrival", users=4, spawn_rate=4.0, requests_planned=10, seed=0, host="http://127.0.0.1:1",
        endpoint="/predict", request={"method": "POST"}, request_timeout_s=30.0, texts={"source": "bundled"},
        schedule=Schedule(duration_s=4.5, start_epoch=1.8e9), dispatcher={"mode": "timerfd"},
        clocks={"stamped_at": "socket"}, started_epoch=1.8e9 - 1, finished_epoch=1.8e9 + 5, distributed=None,
        generator=rec.Generator(file="generator.csv", verdict=[], kept_up=True),
        counts=Counts(sent=10, rows=10, ok=9, failed=1, failure_kinds={"timeout": 1}, not_sent=0, lost_slots=0,
                      locust_requests=10, locust_failures=1, consistent=True),
        target={"model": None}, versions={"python": "3.11.7"}, git=Git(commit="abc", dirty=False),
        machine=Machine(hostname="h", system="Linux", machine="x86_64", cpu="AMD EPYC", cores=2, memory_gib=23.5),
        files={"rows": "requests.csv"}, spec={"pacing": "arrival", "mean": 0.5},
        events=[Event(kind="warmup-end", epoch=1.8e9 + 1, label="warm-up end", detail={"requests": 3})],
    )
    fields.update(changes)
    return RunRecord(**fields)


# -- the format itself ----------------------------------------------------------------------
def test_the_shipped_schema_is_the_generated_one():
    """burstbench/schemas/run.schema.json cannot drift from the model (regenerate: python -m burstbench.record)."""
    assert SHIPPED.read_text() == schema_text(), "run: python -m burstbench.record > burstbench/schemas/run.schema.json"
    assert shipped_schema() == json_schema()


def test_row_columns_are_declared_once_with_units(tmp_path):
    from burstbench.locustfiles.recording import RowRecorder

    RowRecorder(tmp_path).close()  # the header the load side writes is the declared one, column for column
    assert (tmp_path / "requests.csv").read_text().splitlines() == [",".join(KNOWN_COLUMNS)]
    for column in ROW_COLUMNS:
        assert column.dtype in ("int", "float", "str") and column.meaning
    assert {c: c.unit for c in ROW_COLUMNS}["latency_ms"] == "ms"
    assert copy.deepcopy(ROW_COLUMNS[0]).unit == ROW_COLUMNS[0].unit  # pandas copies labels


def test_a_written_record_round_trips(tmp_path):
    record = a_record(extra={"from_a_newer_tool": {"kept": True}})
    write_record(tmp_path, record)
    loaded = load_record(tmp_path)
    assert loaded == record
    assert json.loads((tmp_path / "run.json").read_text())["from_a_newer_tool"] == {"kept": True}
    assert not [p for p in tmp_path.iterdir() if p.name != "run.json"]  # no temp file left behind


@pytest.mark.parametrize("damage, field", [
    (lambda d: d.pop("counts"), "counts"),
    (lambda d: d["counts"].pop("ok"), r"counts\.ok"),
    (lambda d: d.update(users="four"), "users"),
    (lambda d: d["events"][0].update(epoch="soon"), r"events\[0\]\.epoch"),
    (lambda d: d.update(schema_version=3), "schema_version"),
    (lambda d: d.update(status="done"), "status"),
])
def test_a_bad_record_fails_naming_the_file_and_the_field(tmp_path, damage, field):
    data = a_record().to_dict()
    damage(data)
    (tmp_path / "run.json").write_text(json.dumps(data))
    with pytest.raises(RecordError, match=rf"run\.json: field '{field}'"):
        load_record(tmp_path)
    with pytest.raises(RunError, match=rf"run\.json: field '{field}'"):  # every analysis loads through it
        load_run(tmp_path)


def test_a_bad_record_is_never_written(tmp_path):
    with pytest.raises(RecordError, match="field 'seed'"):
        write_record(tmp_path, a_record(seed="zero"))
    assert not (tmp_path / "run.json").exists()


def test_append_event_appends_and_keeps_what_was_there(tmp_path):
    write_record(tmp_path, a_record())
    before = load_record(tmp_path)
    event = append_event(tmp_path, "disruption", 1.8e9 + 2, label="kill -9 one worker", action="kill-worker", pids=[7])
    append_event(tmp_path, "resume", 1.8e9 + 3)
    after = load_record(tmp_path)
    assert after.events[:1] == before.events and after.events[1] == event
    assert [(e.kind, e.label) for e in after.events] == [("warmup-end", "warm-up end"),
                                                          ("disruption", "kill -9 one worker"), ("resume", "resume")]
    assert after.events[1].detail == {"action": "kill-worker", "pids": [7]}
    assert after.counts == before.counts and after.spec == before.spec


def test_the_load_rewrite_keeps_events_a_harness_appended(tmp_path):
    write_record(tmp_path, a_record(status="running", events=[]))
    append_event(tmp_path, "disruption", 1.8e9 + 2, label="freeze")
    write_record(tmp_path, a_record(status="complete", events=[]), keep_external=True)
    final = load_record(tmp_path)
    assert final.status == "complete" and [e.label for e in final.events] == ["freeze"]


def test_version_1_events_and_missing_fields_load_as_none(tmp_path):
    (tmp_path / "run.json").write_text(json.dumps({"status": "complete", "events": [{"epoch": 5.0, "label": "hang"}],
                                                   "wait_time": {"kind": "constant_throughput"}}))
    record = load_record(tmp_path)
    assert record.schema_version == 1 and record.counts is None and record.spec is None and record.users is None
    assert record.events == [Event(kind="disruption", epoch=5.0, label="hang", detail={})]
    assert record.wait_time == {"kind": "constant_throughput"}
    append_event(tmp_path, "disruption", 6.0, label="kill")  # a version 1 file keeps version 1's event shape
    assert json.loads((tmp_path / "run.json").read_text())["events"][-1] == {"epoch": 6.0, "label": "kill"}
    validate(json.loads((tmp_path / "run.json").read_text()))


# -- the version 1 reference run, read by every analysis ------------------------------------
def test_the_reference_run_is_version_1_and_loads():
    raw = json.loads((REFERENCE / "run.json").read_text())
    assert "schema_version" not in raw  # recorded before versioning: keep it that way
    run = load_run(REFERENCE)  # the notebook's loader
    assert isinstance(run, RunFolder) and run.record.schema_version == 1
    assert run.record.status == "complete" and run.record.counts.ok == len(run.rows) == 60
    assert run.record.schedule.start_epoch == raw["schedule"]["start_epoch"]
    assert run.record.machine.cores == 2 and run.record.spec is None and run.record.events == []
    assert run.info["counts"] == raw["counts"]


@pytest.mark.integration
def test_summary_report_and_compare_read_the_reference_run(tmp_path):
    work = tmp_path / "ref"
    shutil.copytree(REFERENCE, work)  # summary and report write into the run folder: never into the reference
    summary = cli("summary", str(work))
    assert summary.returncode == 0, summary.stderr[-3000:]
    assert "p99" in summary.stdout and (work / "summary.csv").is_file()
    report = cli("report", str(work))
    assert report.returncode == 0, report.stderr[-3000:]
    assert (work / "report" / "report.md").is_file() and (work / "report" / "report.html").is_file()
    compare = cli("compare", str(REFERENCE), str(work), "--out", str(tmp_path / "cmp"))
    assert compare.returncode == 0, compare.stderr[-3000:]
    assert any((tmp_path / "cmp").iterdir())


# -- what the load process writes now -------------------------------------------------------
@pytest.mark.load
def test_a_real_run_writes_a_valid_version_2_record(fastapi_server, tmp_path):
    out = run_http_locust(fastapi_server.url, tmp_path / "results", "--preset", "plain", "--requests", "30",
                          "--mean", "0.02", "-u", "2", "-r", "2", "--run-dir", str(tmp_path / "run"), timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    raw = json.loads((tmp_path / "run" / "run.json").read_text())
    validate(raw, tmp_path / "run" / "run.json")
    assert raw["schema_version"] == SCHEMA_VERSION == 2
    assert set(raw) >= {f for f in json_schema()["$defs"]["RunRecord"]["required"]}
    run = load_run(tmp_path / "run")
    assert run.record.status == "complete" and run.record.counts.consistent
    assert run.record.counts.ok == len(run.rows) == 30 and run.record.events == []
    rows = pd.read_csv(tmp_path / "run" / "requests.csv")
    assert tuple(rows.columns) == KNOWN_COLUMNS


@pytest.mark.integration
def test_run_json_can_be_rewritten_after_gevent_ran_a_subprocess(tmp_path):
    """The load process rewrites run.json several times; under gevent, after a subprocess (git), each rewrite
    must still get the folder's lock (closing the fd alone did not release it: a hang)."""
    code = ("import gevent.monkey; gevent.monkey.patch_all()\n"
            "import subprocess, sys\n"
            "from burstbench.record import _locked\n"
            "from pathlib import Path\n"
            "subprocess.run(['true'])\n"
            "for _ in range(3):\n"
            "    with _locked(Path(sys.argv[1])):\n"
            "        pass\n"
            "print('ok')\n")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]
