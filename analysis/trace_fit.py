"""Which arrival process describes a trace? Candidates fitted by maximum likelihood, ranked by AIC.

    burstbench trace-fit traces/burstgpt.csv --column Timestamp [--mean 0.5] [--out DIR]

The positive gaps of the trace (zero gaps, ties of the timestamps' resolution, have no density under any
of these laws and are dropped, and counted) are fitted with four renewal laws, each by scipy's
maximum-likelihood ``fit`` with location 0: gamma, lognormal, Weibull and exponential (Poisson); and with a
two-state MMPP (``mmpp_fit``), whose likelihood is that of the gap sequence, correlation included. All five
are densities of the same positive gaps, so their log-likelihoods compare; AIC = 2k - 2 loglik charges
each parameter. KS is each fitted one-gap law against the gaps.

Writes trace-fit.md / .csv (the ranking, best first), trace-fit.png (the gaps' histogram and KDE with
every fitted PDF, the best one bold; and their survival functions, log-log, for the tail), and the command,
config block and locustfile line that generate synthetic traffic like the trace from the best fit. A large
KS distance for the best law too says none describes the trace; replaying it (``--trace``) is then the
faithful choice.
"""
from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from burstbench.arrivals import MMPP, Exponential, FromDistribution, Gamma
from burstbench.arrivals.traces import DEFAULT_COLUMN, Trace
from burstbench.errors import ParameterError

from . import mmpp_fit
from .figures import plt, save_figure

MIN_GAPS = 2  # positive gaps below which no law can be fitted (the MMPP needs mmpp_fit.MIN_GAPS)
AIC_NOTE = ("Ranked by AIC = 2k - 2 loglik, lower is better (k = 2 for gamma, lognormal and Weibull, 1 for "
            "exponential, 4 for MMPP2); a delta AIC under 2 is a tie, above 10 rules a law out. KS: the positive "
            "gaps against each fitted one-gap law; for MMPP2 against its stationary gap law, so that KS ignores "
            "the gaps' correlation, which the MMPP's likelihood (and so its AIC) includes.")
PLOT_POINTS = 20_000  # at most this many gaps enter the KDE and the survival curve (traces have millions)
MARKDOWN_COLUMNS = (("loglik", "loglik", ".1f"), ("aic", "AIC", ".1f"), ("delta_aic", "delta AIC", ".1f"),
                    ("ks_d", "KS D", ".4f"), ("ks_p", "KS p", ".3g"), ("gap_cv", "fitted gap CV", ".3g"))
COLORS = {"gamma": "#C44E52", "lognormal": "#55A868", "Weibull": "#8172B2", "exponential": "#937860",
          "MMPP2": "#DD8452"}


def sig(value: float, digits: int = 3) -> str:
    """``value`` to ``digits`` significant digits, never in exponent form (the flags' parsers read plain numbers)."""
    return np.format_float_positional(float(value), precision=digits, unique=True, fractional=False, trim="-")


@dataclass(frozen=True)
class Candidate:
    """One fitted law: ``law`` has ``mean``, ``cv``, ``pdf`` and ``cdf`` (for the MMPP its stationary one-gap law,
    the MMPP itself: its ``cdf``/``pdf`` are its stationary gap law)."""

    process: str              # gamma, lognormal, Weibull, exponential, MMPP2
    k: int                    # fitted parameters
    loglik: float
    law: object = field(repr=False)
    params: dict              # machine-readable: shape parameters and mean_s, or rates_per_s and dwell_s

    @property
    def aic(self) -> float:
        return 2 * self.k - 2 * self.loglik

    @property
    def parameters(self) -> str:
        p = self.params
        if self.process == "MMPP2":
            return mmpp_text(self.law)
        shape = {"gamma": "shape", "lognormal": "s", "Weibull": "c"}.get(self.process)
        return (f"{shape} {sig(p[shape])}, " if shape else "") + f"mean {sig(p['mean_s'])} s"


