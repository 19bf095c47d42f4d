"""``compare`` on streaming runs: TTFT, TPOT and ITL differences with CIs (as for latency), and goodput
differences under one set of SLOs (Newcombe's hybrid score interval, Fisher's exact test)."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from .compare import (CONFIDENCE_LEVEL, STREAMING_MEASURES, _find_baseline, _fmt, baseline_deltas,
                      delta_columns, describe_differences, measure_values)
from .runs import RunFolder
from .slo import goodput, has_streaming_rows


def streaming_table(runs: Sequence[RunFolder]) -> pd.DataFrame:
    """One row per run label: exact p50 and p99 of TTFT, TPOT and ITL over ok requests (ms; NaN where a run
    has none), and the ok requests' output tokens/s over the whole run."""
    from .slo import run_duration_s

    labels = describe_differences(runs)["label"]
    records = []
    for run in runs:
        record = {}
        for measure in STREAMING_MEASURES:
            values = measure_values(run, measure)
            for name, q in (("p50", 0.5), ("p99", 0.99)):
                record[f"{measure.removesuffix('_ms')}_{name}_ms"] = float(np.quantile(values, q)) if len(values) else np.nan
        tokens = pd.to_numeric(run.ok_rows.get("output_tokens", pd.Series(dtype=float)), errors="coerce").sum(min_count=1)
        duration_s = run_duration_s(run.rows)
        record["output_tokens_per_s"] = float(tokens) / duration_s if duration_s > 0 else np.nan
        records.append(record)
    return pd.DataFrame.from_records(records, index=pd.Index(labels, name="label"))


def streaming_deltas(runs: Sequence[RunFolder], baseline, quantiles: Sequence[float] = (0.5, 0.99),
                     n_resamples: int = 2000, seed: int = 0) -> pd.DataFrame:
    """``baseline_deltas`` of TTFT, TPOT and ITL, stacked with a ``measure`` column first.

    The ITL rows treat every gap as one observation (bootstrap and Mann-Whitney alike), so their CI and p
    are too optimistic where a request's gaps are alike; TTFT and TPOT have one value per request.
    """
    parts = [baseline_deltas(runs, baseline, quantiles, n_resamples, seed, measure=m).assign(measure=m)
             for m in STREAMING_MEASURES]
    table = pd.concat(parts, ignore_index=True)
    return table[["measure", *[c for c in table.columns if c != "measure"]]]


def all_streaming(runs: Sequence[RunFolder]) -> bool:
    return all(has_streaming_rows(r.rows) for r in runs)


def newcombe_difference_ci(good_a: int, n_a: int, good_b: int, n_b: int,
                           level: float = CONFIDENCE_LEVEL) -> tuple[float, float]:
    """CI of p_a - p_b: Newcombe's hybrid score interval (his method 10) from each proportion's Wilson interval.

    Chosen over the Wald interval, which collapses to zero width at goodput 1.0 or 0.0, the usual values.
    """
    if min(n_a, n_b) == 0:
        return np.nan, np.nan
    p_a, p_b = good_a / n_a, good_b / n_b
    l_a, u_a = stats.binomtest(good_a, n_a).proportion_ci(level, method="wilson")
    l_b, u_b = stats.binomtest(good_b, n_b).proportion_ci(level, method="wilson")
    d = p_a - p_b
    return float(d - np.hypot(p_a - l_a, u_b - p_b)), float(d + np.hypot(u_a - p_a, p_b - l_b))


