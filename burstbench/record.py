"""The run folder's format, defined once and versioned: requests.csv's columns and run.json's record.

    from burstbench.record import load_record, write_record, append_event
    record = load_record("results/<run>")       # validated against the shipped JSON Schema
    record.counts.ok, record.schedule.start_epoch, [e.label for e in record.events]
    append_event(run_dir, "disruption", time.time(), label="kill -9 one BentoML worker", action="kill-worker")

Format versions (``schema_version``):

* 1: every run.json written before this module existed (no ``schema_version`` key). It still
  loads: each field it lacks is None, its events ``{"epoch", "label"}`` become ``disruption`` events.
* 2 (``SCHEMA_VERSION``): every field of ``RunRecord`` present, ``schema_version: 2``, ``spec``
  and typed ``events``.

The JSON Schema (``schemas/run.schema.json``, shipped in the package) is generated from the
dataclasses below by ``json_schema()``; a test keeps the shipped file equal to it. Top-level keys
this model does not name are kept in ``RunRecord.extra`` and written back as they were.

This module imports no Locust, gevent or analysis: the load processes and the analysis both use it.
"""
from __future__ import annotations

import dataclasses
import json
import os
import typing
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

try:
    import fcntl
except ImportError:  # not on Windows: writes there are atomic but not serialised between processes
    fcntl = None

SCHEMA_VERSION = 2
RECORD_FILE = "run.json"
ROWS_FILE = "requests.csv"
ITL_FILE = "itl.csv"  # a streaming run's every inter-token gap: request_index, token, itl_ms
ITL_COLUMNS = ("request_index", "token", "itl_ms")
SCHEMA_RESOURCE = "schemas/run.schema.json"
STATUSES = ("running", "complete", "interrupted")
# Fields other processes add while a run goes (the resilience harness): a rewrite by the load keeps them.
EXTERNAL_FIELDS = ("events", "resilience")


class RecordError(ValueError):
    """A run.json that cannot be read as a run record; the message names the file and the field."""


# -- requests.csv ----------------------------------------------------------------------------
class Column(str):
    """A requests.csv column: the name (it *is* the string) with its dtype, unit and meaning."""

    dtype: str
    unit: str
    meaning: str

    def __new__(cls, name: str, dtype: str, unit: str, meaning: str):
        column = super().__new__(cls, name)
        column.dtype, column.unit, column.meaning = dtype, unit, meaning
        return column

    def __reduce__(self):  # copy and pickle keep the metadata (str's would call __new__ with the name only)
        return Column, (str(self), self.dtype, self.unit, self.meaning)


def _c(name, dtype, unit, meaning) -> Column:
    return Column(name, dtype, unit, meaning)


ROW_COLUMNS: tuple[Column, ...] = (
    _c("request_index", "int", "", "slot in the arrival schedule (or order of sending under think pacing)"),
    _c("user", "int", "", "which Locust user sent it"),
    _c("scheduled_epoch", "float", "s (Unix epoch)", "when it was due (arrival pacing) or when the think time ended"),
    _c("sent_epoch", "float", "s (Unix epoch)",
       "when it went out: just before the socket write (FastHttpUser), else before the request is built"),
    _c("lateness_ms", "float", "ms", "sent_epoch - scheduled_epoch"),
    _c("latency_ms", "float", "ms", "service latency: socket write to the last read of the answer (FastHttpUser)"),
    _c("corrected_latency_ms", "float", "ms", "schedule-corrected latency: scheduled send to response read"),
    _c("status", "int", "", "HTTP status, 0 when no response came"),
    _c("ok", "int", "0 or 1", "1 when the response passed the check"),
    _c("failure_kind", "str", "",
       "connection_refused, timeout, http_429, http_503, http_504, response_too_large, other, interrupted, "
       "stream-error, stream-broken, invalid-stream; empty when ok"),
    _c("failure_text", "str", "", "what went wrong, secrets scrubbed; empty when ok"),
    _c("batch_size", "int", "texts", "the adaptive batch the service says it computed this request in"),
    _c("text_index", "int", "", "row of the source dataset"),
    _c("text_chars", "int", "characters", "length of the text(s) sent"),
    _c("tokens", "int", "tokens", "tokens the service says the text had"),
    _c("truncated", "int", "0 or 1", "1 when the service says it truncated the text"),
    _c("label", "str", "", "the label the service answered"),
    _c("think_s", "float", "s", "the drawn think time (think pacing)"),
    _c("worker", "int", "", "which load process sent it: 0 alone, k of W in a distributed run"),
    _c("e2e_latency_ms", "float", "ms", "the client's whole request: before it is built to after the answer is judged"),
    _c("claim_late_ms", "float", "ms",
       "how overdue the slot already was when a user became free to claim it (too few users)"),
    _c("new_connection", "int", "0 or 1", "1 when the request had to open a TCP connection first"),
    # Streaming answers (server-sent events); empty for other requests. Per-gap times are in itl.csv.
    _c("ttft_ms", "float", "ms", "time to first token: the first content chunk's arrival - sent_epoch"),
    _c("corrected_ttft_ms", "float", "ms", "schedule-corrected TTFT: the first content chunk - scheduled_epoch"),
    _c("tpot_ms", "float", "ms", "time per output token after the first: (last chunk - first chunk) / (output_tokens - 1)"),
    _c("input_tokens", "int", "tokens", "prompt tokens: the server's usage, else the --tokenizer's count"),
    _c("output_tokens", "int", "tokens", "completion tokens: the server's usage, else the --tokenizer's count, "
       "else content chunks counted"),
    _c("token_source", "str", "", "where output_tokens comes from: usage, tokenizer or chunks"),
    _c("finish_reason", "str", "", "the server's finish reason: length, stop, ..."),
    _c("requested_output_tokens", "int", "tokens", "max_tokens sent with the request"),
    _c("requested_input_tokens", "int", "tokens", "a synthetic prompt's length asked for (--input-tokens)"),
)
ROW_COLUMN_NAMES: tuple[str, ...] = tuple(str(c) for c in ROW_COLUMNS)