def mmpp_text(process: MMPP) -> str:
    """The ``--mmpp`` form: ``calm R/s for D s, burst R/s for D s`` (calm, the lower rate, first)."""
    (r1, r2), (d1, d2) = process.rates, process.dwell_s
    return f"calm {sig(r1)}/s for {sig(d1)}s, burst {sig(r2)}/s for {sig(d2)}s"


def _renewal(process: str, gaps: np.ndarray) -> Candidate:
    """scipy's maximum-likelihood fit with location 0, as the arrivals' own classes (mean-parameterised)."""
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        if process == "exponential":
            law, params, k = Exponential(mean=float(gaps.mean())), {}, 1
        elif process == "gamma":
            shape, _, scale = stats.gamma.fit(gaps, floc=0)
            law, params, k = Gamma(shape=float(shape), mean=float(shape * scale)), {"shape": float(shape)}, 2
        else:
            name, key = {"lognormal": ("lognorm", "s"), "Weibull": ("weibull_min", "c")}[process]
            shape, _, scale = getattr(stats, name).fit(gaps, floc=0)
            mean = float(getattr(stats, name)(shape, scale=scale).mean())
            law, params, k = FromDistribution(name, {key: float(shape)}, mean=mean), {key: float(shape)}, 2
        loglik = float(np.sum(law.scipy_dist.logpdf(gaps)))
    if not math.isfinite(loglik):
        raise ValueError(f"the {process} fit has no finite likelihood")
    return Candidate(process, k, loglik, law, {**params, "mean_s": float(law.mean)})


def fit_candidates(gaps) -> tuple[list[Candidate], list[str]]:
    """Every law fitted to ``gaps`` (seconds, in trace order), and a note for each one left out, and why."""
    gaps = np.asarray(gaps, dtype=float)
    positive = gaps[gaps > 0]
    if len(positive) < MIN_GAPS:
        raise ParameterError(f"{{trace}}: {len(positive)} positive gaps; at least {MIN_GAPS} are needed to fit a "
                             f"law to the gaps", "trace")
    if np.ptp(positive) == 0:
        raise ParameterError(f"{{trace}}: all {len(positive)} positive gaps are {positive[0]:g} s; a constant rate "
                             "has no gap distribution to fit", "trace")
    candidates, notes = [], []
    for process in ("gamma", "lognormal", "Weibull", "exponential"):
        try:
            candidates.append(_renewal(process, positive))
        except (ValueError, FloatingPointError) as err:
            notes.append(f"{process} left out: {err}")
    if len(positive) < mmpp_fit.MIN_GAPS:
        notes.append(f"MMPP2 left out: {len(positive)} positive gaps, fewer than the {mmpp_fit.MIN_GAPS} its four "
                     "parameters need")
    else:
        try:
            fit = mmpp_fit.fit_mmpp2(positive)
        except ValueError as err:
            notes.append(f"MMPP2 left out: {err}")
        else:
            candidates.append(Candidate("MMPP2", fit.k, fit.loglik, fit.process,
                                        {"rates_per_s": list(fit.process.rates), "dwell_s": list(fit.process.dwell_s),
                                         "mean_s": fit.process.mean}))
            if not fit.converged:
                notes.append(f"MMPP2: the optimiser stopped at its iteration limit ({fit.evaluations} likelihoods); "
                             "its loglik is a lower bound of the maximum")
    if not candidates:
        raise ParameterError(f"{{trace}}: no law could be fitted to its {len(positive)} positive gaps "
                             f"({'; '.join(notes)})", "trace")
    return sorted(candidates, key=lambda c: c.aic), notes


