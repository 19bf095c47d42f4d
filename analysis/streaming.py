"""The report's streaming section: TTFT, ITL, TPOT and end-to-end tables, tokens/s, goodput and figures.

A run streamed when its rows have a TTFT (``has_streaming_rows``). Its inter-token latencies (every gap
between successive content chunks of every request) are in the companion file itl.csv. Percentiles are
exact (numpy's linear interpolation over every value); p50 and p99 get bootstrap 95% CIs from
``latency.percentile_cis``. Distributions are over successful requests, as the latency tables are.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display on servers
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from .figures import save_figure  # noqa: E402
from .latency import percentile_cis  # noqa: E402
from .runs import RunError, RunFolder, read_once  # noqa: E402
from .slo import describe_slos, goodput, has_streaming_rows, run_duration_s  # noqa: E402
from .timeline import default_window_s, percentile_lines  # noqa: E402

ITL_FILE = "itl.csv"
ITL_COLUMNS = ("request_index", "token", "itl_ms")
TABLE_QUANTILES = {"p50": 0.50, "p90": 0.90, "p95": 0.95, "p99": 0.99}
CI_QUANTILES = {"p50": 0.50, "p99": 0.99}
TOKEN_RATE_QUANTILES = {"p10": 0.10, "p50": 0.50, "p90": 0.90}
STREAMING_TITLE = "Streaming (TTFT, ITL, TPOT, tokens/s)"
GOODPUT_TITLE = "Goodput"


def _numeric(rows: pd.DataFrame, column: str) -> pd.Series:
    if column not in rows.columns:
        return pd.Series(np.nan, index=rows.index)
    return pd.to_numeric(rows[column], errors="coerce")


def streaming_info(run: RunFolder) -> dict:
    """run.json's ``streaming`` field ({} for a run that did not stream)."""
    return run.record.streaming or {}


def load_itl(run: RunFolder) -> pd.DataFrame | None:
    """itl.csv as numbers (request_index, token, itl_ms), sorted; None when the run has none.

    Read once per file version (``runs.read_once``): ``compare`` wants the gaps for the table, the deltas
    and goodput, ``report`` after ``summary``; each caller gets its own copy."""
    path = run.path / (streaming_info(run).get("itl_file") or ITL_FILE)
    if not path.is_file():
        return None
    return read_once(path, _read_itl)


def _read_itl(path: Path) -> pd.DataFrame:
    try:
        frame = pd.read_csv(path)
    except (pd.errors.ParserError, UnicodeDecodeError) as err:
        raise RunError(f"{path}: unreadable ({type(err).__name__}: {err})") from None
    except pd.errors.EmptyDataError:
        return pd.DataFrame({c: pd.Series(dtype=float) for c in ITL_COLUMNS})
    if tuple(frame.columns) != ITL_COLUMNS:
        raise RunError(f"{path}: columns {list(frame.columns)}, expected {', '.join(ITL_COLUMNS)}")
    frame = frame.apply(pd.to_numeric, errors="coerce").dropna()  # a truncated last line: dropped
    frame[["request_index", "token"]] = frame[["request_index", "token"]].astype(np.int64)
    return frame.sort_values(["request_index", "token"], kind="stable").reset_index(drop=True)


def ok_itl_ms(run: RunFolder, itl: pd.DataFrame | None) -> np.ndarray:
    """Every inter-token gap of the successful requests, in ms."""
    if itl is None:
        return np.array([])
    ok = run.ok_rows["request_index"].to_numpy(dtype=np.int64)
    return itl.loc[itl["request_index"].isin(ok), "itl_ms"].to_numpy(dtype=float)


def measures(run: RunFolder, itl: pd.DataFrame | None) -> dict[str, np.ndarray]:
    """The streaming measures of successful requests (NaNs dropped), by the name the tables show."""
    ok = run.ok_rows

    def values(column):
        v = _numeric(ok, column).to_numpy(dtype=float)
        return v[~np.isnan(v)]

    return {"TTFT": values("ttft_ms"), "TTFT (schedule-corrected)": values("corrected_ttft_ms"),
            "ITL (every gap)": ok_itl_ms(run, itl), "TPOT": values("tpot_ms"),
            "end-to-end latency": values("latency_ms"),
            "end-to-end (schedule-corrected)": values("corrected_latency_ms")}