# -- run.json --------------------------------------------------------------------------------
def _f(doc: str, **kw):
    return field(metadata={"doc": doc}, **kw)


@dataclass
class Schedule:
    """The arrival schedule (arrival pacing only)."""

    duration_s: float = _f("last drawn offset: how long the schedule lasts, in seconds")
    start_epoch: float | None = _f("epoch second of slot 0 (None until the test starts)")
    extra: dict = field(default_factory=dict)


@dataclass
class Generator:
    """The load generator's verdict on itself (generator.csv holds its samples)."""

    file: str = _f("the samples' file in the run folder")
    verdict: list[str] = _f("one line per way the generator failed to keep up; empty when it kept up")
    kept_up: bool = _f("no verdict line")
    extra: dict = field(default_factory=dict)


@dataclass
class Counts:
    """What was sent and what came back; ``consistent`` says the counts add up."""

    sent: int = _f("requests started")
    rows: int = _f("rows in requests.csv")
    ok: int = _f("rows with ok = 1")
    failed: int = _f("rows with ok = 0")
    failure_kinds: dict[str, int] = _f("failed rows per failure_kind")
    not_sent: int = _f("requests_planned - sent")
    lost_slots: int = _f("a distributed worker that left: its slots that never came back as rows")
    locust_requests: int = _f("requests in Locust's own statistics")
    locust_failures: int = _f("failures in Locust's own statistics")
    consistent: bool = _f("rows = sent = ok + failed, and Locust's count = rows - interrupted")
    extra: dict = field(default_factory=dict)


@dataclass
class Git:
    commit: str | None = _f("HEAD of the checkout the run came from (None outside git)")
    dirty: bool | None = _f("tracked files had uncommitted changes")
    extra: dict = field(default_factory=dict)


@dataclass
class Machine:
    hostname: str | None = _f("platform.node()")
    system: str | None = _f("operating system and kernel release")
    machine: str | None = _f("architecture, e.g. x86_64")
    cpu: str | None = _f("CPU model name")
    cores: int | None = _f("logical CPUs (os.cpu_count())")
    memory_gib: float | None = _f("physical memory in GiB")
    extra: dict = field(default_factory=dict)


@dataclass
class Event:
    """Something that happened during the run, at an epoch second: a disruption, its end, a warm-up end."""

    kind: str = _f("what sort of event: disruption, resume, warmup-end, ...")
    epoch: float = _f("when it happened, Unix epoch seconds")
    label: str = _f("one line for figures and tables (defaults to kind)")
    detail: dict = _f("anything else worth keeping about it", default_factory=dict)
    extra: dict = field(default_factory=dict)


