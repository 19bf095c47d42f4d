"""`burstbench report RUN`: everything one run says, as Markdown, HTML, CSV and PNG.

The report opens with the verdicts a reader needs first (did the load generator limit the run,
did the arrivals fit the declared process, was the run complete), then the paper's tables and
figures and more.
"""
from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from burstbench.arrivals import Stages

from . import process_fidelity
from .fidelity import (ALPHA, NO_PROCESS, declared_process, fidelity_table, gap_figure, has_declared_process,
                       is_renewal, lateness_table, scheduled_gaps_s, sent_gaps_s, verdict)
from burstbench.locustfiles.generator_health import CPU_LIMIT_PERCENT, GENERATOR_FILE, LATENESS_LIMIT_MS, LOOP_DELAY_LIMIT_MS
from .latency import batch_sizes, latency_table, locust_percentiles, run_facts
from burstbench.record import Machine

from .runs import RunFolder, load_run
from .summary import generator_lines, latency_figure, summarise
from .timeline import timeline, timeline_figure

REPORT_DIR = "report"
FIDELITY_TITLE = "Inter-arrival fidelity (Figures 1-3)"


@dataclass
class Section:
    title: str
    text: str = ""
    tables: list[tuple[str, pd.DataFrame]] = field(default_factory=list)
    figures: list[Path] = field(default_factory=list)
    csv: dict[str, pd.DataFrame] = field(default_factory=dict)  # numeric versions of formatted tables


def build_sections(run: RunFolder, out: Path, slos: dict[str, float] | None = None) -> list[Section]:
    """Every section in order. ``slos``: judge goodput by these instead of run.json's ``slo``."""
    from .streaming import extra_sections  # streaming and goodput sections: only runs that have them
    from .telemetry_report import telemetry_section  # "Where the time went": only runs with telemetry

    facts = run_facts(run)
    dist = declared_process(run) if has_declared_process(run) else None
    status = run.record.status or "unknown"
    fid = fidelity_table(run)
    headline = [verdict(run, table=fid)]
    if run.partial:
        headline.append(f"PARTIAL RUN: status '{status}', {facts['dropped_rows']} incomplete rows dropped; "
                        f"{len(run.rows)} of {run.record.requests_planned or '?'} planned requests are analysed.")
    failures = facts["failure_kinds"]
    headline.append(f"{len(run.ok_rows)} of {len(run.rows)} requests succeeded"
                    + (f"; failures by kind: {failures}." if failures else "."))
    # The generator's verdict comes first, one paragraph a line: when it limited the run, nothing
    # below measures the service alone.
    verdict_text = "\n\n".join([*generator_lines(run, facts["lateness_p99_ms"]), " ".join(headline)])

    overview = pd.DataFrame({"value": {
        "scenario": facts["scenario"],
        "declared process": str(dist) if dist is not None else "none (concurrency pacing)",
        "pacing": facts["pacing"],
        "users": facts["users"], "requests sent": len(run.rows), "duration (s)": round(facts["duration_s"], 1),
        # Reports print both: a rate reads as load, a mean gap as the schedule's spacing.
        "declared rate (req/s)": float(dist.rate) if dist is not None else "n/a",
        "declared mean gap (s)": float(dist.mean) if dist is not None else "n/a",
        "achieved rate (req/s)": round(facts["achieved_rate_per_s"], 3),
        "target": _target_label(run.record.target or {}),
        "git commit": None if run.record.git is None else run.record.git.commit,
        "machine": _machine_label(run.record.machine),
    }})

    lat = latency_table(run)  # long and numeric: what latency.csv holds
    locust = locust_percentiles(run)
    late = lateness_table(run)
    batches = batch_sizes(run)
    tl = timeline(run)

    figures = {
        "latency": latency_figure(run, summarise(run), out / "latency.png"),
        "timeline": timeline_figure(run, out / "timeline.png"),
    }
    latency_text = ("Exact percentiles over successful requests, each with a bootstrap 95% CI; service latency is "
                    "measured from the actual send, schedule-corrected latency from the scheduled send.")
    if locust is not None:
        latency_text += " Locust's own percentiles are bucketed (1 ms below 100 ms, 10 ms to 1 s, 100 ms above): shown beside, labelled."
    shown = latency_display(lat, locust)
    generator = []
    if run.generator is not None:
        generator = [Section(
            "Load generator",
            f"Each load process sampled itself ({GENERATOR_FILE}): CPU time over wall time (% of one core), the "
            "longest stretch its event loop ran without polling (loop delay: how long a due send or a ready "
            "response could wait), and its sends' lateness. The verdict flags a process at "
            f"{CPU_LIMIT_PERCENT:g} % of a core or more, or send lateness p99 above {LATENESS_LIMIT_MS:g} ms, "
            f"and names loop stalls of {LOOP_DELAY_LIMIT_MS:g} ms or more and sends already overdue when a user "
            "became free; each process's first sample (start-up) and a last one after its last send (shutdown) "
            "are left out of the CPU and loop-delay judgement. "
            "Over time: the timeline figure.",
            tables=[("generator_summary", generator_table(run.generator))])]
    return [
        Section("Verdict", verdict_text),
        Section("Run", tables=[("overview", overview)]),
        *generator,
        Section("Latency (Tables 3-4)", latency_text,
                tables=[("latency", shown)] + ([("locust_percentiles", locust)] if locust is not None else []),
                figures=[figures["latency"]], csv={"latency": lat}),
        *extra_sections(run, out, slos),
        *([where] if (where := telemetry_section(run, out)) is not None else []),
        fidelity_section(run, dist, fid, late, out),
        Section("Batching", "Batch sizes the service reported for successful requests.",
                tables=[("batch_sizes", batches.to_frame())]),
        Section("Timeline (Figure 4)", "Requests, failures and latency over time, in fixed windows.",
                tables=[("timeline", tl)], figures=[figures["timeline"]]),
    ]


