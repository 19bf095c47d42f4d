"""The streaming cross-check's table: AIPerf beside burstbench, differences beyond tolerance, and why.

Rows compare like with like (TTFT; every inter-token gap; per-request TPOT, which AIPerf calls ITL; end to
end; counts), then the same on two subsets that remove queueing ("idle sends") and overlap ("quiet
streams"). ``explain`` gives one line per whole-run difference beyond 1 ms or 5 %: the measurement that
accounts for it, or that none here does. Printing and files apart from the numbers.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Sequence

import numpy as np

from burstbench.experiments.streaming_measures import ToolMeasures, idle_sends, in_flight_at_send, quiet_streams

TOOLS = ("aiperf", "burstbench")
QUANTILES = (0.50, 0.90, 0.99)
TOL_MS = 1.0           # a difference is explained when beyond this many ms ...
TOL_REL = 0.05         # ... or beyond this fraction of the peer's value
BOOTSTRAP = 2000       # resamples for the intervals of the differences
ZERO_GAP_MS = 0.05     # a gap this short is two chunks read in one socket read, not a token time

TTFT_FROM = {
    "aiperf": ("from record.start_perf_ns, taken just before aiohttp's session.request() (after a new "
               "ClientSession is made, before a pooled connection is taken: connect and send are inside) "
               "to the arrival of the socket read that completes the first SSE message whose delta.content "
               "is non-empty; the role-only first chunk and the usage chunk carry no data and are skipped "
               "(aiperf/transports/aiohttp_client.py, aiperf/endpoints/openai_chat.py "
               "extract_chat_response_data, aiperf/metrics/types/ttft_metric.py content_responses[0])"),
    "burstbench": ("from sent_epoch, the clock read just before the request is handed to the HTTP client "
                   "(locustfiles/core.py), to the arrival of the socket read that completes the first SSE "
                   "event with non-empty content (locustfiles/streaming.py: role-only and usage chunks are "
                   "not tokens)"),
}
ITL_DEFINITION = {
    "aiperf": ("'Inter Token Latency' = (last content chunk - first content chunk) / (OSL - 1) per request, "
               "i.e. TPOT; every gap is 'inter_chunk_latency' (aiperf/metrics/types/inter_token_latency_metric.py, "
               "inter_chunk_latency_metric.py)"),
    "burstbench": "itl.csv holds every gap between content chunks; tpot_ms = (last - first) / (output_tokens - 1)",
}


# -- the comparison ------------------------------------------------------------------------------
def percentile(values, q: float) -> float | None:
    """The q-quantile (q in [0, 1]; numpy's linear interpolation) of the finite values; None when none."""
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"quantile must be in [0, 1] (got {q!r})")
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    return float(np.quantile(v, q)) if v.size else None


def mean(values) -> float | None:
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    return float(v.mean()) if v.size else None


def pname(q: float) -> str:
    return f"p{q * 100:g}".replace(".", "")


@dataclass(frozen=True)
class Row:
    metric: str
    unit: str
    aiperf: float | None
    burstbench: float | None
    group: str = ""        # "ttft", "itl", "tpot", "latency", "count", "tokens", "share": what explains it
    subset: str = "all"    # "all", "idle sends", "quiet streams"
    ci: tuple | None = None  # 95 % bootstrap interval of the difference (requests resampled), where computed

    @property
    def diff(self) -> float | None:
        """burstbench - aiperf."""
        return None if self.aiperf is None or self.burstbench is None else self.burstbench - self.aiperf

    @property
    def noise(self) -> bool:
        """The bootstrap interval of the difference holds 0: the two runs' draws could give it."""
        return self.ci is not None and self.ci[0] <= 0.0 <= self.ci[1]

    @property
    def ratio(self) -> float | None:
        """burstbench / aiperf."""
        if self.diff is None or self.aiperf == 0:
            return None
        return self.burstbench / self.aiperf

    def beyond(self, tol_ms: float = TOL_MS, tol_rel: float = TOL_REL) -> bool | None:
        """Whether the difference needs explaining: > tol_ms (for ms), or > tol_rel of the peer's value."""
        if self.diff is None:
            return None
        slack = 1e-9 * max(1.0, abs(self.aiperf))  # 10.5 vs 10.0 is exactly 5 %, not 5.0000000000007 %
        if self.unit == "ms" and abs(self.diff) > tol_ms + slack:
            return True
        return abs(self.diff) > tol_rel * abs(self.aiperf) + slack