def ranking(candidates: list[Candidate], gaps) -> pd.DataFrame:
    """One row per law, best (lowest AIC) first: the columns of trace-fit.csv."""
    gaps = np.asarray(gaps, dtype=float)
    positive = np.sort(gaps[gaps > 0])
    best = min(c.aic for c in candidates)
    rows = []
    for c in sorted(candidates, key=lambda c: c.aic):
        ks = stats.kstest(positive, c.law.cdf)
        rows.append({"process": c.process, "parameters": c.parameters, "k": c.k, "loglik": c.loglik, "aic": c.aic,
                     "delta_aic": c.aic - best, "ks_d": float(ks.statistic), "ks_p": float(ks.pvalue),
                     "gap_cv": float(c.law.cv), "mean_s": float(c.law.mean), "params": json.dumps(c.params)})
    return pd.DataFrame(rows)


def reproduce(best: Candidate, rate: float) -> dict[str, str]:
    """The ``burstbench run`` command, the ``[load]`` block and the locustfile line for traffic like ``best``."""
    r, p = sig(rate), best.params
    if best.process == "gamma":
        flags, toml = f"--arrival gamma --shape {sig(p['shape'])}", f'arrival = "gamma"\nshape = {sig(p["shape"])}'
        python = "gamma", f"gamma(shape={sig(p['shape'])}, rate={r})"
    elif best.process == "exponential":
        flags, toml, python = "--arrival exponential", 'arrival = "exponential"', ("poisson", f"poisson(rate={r})")
    elif best.process == "MMPP2":
        text = mmpp_text(best.law)
        flags, toml = f'--mmpp "{text}"', f'mmpp = "{text}"'
        rates, dwell = (", ".join(sig(v) for v in p[key]) for key in ("rates_per_s", "dwell_s"))
        python = "mmpp", f"mmpp(rates=({rates}), dwell=({dwell}), rate={r})"
    else:
        name, key = {"lognormal": ("lognorm", "s"), "Weibull": ("weibull_min", "c")}[best.process]
        law = f"{name}({key}={sig(p[key])})"
        flags, toml = f'--distribution "{law}"', f'distribution = "{law}"'
        python = "from_distribution", f'from_distribution("{name}", {key}={sig(p[key])}, rate={r})'
    return {"command": f"burstbench run {flags} --rate {r}", "config": f"[load]\n{toml}\nrate = {r}",
            "python": f"from burstbench.arrivals import {python[0]}\nwait_time = {python[1]}"}


def _markdown(trace: Trace, table: pd.DataFrame, notes: list[str], how: dict[str, str]) -> str:
    gaps = trace.gaps_s
    zeros = int(np.sum(gaps == 0))
    shown = pd.DataFrame({"rank": range(1, len(table) + 1), "process": table["process"],
                          "parameters": table["parameters"]})
    for column, name, fmt in MARKDOWN_COLUMNS:
        shown[name] = [format(v, fmt) for v in table[column]]
    best = table.iloc[0]
    scaled = f", rescaled by {sig(trace.scale)}" if trace.scale != 1 else ""
    rescaled = " (every state's rate scaled, the dwell times kept)" if best["process"] == "MMPP2" else ""
    lines = [f"# Trace fit: {trace.path.name}", "",
             f"{len(trace)} timestamps over {sig(trace.offsets_s[-1])} s{scaled}: mean gap {sig(trace.mean)} s, "
             f"rate {sig(1 / trace.mean)}/s, gap CV {trace.cv:.3g}. Fitted to the {len(gaps) - zeros} positive gaps "
             f"({zeros} zero gaps dropped).", "",
             shown.to_markdown(index=False, disable_numparse=True, colalign=["right", "left", "left"] + ["right"] * 6),
             "", AIC_NOTE, *(f"\n{n}" for n in notes), "",
             f"## Synthetic traffic like this trace: {best['process']}, {best['parameters']}", "",
             "```console", f"$ {how['command']}", "```", "", "or in a config file:", "", "```toml", how["config"],
             "```", "", "or as the wait time of your own locustfile:", "", "```python", how["python"], "```", "",
             f"That is the trace's rate, {sig(1 / trace.mean)} requests/s; another --rate (rate =) gives any rate "
             f"with the same burstiness{rescaled}."]
    return "\n".join(lines) + "\n"


