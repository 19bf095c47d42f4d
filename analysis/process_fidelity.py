"""Fidelity of the arrival processes whose gaps are not i.i.d.: a rate profile (``stages``) and a
Markov-modulated Poisson process (``mmpp``). ``fidelity.fidelity_table`` and ``fidelity.verdict`` hand
these here; renewal processes stay in ``fidelity``.

* stages, by the time-rescaling theorem: arrival times (seconds from ``schedule.start_epoch``) mapped
  through the profile's integrated rate give gaps that are i.i.d. unit-mean draws of the base when the
  traffic followed the profile (``Stages.rescaled_gaps``). Those gaps get the renewal tests (KS, AD,
  W1/mean against ``unit_base``), in the renewal table's shape. ``rate_figure``: intended against
  realised rate.
* mmpp: its gaps are correlated, so a KS test of them against the stationary gap law is only indicative
  (shown, never judged). Judged instead, each against the exact theory with a block-bootstrap CI: the
  index of dispersion of counts (IDC, Var N(w) / E N(w)) at several windows w, the mean gap and the gap
  CV. ``idc_figure``: realised IDC by window against the theory.
"""
from __future__ import annotations

import math
import textwrap
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display on servers
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from scipy import stats  # noqa: E402

from burstbench.arrivals import MMPP, Stages  # noqa: E402

from .figures import save_figure  # noqa: E402
from .fidelity import (ALPHA, AD_MAX_N, AD_MC_SAMPLES, MIN_GAPS, WHICH, Judgement, _p, fit_gaps,  # noqa: E402
                       gap_figure, gap_fit_frame, scheduled_gaps_s, sent_gaps_s)
from .runs import RunFolder  # noqa: E402

STAGES_TEST = "time-rescaled gaps vs unit-mean base (KS, AD, W1/mean); counts per bin vs profile (chi-square)"
IDC_WINDOW_FACTORS = (0.5, 1.0, 4.0, 16.0)  # IDC windows, in units of the shortest mean dwell
MIN_WINDOWS = 20  # a window length is judged only where the run spans at least this many windows
BOOTSTRAP_SAMPLES = 2000
BLOCK_CORRELATION_TIMES = 10  # a bootstrap block spans at least this many correlation times of the chain
MIN_BLOCKS = 10
RATE_BINS = (50, 200)  # rate.png: between these many bins, about 20 requests each
RATE_BAND = 0.95


# -- times ------------------------------------------------------------------------------------------------
def offsets_s(run: RunFolder, column: str) -> tuple[np.ndarray, bool]:
    """Sorted ``column`` epochs as seconds from the schedule's start, and whether run.json gave the start.

    Without ``schedule.start_epoch`` the first scheduled send is taken as 0 (so a rate profile is
    shifted by its first gap). Times before the start (clock skew) count as 0: the integrated rate
    is defined from the start on.
    """
    times = np.sort(run.rows[column].to_numpy(dtype=float))
    start = None if run.record.schedule is None else run.record.schedule.start_epoch
    known = start is not None
    if not known:
        start = float(run.rows["scheduled_epoch"].min())
    return np.maximum(times - float(start), 0.0), known


def rescaled_gaps(run: RunFolder, stages: Stages) -> dict[str, np.ndarray]:
    """``Lambda(t_i) - Lambda(t_{i-1})`` from the scheduled and from the sent times (``Lambda(start) = 0``).

    Without a known start the first gap (from the first send to itself) is dropped. Under think pacing
    there is no schedule of times to rescale: empty arrays.
    """
    if run.record.pacing != "arrival":
        return {which: np.array([], dtype=float) for which in WHICH}
    out = {}
    for which, column in zip(WHICH, ("scheduled_epoch", "sent_epoch")):
        times, known = offsets_s(run, column)
        gaps = stages.rescaled_gaps(times)
        out[which] = gaps if known else gaps[1:]
    return out


