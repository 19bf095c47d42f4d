"""An arrival process replayed from a file of timestamps (a public serving trace such as BurstGPT).

The trace's own gaps are the schedule: request i is due at (t_i - t_0) * scale after the start
epoch, where ``scale`` stretches the trace to a target mean gap (1 when none is asked for).
Timestamps are numbers of seconds (any origin) or date-times pandas can parse; they are
sorted, and that they had to be is reported. The best-fitting gamma (shape and mean estimated
by maximum likelihood, location fixed at 0) summarises the trace's burstiness in the same terms
as the generated processes: shape < 1 is burstier than Poisson.

A trace can also carry each request's token counts (BurstGPT: ``Request tokens``, ``Response tokens``):
name the columns and they are read in replay order, so request k of the replay (the k-th timestamp
after sorting; the sort is stable, so tied timestamps keep their file order) gets the counts of the
row that timestamp came from. Rows without a timestamp are skipped for both. Token counts must be
whole numbers >= 0 (BurstGPT logs 0 response tokens for failed requests; what to send for them is
the caller's choice); an error names the column and the row, counted from 1 at the first data row.
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from burstbench.errors import ParameterError

from .distributions import Gamma, _seconds
from .schedule import ArrivalSchedule

DEFAULT_COLUMN = "timestamp"
MIN_TIMESTAMPS = 3  # two gaps at least, or there is no process to speak of


def _read_table(path: Path) -> pd.DataFrame:
    suffix = path.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            return pd.read_parquet(path)
        if suffix in (".jsonl", ".ndjson"):
            return pd.read_json(path, lines=True)
        return pd.read_csv(path)
    except (OSError, ValueError, pd.errors.ParserError) as err:
        raise ParameterError(f"{{trace}} {path}: cannot be read as a table ({type(err).__name__}: {err})", "trace") from None


def _seconds_from(values: pd.Series, where: str) -> np.ndarray:
    """Numbers are seconds; otherwise date-times, converted to seconds since the first."""
    numbers = pd.to_numeric(values, errors="coerce")
    if numbers.notna().all():
        seconds = numbers.to_numpy(dtype=float)
    else:
        try:
            stamps = pd.to_datetime(values, errors="raise", utc=True, format="mixed")
        except (ValueError, TypeError):
            bad = values[numbers.isna()].iloc[0]
            raise ValueError(f"{where}: {bad!r} is neither a number of seconds nor a date-time") from None
        seconds = (stamps - stamps.min()).dt.total_seconds().to_numpy(dtype=float)
    if not np.isfinite(seconds).all():
        raise ValueError(f"{where}: timestamps must be finite numbers of seconds")
    return seconds


@dataclass(frozen=True)
class Trace:
    """Timestamps from a file, as send offsets from 0, optionally rescaled to a mean gap."""

    path: Path
    column: str
    offsets_s: np.ndarray = field(repr=False)   # sorted, first 0, already scaled
    scale: float
    sha256: str
    was_sorted: bool
    # Token counts per request in replay order (aligned with offsets_s), when columns were named.
    input_tokens: np.ndarray | None = field(default=None, repr=False)
    output_tokens: np.ndarray | None = field(default=None, repr=False)
    token_columns: tuple[str | None, str | None] = (None, None)  # (input, output) as spelled in the file

    kind = "trace"

    @classmethod
    def load(cls, path, column: str = DEFAULT_COLUMN, mean: float | None = None, *,
             input_tokens_column: str | None = None, output_tokens_column: str | None = None) -> "Trace":
        """``input_tokens_column``/``output_tokens_column``: columns of per-request token counts to replay
        with the timestamps (``Request tokens``, ``Response tokens`` in BurstGPT); matched without case."""
        path = Path(path)
        if not path.is_file():
            raise ParameterError(f"{{trace}} {path}: no such file (a CSV, JSONL or Parquet file with a timestamp column)", "trace")
        table = _read_table(path)
        matches = [c for c in table.columns if str(c).strip().lower() == column.strip().lower()]
        if not matches:
            raise ParameterError(f"{{trace_column}} {column!r} is not a column of {path} "
                             f"(columns: {', '.join(map(str, table.columns))})", "trace_column")
        kept = np.flatnonzero(table[matches[0]].notna().to_numpy())  # positions of the rows with a timestamp
        values = table[matches[0]].iloc[kept]
        if len(values) < MIN_TIMESTAMPS:
            raise ParameterError(f"{{trace}} {path}: column {matches[0]!r} has {len(values)} timestamps; "
                             f"at least {MIN_TIMESTAMPS} are needed", "trace")
        seconds = _seconds_from(values, f"--trace {path}, column {matches[0]!r}")
        was_sorted = bool(np.any(np.diff(seconds) < 0))
        order = np.argsort(seconds, kind="stable")  # replay position k -> the k-th earliest timestamp
        offsets = seconds[order] - np.min(seconds)
        if offsets[-1] <= 0:
            raise ParameterError(f"{{trace}} {path}: all timestamps are equal; the trace spans no time", "trace")
        scale = 1.0
        if mean is not None:
            if not (isinstance(mean, (int, float)) and math.isfinite(mean) and mean > 0):
                raise ParameterError(f"{{mean}} must be a number > 0 (got {mean!r})", "mean")
            scale = float(mean) / float(np.mean(np.diff(offsets)))
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        rows = kept[order]  # the table position of each replayed request
        tokens = {param: _token_counts(table, name, rows, path, param) if name is not None else (None, None)
                  for param, name in (("trace_input_tokens", input_tokens_column),
                                      ("trace_output_tokens", output_tokens_column))}
        return cls(path=path, column=str(matches[0]), offsets_s=offsets * scale, scale=scale, sha256=digest,
                   was_sorted=was_sorted, input_tokens=tokens["trace_input_tokens"][1],
                   output_tokens=tokens["trace_output_tokens"][1],
                   token_columns=(tokens["trace_input_tokens"][0], tokens["trace_output_tokens"][0]))

    def __len__(self) -> int:
        return len(self.offsets_s)

    @property
    def gaps_s(self) -> np.ndarray:
        """The n - 1 gaps between consecutive timestamps (scaled)."""
        return np.diff(self.offsets_s)

    @property
    def mean(self) -> float:
        return float(np.mean(self.gaps_s))

    @property
    def cv(self) -> float:
        return float(np.std(self.gaps_s, ddof=1) / self.mean)

    @cached_property
    def fitted_gamma(self) -> Gamma:
        """Maximum-likelihood gamma (location 0) of the positive gaps; zero gaps (ties) cannot enter a gamma."""
        positive = self.gaps_s[self.gaps_s > 0]
        if len(positive) < 2:
            raise ParameterError(f"{{trace}} {self.path}: fewer than 2 positive gaps; no gamma can be fitted", "trace")
        shape, _loc, scale = stats.gamma.fit(positive, floc=0)
        return Gamma(shape=float(shape), mean=float(shape * scale))

    def tokens_for(self, index: int) -> tuple[int | None, int | None]:
        """(input tokens, output tokens) of replayed request ``index``; None for a column not read."""
        return tuple(None if a is None else int(a[index]) for a in (self.input_tokens, self.output_tokens))

    def schedule(self, n: int | None = None) -> ArrivalSchedule:
        """The first ``n`` timestamps (all by default) as a schedule; the first request is due at the start."""
        n = len(self) if n is None else n
        if not 1 <= n <= len(self):
            raise ParameterError(f"{{requests}} must be in [1, {len(self)}] for this trace (got {n})", "requests")
        return ArrivalSchedule(distribution=self, seed=0, offsets_s=self.offsets_s[:n].copy())

    def describe(self) -> dict:
        fit = self.fitted_gamma
        return {"process": "trace", "label": str(self), "mean_s": self.mean, "rate_per_s": 1.0 / self.mean, "cv": self.cv,
                "trace": {"file": str(self.path), "column": self.column, "sha256": self.sha256,
                          "timestamps": len(self), "scale": self.scale, "sorted_on_load": self.was_sorted,
                          "zero_gaps": int(np.sum(self.gaps_s == 0)), **self._token_description()},
                "fitted_gamma": {"process": "gamma", "shape": fit.shape, "mean_s": fit.mean, "cv": fit.cv}}

    def _token_description(self) -> dict:
        if self.token_columns == (None, None):
            return {}
        return {"token_columns": {"input": self.token_columns[0], "output": self.token_columns[1]}}

    def __str__(self) -> str:
        fit = self.fitted_gamma
        return (f"trace({self.path.name}, {len(self)} timestamps, mean={_seconds(self.mean)}, cv={self.cv:.2f}, "
                f"scale={self.scale:.3g}; best-fit gamma a={fit.shape:.2f})")


def _token_counts(table: pd.DataFrame, column: str, rows: np.ndarray, path: Path, param: str
                  ) -> tuple[str, np.ndarray]:
    """(the column's spelling in the file, its counts for ``rows`` in that order) as int64 >= 0."""
    matches = [c for c in table.columns if str(c).strip().lower() == str(column).strip().lower()]
    if not matches:
        raise ParameterError(f"{{{param}}} {column!r} is not a column of {path} "
                             f"(columns: {', '.join(map(str, table.columns))})", param)
    raw = table[matches[0]].iloc[rows]
    numbers = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=float)
    whole = np.isfinite(numbers) & (numbers == np.floor(numbers))
    bad = ~whole | (numbers < 0)
    if bad.any():
        at = int(np.argmin(np.where(bad, rows, np.iinfo(np.int64).max)))  # the first bad row in file order
        value = raw.iloc[at]
        why = "is empty" if pd.isna(value) else "is negative" if whole[at] else "is not a whole number"
        raise ParameterError(f"{{{param}}} {path}, column {matches[0]!r}, row {rows[at] + 1}: {str(value)!r} {why}; "
                             "token counts must be whole numbers >= 0", param)
    return str(matches[0]), numbers.astype(np.int64)
