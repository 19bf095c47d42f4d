"""One load tool's streaming measures, read from its own export: AIPerf's records or burstbench's rows.

``ToolMeasures`` holds, per successful request, the send and end times, TTFT, TPOT, end-to-end latency and
token counts, and every inter-token gap with the request it belongs to, so that both tools' numbers go
through the same percentile code (``streaming_compare``). Also the overlap between a tool's own requests
(``in_flight_at_send``, ``sends_during``), which separates queueing from what each tool measures.
Pure: files in, arrays out; no processes.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterable

import numpy as np

# -- one tool's measures ---------------------------------------------------------------------------
@dataclass(frozen=True)
class ToolMeasures:
    """One tool's run: per ok request (aligned arrays; NaN where a value is missing) and every ITL gap."""

    tool: str
    sent: int
    failures: dict                   # failure kind -> count
    start_s: np.ndarray              # actual send, Unix seconds
    end_s: np.ndarray                # last byte (or last content chunk), Unix seconds
    ttft_ms: np.ndarray
    tpot_ms: np.ndarray
    latency_ms: np.ndarray
    output_tokens: np.ndarray
    input_tokens: np.ndarray
    itl_ms: np.ndarray               # every inter-token gap of the ok requests
    itl_owner: np.ndarray            # the ok request (position in the arrays above) each gap belongs to
    token_source: str = ""

    @property
    def ok(self) -> int:
        return len(self.ttft_ms)

    def subset(self, keep: np.ndarray) -> "ToolMeasures":
        """The ok requests where ``keep`` (a boolean per ok request) is true, with their gaps."""
        keep = np.asarray(keep, dtype=bool)
        if keep.shape != self.ttft_ms.shape:
            raise ValueError(f"keep must have one entry per ok request ({self.ok}), got {keep.shape}")
        new_pos = np.cumsum(keep) - 1
        gap_keep = keep[self.itl_owner] if len(self.itl_owner) else np.zeros(0, dtype=bool)
        pick = {k: getattr(self, k)[keep] for k in ("start_s", "end_s", "ttft_ms", "tpot_ms", "latency_ms",
                                                    "output_tokens", "input_tokens")}
        return replace(self, sent=int(keep.sum()), failures={}, itl_ms=self.itl_ms[gap_keep],
                       itl_owner=new_pos[self.itl_owner[gap_keep]], **pick)


def _array(values, dtype=float) -> np.ndarray:
    return np.asarray(list(values), dtype=dtype)


_UNIT_MS = {"ms": 1.0, "ns": 1e-6, "us": 1e-3, "s": 1000.0, "sec": 1000.0}


def _metric(metrics: dict, tag: str, unit_scale: bool = True):
    """A record's metric value (ms for times), or None when AIPerf wrote none."""
    m = metrics.get(tag)
    if not isinstance(m, dict) or m.get("value") is None:
        return None
    value, unit = m["value"], m.get("unit", "")
    if not unit_scale or unit not in _UNIT_MS:
        return value
    scale = _UNIT_MS[unit]
    return [v * scale for v in value] if isinstance(value, list) else value * scale


def parse_aiperf_records(lines: Iterable[str]) -> ToolMeasures:
    """AIPerf's per-request export (``profile_export.jsonl``, one JSON record a line) as ToolMeasures.

    Only the profiling phase counts (a warm-up phase, when asked for, is left out). A record with an
    ``error`` is a failure of kind ``http_<code>`` (or the error's type).
    """
    cols = {k: [] for k in ("start_s", "end_s", "ttft_ms", "tpot_ms", "latency_ms", "output_tokens", "input_tokens")}
    gaps, owners, failures, sent = [], [], {}, 0
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except ValueError:
            raise ValueError(f"AIPerf record line {n} is not JSON: {line[:120]!r}") from None
        meta = rec.get("metadata") or {}
        if meta.get("benchmark_phase", "profiling") != "profiling":
            continue
        sent += 1
        error = rec.get("error")
        metrics = rec.get("metrics") or {}
        ttft = _metric(metrics, "time_to_first_token")
        if error or ttft is None:
            kind = (f"http_{error['code']}" if error and error.get("code") else
                    (error or {}).get("type") or "no-content")
            failures[kind] = failures.get(kind, 0) + 1
            continue
        pos = len(cols["ttft_ms"])
        cols["start_s"].append(meta["request_start_ns"] / 1e9)
        cols["end_s"].append(meta["request_end_ns"] / 1e9)
        cols["ttft_ms"].append(ttft)
        tpot = _metric(metrics, "inter_token_latency")
        cols["tpot_ms"].append(math.nan if tpot is None else tpot)
        latency = _metric(metrics, "request_latency")
        cols["latency_ms"].append(math.nan if latency is None else latency)
        for key, tag in (("output_tokens", "output_sequence_length"), ("input_tokens", "input_sequence_length")):
            value = _metric(metrics, tag, unit_scale=False)
            cols[key].append(math.nan if value is None else value)
        icl = _metric(metrics, "inter_chunk_latency") or []
        gaps += icl
        owners += [pos] * len(icl)
    return ToolMeasures(tool="aiperf", sent=sent, failures=failures, itl_ms=_array(gaps), itl_owner=_array(owners, int),
                        token_source="usage (--use-server-token-count)", **{k: _array(v) for k, v in cols.items()})


