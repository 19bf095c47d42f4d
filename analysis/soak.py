"""A long run judged for drift and leaks: per-window throughput and latency, RSS growth, p99 drift.

Pure functions of a run folder (requests.csv, processes.csv from the telemetry sidecar); ``write_soak_report``
writes soak.md, soak.csv and soak.png into it. ``burstbench soak`` runs the load and calls it;
``burstbench soak --report-only results/<run>`` judges any run folder again (other windows, thresholds).

Windows: fixed lengths from the first send (``sent_epoch``); a request belongs to the window it was sent in,
so the windows' requests add up to the run's rows. A window is *full* when the run covers at least 90 % of it
(the last one is usually shorter). Throughput is ok requests per second of the window's covered span;
p50/p99 are exact (numpy's linear interpolation) over the window's ok requests; failures are counted by kind.

Leak verdict, per watched process (the service's process tree, each load process): the least-squares slope of
RSS against time in MB per hour (``scipy.stats.linregress``) over the samples after the warm-up windows, with a
95 % CI slope +- t(0.975, n - 2) * stderr. "no leak detected" when the CI includes 0 or the slope is below the
threshold (10 MB/h unless told); else "grows X MB/h (CI a..b)". Samples 5 s apart are autocorrelated, so the
CI is narrower than it would be for independent samples: the threshold, not the CI alone, guards against a
step (an allocator arena) being read as a leak.

Drift verdict: p99 of the last full window against the first full window after the warm-up; a percentile
bootstrap (``scipy.stats.bootstrap``, seeded, the two windows resampled independently) gives the 95 % CI of the
difference. "no drift detected" when the CI includes 0 or the change is within the threshold (20 % of the
baseline p99 unless told); else "p99 drifted up/down". A Mann-Whitney U test of the two windows' whole latency
distributions is reported beside it (a shift of the bulk, not of the tail).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from burstbench.locustfiles.progress import format_duration

from .runs import RunFolder, load_run
from .telemetry import run_processes

WINDOW_S = 300.0
MIN_WINDOW_S = 10.0
WINDOWS_IN_A_SHORT_RUN = 6  # a run shorter than this many 5-minute windows gets this many shorter ones
FULL_SHARE = 0.9
WARMUP_WINDOWS = 1
LEAK_THRESHOLD_MB_PER_H = 10.0
DRIFT_THRESHOLD_SHARE = 0.20
CONFIDENCE = 0.95
BOOTSTRAP_RESAMPLES = 2000
QUANTILES = {"p50": 0.50, "p99": 0.99}
TABLE_FILE, REPORT_FILE, FIGURE_FILE = "soak.csv", "soak.md", "soak.png"


def default_window_s(duration_s: float) -> float:
    """5 minutes; a run shorter than 30 minutes gets 6 windows (at least 10 s each, whole seconds). A drawn
    schedule of "30 minutes" ends a little early or late: 90 % of it still counts as 30 minutes."""
    if duration_s >= FULL_SHARE * WINDOW_S * WINDOWS_IN_A_SHORT_RUN:
        return WINDOW_S
    return float(max(MIN_WINDOW_S, math.floor(duration_s / WINDOWS_IN_A_SHORT_RUN)))


def check_window(window_s: float) -> float:
    if not (isinstance(window_s, (int, float)) and math.isfinite(window_s) and window_s >= 1):
        raise ValueError(f"--window-s must be a number of seconds >= 1 (got {window_s!r})")
    return float(window_s)


# ------------------------------------------------------------------------------------------- windows
def windows(rows: pd.DataFrame, window_s: float) -> pd.DataFrame:
    """One row per window from the first send: its span, requests, ok, failed, throughput, p50/p99 (ok only)."""
    window_s = check_window(window_s)
    sent_s = rows["sent_epoch"].to_numpy(dtype=float) - float(rows["sent_epoch"].min())
    index = np.floor(sent_s / window_s).astype(int)
    last_s = float(sent_s.max())
    out = []
    for k in range(int(index.max()) + 1):
        part = rows[index == k]
        start_s = k * window_s
        span_s = min(window_s, last_s - start_s) if k == index.max() else window_s
        ok = part[part["ok"] == 1]
        latency = ok["latency_ms"].to_numpy(dtype=float)
        kinds = part.loc[part["ok"] != 1, "failure_kind"].fillna("").astype(str).replace("", "unknown")
        record = {"window": k, "start_s": start_s, "end_s": start_s + window_s, "span_s": span_s,
                  "full": bool(span_s >= FULL_SHARE * window_s), "requests": len(part), "ok": len(ok),
                  "failed": len(part) - len(ok),
                  "offered_rps": len(part) / span_s if span_s > 0 else np.nan,
                  "throughput_rps": len(ok) / span_s if span_s > 0 else np.nan,
                  # NaN, never 0, when a window has no ok request
                  **{f"{name}_ms": float(np.quantile(latency, q)) if len(latency) else np.nan
                     for name, q in QUANTILES.items()},
                  "failure_kinds": ";".join(f"{kind}:{n}" for kind, n in kinds.value_counts().sort_index().items())}
        out.append(record)
    return pd.DataFrame.from_records(out)


def rss_series(processes: pd.DataFrame | None, t0_epoch: float) -> pd.DataFrame:
    """processes.csv's RSS: ``t_s`` (since the first send), ``role``, ``pid``, ``name``, ``rss_mb`` (samples with one)."""
    columns = ["t_s", "role", "pid", "name", "rss_mb"]
    if processes is None or processes.empty:
        return pd.DataFrame({c: pd.Series(dtype=float if c in ("t_s", "rss_mb") else object) for c in columns})
    frame = processes[processes["rss_mb"].notna()].copy()
    frame["t_s"] = frame["epoch"] - t0_epoch
    return frame[columns].reset_index(drop=True)