def measures_table(run: RunFolder, itl: pd.DataFrame | None, n_resamples: int = 2000, seed: int = 0) -> pd.DataFrame:
    """One row per measure: n, exact p50/p90/p95/p99, mean, max (ms), and bootstrap 95% CIs of p50 and p99.

    NaN where a measure has no value (never 0).
    """
    records = {}
    for name, v in measures(run, itl).items():
        record = {"n": len(v)}
        record.update({q: float(np.quantile(v, f)) if len(v) else np.nan for q, f in TABLE_QUANTILES.items()})
        record.update(mean=float(v.mean()) if len(v) else np.nan, max=float(v.max()) if len(v) else np.nan)
        cis = percentile_cis(v, CI_QUANTILES, n_resamples=n_resamples, seed=seed)
        for q in CI_QUANTILES:
            record[f"{q}_ci_low"], record[f"{q}_ci_high"] = cis.loc[q, "ci_low"], cis.loc[q, "ci_high"]
        records[name] = record
    return pd.DataFrame.from_dict(records, orient="index").rename_axis("measure")


def measures_display(table: pd.DataFrame) -> pd.DataFrame:
    """The measures table with each CI as one '[low, high]' column."""
    shown = table[["n", *TABLE_QUANTILES, "mean", "max"]].copy()
    for q in CI_QUANTILES:
        shown[f"{q} 95% CI"] = ["n/a" if pd.isna(lo) else f"[{lo:.1f}, {hi:.1f}]"
                                for lo, hi in zip(table[f"{q}_ci_low"], table[f"{q}_ci_high"])]
    return shown.rename(columns={q: f"{q} (ms)" for q in [*TABLE_QUANTILES, "mean", "max"]})


# -- tokens ----------------------------------------------------------------------------------
def request_tokens_per_s(rows: pd.DataFrame) -> np.ndarray:
    """Output tokens / end-to-end latency of each successful request with a token count, in tokens/s.

    End to end (TTFT included), as llmperf and GuideLLM report it; the decode rate alone is 1000 / TPOT.
    """
    ok = rows[rows["ok"] == 1]
    tokens, latency_ms = _numeric(ok, "output_tokens").to_numpy(float), _numeric(ok, "latency_ms").to_numpy(float)
    keep = ~np.isnan(tokens) & (latency_ms > 0)
    return tokens[keep] / latency_ms[keep] * 1000.0


def tokens_table(run: RunFolder) -> pd.DataFrame:
    """Output tokens/s per request (p10/p50/p90, mean) and for the whole run, with the token totals."""
    rows, ok = run.rows, run.ok_rows
    per_request = request_tokens_per_s(rows)
    duration_s = run_duration_s(rows)
    output = float(_numeric(ok, "output_tokens").sum(min_count=1))  # NaN, not 0, when no request has a count
    table = {"requests with a token count": len(per_request)}
    table.update({f"per request {q} (tokens/s)": float(np.quantile(per_request, f)) if len(per_request) else np.nan
                  for q, f in TOKEN_RATE_QUANTILES.items()})
    table["per request mean (tokens/s)"] = float(per_request.mean()) if len(per_request) else np.nan
    table.update({"output tokens (ok requests)": output,
                  "input tokens (ok requests)": float(_numeric(ok, "input_tokens").sum(min_count=1)),
                  "run duration (s)": duration_s,
                  "whole run (output tokens/s)": output / duration_s if duration_s > 0 else np.nan})
    return pd.DataFrame({"value": table})


def counts_table(rows: pd.DataFrame, column: str, name: str) -> pd.DataFrame:
    """Rows per value of ``column`` (every request; empty counted as 'none')."""
    values = rows[column].fillna("").astype(str).replace("", "none") if column in rows else pd.Series(dtype=str)
    return values.value_counts().rename("requests").rename_axis(name).to_frame()


