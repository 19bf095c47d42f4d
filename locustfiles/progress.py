"""Progress lines for long runs: requests done of total, elapsed, ETA."""
from __future__ import annotations


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = max(0, int(round(seconds)))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"


def progress_line(done: int, total: int, ok: int, failed: int, elapsed_s: float, eta_s: float | None) -> str:
    pct = 100.0 * done / total if total else 100.0
    return (f"[burstbench] {done}/{total} requests ({pct:.0f}%) | ok {ok} failed {failed} | "
            f"elapsed {format_duration(elapsed_s)} | ETA {format_duration(eta_s)}")