def add_window_rss(table: pd.DataFrame, rss: pd.DataFrame, window_s: float) -> pd.DataFrame:
    """Each window's mean RSS per role (load processes summed per sample: their total memory), in MB."""
    table = table.copy()
    for role in ("service", "load"):
        per_sample = rss[rss["role"] == role].groupby("t_s")["rss_mb"].sum()
        k = np.floor(per_sample.index.to_numpy(dtype=float) / window_s)
        means = per_sample.groupby(k).mean()
        table[f"{role}_rss_mb"] = table["window"].map(lambda w, m=means: float(m.get(float(w), np.nan)))
    return table


# ------------------------------------------------------------------------------------------- leak verdict
@dataclass(frozen=True)
class Growth:
    """A process's RSS trend after the warm-up: slope in MB per hour with its CI, and the verdict."""

    process: str  # "service", "load 4242"
    name: str
    samples: int
    first_mb: float
    last_mb: float
    slope_mb_per_h: float
    ci_low: float
    ci_high: float
    leak: bool | None  # None: too few samples to judge
    verdict: str
    late_slope_mb_per_h: float = np.nan  # the slope over the later half of the samples: a step, or a slope?


def rss_growth(t_s, rss_mb, threshold_mb_per_h: float = LEAK_THRESHOLD_MB_PER_H, *, process: str = "",
               name: str = "") -> Growth:
    """OLS slope of ``rss_mb`` over ``t_s`` (seconds) in MB/h, CI slope +- t * stderr, and the verdict."""
    t_h = np.asarray(t_s, dtype=float) / 3600.0
    rss = np.asarray(rss_mb, dtype=float)
    n = len(rss)
    first, last = (float(rss[0]), float(rss[-1])) if n else (np.nan, np.nan)
    if n < 3 or np.ptp(t_h) == 0:
        return Growth(process, name, n, first, last, np.nan, np.nan, np.nan, None,
                      f"not judged: {n} RSS samples after the warm-up (needs 3 or more, at different times)")
    fit = stats.linregress(t_h, rss)
    # a constant RSS (pages never touched again) leaves linregress's r, and so its stderr, NaN: an exact fit
    stderr = 0.0 if np.ptp(rss) == 0 else float(fit.stderr)
    half = float(stats.t.ppf(0.5 + CONFIDENCE / 2, n - 2) * stderr)
    slope, low, high = float(fit.slope), float(fit.slope) - half, float(fit.slope) + half
    ci = f"CI {low:.1f}..{high:.1f}"
    if low <= 0 <= high:
        verdict, leak = f"no leak detected ({slope:+.1f} MB/h, {ci} includes 0)", False
    elif slope < threshold_mb_per_h:
        verdict, leak = f"no leak detected ({slope:+.1f} MB/h, {ci}, below {threshold_mb_per_h:g} MB/h)", False
    else:
        verdict, leak = f"grows {slope:.1f} MB/h ({ci})", True
    late = n // 2
    late_slope = (float(stats.linregress(t_h[late:], rss[late:]).slope)
                  if n - late >= 3 and np.ptp(t_h[late:]) > 0 else np.nan)
    if leak and math.isfinite(late_slope):
        verdict += f"; later half {late_slope:+.1f} MB/h"
    return Growth(process, name, n, first, last, slope, low, high, leak, verdict, late_slope)