def _boot(m: ToolMeasures, attr: str, q: float, n_boot: int, rng: np.random.Generator) -> np.ndarray | None:
    """The q-quantile of ``attr`` over ``n_boot`` resamples of the ok requests (a request's ITL gaps go together)."""
    if m.ok == 0:
        return None
    idx = rng.integers(0, m.ok, size=(n_boot, m.ok))
    if attr != "itl_ms":
        with np.errstate(all="ignore"):
            out = np.nanquantile(getattr(m, attr)[idx], q, axis=1)
        return out if np.isfinite(out).any() else None
    if not len(m.itl_ms):
        return None
    order = np.argsort(m.itl_owner, kind="stable")
    gaps, owner = m.itl_ms[order], m.itl_owner[order]
    lo, hi = np.searchsorted(owner, np.arange(m.ok)), np.searchsorted(owner, np.arange(m.ok), side="right")
    out = np.full(n_boot, np.nan)
    for k in range(n_boot):
        v = np.concatenate([gaps[lo[i]:hi[i]] for i in idx[k]])
        if v.size:
            out[k] = np.quantile(v, q)
    return out


def diff_ci(a: ToolMeasures, b: ToolMeasures, attr: str, q: float, n_boot: int = BOOTSTRAP,
            seed: int = 0, level: float = 0.95) -> tuple[float, float] | None:
    """Percentile bootstrap interval of burstbench's q-quantile minus AIPerf's (seeded: the same every time)."""
    rng = np.random.default_rng(seed)
    da, db = _boot(a, attr, q, n_boot, rng), _boot(b, attr, q, n_boot, rng)
    if da is None or db is None:
        return None
    d = (db - da)[np.isfinite(db - da)]
    if not d.size:
        return None
    lo, hi = np.quantile(d, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def _quantile_rows(name: str, group: str, attr: str, a: ToolMeasures, b: ToolMeasures, quantiles,
                   subset: str = "all", n_boot: int = BOOTSTRAP) -> list[Row]:
    return [Row(f"{name} {pname(q)}", "ms", percentile(getattr(a, attr), q), percentile(getattr(b, attr), q), group,
                subset, diff_ci(a, b, attr, q, n_boot)) for q in quantiles]


def compare(a: ToolMeasures, b: ToolMeasures, quantiles: Sequence[float] = QUANTILES,
            n_boot: int = BOOTSTRAP) -> list[Row]:
    """The side-by-side rows, AIPerf (``a``) and burstbench (``b``), whole runs then the two subsets."""
    if (a.tool, b.tool) != TOOLS:
        raise ValueError(f"compare takes (aiperf, burstbench) measures, got ({a.tool}, {b.tool})")
    rows = [*_quantile_rows("TTFT", "ttft", "ttft_ms", a, b, quantiles, n_boot=n_boot),
            *_quantile_rows("ITL (every gap)", "itl", "itl_ms", a, b, quantiles, n_boot=n_boot),
            *_quantile_rows("TPOT (AIPerf's 'ITL')", "tpot", "tpot_ms", a, b, quantiles, n_boot=n_boot),
            *[replace(r, metric="end-to-end p50") for r in
              _quantile_rows("e2e", "latency", "latency_ms", a, b, (0.5,), n_boot=n_boot)],
            Row("requests sent", "", float(a.sent), float(b.sent), "count"),
            Row("requests ok", "", float(a.ok), float(b.ok), "count"),
            Row("output tokens / request", "tokens", mean(a.output_tokens), mean(b.output_tokens), "tokens"),
            Row("input tokens / request", "tokens", mean(a.input_tokens), mean(b.input_tokens), "tokens"),
            Row("ITL gaps counted", "", float(len(a.itl_ms)), float(len(b.itl_ms)), "count")]
    busy = [None if m.ok == 0 else 100.0 * float(np.mean(in_flight_at_send(m.start_s, m.end_s) > 0)) for m in (a, b)]
    rows.append(Row("sends finding own request in flight", "%", *busy, "share"))
    zero = [None if not len(m.itl_ms) else 100.0 * float(np.mean(m.itl_ms < ZERO_GAP_MS)) for m in (a, b)]
    rows.append(Row(f"gaps < {ZERO_GAP_MS:g} ms (chunks read together)", "%", *zero, "share"))
    ia, ib = idle_sends(a), idle_sends(b)
    rows.append(Row("idle sends", "", float(ia.ok), float(ib.ok), "count", "idle sends"))
    rows += _quantile_rows("TTFT", "ttft", "ttft_ms", ia, ib, (0.5,), "idle sends", n_boot)
    qa, qb = quiet_streams(a), quiet_streams(b)
    rows.append(Row("quiet streams", "", float(qa.ok), float(qb.ok), "count", "quiet streams"))
    rows += _quantile_rows("TTFT", "ttft", "ttft_ms", qa, qb, (0.5,), "quiet streams", n_boot)
    rows += _quantile_rows("ITL (every gap)", "itl", "itl_ms", qa, qb, (0.5,), "quiet streams", n_boot)
    rows += _quantile_rows("TPOT", "tpot", "tpot_ms", qa, qb, (0.5,), "quiet streams", n_boot)
    return rows


def find_row(rows: Sequence[Row], metric: str, subset: str) -> Row | None:
    return next((r for r in rows if r.metric == metric and r.subset == subset), None)


def _fmt(v: float | None, unit: str = "ms") -> str:
    if v is None:
        return "n/a"
    if unit in ("", "tokens") and float(v).is_integer():
        return f"{v:.0f}"
    return f"{v:.2f}" if abs(v) < 100 else f"{v:.1f}"


def explain(rows: Sequence[Row], a: ToolMeasures, b: ToolMeasures, tol_ms: float = TOL_MS,
            tol_rel: float = TOL_REL, background: dict | None = None,
            server_ms_per_token: dict | None = None) -> list[str]:
    """One line per whole-run difference beyond tolerance: what measurement explains it, or that none does.

    ``background``: CPU seconds per second used by processes other than the server and the tool during each
    tool's run (a shared machine); ``server_ms_per_token``: the server's own CPU milliseconds per output token
    during each run. Both are stated beside a difference nothing else explains, as measured confounds.
    """
    lines = []
    aside = ""
    if background:
        aside = (f" Other processes on this machine used {background.get('aiperf', float('nan')):.2f} CPU s/s during "
                 f"AIPerf's run and {background.get('burstbench', float('nan')):.2f} during burstbench's.")
    server_aside = ""
    if server_ms_per_token and all(server_ms_per_token.get(t) for t in TOOLS):
        sa, sb = server_ms_per_token["aiperf"], server_ms_per_token["burstbench"]
        server_aside = (f" The server itself spent {sa:.2f} ms of CPU per output token during AIPerf's run and "
                        f"{sb:.2f} during burstbench's (ratio {sb / sa:.3f}).")
    busy = find_row(rows, "sends finding own request in flight", "all")
    for row in rows:
        if row.subset != "all" or not row.beyond(tol_ms, tol_rel):
            continue
        d = (f"{row.metric}: burstbench {_fmt(row.burstbench, row.unit)} vs AIPerf {_fmt(row.aiperf, row.unit)} "
             f"{row.unit}").rstrip()
        if row.group in ("ttft", "itl", "tpot", "latency") and row.noise:
            lines.append(f"{d}: sampling noise. The 95 % bootstrap interval of the difference, "
                         f"[{_fmt(row.ci[0])}, {_fmt(row.ci[1])}] ms (requests resampled), holds 0: two draws of "
                         f"{a.ok} and {b.ok} requests can differ this much.")
        elif row.group in ("ttft", "itl", "tpot"):
            if row.group == "ttft":
                key, subset = "TTFT p50", "idle sends"
                cause = (f"queueing: the server answers one request at a time, and {_fmt(busy.aiperf)} % of "
                         f"AIPerf's and {_fmt(busy.burstbench)} % of burstbench's sends found one of the tool's own "
                         "requests still in flight (each tool draws its own Poisson gaps)")
            else:
                key = "ITL (every gap) p50" if row.group == "itl" else "TPOT p50"
                subset = "quiet streams"
                cause = ("overlap: a stream's gaps grow while the server takes in another request (and while "
                         "another request's prefill runs)")
            lines.append(_graded(d, row, find_row(rows, key, subset), subset, cause, tol_ms, tol_rel,
                                 aside + (server_aside if row.group != "ttft" else "")))
        elif row.group == "tokens":
            lines.append(f"{d}: token counts come from AIPerf: {a.token_source}; burstbench: {b.token_source}.")
        elif row.group == "count" and row.metric == "requests ok":
            lines.append(f"{d}: failures: AIPerf {a.failures or 'none'}, burstbench {b.failures or 'none'}.")
        elif row.group == "count" and row.metric == "ITL gaps counted":
            lines.append(f"{d}: ok requests x (content chunks - 1); AIPerf {a.ok} ok, burstbench {b.ok} ok.")
        elif row.group == "latency":
            lines.append(f"{d}: end-to-end is TTFT plus the decode (see those rows); AIPerf ends it at the last "
                         "content chunk, burstbench at the last byte (the finish/usage chunk after it).")
        elif row.group == "share":
            lines.append(f"{d}: a property of each tool's own draw (rates, gaps), reported to explain the rows above.")
        else:
            lines.append(f"{d}: no measurement here says why.")
    return lines


def _graded(d: str, row: Row, sub: Row | None, subset: str, cause: str, tol_ms: float, tol_rel: float,
            aside: str) -> str:
    """Whether the subset without the cause removes the difference: wholly, mostly, or not at all."""
    if sub is None or sub.diff is None:
        return f"{d}: no {subset} to compare; no measurement here says why.{aside}"
    ci = "" if sub.ci is None else f", 95 % interval [{_fmt(sub.ci[0])}, {_fmt(sub.ci[1])}] ms"
    on_sub = (f"on {subset} the {sub.metric}s are AIPerf {_fmt(sub.aiperf)}, burstbench {_fmt(sub.burstbench)} ms "
              f"(difference {_fmt(sub.diff)} ms{ci})")
    if sub.beyond(tol_ms, tol_rel) is False or sub.noise:
        return f"{d}: {cause}; {on_sub}, {'within tolerance' if not sub.beyond(tol_ms, tol_rel) else 'noise'}."
    if abs(sub.diff) < abs(row.diff) / 2:
        return (f"{d}: mostly {cause}; {on_sub}: that remainder is not explained by anything measured here.{aside}")
    return f"{d}: not explained: {on_sub}, so not by {cause.split(':')[0]}.{aside}"


# -- output ----------------------------------------------------------------------------------------
def table_records(rows: Sequence[Row]) -> list[dict]:
    out = []
    for r in rows:
        beyond = r.beyond()
        out.append({"metric": r.metric, "subset": r.subset, "unit": r.unit, "aiperf": r.aiperf,
                    "burstbench": r.burstbench, "diff": r.diff, "ratio": r.ratio,
                    "diff_ci_low": None if r.ci is None else r.ci[0], "diff_ci_high": None if r.ci is None else r.ci[1],
                    "beyond_tolerance": "" if beyond is None else int(beyond)})
    return out


def markdown_table(rows: Sequence[Row]) -> str:
    lines = ["| metric | subset | AIPerf | burstbench | difference | 95 % interval | ratio |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        unit = f" {r.unit}" if r.unit else ""
        mark = " *" if r.beyond() else ""
        ci = "" if r.ci is None else f"[{r.ci[0]:+.2f}, {r.ci[1]:+.2f}]"
        lines.append(f"| {r.metric} | {r.subset} | {_fmt(r.aiperf, r.unit)}{unit} | {_fmt(r.burstbench, r.unit)}{unit} | "
                     f"{'n/a' if r.diff is None else f'{r.diff:+.2f}'}{unit}{mark} | {ci} | "
                     f"{'n/a' if r.ratio is None else f'{r.ratio:.3f}'} |")
    return "\n".join(lines)


def write_report(out_dir: Path, rows: Sequence[Row], explanations: Sequence[str], commands: dict,
                 checks: Sequence[str]) -> None:
    import csv

    recs = table_records(rows)
    with (out_dir / "comparison.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(recs[0]))
        w.writeheader()
        w.writerows(recs)
    parts = ["# Streaming cross-check: AIPerf and burstbench on transformers serve", "",
             "difference = burstbench - AIPerf (its 95 % bootstrap interval, requests resampled); ratio = burstbench / AIPerf; "
             "* = beyond 1 ms or 5 %.", "",
             markdown_table(rows), "", "## Differences beyond tolerance", ""]
    parts += [f"- {line}" for line in explanations] or ["- none"]
    parts += ["", "## Checks", ""] + [f"- {c}" for c in checks]
    parts += ["", "## Where each tool measures", ""]
    parts += [f"- TTFT, {tool}: {TTFT_FROM[tool]}" for tool in TOOLS]
    parts += [f"- ITL, {tool}: {ITL_DEFINITION[tool]}" for tool in TOOLS]
    parts += ["", "## Commands", ""] + [f"- {k}: `{' '.join(v)}`" for k, v in commands.items()]
    (out_dir / "comparison.md").write_text("\n".join(parts) + "\n")


def plot_ecdf(path: Path, a: ToolMeasures, b: ToolMeasures) -> Path | None:
    """ECDFs of TTFT and of every ITL gap, both tools; None when neither has per-request data."""
    if not (a.ok or b.ok):
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, attr, title in ((axes[0], "ttft_ms", "TTFT"), (axes[1], "itl_ms", "ITL (every gap)")):
        for m, style in ((a, "-"), (b, "--")):
            v = np.sort(np.asarray(getattr(m, attr), float))
            v = v[np.isfinite(v)]
            if v.size:
                ax.step(v, np.arange(1, v.size + 1) / v.size, style, where="post",
                        label=f"{m.tool} (n={v.size}, p50 {np.median(v):.2f} ms)")
        ax.set_xscale("symlog", linthresh=1.0)
        ax.set_xlabel(f"{title} (ms)")
        ax.set_ylabel("fraction <= x")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
    fig.suptitle("transformers serve (untrained tiny GPT-2, CPU): AIPerf vs burstbench, same Poisson rate")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