# -- tables -----------------------------------------------------------------------------------------------
def process_table(run: RunFolder, process, alpha: float = ALPHA, seed: int = 0,
                  n_mc_samples: int = AD_MC_SAMPLES, ad_max_n: int = AD_MAX_N) -> pd.DataFrame:
    if isinstance(process, Stages):
        return stages_table(run, process, alpha=alpha, seed=seed, n_mc_samples=n_mc_samples, ad_max_n=ad_max_n)
    if isinstance(process, MMPP):
        return mmpp_table(run, process, alpha=alpha, seed=seed)
    raise TypeError(f"not a stages or mmpp process: {process!r}")


def rate_bins(n: int) -> int:
    """Bins for counting n arrivals against the profile: about 20 each, within RATE_BINS, and at least 5
    each on average (the chi-square's approximation)."""
    return int(max(1, min(np.clip(n // 20, *RATE_BINS), n // 5)))


def profile_counts(stages: Stages, times_s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bin edges over [0, last arrival], the arrivals per bin, and the count the profile expects there."""
    span = float(times_s[-1]) if len(times_s) else stages.profile.duration_s
    edges = np.linspace(0.0, span, rate_bins(len(times_s)) + 1)
    return edges, np.histogram(times_s, edges)[0], np.diff(stages.profile.integrated(edges))


def counts_test(stages: Stages, times_s: np.ndarray) -> tuple[int, float, float]:
    """Counts per bin against the profile: (bins, chi-square / bins, p-value).

    The rescaled-gap KS sees only the gaps' marginal law, and a schedule that ignores the profile at
    the same mean rate rescales to a scale mixture of the base that KS rarely tells apart (for the
    tests' ramp-and-hold, 950 arrivals: 25% of runs at alpha = 1%). Counts per bin see where in time
    the traffic went (100% of those runs). The statistic sum (O - E)^2 / (c^2 E) is quasi-Poisson: a
    renewal base with gap CV c has counts of variance ~ c^2 x mean; chi-square with ``bins`` degrees
    of freedom (E comes from the profile, nothing is fitted): 1.1% false alarms at alpha = 1% in
    simulation of the same run.
    """
    if len(times_s) < MIN_GAPS:
        return 0, math.nan, math.nan
    _, counts, expected = profile_counts(stages, times_s)
    statistic = float(np.sum((counts - expected) ** 2 / (stages.unit_base.cv ** 2 * np.maximum(expected, 1e-12))))
    return len(counts), statistic / len(counts), float(stats.chi2.sf(statistic, len(counts)))


def stages_table(run: RunFolder, stages: Stages, alpha: float = ALPHA, seed: int = 0,
                 n_mc_samples: int = AD_MC_SAMPLES, ad_max_n: int = AD_MAX_N) -> pd.DataFrame:
    """The renewal table's shape (index scheduled, sent; GapFit columns) on the time-rescaled gaps, with
    the counts-per-bin test beside (``counts_*``). Each test at alpha / 2, so a set's false alarms stay
    near alpha; ``fits``: both pass."""
    arrival = run.record.pacing == "arrival"
    test = STAGES_TEST if arrival else "not tested: a rate profile needs arrival pacing"
    gaps = rescaled_gaps(run, stages)
    fits, counts = [], []
    for which, column in zip(WHICH, ("scheduled_epoch", "sent_epoch")):
        fits.append(fit_gaps(gaps[which], stages.unit_base, which, alpha=alpha / 2, seed=seed,
                             n_mc_samples=n_mc_samples, ad_max_n=ad_max_n, test=test))
        counts.append(counts_test(stages, offsets_s(run, column)[0]) if arrival else (0, math.nan, math.nan))
    table = gap_fit_frame(fits)
    position = table.columns.get_loc("wasserstein_over_mean") + 1
    for offset, name in enumerate(("counts_bins", "counts_chi2_per_bin", "counts_pvalue")):
        table.insert(position + offset, name, [c[offset] for c in counts])
    passed = table["counts_pvalue"] >= alpha / 2
    table["fits"] = [None if pd.isna(f) or pd.isna(p) else bool(f and ok)
                     for f, p, ok in zip(table["fits"], table["counts_pvalue"], passed)]
    return table


@dataclass(frozen=True)
class ProcessCheck:
    """One statistic of one set of arrivals against the declared MMPP's exact theory.

    ``n``: the windows (IDC) or gaps it was computed from. ``fits``: the theory lies inside
    ``[ci_low, ci_high]``; None for the indicative KS row, which has a p-value instead of a CI.
    """

    which: str
    statistic: str
    window_s: float
    n: int
    realised: float
    theory: float
    ci_low: float
    ci_high: float
    ci_level: float
    pvalue: float
    fits: bool | None
    test: str


def correlation_time_s(mmpp: MMPP) -> float:
    """The slowest decay time of the modulating chain: how long the rate remembers its state."""
    decay = -np.linalg.eigvals(mmpp.generator).real
    return float(1.0 / decay[decay > 1e-12 * decay.max()].min())


def idc_windows_s(mmpp: MMPP) -> list[float]:
    shortest = min(mmpp.dwell_s)
    return [f * shortest for f in IDC_WINDOW_FACTORS]


def _block_sums(block_of: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Per block: how many values, their sum and their sum of squares (rows 0, 1, 2)."""
    count = int(block_of.max()) + 1
    return np.stack([np.bincount(block_of, minlength=count).astype(float), np.bincount(block_of, values, count),
                     np.bincount(block_of, values * values, count)])


def _mean(s0, s1, s2):
    return s1 / s0


def _cv(s0, s1, s2):
    return np.sqrt(np.maximum(s2 - s1 ** 2 / s0, 0.0) / (s0 - 1)) / (s1 / s0)


def _idc(s0, s1, s2):  # the windows' count variance over their mean count
    return (s2 - s1 ** 2 / s0) / (s0 - 1) / (s1 / s0)


def _judged(statistic, sums: np.ndarray, rng: np.random.Generator, alpha: float) -> tuple[float, float, float]:
    """The estimate from all blocks and its interval from BOOTSTRAP_SAMPLES resamples of whole blocks.

    The interval is symmetric on the log scale: estimate x exp(+-t x sd(log replicates)), t with
    blocks - 1 degrees of freedom and the sd scaled by sqrt(B / (B - 1)), both for few blocks. These
    statistics are positive and right-skewed (a variance ratio from a few dozen long windows); on the
    log scale their spread does not grow with their level. Bootstrap percentiles under-covered: in
    simulation of the test's MMPP (3,000 arrivals) they missed a 99% target 3 to 9% of the time.
    """
    estimate = float(statistic(*sums.sum(axis=1)))
    blocks = sums.shape[1]
    pick = rng.integers(0, blocks, size=(BOOTSTRAP_SAMPLES, blocks))
    with np.errstate(divide="ignore", invalid="ignore"):
        replicates = statistic(*(sums[k][pick].sum(axis=1) for k in range(3)))
        logs = np.log(replicates[np.isfinite(replicates) & (replicates > 0)])
    if not (estimate > 0 and len(logs) > 1 and blocks > 1):
        return estimate, math.nan, math.nan
    half = stats.t.ppf(1 - alpha / 2, blocks - 1) * float(np.std(logs, ddof=1)) * math.sqrt(blocks / (blocks - 1))
    return estimate, estimate * math.exp(-half), estimate * math.exp(half)


def mmpp_checks(times_s, gaps_s, mmpp: MMPP, which: str, alpha: float = ALPHA, seed: int = 0,
                counts: bool = True) -> list[ProcessCheck]:
    """Mean gap, gap CV, IDC at ``idc_windows_s`` (``counts``; each where ``times_s`` span >= MIN_WINDOWS
    windows) and the indicative KS row, for arrival offsets ``times_s`` (s) and their ``gaps_s``.

    CIs: a seeded bootstrap over non-overlapping blocks of time (``_judged``). Blocks, not single
    windows or gaps, because an MMPP's counts in neighbouring windows and its neighbouring gaps are
    correlated through the hidden state; a block lasts BLOCK_CORRELATION_TIMES correlation times of
    the chain (fewer where that would leave under MIN_BLOCKS blocks), so blocks are nearly independent.
    Not the asymptotic variance: for a variance ratio it needs the counts' fourth moments under that
    same dependence, which the bootstrap estimates without a formula. Each interval is at level
    1 - alpha / k for the k judged statistics of the set (Bonferroni), so one set's verdict raises a
    false alarm about as often as the renewal KS test at alpha (2% in simulation, against 6% unadjusted).
    """
    rng = np.random.default_rng(seed)
    gaps_s = np.asarray(gaps_s, dtype=float)
    times_s = np.sort(np.asarray(times_s, dtype=float)) if counts else np.cumsum(gaps_s)
    span_s = float(times_s[-1]) if len(times_s) else 0.0
    block_s = min(BLOCK_CORRELATION_TIMES * correlation_time_s(mmpp), span_s / MIN_BLOCKS)
    judged = []  # (statistic, window, n, theory, sums, test): intervals once k is known
    if len(gaps_s) >= MIN_GAPS and block_s > 0:
        ends = np.cumsum(gaps_s) if not counts else times_s[-len(gaps_s):]  # the arrival ending each gap
        sums = _block_sums((ends // block_s).astype(int), gaps_s)
        sums = sums[:, sums[0] > 0]  # blocks of time without a gap end say nothing of the gaps
        test = f"block bootstrap, {sums.shape[1]} blocks of {block_s:.3g} s"
        judged += [("mean gap (s)", math.nan, len(gaps_s), mmpp.mean, _mean, sums, test),
                   ("gap CV", math.nan, len(gaps_s), mmpp.cv, _cv, sums, test)]
    for window_s in idc_windows_s(mmpp) if counts else []:
        windows = int(span_s // window_s)
        if windows < MIN_WINDOWS:
            continue
        per_window = np.bincount((times_s[times_s < windows * window_s] // window_s).astype(int), minlength=windows)
        block = max(1, min(math.ceil(block_s / window_s), windows // MIN_BLOCKS))
        sums = _block_sums(np.arange(windows) // block, per_window.astype(float))
        judged.append(("IDC", window_s, windows, mmpp.idc(window_s), _idc, sums,
                       f"block bootstrap, {sums.shape[1]} blocks of {block} window{'s' if block > 1 else ''}"))
    level_alpha = alpha / max(1, len(judged))
    rows = []
    for statistic, window_s, n, theory, function, sums, test in judged:
        estimate, low, high = _judged(function, sums, rng, level_alpha)
        fits = None if math.isnan(low) else bool(low <= theory <= high)
        rows.append(ProcessCheck(which, statistic, window_s, n, estimate, float(theory), low, high,
                                 1 - level_alpha, math.nan, fits, test))
    if len(gaps_s) < MIN_GAPS:  # say how many there were, never zeros
        rows += [ProcessCheck(which, statistic, math.nan, len(gaps_s), math.nan, theory, math.nan, math.nan, math.nan,
                              math.nan, None, f"too few gaps (need {MIN_GAPS})")
                 for statistic, theory in (("mean gap (s)", mmpp.mean), ("gap CV", mmpp.cv))]
    else:
        ks = stats.kstest(gaps_s, mmpp.cdf)
        rows.append(ProcessCheck(which, "gap KS (indicative)", math.nan, len(gaps_s), float(ks.statistic),
                                 math.nan, math.nan, math.nan, math.nan, float(ks.pvalue), None,
                                 "KS vs the stationary gap law; gaps correlated, so not judged"))
    return rows


def mmpp_table(run: RunFolder, mmpp: MMPP, alpha: float = ALPHA, seed: int = 0) -> pd.DataFrame:
    """Index ``which`` (scheduled, sent), a row per statistic (ProcessCheck columns). Under think pacing
    only the gaps (the drawn think times; the sent gaps of a closed loop): no schedule of counts."""
    arrival = run.record.pacing == "arrival"
    checks = []
    for which, column, gaps in (("scheduled", "scheduled_epoch", scheduled_gaps_s(run)),
                                ("sent", "sent_epoch", sent_gaps_s(run))):
        times = offsets_s(run, column)[0] if arrival else np.array([])
        checks += mmpp_checks(times, gaps, mmpp, which, alpha=alpha, seed=seed, counts=arrival)
    return pd.DataFrame([asdict(c) for c in checks], columns=[f.name for f in fields(ProcessCheck)]).set_index("which")


# -- verdict ----------------------------------------------------------------------------------------------
def judgement(process, table: pd.DataFrame, which: str, pacing: str) -> Judgement:
    """What ``fidelity.verdict`` says of one set of arrivals (``which``) of a stages or mmpp run."""
    rows = table[table.index == which]
    if isinstance(process, Stages):
        row = rows.iloc[0]
        if pacing != "arrival":
            return Judgement(None, "", untested=(
                f"The declared {process} is not tested: a rate profile needs arrival pacing (a schedule of "
                "send times), and this run used think pacing." if which == "scheduled" else
                "The sent gaps of the closed loop are not tested either."))
        evidence = (f"time-rescaling KS p = {_p(row['ks_pvalue'])}, counts in {int(row['counts_bins'])} bins vs the "
                    f"profile p = {_p(row['counts_pvalue'])}, each at alpha {_p(row['alpha'])}; n = {int(row['n'])}")
        return Judgement(None if pd.isna(row["fits"]) else bool(row["fits"]), evidence, n=int(row["n"]),
                         size=f"Wasserstein distance {100 * row['wasserstein_over_mean']:.1f}% of the mean "
                              "rescaled gap")
    judged = rows[rows["fits"].notna()]
    gaps = rows[rows["statistic"] == "mean gap (s)"]
    n = int(gaps["n"].iloc[0]) if len(gaps) else 0
    means = dict(mean_s=float(gaps["realised"].iloc[0]), theoretical_mean_s=process.mean) if len(gaps) else {}
    if judged.empty:
        return Judgement(None, "", n=n, **means)
    level = f"{100 * judged['ci_level'].iloc[0]:.3g}%"
    ks = rows[rows["statistic"] == "gap KS (indicative)"]
    ks_clause = f"; gap KS p = {_p(ks['pvalue'].iloc[0])}, indicative" if len(ks) else ""
    if judged["fits"].astype(bool).all():
        windows = ", ".join(f"{w:g}" for w in judged.loc[judged["statistic"] == "IDC", "window_s"])
        idc = f"IDC at {windows} s windows, " if windows else ""
        evidence = f"theory inside every {level} CI: {idc}mean gap and gap CV{ks_clause}; n = {n}"
        return Judgement(True, evidence, n=n, **means)
    misses = [_miss(r, level) for _, r in judged[~judged["fits"].astype(bool)].iterrows()]
    more = f"; {len(misses) - 2} more outside" if len(misses) > 2 else ""
    return Judgement(False, "; ".join(misses[:2]) + more + f"; n = {n}", n=n, **means)


def _miss(row: pd.Series, level: str) -> str:
    """``IDC(4 s) 1.02, 99.8% CI [0.6, 1.8], theory 32.8`` (a mean gap with its unit)."""
    name, unit = {"IDC": (f"IDC({row['window_s']:g} s)", ""), "mean gap (s)": ("mean gap", " s")}.get(
        row["statistic"], (row["statistic"], ""))
    return (f"{name} {row['realised']:.3g}{unit}, {level} CI [{row['ci_low']:.3g}, {row['ci_high']:.3g}]{unit}, "
            f"theory {row['theory']:.3g}{unit}")


# -- figures ----------------------------------------------------------------------------------------------
def rate_figure(run: RunFolder, stages: Stages, path: str | Path, title: str = "") -> Path:
    """Intended rate ``profile.rate(t)`` against sent requests per bin (requests/s), with the RATE_BAND
    band of a bin's count when the traffic follows the profile.

    The band is quasi-Poisson: a renewal base with gap CV c has counts of variance ~ c^2 x mean, so
    count / c^2 is taken as Poisson with mean expected / c^2 (exactly Poisson for an exponential base).
    """
    times, _ = offsets_s(run, "sent_epoch") if run.record.pacing == "arrival" else (np.array([]), False)
    edges, counts, expected = profile_counts(stages, times)
    span, bins, width = edges[-1], len(counts), edges[1] - edges[0]
    dispersion = max(stages.unit_base.cv ** 2, 1e-9)
    tail = (1 - RATE_BAND) / 2
    low, high = (dispersion * stats.poisson.ppf(q, expected / dispersion) for q in (tail, 1 - tail))
    outside = int(np.sum((counts < low) | (counts > high)))

    fig, ax = plt.subplots(figsize=(8, 4))
    ax.fill_between(edges, np.append(low, low[-1]) / width, np.append(high, high[-1]) / width, step="post",
                    color="#C44E52", alpha=0.18, label=f"{100 * RATE_BAND:.0f}% band of a bin's count")
    ax.stairs(counts / width, edges, baseline=None, color="#4C72B0", linewidth=1.5,
              label=f"sent ({bins} bins of {width:.3g} s; {outside} outside the band)")
    grid = np.linspace(0.0, span, 1000)
    ax.plot(grid, stages.profile.rate(grid), color="#C44E52", linestyle="--", linewidth=2, label="intended rate")
    ax.set_xlim(0, span)
    ax.set_ylim(bottom=0)
    ax.set_xlabel("time since the schedule start (s)")
    ax.set_ylabel("requests/s")
    ax.set_title(textwrap.fill(title or f"{run.name}: {stages}", 110), fontsize=9)  # a long profile wraps
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def idc_figure(table: pd.DataFrame, mmpp: MMPP, path: str | Path, title: str = "") -> Path:
    """Realised IDC by window (scheduled and sent, with their CIs) against the exact theory curve."""
    windows = idc_windows_s(mmpp)
    grid = np.geomspace(windows[0] / 4, windows[-1] * 4, 40)
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(grid, [mmpp.idc(w) for w in grid], color="#C44E52", linestyle="--", linewidth=2, label="theory")
    ax.axhline(1.0, color="grey", linewidth=1, linestyle=":", label="Poisson (IDC = 1)")
    for (which, nudge), color in zip(((WHICH[0], 0.93), (WHICH[1], 1.07)), ("#4C72B0", "#55A868")):
        rows = table[(table.index == which) & (table["statistic"] == "IDC")]
        if rows.empty:
            continue
        level = f"{100 * rows['ci_level'].iloc[0]:.3g}%"
        err = [rows["realised"] - rows["ci_low"], rows["ci_high"] - rows["realised"]]
        ax.errorbar(rows["window_s"] * nudge, rows["realised"], yerr=np.clip(np.asarray(err, dtype=float), 0, None),
                    fmt="o", color=color, capsize=3, label=f"{which} ({level} CI)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("window (s)")
    ax.set_ylabel("IDC = Var N / E N")
    ax.set_title(textwrap.fill(title or str(mmpp), 110), fontsize=9)
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def figures(run: RunFolder, process, table: pd.DataFrame, out: Path) -> list[Path]:
    """The report's figures for a stages or mmpp run: both gap figures, then rate.png or idc.png."""
    out = Path(out)
    if isinstance(process, Stages):
        rescaled = rescaled_gaps(run, process)
        law = process.unit_base
        gaps = [gap_figure(rescaled[w], law, f"{run.name}: {w} times, time-rescaled gaps vs unit-mean base {law}",
                           out / f"gaps_{w}.png", pdf_label="unit-mean base PDF") for w in WHICH]
        return [*gaps, rate_figure(run, process, out / "rate.png")]
    law = process  # its stationary gap law: MMPP.cdf/pdf/ppf
    sets = {"scheduled": scheduled_gaps_s(run), "sent": sent_gaps_s(run)}
    gaps = [gap_figure(sets[w], law, f"{run.name}: {w} gaps vs the stationary gap law (gaps correlated: "
                       "indicative)", out / f"gaps_{w}.png", pdf_label="PDF") for w in WHICH]
    return [*gaps, idc_figure(table, process, out / "idc.png", title=f"{run.name}: {process}")]