def goodput_deltas(runs: Sequence[RunFolder], baseline, slos: dict[str, float]) -> pd.DataFrame:
    """Each non-baseline run's goodput (fraction of all requests meeting every SLO) against the baseline's.

    Columns: both goodputs with their exact Clopper-Pearson CIs, the difference run - baseline with
    Newcombe's hybrid score 95% CI (``newcombe_difference_ci``), the two-sided p of Fisher's exact test on
    the 2x2 table good/not good x run/baseline, both good counts and requests, and both goodput rates (good/s).
    """
    from .streaming import load_itl

    runs, base_i = _find_baseline(runs, baseline)
    labels = describe_differences(runs)["label"].tolist()
    results = [goodput(r.rows, load_itl(r), slos) for r in runs]
    base = results[base_i]
    records = []
    for i, result in enumerate(results):
        if i == base_i:
            continue
        low, high = newcombe_difference_ci(result["good"], result["requests"], base["good"], base["requests"])
        table = [[result["good"], result["requests"] - result["good"]], [base["good"], base["requests"] - base["good"]]]
        records.append({
            "run": labels[i], "baseline": labels[base_i], "baseline_goodput": base["fraction"],
            "baseline_ci_low": base["fraction_ci"][0], "baseline_ci_high": base["fraction_ci"][1],
            "run_goodput": result["fraction"], "run_ci_low": result["fraction_ci"][0],
            "run_ci_high": result["fraction_ci"][1], "diff": result["fraction"] - base["fraction"],
            "diff_ci_low": low, "diff_ci_high": high, "fisher_p": float(stats.fisher_exact(table).pvalue),
            "good_run": result["good"], "n_run": result["requests"], "good_baseline": base["good"],
            "n_baseline": base["requests"], "run_good_per_s": result["rate_per_s"],
            "baseline_good_per_s": base["rate_per_s"],
        })
    columns = ["run", "baseline", "baseline_goodput", "baseline_ci_low", "baseline_ci_high", "run_goodput",
               "run_ci_low", "run_ci_high", "diff", "diff_ci_low", "diff_ci_high", "fisher_p", "good_run", "n_run",
               "good_baseline", "n_baseline", "run_good_per_s", "baseline_good_per_s"]
    return pd.DataFrame.from_records(records, columns=columns)


# ----------------------------------------------------------------------------------------------- output
def format_streaming(table: pd.DataFrame, deltas: pd.DataFrame) -> str:
    """TTFT/TPOT/ITL per run, then their deltas against the baseline, for the terminal."""
    text = ("streaming, exact percentiles over ok requests (ms; tokens/s: ok requests' output tokens over the "
            "run):\n" + table.map(lambda v: _fmt(v, ".1f")).to_string())
    if deltas.empty:
        return text
    d = pd.DataFrame({
        "measure": deltas["measure"], **delta_columns(deltas),
        "mannwhitney_p": deltas["mannwhitney_p"].map(lambda v: _fmt(v, ".1e")),
    })
    return (text + f"\n\nTTFT, TPOT, ITL against baseline {', '.join(pd.unique(deltas['baseline']))} (bootstrap "
            "95% CI; ITL treats every gap as independent):\n" + d.to_string(index=False))


def format_goodput(deltas: pd.DataFrame, slos_text: str) -> str:
    """Goodput of each run against the baseline's under one set of SLOs, for the terminal."""
    if deltas.empty:
        return f"goodput ({slos_text}): no runs besides the baseline to compare"
    d = pd.DataFrame({
        "run": deltas["run"],
        "baseline": [f"{g:.4f} ({k}/{n})" for g, k, n in zip(deltas["baseline_goodput"], deltas["good_baseline"],
                                                            deltas["n_baseline"])],
        "run goodput": [f"{g:.4f} ({k}/{n})" for g, k, n in zip(deltas["run_goodput"], deltas["good_run"],
                                                               deltas["n_run"])],
        "diff": deltas["diff"].map(lambda v: _fmt(v, "+.4f")),
        "95% CI": [("n/a" if pd.isna(lo) else f"[{lo:+.4f}, {hi:+.4f}]")
                   for lo, hi in zip(deltas["diff_ci_low"], deltas["diff_ci_high"])],
        "fisher_p": deltas["fisher_p"].map(lambda v: _fmt(v, ".1e")),
    })
    return (f"goodput (share of all requests meeting {slos_text}) against baseline "
            f"{', '.join(pd.unique(deltas['baseline']))} (diff = run - baseline, Newcombe hybrid score 95% CI; "
            "Fisher exact two-sided p):\n" + d.to_string(index=False))