@dataclass
class RunRecord:
    """run.json. Version 1 records (no schema_version) load with None for each field they lack."""

    schema_version: int = _f("format version of this file (1: written before versioning, no key)")
    status: str = _f("running, complete or interrupted")
    run_dir: str = _f("the run folder as the load process was given it")
    argv: list[str] = _f("the command line, secret header values redacted")
    scenario: str = _f("the run's name: scenario, process or trace-<file>")
    distribution: dict | None = _f("the arrival process (process, shape, mean_s, cv, rate_per_s, label, ...)")
    pacing: str = _f("arrival (a schedule fixed ahead) or think (closed loop)")
    users: int | None = _f("Locust users (-u)")
    spawn_rate: float | None = _f("Locust spawn rate (-r), users per second")
    requests_planned: int = _f("requests the run was asked to send")
    seed: int = _f("seed of the schedule and the texts")
    host: str | None = _f("the service's base URL")
    endpoint: str | None = _f("the request path, also Locust's request name")
    request: dict | None = _f("what a request is: method, path, payload template... never a secret")
    request_timeout_s: float = _f("seconds before a request counts as timed out")
    texts: dict | None = _f("the texts sent: source, pool and subset size, column, per request")
    schedule: Schedule | None = _f("the arrival schedule (None under think pacing)")
    dispatcher: dict | None = _f("how senders waited for their slot (None under think pacing)")
    clocks: dict | None = _f("what each row time column measures, and where it was stamped")
    started_epoch: float | None = _f("when the test started, epoch seconds")
    finished_epoch: float | None = _f("when it finished (None while running)")
    distributed: dict | None = _f("a distributed run's workers and their shares (None in one process)")
    generator: Generator | None = _f("the generator's verdict on itself (None while running)")
    counts: Counts | None = _f("what was sent and what came back")
    target: dict | None = _f("what the service says it serves (model, variant), or an error")
    versions: dict | None = _f("python and package versions")
    git: Git | None = _f("the checkout's commit")
    machine: Machine | None = _f("the machine the load ran on")
    files: dict | None = _f("names of the run folder's files")
    spec: dict | None = _f("the validated load spec the run was started from (opaque here)")
    events: list[Event] = _f("events in the order they were appended", default_factory=list)
    resilience: dict | None = _f("the resilience plan the harness ran (None outside resilience runs)", default=None)
    wait_time: dict | None = _f("Locust's own pacing when a locustfile used one (fixed_body.py)", default=None)
    streaming: dict | None = _f("a streaming run's protocol, token count sources and ITL file (None otherwise)",
                                default=None)
    slo: dict | None = _f("the service level objectives the run was judged by, e.g. {ttft_ms: 500} (None: none)",
                          default=None)
    telemetry: dict | None = _f("what the telemetry sidecar collected: server metrics, processes, GPUs, or why "
                                "not (burstbench.telemetry_files; None: --telemetry off)", default=None)
    extra: dict = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        return self.status == "complete"

    def events_of(self, kind: str) -> list[Event]:
        return [e for e in self.events if e.kind == kind]

    def to_dict(self) -> dict:
        return _to_dict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "RunRecord":
        """A record from run.json's dict (version 1 or 2), without validating it (``load_record`` does)."""
        data = dict(data)
        if "schema_version" not in data:
            data["schema_version"] = 1
            data["events"] = [{"kind": "disruption", "epoch": e.get("epoch"), "label": e.get("label"), "detail": {},
                               **{k: v for k, v in e.items() if k not in ("epoch", "label")}}
                              if isinstance(e, dict) else e for e in (data.get("events") or [])]
        return _from_dict(cls, data)


_MODELS = (Schedule, Generator, Counts, Git, Machine, Event, RunRecord)


def _hints(cls) -> dict:
    return typing.get_type_hints(cls)


def _fields(cls):
    return [f for f in dataclasses.fields(cls) if f.name != "extra"]


def _to_dict(obj) -> Any:
    if dataclasses.is_dataclass(obj):
        out = {f.name: _to_dict(getattr(obj, f.name)) for f in _fields(obj)}
        out.update({k: v for k, v in obj.extra.items() if k not in out})
        return out
    if isinstance(obj, list):
        return [_to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: _to_dict(v) for k, v in obj.items()}
    return obj


def _model_of(tp):
    """The dataclass inside ``tp`` (X, X | None, list[X]), else None."""
    if tp in _MODELS:
        return tp
    for arg in typing.get_args(tp):
        if arg in _MODELS:
            return arg
    return None


