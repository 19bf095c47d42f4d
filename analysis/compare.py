"""Compare runs: what differs between them, their latency side by side, and whether a change helped.

Pure functions compute DataFrames; ``format_comparison`` and ``compare_figure`` present them.

- ``describe_differences``: the run.json facts that matter, and a label built only from those that differ.
- ``comparison_table``: one row per run, exact p50/p95/p99 and min/avg/max of service latency (ms).
- ``paper_layout``: the same numbers pivoted like the paper's Tables 3-4 (columns = scenario x statistic).
- ``baseline_deltas``: per run and quantile, the difference from a baseline with a bootstrap 95% CI,
  the speed-up ratio, and a Mann-Whitney U p-value of the whole latency distributions (or of another
  measure: ``measure="ttft_ms"``, ``"tpot_ms"``, ``"itl_ms"``).
- ``streaming_table`` / ``streaming_deltas``: the same for TTFT, TPOT and ITL when every run streamed.
- ``goodput_deltas``: each run's goodput under one set of SLOs against the baseline's, the difference with
  Newcombe's hybrid score 95% CI (two Wilson intervals combined) and Fisher's exact test.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display on servers
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker as ticker  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from scipy import stats  # noqa: E402

from .latency import QUANTILES, run_facts, summarise  # noqa: E402
from .runs import RunFolder  # noqa: E402

# The run.json facts that tell runs apart, in the order they appear in a label.
FACTS = ("scenario", "process", "pacing", "users", "requests", "seed", "model", "variant", "batching", "device")
STATS = ("p50", "p95", "p99", "min", "avg", "max")
LATENCY_STATS = ("p50", "p95", "p99")  # the paper's Table 3
RESPONSE_STATS = ("min", "avg", "max")  # the paper's Table 4
MAX_BOOTSTRAP_VALUES = 2000  # per run; larger runs are subsampled (seeded) for the CI only
CONFIDENCE_LEVEL = 0.95
LABEL_SEP = " / "


# ----------------------------------------------------------------------------------------------- facts
def run_info_facts(run: RunFolder) -> dict:
    """The facts of one run.json that matter for a comparison; None where the run did not record one."""
    record = run.record
    dist = record.distribution or {}
    target = record.target or {}  # {"error": ...} when the service did not say what it serves
    settings = target.get("settings") or {}
    batching = settings.get("batching")
    return {
        "scenario": record.scenario,
        "process": dist.get("label"),
        "pacing": record.pacing,
        "users": record.users,
        "requests": record.requests_planned,
        "seed": record.seed,
        "model": target.get("model"),
        "variant": target.get("variant", settings.get("variant")),
        "batching": None if batching is None else ("batching on" if batching else "batching off"),
        "device": target.get("device"),
    }


def _fact_text(fact: str, value) -> str:
    if pd.isna(value):
        return f"{fact} unknown"
    if fact in ("scenario", "process", "model", "variant", "batching", "device"):
        return str(value)
    if fact == "pacing":
        return f"{value} pacing"
    if fact == "users":
        return f"{value} users"
    if fact == "requests":
        return f"{value} requests"
    return f"{fact} {value}"  # seed


def _differing(facts: pd.DataFrame, candidates: Sequence[str]) -> list[str]:
    """The facts among ``candidates`` that do not have one value across all runs.

    ``process`` is left out when ``scenario`` already differs and names each process uniquely
    (scenario names such as "extreme" stand for their process); it stays when it adds information.
    """
    differ = [f for f in candidates if facts[f].astype(object).map(repr).nunique() > 1]
    if "scenario" in differ and "process" in differ:
        per_scenario = facts.astype(object).map(repr).groupby("scenario")["process"].nunique()
        if (per_scenario == 1).all():
            differ.remove("process")
    return differ


def _labels(facts: pd.DataFrame, names: Sequence[str], candidates: Sequence[str] = FACTS) -> list[str]:
    differ = _differing(facts, candidates)
    if differ:
        labels = [LABEL_SEP.join(_fact_text(f, row[f]) for f in differ) for _, row in facts.iterrows()]
    else:
        labels = list(names)
    return _unique(labels, names)


def _unique(labels: Sequence[str], names: Sequence[str]) -> list[str]:
    """Repeated labels get their folder name, then a counter; every label is unique."""
    counts = pd.Series(labels).value_counts()
    out = [f"{lab} ({name})" if counts[lab] > 1 and lab != name else lab for lab, name in zip(labels, names)]
    seen: dict[str, int] = {}
    final = []
    for lab in out:
        seen[lab] = seen.get(lab, 0) + 1
        final.append(lab if seen[lab] == 1 else f"{lab} #{seen[lab]}")
    return final


def describe_differences(runs: Sequence[RunFolder]) -> pd.DataFrame:
    """One row per run (in the given order): folder name, the run.json facts, and a unique ``label``.

    The label joins only the facts that differ between the given runs (e.g. "extreme" versus
    "steady", or "onnx-fp32 / batching off"); when nothing differs it is the folder name.
    """
    if not runs:
        raise ValueError("runs: give at least one run to compare")
    # object dtype keeps each value as run.json wrote it (no 10 -> 10.0, no None -> NaN)
    facts = pd.DataFrame([run_info_facts(r) for r in runs], columns=list(FACTS), dtype=object)
    names = [r.name for r in runs]
    facts.insert(0, "run", names)
    facts["label"] = _labels(facts, names)
    return facts


# ----------------------------------------------------------------------------------------------- tables
def comparison_table(runs: Sequence[RunFolder]) -> pd.DataFrame:
    """One row per run, indexed by label: exact p50/p95/p99 and min/avg/max of service latency in ms
    over ok requests (NaN, never 0, when a run has none), requests, ok, failed, achieved req/s."""
    labels = describe_differences(runs)["label"]
    records = []
    for run in runs:
        service = summarise(run).loc["service"]
        record = {s: float(service[s]) for s in STATS}
        record.update(requests=int(service["requests"]), ok=int(service["ok"]), failed=int(service["failed"]),
                      achieved_rate_per_s=run_facts(run)["achieved_rate_per_s"])
        records.append(record)
    return pd.DataFrame.from_records(records, index=pd.Index(labels, name="label"))


def paper_layout(runs: Sequence[RunFolder], stats_shown: Sequence[str] = LATENCY_STATS) -> pd.DataFrame:
    """The paper's layout: rows = runs told apart by everything but the scenario, columns =
    (scenario, statistic). ``stats_shown=LATENCY_STATS`` gives Table 3 (p50/p95/p99),
    ``RESPONSE_STATS`` Table 4 (min/avg/max). Each (row, scenario) cell must hold exactly one run."""
    unknown = [s for s in stats_shown if s not in STATS]
    if unknown or not stats_shown:
        raise ValueError(f"stats_shown: {unknown or 'empty'} (accepted: {', '.join(STATS)})")
    facts = describe_differences(runs)
    if facts["scenario"].isna().any():
        missing = facts.loc[facts["scenario"].isna(), "run"].tolist()
        raise ValueError(f"paper_layout: runs {missing} have no scenario in run.json")
    others = [f for f in FACTS if f not in ("scenario", "process")]
    differ = _differing(facts, others)
    if differ:
        setups = [LABEL_SEP.join(_fact_text(f, row[f]) for f in differ) for _, row in facts.iterrows()]
    else:  # one setup across scenarios: name it by what it serves, as the paper's rows do
        common = [_fact_text(f, facts.loc[0, f]) for f in ("variant", "batching") if pd.notna(facts.loc[0, f])]
        setups = [LABEL_SEP.join(common) or "all runs"] * len(runs)
    table = comparison_table(runs).reset_index(drop=True)
    table["setup"], table["scenario"] = setups, facts["scenario"].to_numpy()
    clash = table[table.duplicated(["setup", "scenario"], keep=False)]
    if not clash.empty:
        pairs = facts.loc[clash.index, ["run", "scenario"]].to_dict("records")
        raise ValueError(f"paper_layout: several runs share one setup and scenario {pairs}; "
                         "compare them with comparison_table instead")
    wide = table.pivot(index="setup", columns="scenario", values=list(stats_shown)).swaplevel(axis=1)
    columns = pd.MultiIndex.from_product([pd.unique(table["scenario"]), list(stats_shown)],
                                         names=["scenario", "stat"])
    return wide.reindex(index=pd.unique(table["setup"]), columns=columns)


# ----------------------------------------------------------------------------------------------- deltas
def quantile_name(q: float) -> str:
    """0.5 -> p50, 0.99 -> p99, 0.999 -> p999."""
    return "p" + f"{q * 100:g}".replace(".", "")


def _find_baseline(runs: Sequence[RunFolder], baseline) -> tuple[list[RunFolder], int]:
    runs = list(runs)
    if isinstance(baseline, RunFolder):
        for i, r in enumerate(runs):
            if r is baseline:
                return runs, i
        return [baseline, *runs], 0
    if isinstance(baseline, (int, np.integer)) and not isinstance(baseline, bool):
        if not -len(runs) <= baseline < len(runs):
            raise ValueError(f"baseline: index {baseline} out of range for {len(runs)} runs")
        return runs, int(baseline) % len(runs)
    if isinstance(baseline, str):
        facts = describe_differences(runs)
        for column in ("label", "run"):
            hits = np.flatnonzero(facts[column].to_numpy() == baseline)
            if len(hits) == 1:
                return runs, int(hits[0])
        raise ValueError(f"baseline: {baseline!r} is not one label or folder name of the runs "
                         f"(labels: {', '.join(facts['label'])})")
    raise ValueError(f"baseline: give a RunFolder, an index into runs, or a label/folder name, not {type(baseline).__name__}")


def _bootstrap_sample(values: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    if len(values) <= MAX_BOOTSTRAP_VALUES:
        return values
    return rng.choice(values, size=MAX_BOOTSTRAP_VALUES, replace=False)


STREAMING_MEASURES = ("ttft_ms", "tpot_ms", "itl_ms")  # itl_ms: every gap of itl.csv


def measure_values(run: RunFolder, measure: str = "latency_ms") -> np.ndarray:
    """One measure over the ok requests, in ms, NaNs dropped: a row column, or ``itl_ms`` (every gap)."""
    if measure == "itl_ms":
        from .streaming import load_itl, ok_itl_ms

        return ok_itl_ms(run, load_itl(run))
    if measure not in run.rows.columns:
        raise ValueError(f"measure {measure!r}: run {run.name} has no such column")
    values = pd.to_numeric(run.ok_rows[measure], errors="coerce").to_numpy(dtype=float)
    return values[~np.isnan(values)]


def baseline_deltas(runs: Sequence[RunFolder], baseline, quantiles: Sequence[float] = (0.5, 0.95, 0.99),
                    n_resamples: int = 2000, seed: int = 0, measure: str = "latency_ms") -> pd.DataFrame:
    """Each non-baseline run against the baseline, one row per quantile.

    ``baseline`` is a RunFolder (added to ``runs`` if absent), an index into ``runs``, or a label or folder
    name. Columns: the percentile of service latency over ok requests in both runs (ms, exact), the
    difference run - baseline with a bootstrap 95% CI (``scipy.stats.bootstrap``, two independent
    samples, percentile method), the speed-up baseline/run (above 1: the run is faster), and the
    two-sided Mann-Whitney U p-value of the whole distributions (the same for every quantile of a run).
    ``measure``: service latency by default; ``ttft_ms``, ``tpot_ms`` or ``itl_ms`` (``measure_values``).

    The CI uses the percentile method, not scipy's default BCa: BCa's acceleration comes from the
    jackknife, which is inconsistent for sample quantiles. Runs with more than 2000 ok requests
    are subsampled (without replacement, seeded) for the CI only; ``bootstrap_n_*`` and ``note`` say so.
    A run with no ok request gives NaN everywhere and a note, never 0.
    """
    qs = np.asarray(quantiles, dtype=float)
    if qs.ndim != 1 or qs.size == 0 or np.isnan(qs).any() or (qs < 0).any() or (qs > 1).any():
        raise ValueError(f"quantiles: {list(quantiles)} (accepted: fractions in [0, 1], e.g. 0.5, 0.99)")
    if int(n_resamples) < 1:
        raise ValueError(f"n_resamples: {n_resamples} (accepted: a positive integer, e.g. 2000)")
    runs, base_i = _find_baseline(runs, baseline)
    labels = describe_differences(runs)["label"].tolist()
    base = runs[base_i]
    base_all = measure_values(base, measure)
    streams = np.random.SeedSequence(seed).spawn(len(runs))  # one stream per run position
    base_sample = _bootstrap_sample(base_all, np.random.default_rng(streams[base_i]))

    def quantile_difference(x, y, axis=-1):
        return np.quantile(x, qs, axis=axis) - np.quantile(y, qs, axis=axis)

    records = []
    for i, run in enumerate(runs):
        if i == base_i:
            continue
        values = measure_values(run, measure)
        rng = np.random.default_rng(streams[i])
        sample = _bootstrap_sample(values, rng)
        nan = np.full(qs.size, np.nan)
        run_q, base_q, low, high, p_value = nan, nan, nan, nan, np.nan
        notes = []
        if len(values) == 0:
            notes.append(f"no ok requests in run {run.name}: no latency to compare")
        if len(base_all) == 0:
            notes.append(f"no ok requests in baseline {base.name}: no latency to compare")
        if not notes:
            run_q, base_q = np.quantile(values, qs), np.quantile(base_all, qs)
            p_value = float(stats.mannwhitneyu(values, base_all, alternative="two-sided").pvalue)
            if min(len(values), len(base_all)) < 2:
                notes.append("fewer than 2 ok requests: no bootstrap CI")
            else:
                ci = stats.bootstrap((sample, base_sample), quantile_difference, paired=False, vectorized=True,
                                     n_resamples=int(n_resamples), confidence_level=CONFIDENCE_LEVEL,
                                     method="percentile", rng=rng).confidence_interval
                low, high = np.atleast_1d(ci.low), np.atleast_1d(ci.high)
            for who, full, part in (("run", values, sample), ("baseline", base_all, base_sample)):
                if len(part) < len(full):
                    unit = "gaps" if measure == "itl_ms" else "requests"
                    notes.append(f"CI from a seeded subsample of {len(part)} of {len(full)} {who} {unit}")
        with np.errstate(divide="ignore", invalid="ignore"):
            speedup = base_q / run_q
        for k, q in enumerate(qs):
            records.append({
                "run": labels[i], "baseline": labels[base_i], "quantile": quantile_name(q),
                "baseline_ms": base_q[k], "run_ms": run_q[k], "diff_ms": run_q[k] - base_q[k],
                "ci_low_ms": low[k], "ci_high_ms": high[k], "speedup": speedup[k],
                "mannwhitney_p": p_value, "n_run": len(values), "n_baseline": len(base_all),
                "bootstrap_n_run": len(sample), "bootstrap_n_baseline": len(base_sample),
                "note": "; ".join(notes),
            })
    columns = ["run", "baseline", "quantile", "baseline_ms", "run_ms", "diff_ms", "ci_low_ms", "ci_high_ms",
               "speedup", "mannwhitney_p", "n_run", "n_baseline", "bootstrap_n_run", "bootstrap_n_baseline", "note"]
    return pd.DataFrame.from_records(records, columns=columns)


def compare_figure(runs: Sequence[RunFolder], path: str | Path) -> Path:
    """ECDF of service latency (ok requests) on a log x axis, one line per run label, with p50 (circle)
    and p99 (triangle) marked. Writes a PNG and closes the figure."""
    path = Path(path)
    table = comparison_table(runs)
    fig, ax = plt.subplots(figsize=(8, 4.5))
    try:
        for run, label in zip(runs, table.index):
            values = run.ok_rows["latency_ms"].to_numpy(dtype=float)
            if len(values) == 0:  # say what is missing instead of drawing nothing silently
                ax.plot([], [], linestyle="none", label=f"{label}: no ok requests")
                continue
            line = ax.ecdf(values, label=label)
            p50, p99 = table.loc[label, "p50"], table.loc[label, "p99"]
            color = line.get_color()
            ax.plot([p50], [0.5], marker="o", color=color, linestyle="none")
            ax.plot([p99], [0.99], marker="^", color=color, linestyle="none")
            ax.annotate(f"{p99:.1f}", (p99, 0.99), textcoords="offset points", xytext=(4, -10),
                        fontsize=7, color=color)
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(ticker.ScalarFormatter())  # 10, 100 rather than 10^1, 10^2
        ax.set_xlabel("service latency (ms, log scale)")
        ax.set_ylabel("share of ok requests")
        ax.set_ylim(0, 1.02)
        ax.grid(True, which="both", alpha=0.3)
        ax.set_title("latency distributions, exact ECDF; o = p50, ^ = p99", fontsize=9)
        ax.legend(fontsize=8, loc="lower right")
        fig.tight_layout()
        fig.savefig(path, dpi=110, format="png")
    finally:
        plt.close(fig)
    return path


def _fmt(value, spec: str) -> str:
    return "n/a" if pd.isna(value) else format(value, spec)


def delta_columns(deltas: pd.DataFrame) -> dict:
    """The shown columns of a ``baseline_deltas`` table: run, quantile, both values, the difference and its CI."""
    return {
        "run": deltas["run"], "quantile": deltas["quantile"],
        "baseline_ms": deltas["baseline_ms"].map(lambda v: _fmt(v, ".1f")),
        "run_ms": deltas["run_ms"].map(lambda v: _fmt(v, ".1f")),
        "diff_ms": deltas["diff_ms"].map(lambda v: _fmt(v, "+.1f")),
        "95% CI": [("n/a" if pd.isna(lo) or pd.isna(hi) else f"[{lo:+.1f}, {hi:+.1f}]")
                   for lo, hi in zip(deltas["ci_low_ms"], deltas["ci_high_ms"])],
    }


def format_comparison(table: pd.DataFrame, deltas: pd.DataFrame | None = None) -> str:
    """Both tables for the terminal: ms with 1 decimal, rates and speed-ups with 2, p-values in
    scientific notation (1 decimal would print 0.0 for every significant result); NaN as "n/a"."""
    shown = table.copy()
    for col in STATS:
        shown[col] = shown[col].map(lambda v: _fmt(v, ".1f"))
    shown["achieved_rate_per_s"] = shown["achieved_rate_per_s"].map(lambda v: _fmt(v, ".2f"))
    shown = shown.rename(columns={"achieved_rate_per_s": "req/s"})
    text = "service latency in ms, exact percentiles over ok requests:\n" + shown.to_string()
    if deltas is None:
        return text
    if deltas.empty:
        return text + "\n\nno runs besides the baseline to compare"
    d = pd.DataFrame({
        **delta_columns(deltas),
        "speedup": deltas["speedup"].map(lambda v: _fmt(v, ".2f")),
        "mannwhitney_p": deltas["mannwhitney_p"].map(lambda v: _fmt(v, ".1e")),
        "note": deltas["note"],
    })
    if not d["note"].astype(bool).any():
        d = d.drop(columns="note")
    baseline = ", ".join(pd.unique(deltas["baseline"]))
    return (text + f"\n\nagainst baseline {baseline} (diff = run - baseline, bootstrap 95% CI; "
            "speedup = baseline / run; Mann-Whitney U two-sided p):\n" + d.to_string(index=False))