# -- over time -------------------------------------------------------------------------------
def token_arrivals(run: RunFolder, itl: pd.DataFrame | None) -> tuple[np.ndarray, np.ndarray]:
    """Seconds since the first send at which successful requests' output tokens arrived, and their weights.

    Each content chunk arrives at send + TTFT + the request's gaps so far (itl.csv); a request's output
    tokens are shared equally among its chunks (a chunk may carry several). Without itl.csv a request's
    tokens all count at its first token.
    """
    ok = run.ok_rows.assign(ttft_ms=_numeric(run.ok_rows, "ttft_ms")).dropna(subset=["ttft_ms"])
    t0 = float(run.rows["sent_epoch"].min())
    index = ok["request_index"].to_numpy(dtype=np.int64)
    first_s = pd.Series(ok["sent_epoch"].to_numpy(float) - t0 + ok["ttft_ms"].to_numpy(float) / 1000, index=index)
    gaps = itl[itl["request_index"].isin(index)] if itl is not None else pd.DataFrame(columns=list(ITL_COLUMNS))
    later_s = (first_s.reindex(gaps["request_index"].to_numpy()).to_numpy(float)
               + gaps.groupby("request_index")["itl_ms"].cumsum().to_numpy(float) / 1000)
    chunks = 1 + gaps["request_index"].value_counts().reindex(index, fill_value=0)
    tokens = pd.Series(_numeric(ok, "output_tokens").to_numpy(float), index=index).fillna(chunks)
    weight = tokens / chunks
    times = np.concatenate([first_s.to_numpy(float), later_s])
    weights = np.concatenate([weight.to_numpy(float), weight.reindex(gaps["request_index"].to_numpy()).to_numpy(float)])
    return times, weights


def streaming_timeline(run: RunFolder, itl: pd.DataFrame | None, window_s: float | None = None) -> pd.DataFrame:
    """Per window since the first send: output tokens/s (by arrival of the tokens) and TTFT p50/p95 (ms,
    successful requests by send time; NaN where a window has none). Windows as ``timeline.default_window_s``."""
    times_s, weights = token_arrivals(run, itl)
    ok = run.ok_rows
    sent_s = ok["sent_epoch"].to_numpy(float) - float(run.rows["sent_epoch"].min())
    span_s = float(max(times_s.max(initial=0.0), sent_s.max(initial=0.0)))
    window_s = default_window_s(span_s) if window_s is None else float(window_s)
    n = int(np.floor(span_s / window_s)) + 1
    tokens = np.bincount(np.floor(times_s / window_s).astype(int), weights=weights, minlength=n)[:n]
    ttft = pd.DataFrame({"window": np.floor(sent_s / window_s).astype(int), "ttft_ms": _numeric(ok, "ttft_ms").to_numpy()})
    by_window = ttft.groupby("window")["ttft_ms"]
    table = pd.DataFrame({"output_tokens_per_s": tokens / window_s,
                          "ttft_p50_ms": by_window.quantile(0.5).reindex(range(n)).to_numpy(),
                          "ttft_p95_ms": by_window.quantile(0.95).reindex(range(n)).to_numpy()},
                         index=pd.Index(np.round(np.arange(n) * window_s, 9), name="window_start_s"))
    table.attrs["window_s"] = window_s
    return table