def _from_dict(cls, data: dict):
    hints, kwargs = _hints(cls), {}
    for f in _fields(cls):
        value = data.get(f.name)
        model = _model_of(hints[f.name])
        if model is not None and isinstance(value, dict):
            value = _from_dict(model, value)
        elif model is not None and isinstance(value, list):
            value = [_from_dict(model, v) if isinstance(v, dict) else v for v in value]
        elif value is None and f.name == "events":
            value = []
        elif value is None and f.name == "detail":
            value = {}
        kwargs[f.name] = value
    names = {f.name for f in _fields(cls)}
    return cls(**kwargs, extra={k: v for k, v in data.items() if k not in names})


# -- the JSON Schema: generated from the models above (burstbench/record_schema.py) -------------
def json_schema() -> dict:
    from burstbench.record_schema import json_schema as generate

    return generate()


def schema_text(schema: dict | None = None) -> str:
    from burstbench.record_schema import schema_text as text

    return text(schema)


def shipped_schema() -> dict:
    from burstbench.record_schema import shipped_schema as shipped

    return shipped()


def validate(data: dict, source: str | Path = RECORD_FILE) -> None:
    """``data`` against the shipped schema; RecordError naming ``source`` and the first bad field."""
    from burstbench.record_schema import validate as check

    check(data, source)


# -- reading and writing -------------------------------------------------------------------
@contextmanager
def _locked(run_dir: Path):
    """Serialise read-modify-write of run.json between processes (flock on the run folder itself)."""
    if fcntl is None:
        yield
        return
    fd = os.open(run_dir, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        # Unlock explicitly: once gevent has run a subprocess in this process, closing the fd no longer
        # releases the lock, and the next write of run.json would wait forever.
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _jsonable(record: RunRecord) -> dict:
    return json.loads(json.dumps(record.to_dict(), default=str))


def _write(run_dir: Path, data: dict) -> None:
    path = run_dir / RECORD_FILE
    tmp = path.with_name(f".{RECORD_FILE}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _read(path: Path) -> dict:
    if not path.is_file():
        raise RecordError(f"{path}: missing (every run folder has one)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise RecordError(f"{path}: not valid JSON ({err})") from None
    validate(data, path)
    return data


def load_record(run_dir: str | Path) -> RunRecord:
    """run_dir/run.json as a RunRecord, validated against the shipped schema (version 1 or 2)."""
    return RunRecord.from_dict(_read(Path(run_dir) / RECORD_FILE))


def write_record(run_dir: str | Path, record: RunRecord, keep_external: bool = False) -> Path:
    """Validate ``record`` and replace run_dir/run.json with it atomically (temp file + os.replace).

    ``keep_external``: keep the EXTERNAL_FIELDS (events, resilience) another process has added to
    the file since: the load process rewrites run.json at its end while a harness appends events.
    """
    run_dir = Path(run_dir)
    with _locked(run_dir):
        data = _jsonable(record)
        path = run_dir / RECORD_FILE
        if keep_external and path.is_file():
            try:
                old = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError):
                old = {}
            for name in EXTERNAL_FIELDS:  # the load process knows none of these: keep what was appended
                if not data.get(name) and old.get(name):
                    data[name] = old[name]
        validate(data, path)
        _write(run_dir, data)
    return path


def update_record(run_dir: str | Path, **changes) -> RunRecord:
    """Set fields of the record in run_dir (atomic, serialised with other writers); the new record."""
    run_dir = Path(run_dir)
    with _locked(run_dir):
        path = run_dir / RECORD_FILE
        data = _read(path)
        unknown = [k for k in changes if k not in {f.name for f in _fields(RunRecord)}]
        if unknown:
            raise RecordError(f"{path}: no field {unknown[0]!r} in a run record")
        data.update(json.loads(json.dumps(changes, default=str)))
        validate(data, path)
        _write(run_dir, data)
    return RunRecord.from_dict(data)


def append_event(run_dir: str | Path, kind: str, epoch: float, label: str | None = None, **detail) -> Event:
    """Append one event to run_dir/run.json now (atomic rewrite; what was there is kept)."""
    event = Event(kind=kind, epoch=float(epoch), label=label or kind, detail=detail)
    run_dir = Path(run_dir)
    with _locked(run_dir):
        path = run_dir / RECORD_FILE
        data = _read(path)
        new = json.loads(json.dumps(_to_dict(event), default=str))
        if "schema_version" not in data:  # a version 1 file keeps version 1's event shape
            new = {"epoch": new["epoch"], "label": new["label"]}
        data["events"] = [*(data.get("events") or []), new]
        validate(data, path)
        _write(run_dir, data)
    return event


if __name__ == "__main__":  # python -m burstbench.record > burstbench/schemas/run.schema.json
    print(schema_text(), end="")
