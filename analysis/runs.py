"""Read one results folder: its per-request rows and its run record (run.json), with clear errors.

The folder's format is ``burstbench.record``: requests.csv's columns (``ROW_COLUMNS``) and run.json's
typed, versioned record, validated against the shipped JSON Schema every time it is loaded.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from burstbench.record import RECORD_FILE, ROW_COLUMN_NAMES, ROWS_FILE, RecordError, RunRecord, load_record

from burstbench.locustfiles.generator_health import GENERATOR_COLUMNS, GENERATOR_FILE

KNOWN_COLUMNS = ROW_COLUMN_NAMES  # the names of burstbench.record.ROW_COLUMNS (no second list)
REQUIRED_COLUMNS = ("request_index", "scheduled_epoch", "sent_epoch", "lateness_ms", "latency_ms",
                    "corrected_latency_ms", "status", "ok", "failure_kind")
NUMERIC_COLUMNS = ("request_index", "scheduled_epoch", "sent_epoch", "lateness_ms", "latency_ms",
                   "corrected_latency_ms", "status", "ok")


class RunError(ValueError):
    """A results folder that cannot be analysed; the message names the file and what is wrong."""


@dataclass(frozen=True)
class RunFolder:
    """One run folder as the analysis reads it: the typed record (run.json) and the rows (requests.csv)."""

    path: Path
    record: RunRecord
    rows: pd.DataFrame
    dropped_rows: int = 0  # incomplete rows (a truncated last line): reported as partial, never as zero
    # The load processes' own samples (generator.csv: CPU, loop delay, lateness per interval and
    # worker, see locustfiles.generator_health); None for runs recorded before the generator watched itself.
    generator: pd.DataFrame | None = None

    @property
    def info(self) -> dict:
        """run.json as a plain dict (the record's fields; prefer ``record``)."""
        return self.record.to_dict()

    @property
    def partial(self) -> bool:
        return self.dropped_rows > 0 or self.record.status != "complete"

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def record_path(self) -> Path:
        return self.path / RECORD_FILE

    @property
    def ok_rows(self) -> pd.DataFrame:
        return self.rows[self.rows["ok"] == 1]


def load_run(path: str | Path) -> RunFolder:
    path = Path(path)
    if not path.is_dir():
        raise RunError(f"{path}: no such results folder")
    rows_path = path / ROWS_FILE
    try:
        record = load_record(path)
    except RecordError as err:
        raise RunError(str(err)) from None
    if not rows_path.is_file():
        raise RunError(f"{rows_path}: missing")
    try:
        rows = pd.read_csv(rows_path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise RunError(f"{rows_path}: unreadable ({type(err).__name__}: {err})") from None
    missing = [c for c in REQUIRED_COLUMNS if c not in rows.columns]
    if missing:
        raise RunError(f"{rows_path}: missing columns {missing}")
    unknown = [c for c in rows.columns if c not in KNOWN_COLUMNS]
    if unknown:
        raise RunError(f"{rows_path}: unknown columns {unknown} (known: {', '.join(KNOWN_COLUMNS)})")
    if rows.empty:
        raise RunError(f"{rows_path}: no rows (the run sent no requests)")
    numeric = rows[list(NUMERIC_COLUMNS)].apply(pd.to_numeric, errors="coerce")
    complete = numeric.notna().all(axis=1)
    if not complete.any():
        raise RunError(f"{rows_path}: no complete row (corrupt file?)")
    rows = rows.loc[complete].copy()
    rows[list(NUMERIC_COLUMNS)] = numeric.loc[complete]
    return RunFolder(path=path, record=record,
                     rows=rows.sort_values("request_index", kind="stable").reset_index(drop=True),
                     dropped_rows=int((~complete).sum()), generator=load_generator(path / GENERATOR_FILE))


def load_generator(path: Path) -> pd.DataFrame | None:
    """generator.csv as numbers sorted by worker and time; None when the run has none (older runs).

    A truncated last line (the process killed mid-write) is dropped; a file with the wrong columns
    or no readable number is a RunError naming it.
    """
    if not path.is_file():
        return None
    try:
        frame = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise RunError(f"{path}: unreadable ({type(err).__name__}: {err})") from None
    if tuple(frame.columns) != GENERATOR_COLUMNS:
        raise RunError(f"{path}: columns {list(frame.columns)}, expected {', '.join(GENERATOR_COLUMNS)}")
    frame = frame.apply(pd.to_numeric, errors="coerce")
    frame = frame[frame[["epoch", "worker", "interval_s"]].notna().all(axis=1)].copy()
    frame["worker"] = frame["worker"].astype(int)
    return frame.sort_values(["worker", "epoch"], kind="stable").reset_index(drop=True)


_READ_ONCE: dict[tuple, pd.DataFrame] = {}  # (reader, path, mtime, size) -> frame
READ_ONCE_KEEP = 16


def read_once(path: Path, read) -> pd.DataFrame:
    """``read(path)`` once per version of the file (its mtime and size); each caller gets its own copy.

    For the side files that ``compare`` and ``report`` ask for several times (itl.csv, server_metrics.csv).
    """
    stat = path.stat()
    key = (getattr(read, "__qualname__", repr(read)), str(path.resolve()), stat.st_mtime_ns, stat.st_size)
    if key not in _READ_ONCE:
        if len(_READ_ONCE) >= READ_ONCE_KEEP:
            _READ_ONCE.clear()
        _READ_ONCE[key] = read(path)
    return _READ_ONCE[key].copy()
