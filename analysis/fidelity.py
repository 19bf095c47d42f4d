"""Inter-arrival fidelity: did the load test send the traffic it declared? (the paper's Figures 1-3)

The declared process is rebuilt from run.json (``declared_process``). Renewal processes (exponential,
gamma, any scipy.stats law, a trace's best-fit gamma) are judged here, on their gaps; a rate profile
(``stages``) and a Markov-modulated Poisson process (``mmpp``) in ``process_fidelity``, which this
module's ``fidelity_table`` and ``verdict`` hand them to. Under ``concurrency`` pacing (a fixed number
of requests in flight) nothing was declared, so there is nothing to test.

Two sets of gaps are compared with the renewal distribution declared in run.json:

* scheduled gaps: under ``arrival`` pacing the gaps between consecutive scheduled send times
  (the schedule fixed ahead from the seed); under ``think`` pacing the drawn think times, which
  are the declared process's draws.
* sent gaps: the gaps between consecutive actual sends. Under ``arrival`` pacing they should fit
  too while lateness stays small; under ``think`` pacing each one is think time plus response
  time by design (closed loop), so they are not expected to fit.

Each set gets the Kolmogorov-Smirnov test against the declared CDF, Anderson-Darling against
the fully specified declared distribution (Monte Carlo p-value), and the Wasserstein distance to
a large seeded sample of the declared distribution divided by its mean: at millisecond gaps KS
and AD flag send jitter of a fraction of a millisecond, while W1/mean says how large the
difference is, in units of the mean gap.

Computing is separate from wording (``verdict``) and plotting (``gap_figure``).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display on servers
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from scipy import stats  # noqa: E402

from burstbench.arrivals import MMPP, Stages  # noqa: E402
from burstbench.arrivals.notation import process_from_description  # noqa: E402

from .runs import RunFolder, RunError  # noqa: E402
from .figures import save_figure  # noqa: E402

ALPHA = 0.01               # KS p-value below which the gaps are said not to fit
MIN_GAPS = 8               # fewer gaps than this: no test is run, statistics are NaN
AD_MAX_N = 2000            # Anderson-Darling (Monte Carlo) only up to this many gaps: it costs n * n_mc_samples CDFs
AD_MC_SAMPLES = 499
REFERENCE_SAMPLE_SIZE = 100_000  # seeded draws of the declared distribution for the Wasserstein distance
LATENESS_QUANTILES = {"p50": 0.50, "p95": 0.95, "p99": 0.99}
WHICH = ("scheduled", "sent")
PACINGS = ("arrival", "think", "concurrency")
RENEWAL_TEST = "gaps vs the declared law: KS, AD, W1/mean"
NO_PROCESS = ("Pacing concurrency keeps a fixed number of requests in flight: there is no declared arrival "
              "process to test.")


def declared_process(run: RunFolder):
    """The arrival process the run declared, rebuilt from run.json ``distribution`` (a replayed trace:
    its best-fitting gamma). Any process ``process_from_description`` knows; RunError otherwise."""
    info_path = run.record_path
    spec = run.record.distribution
    if not isinstance(spec, dict):
        raise RunError(f"{info_path}: no 'distribution' object (expected process, mean_s and, for gamma, shape)")
    try:
        return process_from_description(spec)
    except (ValueError, TypeError) as err:
        raise RunError(f"{info_path}: invalid 'distribution' {spec!r} ({err})") from None
    except KeyError as err:
        raise RunError(f"{info_path}: invalid 'distribution' {spec!r} (missing {err})") from None


declared_distribution = declared_process  # the name the report, the notebook and the generator benchmark use


def is_renewal(process) -> bool:
    """Gaps i.i.d. from one law, tested here; the others are ``process_fidelity``'s."""
    return not isinstance(process, (Stages, MMPP))


def _pacing(run: RunFolder) -> str:
    pacing = run.record.pacing
    if pacing not in PACINGS:
        raise RunError(f"{run.record_path}: 'pacing' must be 'arrival', 'think' or 'concurrency' (got {pacing!r})")
    return pacing