def leak_verdicts(rss: pd.DataFrame, skip_s: float, end_s: float,
                  threshold_mb_per_h: float = LEAK_THRESHOLD_MB_PER_H) -> list[Growth]:
    """One Growth per watched process (the service's tree, then each load process) from its samples in
    [``skip_s``, ``end_s``]: after the warm-up, up to the last send (Locust's wind-down, writing its reports,
    takes memory that is no leak)."""
    out = []
    for (role, pid), part in rss.groupby(["role", "pid"], sort=False):
        label = "service" if role == "service" else f"{role} {pid}"
        kept = part[(part["t_s"] >= skip_s) & (part["t_s"] <= end_s)].sort_values("t_s")
        out.append(rss_growth(kept["t_s"], kept["rss_mb"], threshold_mb_per_h, process=label,
                              name=str(part["name"].iloc[-1])))
    return sorted(out, key=lambda g: (g.process != "service", g.process))


# ------------------------------------------------------------------------------------------- drift verdict
@dataclass(frozen=True)
class Drift:
    baseline_window: int | None
    last_window: int | None
    baseline_p99_ms: float
    last_p99_ms: float
    difference_ms: float
    ci_low_ms: float
    ci_high_ms: float
    mann_whitney_p: float
    drifted: bool | None  # None: not judged
    verdict: str


def _p99_difference(last, base, axis=-1):
    return np.quantile(last, 0.99, axis=axis) - np.quantile(base, 0.99, axis=axis)


