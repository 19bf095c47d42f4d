"""A trace's own gap distribution against the best-fitting gamma: how bursty is real traffic?

    burstbench trace-fit traces/burstgpt.csv --column Timestamp [--mean 0.5] [--out DIR]

Writes trace-fit.md / .csv (moments of the gaps, the fitted gamma's shape and mean, KS and
Wasserstein distances of the gaps to it) and trace-fit.png (histogram and KDE of the gaps over
the fitted gamma's PDF). A shape well below 1 means burstier than Poisson; a KS distance that
is large says a gamma does not describe the trace well, and replaying the trace itself
(``--trace``) is then the faithful choice.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from burstbench.arrivals.traces import DEFAULT_COLUMN, Trace

from .fidelity import gap_figure


def trace_fit_table(trace: Trace) -> pd.DataFrame:
    gaps = trace.gaps_s
    fit = trace.fitted_gamma
    positive = gaps[gaps > 0]
    ks = stats.kstest(positive, fit.scipy_dist.cdf)
    return pd.DataFrame([{
        "timestamps": len(trace), "gaps": len(gaps), "zero_gaps": int(np.sum(gaps == 0)),
        "span_s": float(trace.offsets_s[-1]), "scale": trace.scale,
        "mean_s": float(gaps.mean()), "cv": trace.cv,
        "gamma_shape": fit.shape, "gamma_mean_s": fit.mean, "gamma_cv": fit.cv,
        "ks_distance": float(ks.statistic), "ks_p": float(ks.pvalue),
        "w1_over_mean": float(stats.wasserstein_distance(positive, fit.scipy_dist.ppf(
            (np.arange(len(positive)) + 0.5) / len(positive))) / fit.mean),
    }])


def write_trace_fit(path, column: str = DEFAULT_COLUMN, mean: float | None = None, out: Path | None = None):
    trace = Trace.load(path, column, mean)
    table = trace_fit_table(trace)
    out = Path(out) if out is not None else Path("results") / f"trace-fit-{Path(path).stem}"
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "trace-fit.csv", index=False)
    text = table.T.rename(columns={0: "value"}).to_markdown(floatfmt=".4g")
    (out / "trace-fit.md").write_text(f"# Trace fit: {trace}\n\n{text}\n")
    gap_figure(trace.gaps_s, trace.fitted_gamma, f"{Path(path).name}: gaps vs best-fit gamma", out / "trace-fit.png")
    return trace, text, out