def trace_fit_figure(gaps, candidates: list[Candidate], title: str, path) -> Path:
    """Left: the density of log10(gap), as histogram and KDE, with every fitted law's (the best bold);
    on a log axis short gaps and the heavy tail both show. Right: survival functions, log-log."""
    positive = np.sort(np.asarray(gaps, dtype=float)[np.asarray(gaps) > 0])
    logs = np.log10(positive)
    lo, hi = np.quantile(logs, [0.001, 0.999])
    pad = 0.15 * max(hi - lo, 0.5)
    grid = np.linspace(lo - pad, hi + pad, 300)
    x = 10.0 ** grid
    best = min(candidates, key=lambda c: c.aic)
    fig, (ax, tail) = plt.subplots(1, 2, figsize=(11, 4.2))
    density, edges = np.histogram(logs, bins=min(60, max(10, len(logs) // 40)), range=(grid[0], grid[-1]),
                                  density=True)
    ax.stairs(density, 10.0 ** edges, fill=True, color="#4C72B0", alpha=0.4,
              label=f"gaps (histogram, n = {len(positive)})")
    if len(logs) >= 2 and np.ptp(logs) > 0:  # a KDE costs n x grid: evenly spaced order statistics stand in
        kde = stats.gaussian_kde(logs[::max(1, len(logs) // PLOT_POINTS)])(grid)
        ax.plot(x, kde, color="#4C72B0", linewidth=1.5, label="empirical KDE")
    n = len(positive)  # the empirical survival at ranks spaced evenly in log(survival): the tail in full
    rank = n - np.unique(np.geomspace(1, n, PLOT_POINTS).astype(int))
    tail.loglog(positive[rank], (n - rank - 0.5) / n, color="#4C72B0", linewidth=2, label="gaps (empirical)")
    for c in sorted(candidates, key=lambda c: c.aic, reverse=True):  # the best drawn last, on top
        style = dict(color=COLORS.get(c.process, "k"), linewidth=2.8 if c is best else 1.2,
                     linestyle="-" if c is best else "--", alpha=1.0 if c is best else 0.85)
        label = f"{c.process}: {c.parameters}" + (" (best AIC)" if c is best else "")
        ax.plot(x, np.asarray(c.law.pdf(x)) * x * math.log(10), label=label, **style)  # density of log10(gap)
        tail.loglog(x, np.clip(1.0 - np.asarray(c.law.cdf(x), dtype=float), 1e-12, None), **style)
    ax.set_xscale("log")
    ax.set_xlim(x[0], x[-1])
    ax.set_xlabel("inter-arrival gap (s), log scale")
    ax.set_ylabel("density of log10(gap)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    tail.set_ylim(max(0.3 / len(positive), 1e-6), 1.5)
    tail.set_xlim(x[0], x[-1])
    tail.set_xlabel("inter-arrival gap (s)")
    tail.set_ylabel("P(gap > x)")
    tail.set_title("survival: the tail", fontsize=9)
    tail.legend(fontsize=7)
    return save_figure(fig, path)


def write_trace_fit(path, column: str = DEFAULT_COLUMN, mean: float | None = None, out: Path | None = None):
    """Fit, rank, write trace-fit.md / .csv / .png into ``out``; returns ``(trace, markdown text, out)``."""
    trace = Trace.load(path, column, mean)
    try:
        candidates, notes = fit_candidates(trace.gaps_s)
    except ParameterError as err:
        raise ParameterError(err.template.replace("{trace}", f"{{trace}} {trace.path}"), *err.names) from None
    table = ranking(candidates, trace.gaps_s)
    how = reproduce(candidates[0], 1.0 / trace.mean)
    text = _markdown(trace, table, notes, how)
    out = Path(out) if out is not None else Path("results") / f"trace-fit-{Path(path).stem}"
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "trace-fit.csv", index=False)
    (out / "trace-fit.md").write_text(text)
    trace_fit_figure(trace.gaps_s, candidates, f"{trace.path.name}: gaps vs the fitted laws", out / "trace-fit.png")
    return trace, text, out