def p99_drift(baseline_ms, last_ms, threshold_share: float = DRIFT_THRESHOLD_SHARE, *, seed: int = 0,
              n_resamples: int = BOOTSTRAP_RESAMPLES, windows_judged: tuple = (None, None)) -> Drift:
    """p99 of ``last_ms`` minus p99 of ``baseline_ms`` with its bootstrap 95 % CI, and the verdict."""
    base, last = np.asarray(baseline_ms, dtype=float), np.asarray(last_ms, dtype=float)
    b, w = windows_judged
    if len(base) < 2 or len(last) < 2:
        return Drift(b, w, np.nan, np.nan, np.nan, np.nan, np.nan, np.nan, None,
                     f"not judged: {len(base)} and {len(last)} ok requests in the two windows (needs 2 or more each)")
    base_p99, last_p99 = float(np.quantile(base, 0.99)), float(np.quantile(last, 0.99))
    diff = last_p99 - base_p99
    res = stats.bootstrap((last, base), _p99_difference, vectorized=True, paired=False, n_resamples=n_resamples,
                          confidence_level=CONFIDENCE, method="percentile", rng=np.random.default_rng(seed),
                          batch=200)
    low, high = float(res.confidence_interval.low), float(res.confidence_interval.high)
    mw_p = float(stats.mannwhitneyu(last, base, alternative="two-sided").pvalue)
    where = f"p99 {base_p99:.1f} ms (window {b}) -> {last_p99:.1f} ms (window {w})"
    change = f"{diff:+.1f} ms ({100 * diff / base_p99:+.0f} %), 95 % CI {low:+.1f}..{high:+.1f} ms"
    if low <= 0 <= high:
        verdict, drifted = f"no drift detected: {where}, {change} includes 0", False
    elif abs(diff) < threshold_share * base_p99:
        verdict, drifted = (f"no drift detected: {where}, {change}, within {100 * threshold_share:.0f} % of the "
                            "baseline"), False
    else:
        verdict, drifted = f"p99 drifted {'up' if diff > 0 else 'down'}: {where}, {change}", True
    return Drift(b, w, base_p99, last_p99, diff, low, high, mw_p, drifted, verdict)


def drift_windows(table: pd.DataFrame, warmup_windows: int = WARMUP_WINDOWS) -> tuple[int | None, int | None]:
    """(first full window after the warm-up, last full window), or Nones when there are not two such windows."""
    full = table.loc[table["full"] & (table["window"] >= warmup_windows), "window"].tolist()
    return (int(full[0]), int(full[-1])) if len(full) >= 2 else (None, None)


# ------------------------------------------------------------------------------------------- the whole soak
def check_options(window_s: float | None, warmup_windows: int, leak_threshold_mb_per_h: float,
                  drift_threshold_share: float) -> None:
    """ValueError naming the flag, before anything runs (``burstbench soak`` checks them ahead of the load)."""
    if window_s is not None:
        check_window(window_s)
    if not (isinstance(warmup_windows, int) and warmup_windows >= 0):
        raise ValueError(f"--warmup-windows must be an integer >= 0 (got {warmup_windows!r})")
    if not (math.isfinite(leak_threshold_mb_per_h) and leak_threshold_mb_per_h >= 0):
        raise ValueError(f"--leak-threshold-mb-per-h must be a number >= 0 (got {leak_threshold_mb_per_h!r})")
    if not (math.isfinite(drift_threshold_share) and 0 <= drift_threshold_share < 10):
        raise ValueError(f"--drift-threshold must be a share in [0, 10) (got {drift_threshold_share!r})")


@dataclass(frozen=True)
class Soak:
    run: RunFolder
    window_s: float
    warmup_windows: int
    leak_threshold_mb_per_h: float
    drift_threshold_share: float
    table: pd.DataFrame
    rss: pd.DataFrame
    growths: list[Growth]
    drift: Drift

    @property
    def duration_s(self) -> float:
        rows = self.run.rows
        return float(rows["sent_epoch"].max() - rows["sent_epoch"].min())