def read_aiperf(artifacts: Path) -> ToolMeasures:
    path = Path(artifacts) / "profile_export.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"AIPerf wrote no per-request export at {path} (see its log)")
    with path.open() as f:
        return parse_aiperf_records(f)


BURSTBENCH_COLUMNS = ("ok", "sent_epoch", "latency_ms", "ttft_ms", "tpot_ms", "output_tokens", "input_tokens")


def parse_burstbench_rows(requests_csv: Path, itl_csv: Path | None) -> ToolMeasures:
    """A burstbench run's requests.csv and itl.csv (the streaming columns of the issue 14 contract)."""
    import pandas as pd

    rows = pd.read_csv(requests_csv, keep_default_na=True)
    missing = [c for c in BURSTBENCH_COLUMNS if c not in rows.columns]
    if missing:
        raise ValueError(f"{requests_csv} has no {', '.join(missing)} column(s): this burstbench does not record "
                         "streaming measures (issue 14 not wired in this checkout)")
    sent = len(rows)
    ok_mask = rows["ok"].astype(int) == 1
    failed = rows.loc[~ok_mask]
    kinds = failed["failure_kind"].fillna("unknown").astype(str) if "failure_kind" in failed else \
        pd.Series(["unknown"] * len(failed))
    failures = {str(k): int(v) for k, v in kinds.value_counts().items()}
    good = rows.loc[ok_mask].reset_index(drop=True)
    num = {c: pd.to_numeric(good[c], errors="coerce").to_numpy(dtype=float) for c in BURSTBENCH_COLUMNS[1:]}
    start = num["sent_epoch"]
    gaps, owners = np.zeros(0), np.zeros(0, dtype=int)
    if itl_csv is not None and Path(itl_csv).is_file():
        itl = pd.read_csv(itl_csv)
        position = {int(idx): pos for pos, idx in enumerate(good["request_index"].astype(int))}
        itl = itl[itl["request_index"].astype(int).isin(position)]
        gaps = itl["itl_ms"].to_numpy(dtype=float)
        owners = itl["request_index"].astype(int).map(position).to_numpy(dtype=int)
    sources = good["token_source"].fillna("").astype(str).value_counts() if "token_source" in good else {}
    source = ", ".join(f"{k or 'none'} ({v})" for k, v in dict(sources).items())
    return ToolMeasures(tool="burstbench", sent=sent, failures=failures, start_s=start,
                        end_s=start + num["latency_ms"] / 1000.0, ttft_ms=num["ttft_ms"], tpot_ms=num["tpot_ms"],
                        latency_ms=num["latency_ms"], output_tokens=num["output_tokens"],
                        input_tokens=num["input_tokens"], itl_ms=gaps, itl_owner=owners, token_source=source)


def read_burstbench(run_dir: Path) -> ToolMeasures:
    return parse_burstbench_rows(Path(run_dir) / "requests.csv", Path(run_dir) / "itl.csv")


# -- overlap between a tool's own requests --------------------------------------------------------
def in_flight_at_send(start_s: np.ndarray, end_s: np.ndarray) -> np.ndarray:
    """For each request, how many of the others had been sent and not yet answered when it was sent."""
    start_s, end_s = np.asarray(start_s, float), np.asarray(end_s, float)
    earlier = start_s[None, :] < start_s[:, None]
    open_then = end_s[None, :] > start_s[:, None]
    return (earlier & open_then).sum(axis=1)


def sends_during(start_s: np.ndarray, end_s: np.ndarray) -> np.ndarray:
    """For each request, how many others were sent while it was in flight (start < other's send < end)."""
    start_s, end_s = np.asarray(start_s, float), np.asarray(end_s, float)
    inside = (start_s[None, :] > start_s[:, None]) & (start_s[None, :] < end_s[:, None])
    return inside.sum(axis=1)


def idle_sends(m: ToolMeasures) -> ToolMeasures:
    """The requests sent while none of the tool's own was in flight: TTFT without queueing."""
    return m.subset(in_flight_at_send(m.start_s, m.end_s) == 0)


def quiet_streams(m: ToolMeasures) -> ToolMeasures:
    """Idle sends during whose stream nothing else was sent: token gaps without another request's work."""
    return m.subset((in_flight_at_send(m.start_s, m.end_s) == 0) & (sends_during(m.start_s, m.end_s) == 0))
