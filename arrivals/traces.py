"""An arrival process replayed from a file of timestamps (a public serving trace such as BurstGPT).

The trace's own gaps are the schedule: request i is due at (t_i - t_0) * scale after the start
epoch, where ``scale`` stretches the trace to a target mean gap (1 when none is asked for).
Timestamps are numbers of seconds (any origin) or date-times pandas can parse; they are
sorted, and that they had to be is reported. The best-fitting gamma (shape and mean estimated
by maximum likelihood, location fixed at 0) summarises the trace's burstiness in the same terms
as the generated processes: shape < 1 is burstier than Poisson.
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

    kind = "trace"

    @classmethod
    def load(cls, path, column: str = DEFAULT_COLUMN, mean: float | None = None) -> "Trace":
        path = Path(path)
        if not path.is_file():
            raise ParameterError(f"{{trace}} {path}: no such file (a CSV, JSONL or Parquet file with a timestamp column)", "trace")
        table = _read_table(path)
        matches = [c for c in table.columns if str(c).strip().lower() == column.strip().lower()]
        if not matches:
            raise ParameterError(f"{{trace_column}} {column!r} is not a column of {path} "
                             f"(columns: {', '.join(map(str, table.columns))})", "trace_column")
        values = table[matches[0]].dropna()
        if len(values) < MIN_TIMESTAMPS:
            raise ParameterError(f"{{trace}} {path}: column {matches[0]!r} has {len(values)} timestamps; "
                             f"at least {MIN_TIMESTAMPS} are needed", "trace")
        seconds = _seconds_from(values, f"--trace {path}, column {matches[0]!r}")
        was_sorted = bool(np.any(np.diff(seconds) < 0))
        offsets = np.sort(seconds) - np.min(seconds)
        if offsets[-1] <= 0:
            raise ParameterError(f"{{trace}} {path}: all timestamps are equal; the trace spans no time", "trace")
        scale = 1.0
        if mean is not None:
            if not (isinstance(mean, (int, float)) and math.isfinite(mean) and mean > 0):
                raise ParameterError(f"{{mean}} must be a number > 0 (got {mean!r})", "mean")
            scale = float(mean) / float(np.mean(np.diff(offsets)))
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        return cls(path=path, column=str(matches[0]), offsets_s=offsets * scale, scale=scale, sha256=digest,
                   was_sorted=was_sorted)

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
                          "zero_gaps": int(np.sum(self.gaps_s == 0))},
                "fitted_gamma": {"process": "gamma", "shape": fit.shape, "mean_s": fit.mean, "cv": fit.cv}}

    def __str__(self) -> str:
        fit = self.fitted_gamma
        return (f"trace({self.path.name}, {len(self)} timestamps, mean={_seconds(self.mean)}, cv={self.cv:.2f}, "
                f"scale={self.scale:.3g}; best-fit gamma a={fit.shape:.2f})")
