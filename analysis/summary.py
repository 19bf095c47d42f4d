"""`burstbench summary RUN`: the p50/p95/p99 table of one run, printed and saved."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display on servers
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from burstbench.locustfiles.generator_health import busy_waits, generator_verdict  # noqa: E402
from .latency import QUANTILES, run_facts, summarise  # noqa: E402
from .runs import RunFolder, load_run  # noqa: E402
from .figures import save_figure  # noqa: E402


def generator_lines(run: RunFolder, lateness_p99_ms: float) -> list[str]:
    """The generator verdict of a run that recorded generator.csv ([] when it kept up, or has none).

    ``lateness_p99_ms``: the send lateness p99 over all rows (every load process together).
    """
    if run.generator is None:
        return []
    return generator_verdict(run.generator, lateness_p99_ms, busy_wait=busy_waits(run.record.dispatcher))


def format_summary(run: RunFolder, table: pd.DataFrame, facts: dict) -> str:
    """The run's first lines (the generator verdict when it limited the run), then the table."""
    shown = table.copy()
    for col in [*QUANTILES, "min", "avg", "max"]:
        shown[col] = shown[col].map(lambda v: "n/a" if pd.isna(v) else f"{v:.1f}")
    header = "".join(line + "\n" for line in generator_lines(run, facts["lateness_p99_ms"]))
    offered = facts["offered_rate_per_s"]
    header += (f"run {run.name}: {facts['process'] or 'no arrival process'} ({facts['scenario']}), pacing "
               f"{facts['pacing']}, {facts['users']} users\n"
               + (f"offered {offered:.3f} req/s" if offered is not None else f"{facts['users']} requests kept in flight")
               + f", achieved {facts['achieved_rate_per_s']:.3f} req/s; "
               f"lateness p50 {facts['lateness_p50_ms']:.3f} ms, p99 {facts['lateness_p99_ms']:.3f} ms "
               f"(max {facts['lateness_max_ms']:.1f} ms)")
    if facts["batch_size_max"] is not None:
        header += f"; largest batch {facts['batch_size_max']}, {100 * facts['batches_over_one_share']:.0f}% of requests batched with others"
    if facts["failure_kinds"]:
        header += f"\nfailures by kind: {facts['failure_kinds']}"
    return header + "\nlatency in ms, exact percentiles over successful requests:\n" + shown.to_string()


def latency_figure(run: RunFolder, table: pd.DataFrame, path: Path) -> Path:
    values = run.ok_rows["latency_ms"].to_numpy(dtype=float)
    fig, ax = plt.subplots(figsize=(7, 4))
    if len(values):
        ax.hist(values, bins=min(60, max(10, len(values) // 10)), color="#4C72B0", alpha=0.8)
        for name, style in zip(QUANTILES, ("-", "--", ":")):
            v = table.loc["service", name]
            ax.axvline(v, color="black", linestyle=style, label=f"{name} {v:.1f} ms")
        ax.legend()
    ax.set_xlabel("service latency (ms)")
    ax.set_ylabel("requests")
    ax.set_title(f"{run.name}\n{(run.record.distribution or {}).get('label')}, pacing {run.record.pacing}",
                 fontsize=9)
    return save_figure(fig, path)


def summary(path: str | Path) -> str:
    run = load_run(path)
    table = summarise(run)
    facts = run_facts(run)
    table.to_csv(run.path / "summary.csv", float_format="%.3f")
    latency_figure(run, table, run.path / "latency.png")
    text = format_summary(run, table, facts) + streaming_summary(run) + telemetry_summary(run)
    return text + f"\nwritten: {run.path / 'summary.csv'}, {run.path / 'latency.png'}"


def streaming_summary(run: RunFolder) -> str:
    """A streaming run's TTFT, ITL, TPOT and end-to-end percentiles, tokens/s, and goodput under its SLOs."""
    from .slo import goodput, goodput_line, has_streaming_rows, run_slos
    from .streaming import TABLE_QUANTILES, load_itl, measures, tokens_table

    if not has_streaming_rows(run.rows):
        return ""
    itl = load_itl(run)
    shown = pd.DataFrame.from_dict({name: {"n": len(v), **{q: np.quantile(v, f) if len(v) else np.nan
                                                           for q, f in TABLE_QUANTILES.items()},
                                           "max": v.max() if len(v) else np.nan}
                                    for name, v in measures(run, itl).items()}, orient="index")
    text = "\nstreaming, in ms, exact percentiles over successful requests:\n" + shown.to_string(
        float_format=lambda v: f"{v:.1f}")
    tokens = tokens_table(run)
    whole = tokens.loc["whole run (output tokens/s)", "value"] if "whole run (output tokens/s)" in tokens.index else None
    if whole is not None:
        text += f"\noutput tokens/s over the run: {whole:.1f}"
    slos = run_slos(run.record)
    if slos:
        text += "\n" + goodput_line(goodput(run.rows, itl, slos))
    return text


def telemetry_summary(run: RunFolder) -> str:
    """Server metrics (scrapes, or why none) and the service's, generator's and GPU's peaks ('' without telemetry)."""
    from .telemetry import summary_lines

    lines = summary_lines(run)
    return f"\n{lines[0]}\nresources: {lines[1]}" if lines else ""


def latest_run(results_dir: str | Path = "results") -> Path:
    runs = sorted(p for p in Path(results_dir).iterdir() if (p / "run.json").is_file()) if Path(results_dir).is_dir() else []
    if not runs:
        raise ValueError(f"{results_dir}: no run folders yet (run 'make scenario-steady' first)")
    return runs[-1]