def has_declared_process(run: RunFolder) -> bool:
    """False under concurrency pacing: requests are sent as others finish, from no declared process."""
    return _pacing(run) != "concurrency"


def scheduled_gaps_s(run: RunFolder) -> np.ndarray:
    """The gaps the generator was asked to produce, in seconds.

    ``arrival`` pacing: differences of the sorted ``scheduled_epoch``; when run.json has
    ``schedule.start_epoch`` the first gap is measured from it, so n rows give n gaps (the
    schedule's own gaps), otherwise n - 1. Slots that never produced a row (an interrupted run)
    merge two gaps into one; a partial run says so (``run.partial``).

    ``think`` pacing: the drawn think times (``think_s``), in request order, which are i.i.d.
    draws of the declared process; rows without one are skipped.

    ``concurrency`` pacing: ``scheduled_epoch`` is the send time, so these are the sent gaps (n - 1).
    """
    if _pacing(run) == "think":
        if "think_s" not in run.rows:
            return np.array([], dtype=float)
        return pd.to_numeric(run.rows["think_s"], errors="coerce").dropna().to_numpy(dtype=float)
    scheduled = np.sort(run.rows["scheduled_epoch"].to_numpy(dtype=float))
    start = None if run.record.schedule is None else run.record.schedule.start_epoch
    if start is None or run.record.pacing == "concurrency":
        return np.diff(scheduled)
    return np.diff(scheduled, prepend=float(start))


def sent_gaps_s(run: RunFolder) -> np.ndarray:
    """Gaps between consecutive actual sends (sorted ``sent_epoch``): n - 1 gaps for n rows."""
    return np.diff(np.sort(run.rows["sent_epoch"].to_numpy(dtype=float)))


@dataclass(frozen=True)
class GapFit:
    """How one set of gaps compares with the declared distribution.

    Empirical variance is the sample variance with ddof=1 (unbiased, as the paper's
    empirical variances are), and cv = sqrt(var_s2) / mean_s. ``fits`` is KS p >= alpha,
    or None when there were too few gaps to test. ``ad_*`` are None when Anderson-Darling
    was not computed (more than ``ad_max_n`` gaps, or switched off).
    """

    which: str
    declared: str
    n: int
    mean_s: float
    var_s2: float
    cv: float
    theoretical_mean_s: float
    theoretical_var_s2: float
    theoretical_cv: float
    ks_statistic: float
    ks_pvalue: float
    ad_statistic: float | None
    ad_pvalue: float | None
    wasserstein_over_mean: float
    alpha: float
    fits: bool | None
    test: str = RENEWAL_TEST  # what was compared with what (process_fidelity's stages rows say time-rescaling)


def _moments(gaps_s: np.ndarray) -> tuple[float, float, float]:
    mean_s = float(np.mean(gaps_s)) if len(gaps_s) >= 1 else math.nan
    var_s2 = float(np.var(gaps_s, ddof=1)) if len(gaps_s) >= 2 else math.nan
    cv = math.sqrt(var_s2) / mean_s if len(gaps_s) >= 2 and mean_s > 0 else math.nan
    return mean_s, var_s2, cv


def _known_params(dist) -> tuple[object, dict]:
    """The scipy family and every one of its parameters (shapes, loc, scale), for a fully specified AD test.

    Read from the distribution's frozen scipy law, so any renewal distribution (exponential, gamma,
    ``FromDistribution``) gets them all: ``goodness_of_fit`` would fit any parameter left out.
    """
    frozen = dist.scipy_dist
    names = [n.strip() for n in (frozen.dist.shapes or "").split(",") if n.strip()] + ["loc", "scale"]
    params = {"loc": 0.0, "scale": 1.0, **dict(zip(names, frozen.args)), **frozen.kwds}
    return frozen.dist, params