def analyse(run_dir: str | Path | RunFolder, *, window_s: float | None = None, warmup_windows: int = WARMUP_WINDOWS,
            leak_threshold_mb_per_h: float = LEAK_THRESHOLD_MB_PER_H,
            drift_threshold_share: float = DRIFT_THRESHOLD_SHARE, seed: int = 0) -> Soak:
    """The run folder's windows, leak verdicts and drift verdict (``window_s`` None: ``default_window_s``)."""
    check_options(window_s, warmup_windows, leak_threshold_mb_per_h, drift_threshold_share)
    run = run_dir if isinstance(run_dir, RunFolder) else load_run(run_dir)
    rows = run.rows
    t0 = float(rows["sent_epoch"].min())
    duration_s = float(rows["sent_epoch"].max()) - t0
    window_s = default_window_s(duration_s) if window_s is None else check_window(window_s)
    rss = rss_series(run_processes(run), t0)
    table = add_window_rss(windows(rows, window_s), rss, window_s)
    growths = leak_verdicts(rss, warmup_windows * window_s, duration_s, leak_threshold_mb_per_h)
    base, last = drift_windows(table, warmup_windows)
    if base is None:
        drift = Drift(None, None, *([np.nan] * 6), None,
                      f"not judged: fewer than two full windows after the {warmup_windows} warm-up window(s)")
    else:
        sent_w = np.floor((rows["sent_epoch"].to_numpy(dtype=float) - t0) / window_s).astype(int)
        ok = rows["ok"].to_numpy() == 1
        latency = rows["latency_ms"].to_numpy(dtype=float)
        drift = p99_drift(latency[ok & (sent_w == base)], latency[ok & (sent_w == last)], drift_threshold_share,
                          seed=seed, windows_judged=(base, last))
    return Soak(run, window_s, warmup_windows, leak_threshold_mb_per_h, drift_threshold_share, table, rss, growths,
                drift)


# ------------------------------------------------------------------------------------------- writing
def _num(value, digits=1) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def _warmup(windows_n: int) -> str:
    return {0: "no warm-up window", 1: "the first window is warm-up"}.get(windows_n,
                                                                         f"the first {windows_n} windows are warm-up")