def fidelity_section(run: RunFolder, dist, fid: pd.DataFrame, late: pd.DataFrame, out: Path) -> Section:
    """The declared process against the scheduled and the sent arrivals, worded for its kind."""
    if dist is None:
        return Section(FIDELITY_TITLE, NO_PROCESS)
    tables = [("fidelity", fid), ("lateness", late)]
    if is_renewal(dist):
        figures = [gap_figure(scheduled_gaps_s(run), dist, f"{run.name}: scheduled gaps vs {dist}",
                              out / "gaps_scheduled.png"),
                   gap_figure(sent_gaps_s(run), dist, f"{run.name}: gaps between actual sends vs {dist}",
                              out / "gaps_sent.png")]
        return Section(FIDELITY_TITLE, "Gaps between scheduled sends (the declared process) and between actual "
                       "sends, against the theoretical distribution: KS and Anderson-Darling tests, Wasserstein "
                       "distance / mean.", tables=tables, figures=figures)
    figures = process_fidelity.figures(run, dist, fid, out)
    if isinstance(dist, Stages):
        text = (f"The declared rate profile ({dist.profile}) over a renewal base, checked by time-rescaling: each "
                "arrival time t (seconds from the schedule start) is mapped through the profile's integrated rate "
                "Lambda(t). Traffic that followed the profile gives gaps Lambda(t_i) - Lambda(t_(i-1)) that are "
                f"i.i.d. draws of the unit-mean base {dist.unit_base}: tested, for the scheduled and the sent "
                "times, by KS and Anderson-Darling, with the Wasserstein distance / mean. Those tests see only the "
                "gaps' law, not where in time the requests went, so the counts per bin are also tested against "
                "the profile (a quasi-Poisson chi-square); each test at alpha / 2. The gap figures show the "
                "rescaled gaps; rate.png the intended rate against sent requests per bin, with the 95% band of "
                "a bin's count.")
    else:
        windows = ", ".join(f"{w:g}" for w in process_fidelity.idc_windows_s(dist))
        factors = ", ".join(f"{f:g}" for f in process_fidelity.IDC_WINDOW_FACTORS)
        text = ("A Markov-modulated Poisson process: its gaps are correlated, so the KS test of them against the "
                "stationary gap law (and the gap figures) is only indicative. Judged, for the scheduled and the "
                "sent times, each against the exact theory: the mean gap, the gap CV and the index of dispersion "
                f"of counts Var N(w) / E N(w) in windows of {windows} s ({factors} times the shortest mean dwell; "
                f"each where the run spans at least {process_fidelity.MIN_WINDOWS} windows). Each CI comes from "
                f"a seeded bootstrap over blocks of time, at the level in ci_level ({100 * ALPHA:g}% shared by a "
                "set's statistics); a row fits when the theory lies inside its CI. idc.png: realised IDC by "
                "window, with CIs, against the theory.")
    return Section(FIDELITY_TITLE, text, tables=tables, figures=figures)


def generator_table(samples: pd.DataFrame) -> pd.DataFrame:
    """One row per load process: its CPU, loop delay, memory and sends over the run."""
    rows = {}
    for worker, part in samples.groupby("worker", sort=True):
        judged = part.iloc[1:] if len(part) > 1 else part  # the first sample is start-up (generator_health)
        judged_cpu = judged[judged["cpu_percent"].notna() & (judged["interval_s"] > 0)]
        above = judged["cpu_percent"] >= CPU_LIMIT_PERCENT
        rows[f"load process {worker}"] = {
            "samples": len(part),
            "monitored (s)": float(part["interval_s"].sum()),
            "CPU mean (% core)": float(np.average(judged_cpu["cpu_percent"], weights=judged_cpu["interval_s"]))
            if len(judged_cpu) else float("nan"),
            "CPU max (% core)": float(judged["cpu_percent"].max()),
            f"time at >= {CPU_LIMIT_PERCENT:g} % (s)": float(judged.loc[above, "interval_s"].sum()),
            "loop delay max (ms)": float(judged["loop_delay_ms"].max()),
            "RSS max (MiB)": float(part["rss_mb"].max()),
            "sends": int(part["sends"].sum()),
            "overdue at claim": int(part["claim_late"].sum()),
        }
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("worker")


