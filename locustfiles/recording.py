"""One row per request, kept as it finishes and written in batches, so an interrupted run keeps what it measured.

Rows are flushed to disk every ``FLUSH_EVERY_S`` by the run (and at its end, Ctrl-C and SIGTERM
included), not one write per request: at thousands of requests per second a line-buffered
``csv.DictWriter`` was 7 % of the load process's CPU on the request path. A load process killed
with SIGKILL loses at most that last fraction of a second of rows.
"""
from __future__ import annotations

import csv
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

from burstbench.slo import request_meets
from burstbench.record import ITL_COLUMNS, ITL_FILE, ROW_COLUMNS, ROWS_FILE  # the files' columns, declared once

FLUSH_EVERY_S = 0.25
ITL_KEY = "_itl_ms"  # a streamed row's inter-token gaps (ms), written to itl.csv instead of requests.csv

_COLUMN_SET = frozenset(ROW_COLUMNS)


def check_run_dir(run_dir: Path) -> Path:
    """An exact run folder given by the user or a harness: new, or an empty folder (never one holding a run)."""
    if run_dir.exists() and (not run_dir.is_dir() or any(run_dir.iterdir())):
        raise ValueError(f"--run-dir must be a new or empty folder (got {str(run_dir)!r}, which holds files)")
    return run_dir


def make_run_dir(results_root: Path, name: str, exact: Path | None = None) -> Path:
    """``exact`` when given, else ``results/<UTC timestamp>-<name>/``, never reusing an existing folder."""
    if exact is not None:
        check_run_dir(exact)
        exact.mkdir(parents=True, exist_ok=True)
        return exact
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    base = Path(results_root) / f"{stamp}-{name}"
    run_dir, n = base, 1
    while True:
        try:
            run_dir.mkdir(parents=True)
            return run_dir
        except FileExistsError:
            n += 1
            run_dir = base.with_name(f"{base.name}-{n}")


class RowRecorder:
    """Appends rows line-buffered and keeps the counts that must add up: sent = ok + failed.

    With ``slos`` it also counts the requests that met them all (``burstbench.slo.request_meets``) and the
    span from the first scheduled send to the last answer: the closing line's goodput.
    """

    def __init__(self, run_dir: Path, slos: dict | None = None):
        self.slos = slos or None
        self.good = 0
        self.first_scheduled_epoch = float("inf")
        self.last_answer_epoch = float("-inf")
        self.path = Path(run_dir) / ROWS_FILE
        self._file = self.path.open("w", newline="", encoding="utf-8")
        self._writer = csv.writer(self._file)
        self._writer.writerow(ROW_COLUMNS)
        self._file.flush()
        self._pending: list[dict] = []
        self._itl_path = Path(run_dir) / ITL_FILE
        self._itl_file = None  # opened with the first streamed row
        self._itl_pending: list[tuple] = []
        self.itl_gaps = 0
        self.started = 0
        self.ok = 0
        self.failed = 0
        self.failure_kinds: Counter[str] = Counter()
        self.token_sources: Counter[str] = Counter()

    def mark_started(self) -> None:
        self.started += 1

    def record(self, row: dict) -> None:
        gaps = row.pop(ITL_KEY, None)
        if self.slos is not None:
            self.good += request_meets(row, gaps, self.slos)
            self.first_scheduled_epoch = min(self.first_scheduled_epoch, float(row["scheduled_epoch"]))
            self.last_answer_epoch = max(self.last_answer_epoch,
                                         float(row["sent_epoch"]) + float(row["latency_ms"]) / 1000)
        if gaps is not None:
            index = row["request_index"]
            self._itl_pending.extend((index, k, gap) for k, gap in enumerate(gaps, start=1))
            self.itl_gaps += len(gaps)
            if self._itl_file is None:
                self._itl_file = self._itl_path.open("w", newline="", encoding="utf-8")
                self._itl_writer = csv.writer(self._itl_file)
                self._itl_writer.writerow(ITL_COLUMNS)
        if row.get("token_source"):
            self.token_sources[row["token_source"]] += 1
        self._pending.append(row)
        if row["ok"]:
            self.ok += 1
        else:
            self.failed += 1
            self.failure_kinds[row["failure_kind"]] += 1

    @property
    def rows(self) -> int:
        return self.ok + self.failed

    def counts(self) -> dict:
        return {
            "sent": self.started,
            "rows": self.rows,
            "ok": self.ok,
            "failed": self.failed,
            "failure_kinds": dict(sorted(self.failure_kinds.items())),
        }

    def flush(self) -> None:
        """Write the rows recorded since the last flush (a row with a column not in ROW_COLUMNS is refused)."""
        if not self._pending or self._file.closed:
            return
        pending, self._pending = self._pending, []
        for row in pending:
            if not row.keys() <= _COLUMN_SET:
                raise ValueError(f"row has columns {sorted(row.keys() - _COLUMN_SET)} not in ROW_COLUMNS")
        self._writer.writerows([[row.get(c, "") for c in ROW_COLUMNS] for row in pending])
        self._file.flush()
        if self._itl_pending:
            gaps, self._itl_pending = self._itl_pending, []
            self._itl_writer.writerows(gaps)
            self._itl_file.flush()

    def close(self) -> None:
        if not self._file.closed:
            self.flush()
            self._file.close()
        if self._itl_file is not None and not self._itl_file.closed:
            self._itl_file.close()


class RowBuffer:
    """A distributed worker's rows, held until its next report carries them to the master."""

    def __init__(self):
        self.pending: list[dict] = []
        self.started = 0
        self.ok = 0
        self.failed = 0

    def mark_started(self) -> None:
        self.started += 1

    def record(self, row: dict) -> None:
        self.pending.append(row)
        if row["ok"]:
            self.ok += 1
        else:
            self.failed += 1

    @property
    def rows(self) -> int:
        return self.ok + self.failed

    def take(self) -> list[dict]:
        taken, self.pending = self.pending, []
        return taken