# -- figures ---------------------------------------------------------------------------------
def distribution_figure(series: dict[str, np.ndarray], xlabel: str, title: str, path: Path) -> Path:
    """Histogram and exact ECDF of each named set of values (ms), p50 and p99 marked on the ECDF."""
    fig, (ax_hist, ax_ecdf) = plt.subplots(1, 2, figsize=(10, 4))
    every = np.concatenate([v for v in series.values() if len(v)] or [np.zeros(0)])
    positive = every[every > 0]
    # One slow gap among thousands of 2 ms ones squashes a linear axis: past a 20-fold spread, log (0 kept).
    wide = len(positive) > 1 and positive.max() > 20 * np.median(positive)
    for (name, values), color in zip(series.items(), ("#4C72B0", "#DD8452")):
        if not len(values):
            ax_ecdf.plot([], [], linestyle="none", label=f"{name}: no values")
            continue
        bins = (np.concatenate([[0.0], np.geomspace(positive.min(), positive.max(), 60)]) if wide
                else min(60, max(10, len(values) // 10)))
        ax_hist.hist(values, bins=bins, color=color, alpha=0.6, label=name)
        ax_ecdf.ecdf(values, color=color, label=name)
        for q, marker in ((0.5, "o"), (0.99, "^")):
            v = float(np.quantile(values, q))
            ax_ecdf.plot([v], [q], marker=marker, color=color, linestyle="none")
            ax_ecdf.annotate(f"p{q * 100:g} {v:.1f}", (v, q), textcoords="offset points", xytext=(4, -10),
                             fontsize=7, color=color)
    ax_hist.set_xlabel(xlabel)
    ax_hist.set_ylabel("count")
    ax_ecdf.set_xlabel(xlabel)
    ax_ecdf.set_ylabel("share")
    ax_ecdf.set_ylim(0, 1.02)
    for ax in (ax_hist, ax_ecdf):
        if wide:
            ax.set_xscale("symlog", linthresh=float(positive.min()))
            ax.set_xlim(left=0)
            ax.set_xlabel(f"{xlabel}, log scale (0: chunks read together)")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8, loc="best")
    fig.suptitle(title, fontsize=9)
    return save_figure(fig, path)


def streaming_timeline_figure(run: RunFolder, table: pd.DataFrame, path: Path) -> Path:
    """Output tokens/s and TTFT p50/p95 per window, on the timeline's axis (seconds since the first send)."""
    width_s = table.attrs["window_s"]
    x_s = table.index.to_numpy()
    fig, (ax_tokens, ax_ttft) = plt.subplots(2, 1, sharex=True, figsize=(9, 5.5))
    values = table["output_tokens_per_s"].to_numpy()
    ax_tokens.step(np.append(x_s, x_s[-1] + width_s), np.append(values, values[-1]), where="post", color="#4C72B0",
                   label="output tokens/s (by arrival)")
    ax_tokens.set_ylabel("output tokens/s")
    ax_tokens.legend(fontsize=8, loc="upper left")
    percentile_lines(ax_ttft, x_s + width_s / 2, table["ttft_p50_ms"], table["ttft_p95_ms"], "TTFT",
                     "TTFT (ms), by send time")
    ax_ttft.set_xlabel(f"time since first send (s), {width_s:g} s windows")
    dist = run.record.distribution or {}
    ax_tokens.set_title(f"{run.name}\n{dist.get('label')}, pacing {run.record.pacing}", fontsize=9)
    return save_figure(fig, path)


# -- report sections -------------------------------------------------------------------------
def goodput_tables(result: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(shown, numeric): one row for all SLOs together (over every request), one per SLO alone (over ok ones)."""
    low, high = result["fraction_ci"]
    numeric = {"all SLOs (every request)": {"bound_ms": np.nan, "requests": result["requests"], "met": result["good"],
                                            "share": result["fraction"], "ci_low": low, "ci_high": high}}
    for metric, alone in result["per_slo"].items():
        numeric[f"{metric} alone (ok requests)"] = {"bound_ms": alone["bound_ms"], "requests": result["ok"],
                                                    "met": alone["met"], "share": alone["share_of_ok"],
                                                    "ci_low": np.nan, "ci_high": np.nan}
    numeric = pd.DataFrame.from_dict(numeric, orient="index").rename_axis("SLO")
    shown = numeric[["bound_ms", "requests", "met", "share"]].rename(columns={"bound_ms": "bound (ms)"}).astype(object)
    shown["share 95% CI"] = ["" if pd.isna(lo) else f"[{lo:.4f}, {hi:.4f}]"
                             for lo, hi in zip(numeric["ci_low"], numeric["ci_high"])]
    shown["bound (ms)"] = ["" if pd.isna(b) else f"{b:g}" for b in numeric["bound_ms"]]
    return shown, numeric


def goodput_text(result: dict) -> str:
    low, high = result["fraction_ci"]
    rate_low, rate_high = result["rate_ci_per_s"]
    return (f"SLOs: {describe_slos(result['slos'])}. A request is good when it succeeded and met every SLO (no ITL "
            "or TPOT, one output token, meets those trivially; no TTFT fails). Goodput "
            f"{result['fraction']:.4f} of all {result['requests']} requests ({result['good']} good; exact "
            f"Clopper-Pearson 95% CI [{low:.4f}, {high:.4f}]), {result['rate_per_s']:.4g} good requests/s "
            f"[{rate_low:.4g}, {rate_high:.4g}] over {result['duration_s']:.1f} s (first scheduled send to last "
            "answer; the rate's CI is the fraction's, scaled). Each SLO alone, over successful requests, shows "
            "which one bites.")


def goodput_section(run: RunFolder, itl: pd.DataFrame | None, slos: dict[str, float]):
    """The goodput block as its own section (runs without streaming judged on latency_ms SLOs)."""
    from .report import Section

    result = goodput(run.rows, itl, slos)
    shown, numeric = goodput_tables(result)
    return Section(GOODPUT_TITLE, goodput_text(result), tables=[("goodput", shown)], csv={"goodput": numeric})


def streaming_section(run: RunFolder, out: Path, slos: dict[str, float], n_resamples: int = 2000, seed: int = 0):
    """The streaming section of the report; goodput within it when ``slos`` has any."""
    from .report import Section

    itl = load_itl(run)
    table = measures_table(run, itl, n_resamples=n_resamples, seed=seed)
    timeline = streaming_timeline(run, itl)
    m = measures(run, itl)
    info = streaming_info(run)
    figures = [
        distribution_figure({"TTFT": m["TTFT"], "schedule-corrected": m["TTFT (schedule-corrected)"]},
                            "time to first token (ms)", f"{run.name}: TTFT, successful requests", out / "ttft.png"),
        distribution_figure({"ITL": m["ITL (every gap)"]}, "inter-token latency (ms)",
                            f"{run.name}: every inter-token gap of successful requests", out / "itl.png"),
        streaming_timeline_figure(run, timeline, out / "streaming_timeline.png"),
    ]
    protocol = info.get("protocol")
    text = [("Streamed responses" + (f" ({protocol})" if protocol else "") + ", successful requests. TTFT: first "
             "content chunk from the actual send (schedule-corrected: from the scheduled send); ITL: every gap "
             f"between successive content chunks ({ITL_FILE}); TPOT: (last chunk - first chunk) / (output tokens "
             "- 1); end-to-end: send to last byte. Exact percentiles; p50 and p99 with bootstrap 95% CIs (the ITL "
             "CI resamples gaps as if independent, so it is too narrow where a request's gaps are alike).")]
    if itl is None:
        text.append(f"No {ITL_FILE} in the run folder: no inter-token latencies, and tokens/s over time counts "
                    "each request's tokens at its first token.")
    text.append("Output tokens/s per request: output tokens / end-to-end latency; whole run: output tokens of "
                "successful requests / (first scheduled send to last answer). Token counts come from the "
                "server's usage, else a tokenizer"
                + (f" ({info['tokenizer']})" if info.get("tokenizer") else "") + ", else counted chunks.")
    tables = [("streaming", measures_display(table)), ("tokens", tokens_table(run)),
              ("token_sources", counts_table(run.rows, "token_source", "token_source")),
              ("finish_reasons", counts_table(run.rows, "finish_reason", "finish_reason")),
              ("streaming_timeline", timeline)]
    csv = {"streaming": table}
    if slos:
        result = goodput(run.rows, itl, slos)
        shown, numeric = goodput_tables(result)
        text.append("Goodput. " + goodput_text(result))
        tables.insert(1, ("goodput", shown))
        csv["goodput"] = numeric
    else:
        text.append("No SLOs given (run.json has none; `burstbench report RUN --slo ttft_ms=500 --slo tpot_ms=50`): "
                    "no goodput.")
    return Section(STREAMING_TITLE, "\n\n".join(text), tables=tables, figures=figures, csv=csv)


def extra_sections(run: RunFolder, out: Path, slo_override: dict[str, float] | None = None) -> list:
    """What the report adds after its latency section: the streaming section for a streaming run; a goodput
    section for another run judged on SLOs; nothing otherwise (the report stays as it was)."""
    from .slo import run_slos

    slos = run_slos(run.record, slo_override)
    if has_streaming_rows(run.rows):
        return [streaming_section(run, out, slos)]
    if slos:
        return [goodput_section(run, None, slos)]
    return []