def fit_gaps(gaps_s, dist, which: str, alpha: float = ALPHA, seed: int = 0,
             n_mc_samples: int = AD_MC_SAMPLES, ad_max_n: int = AD_MAX_N, test: str = RENEWAL_TEST) -> GapFit:
    """Test ``gaps_s`` (seconds) against the renewal distribution ``dist``; seeded, so reproducible.

    Fewer than 8 gaps: a GapFit with NaN test statistics and ``fits`` None (never zeros).
    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1) (got {alpha!r})")
    gaps_s = np.asarray(gaps_s, dtype=float)
    gaps_s = gaps_s[np.isfinite(gaps_s)]
    n = len(gaps_s)
    mean_s, var_s2, cv = _moments(gaps_s)
    base = dict(which=which, declared=str(dist), n=n, mean_s=mean_s, var_s2=var_s2, cv=cv, test=test,
                theoretical_mean_s=dist.mean, theoretical_var_s2=dist.var, theoretical_cv=dist.cv, alpha=alpha)
    if n < MIN_GAPS:
        return GapFit(**base, ks_statistic=math.nan, ks_pvalue=math.nan, ad_statistic=math.nan,
                      ad_pvalue=math.nan, wasserstein_over_mean=math.nan, fits=None)
    ks = stats.kstest(gaps_s, dist.cdf)
    ad_statistic = ad_pvalue = None
    if n <= ad_max_n:
        family, params = _known_params(dist)
        with np.errstate(invalid="ignore"):  # scipy compares inf - inf for gaps far in the tail
            ad = stats.goodness_of_fit(family, gaps_s, known_params=params, statistic="ad",
                                       n_mc_samples=n_mc_samples, rng=np.random.default_rng(seed))
        ad_statistic, ad_pvalue = float(ad.statistic), float(ad.pvalue)
    reference_s = dist.sample(REFERENCE_SAMPLE_SIZE, np.random.default_rng(seed))
    w1_s = stats.wasserstein_distance(gaps_s, reference_s)
    return GapFit(**base, ks_statistic=float(ks.statistic), ks_pvalue=float(ks.pvalue), ad_statistic=ad_statistic,
                  ad_pvalue=ad_pvalue, wasserstein_over_mean=float(w1_s / dist.mean),
                  fits=bool(ks.pvalue >= alpha))


def gap_fit_frame(fits: list[GapFit]) -> pd.DataFrame:
    """GapFits as a table indexed by ``which``; ``test`` first, so a reader sees what was tested."""
    names = [f.name for f in fields(GapFit)]
    columns = ["which", "test", *(n for n in names if n not in ("which", "test"))]
    return pd.DataFrame([asdict(f) for f in fits], columns=columns).set_index("which")


def fidelity_table(run: RunFolder, alpha: float = ALPHA, seed: int = 0, n_mc_samples: int = AD_MC_SAMPLES,
                   ad_max_n: int = AD_MAX_N) -> pd.DataFrame:
    """Index ``which`` (scheduled, sent). Renewal processes: one row each, the GapFit fields; ``stages``
    the same shape on the time-rescaled gaps, ``mmpp`` a row per statistic (``process_fidelity``).
    Concurrency pacing: no rows (nothing declared)."""
    if not has_declared_process(run):
        return gap_fit_frame([])
    dist = declared_process(run)
    if not is_renewal(dist):
        from . import process_fidelity  # imported here: it builds on this module's fit_gaps

        return process_fidelity.process_table(run, dist, alpha=alpha, seed=seed, n_mc_samples=n_mc_samples,
                                              ad_max_n=ad_max_n)
    fits = [fit_gaps(gaps, dist, which, alpha=alpha, seed=seed, n_mc_samples=n_mc_samples, ad_max_n=ad_max_n)
            for which, gaps in (("scheduled", scheduled_gaps_s(run)), ("sent", sent_gaps_s(run)))]
    return gap_fit_frame(fits)


def lateness_table(run: RunFolder) -> pd.DataFrame:
    """Send lateness (actual minus scheduled send) in ms: exact p50/p95/p99 and max, one row."""
    lateness_ms = pd.to_numeric(run.rows["lateness_ms"], errors="coerce").dropna().to_numpy(dtype=float)
    record = {"n": len(lateness_ms)}
    if len(lateness_ms):
        record.update({f"{name}_ms": float(np.quantile(lateness_ms, q)) for name, q in LATENESS_QUANTILES.items()})
        record["max_ms"] = float(lateness_ms.max())
    else:  # say what is missing instead of reporting zeros
        record.update({f"{name}_ms": math.nan for name in [*LATENESS_QUANTILES, "max"]})
    return pd.DataFrame([record], index=pd.Index(["lateness"], name="measure"))


def _p(value: float) -> str:
    return f"{value:.2g}"


def _fit_clause(fit: pd.Series) -> str:
    return f"KS p = {_p(fit['ks_pvalue'])}, n = {int(fit['n'])}"


@dataclass(frozen=True)
class Judgement:
    """What one set of arrivals (scheduled or sent) says about the declared process: what ``verdict`` words."""

    fits: bool | None  # None: not tested
    evidence: str  # the numbers behind ``fits``: "KS p = 0.5, n = 1000"
    n: int = 0
    need: int = MIN_GAPS
    untested: str = ""  # the sentence to print instead of "too few", when there is a better reason
    size: str = ""  # how large the difference is, when one number says it (Wasserstein / mean)
    mean_s: float = math.nan
    theoretical_mean_s: float = math.nan


def renewal_judgement(row: pd.Series) -> Judgement:
    fits = None if pd.isna(row["fits"]) else bool(row["fits"])
    return Judgement(fits=fits, evidence=_fit_clause(row), n=int(row["n"]),
                     size=f"Wasserstein distance {100 * row['wasserstein_over_mean']:.1f}% of the mean gap",
                     mean_s=float(row["mean_s"]), theoretical_mean_s=float(row["theoretical_mean_s"]))


def verdict(run: RunFolder, alpha: float = ALPHA, table: pd.DataFrame | None = None) -> str:
    """One or two plain sentences for a report's first lines: the scheduled arrivals against the declared
    process, then the realised (sent) ones; a WARNING leads wherever they do not fit.

    Renewal processes are judged by KS p-values, ``stages`` and ``mmpp`` by ``process_fidelity``. Pass
    ``table`` (from ``fidelity_table``) to reuse it; otherwise one is computed without Anderson-Darling,
    which the verdict does not quote.
    """
    if not has_declared_process(run):
        return NO_PROCESS
    if table is None:
        table = fidelity_table(run, alpha=alpha, ad_max_n=0)
    pacing = _pacing(run)
    process = declared_process(run)
    declared = str(process)
    if (run.record.distribution or {}).get("process") == "trace":
        declared = f"trace's best-fit {declared}"
    if is_renewal(process):
        sched, sent = (renewal_judgement(table.loc[which]) for which in WHICH)
        noun = "distribution"
    else:
        from . import process_fidelity

        sched, sent = (process_fidelity.judgement(process, table, which, pacing) for which in WHICH)
        noun = "process"
    sched_name = "drawn think times" if pacing == "think" else "scheduled arrivals"

    if sched.fits is None:
        first = sched.untested or (f"Too few {sched_name} to test against the declared {declared} "
                                   f"(n = {sched.n}, need {sched.need}).")
    elif sched.fits:
        first = f"The {sched_name} fit the declared {declared} ({sched.evidence})."
    else:
        first = (f"WARNING: the {sched_name} do NOT fit the declared {declared} ({sched.evidence}): "
                 f"they were not drawn from the {noun} run.json declares.")

    if sent.fits is None:
        second = sent.untested or f"Too few sent gaps to test (n = {sent.n})."
    elif pacing == "think":
        rates = f"mean sent gap {sent.mean_s:.3g} s against {sent.theoretical_mean_s:.3g} s declared"
        outcome = "they happen to fit" if sent.fits else "they do not fit"
        second = (f"The sent gaps are not expected to fit ({outcome}: {sent.evidence}; {rates}): "
                  "under think pacing each gap is think time plus response time by design (closed loop).")
    else:
        late = lateness_table(run).iloc[0]
        context = (f"{sent.evidence}{', ' + sent.size if sent.size else ''}; "
                   f"lateness p99 {late['p99_ms']:.1f} ms, max {late['max_ms']:.1f} ms")
        if sent.fits:
            second = f"The realised (sent) arrivals fit it {'too' if sched.fits else 'nonetheless'} ({context})."
        elif sched.fits is False:
            second = (f"The realised (sent) arrivals do NOT fit it either ({context}), "
                      "as expected when the schedule itself does not.")
        else:
            second = (f"WARNING: the realised (sent) arrivals do NOT fit the declared {declared} ({context}): "
                      "the generator could not keep the schedule.")
    return f"{first} {second}"


def gap_figure(gaps_s, dist, title: str, path: str | Path, pdf_label: str = "declared PDF") -> Path:
    """Histogram (density), KDE (solid) and declared PDF (dashed) of the gaps, with a moments box.

    The paper's Figures 1-3. ``dist``: a renewal distribution, or any law with ``mean``, ``var``, ``cdf``,
    ``pdf`` and ``ppf`` (an MMPP: its stationary gap law). The x axis
    stops at the larger of the gaps' and the declared distribution's 99.5th percentile so one long gap
    does not flatten the plot.
    """
    path = Path(path)
    gaps_s = np.asarray(gaps_s, dtype=float)
    gaps_s = gaps_s[np.isfinite(gaps_s)]
    mean_s, var_s2, _ = _moments(gaps_s)
    ks_pvalue = float(stats.kstest(gaps_s, dist.cdf).pvalue) if len(gaps_s) >= MIN_GAPS else math.nan
    ppf = dist.ppf if hasattr(dist, "ppf") else dist.scipy_dist.ppf
    x_max = float(ppf(0.995))
    if len(gaps_s):
        x_max = max(x_max, float(np.quantile(gaps_s, 0.995)))
    grid_s = np.linspace(0.0, x_max, 400)

    fig, ax = plt.subplots(figsize=(7, 4))
    y_top = 0.0
    if len(gaps_s):
        density, _, _ = ax.hist(gaps_s, bins=min(60, max(10, len(gaps_s) // 15)), range=(0.0, x_max), density=True,
                                color="#4C72B0", alpha=0.45, label="gaps (histogram)")
        y_top = float(np.max(density))
    if len(gaps_s) >= 2 and np.ptp(gaps_s) > 0:
        kde = stats.gaussian_kde(gaps_s)(grid_s)
        ax.plot(grid_s, kde, color="#4C72B0", linestyle="-", linewidth=2, label="empirical KDE")
        y_top = max(y_top, float(np.max(kde)))
    pdf = dist.pdf(grid_s[1:])  # skip 0: a gamma with shape < 1 has an infinite density there
    ax.plot(grid_s[1:], pdf, color="#C44E52", linestyle="--", linewidth=2, label=f"{pdf_label}: {dist}")
    finite_pdf = pdf[np.isfinite(pdf)]
    y_top = max(y_top, float(np.quantile(finite_pdf, 0.98)) if len(finite_pdf) else 0.0)
    if y_top > 0:
        ax.set_ylim(0, 1.15 * y_top)
    ax.set_xlim(0, x_max)
    text = (f"n = {len(gaps_s)}\n"
            f"mean: {mean_s:.3g} s (theory {dist.mean:.3g} s)\n"
            f"variance: {var_s2:.3g} s² (theory {dist.var:.3g} s²)\n"
            f"KS p = {_p(ks_pvalue)}")
    ax.text(0.97, 0.62, text, transform=ax.transAxes, ha="right", va="top", fontsize=8,
            bbox=dict(boxstyle="round", facecolor="white", alpha=0.85))
    ax.set_xlabel("inter-arrival gap (s)")
    ax.set_ylabel("density")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    return save_figure(fig, path)