def soak_markdown(soak: Soak) -> str:
    run, t = soak.run, soak.table
    dist = (run.record.distribution or {}).get("label", run.record.scenario)
    ok = int(t["ok"].sum())
    lines = [f"# Soak: {run.name}", "",
             f"{len(run.rows)} requests over {soak.duration_s / 60:.1f} min ({dist}), {ok} ok, "
             f"{int(t['failed'].sum())} failed; mean throughput {ok / max(soak.duration_s, 1e-9):.2f} ok/s. "
             f"Windows of {soak.window_s:g} s from the first send; {_warmup(soak.warmup_windows)} "
             "(left out of both verdicts; RSS fitted up to the last send).", "", "## Verdicts", ""]
    lines += [f"- **{g.process}** ({g.name}): {g.verdict}" for g in soak.growths] or [
        "- **RSS**: not judged (no processes.csv samples)"]
    lines += [f"- **latency**: {soak.drift.verdict}"]
    if not math.isnan(soak.drift.mann_whitney_p):
        lines += [f"  (Mann-Whitney U, whole distributions of the two windows: p = {soak.drift.mann_whitney_p:.3g})"]
    lines += ["", f"Leak: RSS slope after the warm-up (scipy.stats.linregress, MB per hour) with a 95 % CI, slope +- "
              f"t * stderr; no leak detected when the CI includes 0 or the slope is below "
              f"{soak.leak_threshold_mb_per_h:g} MB/h. Drift: p99 of the last full window minus p99 of the first "
              "full window after the warm-up, 95 % percentile-bootstrap CI; no drift detected when the CI includes "
              f"0 or the change is within {100 * soak.drift_threshold_share:.0f} % of the baseline p99.", "",
              "## Windows", "",
              "| window | start | span s | requests | ok | failed | ok/s | p50 ms | p99 ms | service RSS MB | "
              "load RSS MB | failures |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in t.itertuples():
        lines.append(f"| {r.window}{'' if r.full else ' (partial)'} | {format_duration(r.start_s)} | {r.span_s:.0f} | "
                     f"{r.requests} | {r.ok} | {r.failed} | {_num(r.throughput_rps, 2)} | {_num(r.p50_ms)} | "
                     f"{_num(r.p99_ms)} | {_num(r.service_rss_mb)} | {_num(r.load_rss_mb)} | "
                     f"{r.failure_kinds or '-'} |")
    lines += ["", "## RSS growth", "", "| process | name | samples | first MB | last MB | MB/h | 95 % CI | "
              "MB/h, later half |", "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {g.process} | {g.name} | {g.samples} | {_num(g.first_mb)} | {_num(g.last_mb)} | "
              f"{_num(g.slope_mb_per_h, 2)} | {_num(g.ci_low, 2)}..{_num(g.ci_high, 2)} | "
              f"{_num(g.late_slope_mb_per_h, 2)} |" for g in soak.growths]
    lines += ["", f"![soak]({FIGURE_FILE})", ""]
    return "\n".join(lines)


def soak_figure(soak: Soak, path: Path) -> Path:
    """Throughput, p50/p99 and failures per window; RSS of the service tree and of the load over time."""
    from .figures import plt, save_figure

    t = soak.table
    mid_min = (t["start_s"] + t["span_s"] / 2) / 60
    width_min = t["span_s"] / 60 * 0.9
    fig, axes = plt.subplots(5, 1, figsize=(9, 11), sharex=True)
    axes[0].bar(mid_min, t["throughput_rps"], width=width_min, color="#4C72B0", label="ok/s")
    axes[0].plot(mid_min, t["offered_rps"], "o--", color="k", linewidth=1, label="sent/s")
    axes[0].set_ylabel("requests/s")
    for name, style in (("p50", "o-"), ("p99", "s-")):
        axes[1].plot(mid_min, t[f"{name}_ms"], style, label=name)
    axes[1].set_ylabel("latency ms (ok)")
    axes[2].bar(mid_min, t["failed"], width=width_min, color="#C44E52", label="failed")
    axes[2].set_ylabel("failures")
    axes[2].set_ylim(0, max(1, float(t["failed"].max())) * 1.3)
    skip_min = soak.warmup_windows * soak.window_s / 60
    for ax, role in ((axes[3], "service"), (axes[4], "load")):
        growth = {g.process: g for g in soak.growths}
        for (r, pid), part in soak.rss[soak.rss["role"] == role].groupby(["role", "pid"]):
            label = "service" if r == "service" else f"load {pid}"
            ax.plot(part["t_s"] / 60, part["rss_mb"], linewidth=1, label=f"{label} RSS")
            g = growth.get(label)
            kept = part[(part["t_s"] >= skip_min * 60) & (part["t_s"] <= soak.duration_s)]
            if g is not None and g.leak is not None and len(kept):
                x = kept["t_s"].to_numpy() / 3600
                intercept = float(np.mean(kept["rss_mb"]) - g.slope_mb_per_h * np.mean(x))
                ax.plot(x * 60, intercept + g.slope_mb_per_h * x, "--", color="k", linewidth=1,
                        label=f"fit {g.slope_mb_per_h:+.1f} MB/h")
        ax.set_ylabel(f"{role} RSS MB")
    for ax in axes:
        if skip_min > 0:
            ax.axvspan(0, skip_min, color="0.9", zorder=0)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, loc="upper left", ncol=3)
    axes[-1].set_xlabel("minutes since the first send (grey: warm-up)")
    fig.suptitle(f"soak {soak.run.name}: windows of {soak.window_s:g} s", fontsize=10)
    return save_figure(fig, path)


def write_soak_report(run_dir: str | Path, **options) -> tuple[Soak, list[Path]]:
    """soak.csv, soak.md and soak.png in the run folder; ``options`` as ``analyse`` takes them."""
    soak = analyse(run_dir, **options)
    folder = soak.run.path
    soak.table.to_csv(folder / TABLE_FILE, index=False, float_format="%.3f")
    (folder / REPORT_FILE).write_text(soak_markdown(soak))
    return soak, [folder / TABLE_FILE, folder / REPORT_FILE, soak_figure(soak, folder / FIGURE_FILE)]


def verdict_lines(soak: Soak) -> list[str]:
    """What ``burstbench soak`` prints at the end: one line per process, then the latency drift."""
    rss = [f"{g.process} RSS: {g.verdict}" for g in soak.growths] or ["RSS: not judged (no processes.csv samples)"]
    return [*rss, f"latency: {soak.drift.verdict}"]