def latency_display(lat: pd.DataFrame, locust: pd.DataFrame | None) -> pd.DataFrame:
    """Rows p50..max; ours with CIs, side by side for both latencies, and Locust's bucketed column."""
    columns = {}
    for kind in ("service", "schedule-corrected"):
        part = lat.xs(kind, level="latency")
        columns[f"{kind} (ms)"] = part["ms"]
        columns[f"{kind} 95% CI"] = [
            "" if pd.isna(lo) else f"[{lo:.1f}, {hi:.1f}]" for lo, hi in zip(part["ci_low"], part["ci_high"])]
    shown = pd.DataFrame(columns)
    if locust is not None:
        shown["locust (bucketed, ms)"] = locust["locust (bucketed)"].reindex(shown.index)
    return shown


def _target_label(target: dict) -> str:
    if "error" in target:
        return f"unknown ({target['error']})"
    parts = [target.get("model"), target.get("variant"), target.get("device")]
    label = " / ".join(str(p) for p in parts if p)
    return label + (" (UNTRAINED: labels meaningless, cost realistic)" if target.get("untrained") else "")


def _machine_label(machine: Machine | None) -> str:
    if machine is None:
        return "None, None cores, None GiB"
    return f"{machine.cpu}, {machine.cores} cores, {machine.memory_gib} GiB"


def _fmt(table: pd.DataFrame) -> pd.DataFrame:
    return table.map(lambda v: ("n/a" if pd.isna(v) else f"{v:.4g}") if isinstance(v, float) else v)


def to_markdown(run: RunFolder, sections: list[Section], out: Path) -> str:
    lines = [f"# Run report: {run.name}", ""]
    for s in sections:
        lines += [f"## {s.title}", ""]
        if s.text:
            lines += [s.text, ""]
        for name, table in s.tables:
            lines += [f"**{name}** ([{name}.csv]({name}.csv))", "", _fmt(table).to_markdown(), ""]
        for fig in s.figures:
            lines += [f"![{fig.stem}]({fig.relative_to(out)})", ""]
    return "\n".join(lines)


def to_html(run: RunFolder, sections: list[Section]) -> str:
    """Self-contained: figures embedded as data URIs, no scripts, no external resources."""
    body = [f"<h1>Run report: {html.escape(run.name)}</h1>"]
    for s in sections:
        body.append(f"<h2>{html.escape(s.title)}</h2>")
        if s.text:
            cls = ' class="verdict"' if s.title == "Verdict" else ""
            body += [f"<p{cls}>{html.escape(paragraph)}</p>" for paragraph in s.text.split("\n\n")]
        for name, table in s.tables:
            body.append(f"<h3>{html.escape(name)}</h3>" + _fmt(table).to_html(border=0, na_rep="n/a"))
        for fig in s.figures:
            data = base64.b64encode(fig.read_bytes()).decode()
            body.append(f'<figure><img alt="{html.escape(fig.stem)}" src="data:image/png;base64,{data}"></figure>')
    style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
             "table{border-collapse:collapse;margin:.5em 0}td,th{padding:2px 8px;text-align:right;"
             "border-bottom:1px solid #ddd}img{max-width:100%}.verdict{font-size:1.1em;font-weight:bold}")
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>Run report: '
            f"{html.escape(run.name)}</title><style>{style}</style></head><body>{''.join(body)}</body></html>\n")


def report(path: str | Path, slos: dict[str, float] | None = None) -> dict[str, Path]:
    """Write the report into RUN/report/ and return the main files.

    ``slos`` (from ``slo.parse_slos``): judge goodput by these instead of the SLOs run.json recorded.
    """
    run = load_run(path)
    out = run.path / REPORT_DIR
    out.mkdir(exist_ok=True)
    sections = build_sections(run, out, slos)
    for s in sections:
        for name, table in s.tables:
            s.csv.get(name, table).to_csv(out / f"{name}.csv")
    md, page = out / "report.md", out / "report.html"
    md.write_text(to_markdown(run, sections, out))
    page.write_text(to_html(run, sections))
    return {"markdown": md, "html": page, "folder": out, "verdict": sections[0].text}
