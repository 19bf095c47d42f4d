"""Read one results folder: its per-request rows and run.json, with clear errors."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

ROWS_FILE = "requests.csv"
REQUIRED_COLUMNS = ("request_index", "scheduled_epoch", "sent_epoch", "lateness_ms", "latency_ms",
                    "corrected_latency_ms", "status", "ok", "failure_kind")


class RunError(ValueError):
    """A results folder that cannot be analysed; the message names the file and what is wrong."""


@dataclass(frozen=True)
class Run:
    path: Path
    info: dict
    rows: pd.DataFrame

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def ok_rows(self) -> pd.DataFrame:
        return self.rows[self.rows["ok"] == 1]


def load_run(path: str | Path) -> Run:
    path = Path(path)
    if not path.is_dir():
        raise RunError(f"{path}: no such results folder")
    info_path, rows_path = path / "run.json", path / ROWS_FILE
    if not info_path.is_file():
        raise RunError(f"{info_path}: missing (every run folder has one)")
    try:
        info = json.loads(info_path.read_text())
    except json.JSONDecodeError as err:
        raise RunError(f"{info_path}: not valid JSON ({err})") from None
    if not rows_path.is_file():
        raise RunError(f"{rows_path}: missing")
    try:
        rows = pd.read_csv(rows_path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise RunError(f"{rows_path}: unreadable ({type(err).__name__}: {err})") from None
    missing = [c for c in REQUIRED_COLUMNS if c not in rows.columns]
    if missing:
        raise RunError(f"{rows_path}: missing columns {missing}")
    if rows.empty:
        raise RunError(f"{rows_path}: no rows (the run sent no requests)")
    return Run(path=path, info=info, rows=rows.sort_values("request_index", kind="stable").reset_index(drop=True))
