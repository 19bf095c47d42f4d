"""Capacity sweeps: per-step table, capacity at the SLO, latency against offered load with Kingman.

A sweep folder (written by ``burstbench sweep``) holds ``sweep.json`` (the plan and
one record per step: batching, process, offered rate, run folder) and one ordinary run folder
per step. Everything here is computed from those files:

    burstbench sweep-report results/<UTC>-sweep [--slo-p99-ms 500]
    burstbench sweep-report results/<UTC>-sweep --slo latency_ms=300 --goodput-target 0.99

Which p99 decides the SLO: the schedule-corrected one (from the *scheduled* send time), with
failed requests counted as over the bound. It is what an open-loop client waits; service latency
from the actual send hides the time a request spent waiting for a free sender.

Besides the p99 criterion, a sweep given SLOs (``--slo``, see ``analysis.slo``) finds the highest rate per
process whose goodput (share of ALL requests, failed ones included, meeting every SLO) stays at or above
``--goodput-target`` (default 0.99): the point estimate decides, as the p99's does; its exact CI is shown.

A step is *valid* (MLPerf server scenario style) when it completed, sent at least
``min_requests`` and its schedule lasted at least ``min_duration_s``; invalid steps are shown
but never decide a capacity.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from burstbench.slo import DEFAULT_GOODPUT_TARGET, parse_goodput_target  # noqa: F401 (the sweep's flag)

from .latency import percentile_cis
from .runs import RunError, load_run
from .slo import describe_slos, goodput, parse_slos

SWEEP_FILE = "sweep.json"
STEP_COLUMNS = ("batching", "process", "kind", "step", "offered_rps", "rho", "scheduled_rps", "achieved_rps",
                "requests", "ok", "failed", "users", "in_flight_max", "duration_s",
                "p50_ms", "p95_ms", "p99_ms", "corr_p50_ms", "corr_p95_ms", "corr_p99_ms",
                "corr_p99_ci_low", "corr_p99_ci_high", "corr_mean_ms", "kingman_ms", "slo_p99_ms",
                "lateness_p50_ms", "lateness_p99_ms", "lateness_max_ms", "batch_mean",
                "counts_add_up", "valid", "meets_slo", "saturated", "run")
GOODPUT_COLUMNS = ("goodput", "goodput_ci_low", "goodput_ci_high", "good_per_s", "meets_goodput")  # with SLOs


# -- queueing math ----------------------------------------------------------------------
def kingman_latency_ms(rate_per_s, service_mean_ms: float, cs2: float, ca2: float):
    """Kingman's mean latency E[W] = E[S] + rho/(1-rho) * (ca^2+cs^2)/2 * E[S], in ms.

    rho = rate * E[S]. NaN where rho >= 1 (no steady state: the queue grows without bound).
    """
    rate = np.asarray(rate_per_s, dtype=float)
    rho = rate * service_mean_ms / 1000.0
    with np.errstate(divide="ignore", invalid="ignore"):
        wait = rho / (1.0 - rho) * (ca2 + cs2) / 2.0 * service_mean_ms
    out = np.where(rho < 1.0, service_mean_ms + wait, np.nan)
    return float(out) if out.ndim == 0 else out


def arrival_ca2(process: dict) -> float:
    """Squared CV of the gaps: 1/shape for gamma (1 for exponential), or measured for a trace."""
    if process.get("ca2") is not None:
        return float(process["ca2"])
    return 1.0 / float(process["shape"])


def service_time_stats(rows: pd.DataFrame, min_idle: int = 20) -> dict:
    """Service time mean, variance and cs^2 from a light-load run's rows.

    Only requests sent while no earlier request was still in flight count: they waited for
    nobody, so their latency is the service time itself (plus the loopback round trip), not
    service plus queueing. With fewer than ``min_idle`` such requests, all successful ones are
    used and ``idle_only`` says so.
    """
    rows = rows.sort_values("sent_epoch", kind="stable")
    sent = rows["sent_epoch"].to_numpy(dtype=float)
    done = sent + rows["latency_ms"].to_numpy(dtype=float) / 1000.0
    busy_until = np.concatenate(([-np.inf], np.maximum.accumulate(done)[:-1]))
    idle = sent >= busy_until
    ok = rows["ok"].to_numpy() == 1
    chosen = idle & ok
    idle_only = int(chosen.sum()) >= min_idle
    if not idle_only:
        chosen = ok
    values = rows["latency_ms"].to_numpy(dtype=float)[chosen]
    if len(values) < 2:
        raise ValueError("the light-load step has fewer than 2 successful requests: no service time to estimate")
    mean, var = float(values.mean()), float(values.var(ddof=1))
    return {"mean_ms": mean, "var_ms2": var, "cs2": var / mean**2, "samples": int(len(values)),
            "idle_only": idle_only, "idle_share": float(idle.mean()), "capacity_rps": 1000.0 / mean}


def max_in_flight(rows: pd.DataFrame) -> int:
    """The most requests in flight at once (sends minus completions): equals the users when they limited."""
    sent = rows["sent_epoch"].to_numpy(dtype=float)
    done = sent + rows["latency_ms"].to_numpy(dtype=float) / 1000.0
    times = np.concatenate((sent, done))
    delta = np.concatenate((np.ones(len(sent)), -np.ones(len(done))))
    order = np.lexsort((delta, times))  # at equal times, a completion (-1) before a send (+1)
    return int(np.cumsum(delta[order]).max()) if len(times) else 0


def slo_percentile_ms(rows: pd.DataFrame, q: float = 0.99) -> float:
    """The schedule-corrected percentile with every failed request counted as over any bound (inf)."""
    values = np.where(rows["ok"].to_numpy() == 1, rows["corrected_latency_ms"].to_numpy(dtype=float), np.inf)
    return float(np.quantile(values, q, method="higher")) if len(values) else float("nan")


# -- one step ------------------------------------------------------------------------------
def step_metrics(run_dir: str | Path, record: dict, plan: dict, service: dict | None) -> dict:
    """One row of the step table for the run folder of one step."""
    run = load_run(run_dir)
    rows, ok_rows = run.rows, run.ok_rows
    counts = run.record.counts
    sched = rows["scheduled_epoch"].to_numpy(dtype=float)
    duration_s = float(sched.max() - sched.min()) if len(rows) > 1 else 0.0
    done = (ok_rows["sent_epoch"] + ok_rows["latency_ms"] / 1000.0).to_numpy(dtype=float)
    completion_span = float(done.max() - done.min()) if len(done) > 1 else 0.0
    scheduled_rps = (len(rows) - 1) / duration_s if duration_s > 0 else float("nan")
    achieved_rps = (len(done) - 1) / completion_span if completion_span > 0 else float("nan")
    offered = float(record["rate_per_s"])
    row = {"batching": record["batching"], "process": record["process"], "kind": record["kind"],
           "step": record["step"], "offered_rps": offered, "scheduled_rps": scheduled_rps,
           "achieved_rps": achieved_rps, "requests": len(rows), "ok": len(ok_rows),
           "failed": len(rows) - len(ok_rows), "users": record.get("users"),
           "in_flight_max": max_in_flight(rows), "duration_s": duration_s, "run": Path(run_dir).name}
    for prefix, column in (("", "latency_ms"), ("corr_", "corrected_latency_ms")):
        values = ok_rows[column].to_numpy(dtype=float)
        for name, q in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99)):
            row[f"{prefix}{name}_ms"] = float(np.quantile(values, q)) if len(values) else float("nan")
    corrected = ok_rows["corrected_latency_ms"].to_numpy(dtype=float)
    ci = percentile_cis(corrected, {"p99": 0.99}, n_resamples=1000, seed=0)
    row["corr_p99_ci_low"], row["corr_p99_ci_high"] = float(ci.loc["p99", "ci_low"]), float(ci.loc["p99", "ci_high"])
    row["corr_mean_ms"] = float(corrected.mean()) if len(corrected) else float("nan")
    row["slo_p99_ms"] = slo_percentile_ms(rows)
    lateness = rows["lateness_ms"].to_numpy(dtype=float)
    row.update(lateness_p50_ms=float(np.quantile(lateness, 0.5)), lateness_p99_ms=float(np.quantile(lateness, 0.99)),
               lateness_max_ms=float(lateness.max()))
    batch = pd.to_numeric(ok_rows.get("batch_size", pd.Series(dtype=float)), errors="coerce").dropna()
    row["batch_mean"] = float(batch.mean()) if len(batch) else float("nan")
    row["counts_add_up"] = counts is not None and bool(counts.consistent) and counts.sent == len(rows) == \
        (counts.ok if counts.ok is not None else -1) + (counts.failed if counts.failed is not None else -1)
    if service is not None:
        row["rho"] = offered * service["mean_ms"] / 1000.0
        row["kingman_ms"] = kingman_latency_ms(offered, service["mean_ms"], service["cs2"], arrival_ca2(record))
    else:
        row["rho"] = row["kingman_ms"] = float("nan")
    row["valid"] = (run.record.complete and not run.partial and len(rows) >= plan["min_requests"]
                    and duration_s >= plan["min_duration_s"])
    row["meets_slo"] = bool(row["valid"] and row["slo_p99_ms"] <= plan["slo_p99_ms"])
    if plan.get("slo"):  # sweep.json from before goodput has no "slo"
        from .streaming import load_itl

        result = goodput(rows, load_itl(run), plan["slo"])
        row.update(goodput=result["fraction"], goodput_ci_low=result["fraction_ci"][0],
                   goodput_ci_high=result["fraction_ci"][1], good_per_s=result["rate_per_s"])
        row["meets_goodput"] = bool(row["valid"] and result["fraction"] >= plan["goodput_target"])
    failed_share = row["failed"] / max(1, len(rows))
    row["saturated"] = bool(failed_share > plan["max_failed_share"] or not achieved_rps >= plan["saturation_ratio"] * scheduled_rps)
    return row


def past_saturation(row: dict, plan: dict) -> bool:
    """Stop stepping this process: it saturated, or its p99 is far past the SLO already."""
    return row["saturated"] or row["slo_p99_ms"] > plan["stop_p99_multiple"] * plan["slo_p99_ms"]


# -- tables --------------------------------------------------------------------------------
def load_sweep(sweep_dir: str | Path) -> dict:
    path = Path(sweep_dir) / SWEEP_FILE
    if not path.is_file():
        raise RunError(f"{path}: missing (is {sweep_dir} a sweep folder from burstbench sweep?)")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise RunError(f"{path}: not valid JSON ({err})") from None


def goodput_plan(plan: dict, slos: dict[str, float] | None = None, goodput_target: float | None = None) -> dict:
    """The plan's SLOs and goodput target, with ``slos`` and ``goodput_target`` (the report's flags) in
    their place when given; a sweep.json from before goodput has neither (no SLOs)."""
    plan = dict(plan)
    plan["slo"] = dict(slos) if slos else parse_slos(plan.get("slo"), source="sweep.json slo:")
    plan["goodput_target"] = float(goodput_target if goodput_target is not None
                                   else plan.get("goodput_target") or DEFAULT_GOODPUT_TARGET)
    return plan


def steps_table(sweep_dir: str | Path, slo_p99_ms: float | None = None, slos: dict[str, float] | None = None,
                goodput_target: float | None = None) -> pd.DataFrame:
    """Every step of the sweep (probe steps included, kind 'probe'), in the order they ran.

    With SLOs (``slos``, else the plan's) the GOODPUT_COLUMNS follow the others.
    """
    sweep_dir = Path(sweep_dir)
    sweep = load_sweep(sweep_dir)
    plan = goodput_plan(sweep["plan"], slos, goodput_target)
    if slo_p99_ms is not None:
        plan["slo_p99_ms"] = slo_p99_ms
    rows = []
    for record in sweep["steps"]:
        if not record.get("run_dir"):
            continue  # the step never started a run (interrupted before it)
        service = sweep.get("service", {}).get(record["batching"])
        rows.append(step_metrics(sweep_dir / record["run_dir"], record, plan, service))
    if not rows:
        raise RunError(f"{sweep_dir}: no step has a run folder yet")
    return pd.DataFrame(rows, columns=list(STEP_COLUMNS) + (list(GOODPUT_COLUMNS) if plan["slo"] else []))


def _highest_passing(steps: pd.DataFrame, passes, bound: dict, at_capacity) -> pd.DataFrame:
    """Per batching and process: the highest offered rate whose step ``passes``.

    Valid steps only, in increasing rate; the capacity is the last passing step before the first
    failing one (a lucky pass above a failure does not count, as in MLPerf's search for the
    highest passing rate under a monotone load). ``first_failing_rps`` brackets it from above.
    ``bound``: columns naming the criterion; ``at_capacity(step)``: how the capacity step fared.
    """
    out = []
    measured = steps[steps["kind"] == "step"]
    for (batching, process), group in measured.groupby(["batching", "process"], sort=False):
        valid = group[group["valid"]].sort_values("offered_rps")
        capacity, at = float("nan"), None
        first_fail = float("nan")
        for _, step in valid.iterrows():
            if passes(step):
                capacity, at = float(step["offered_rps"]), step
            else:
                first_fail = float(step["offered_rps"])
                break
        out.append({"batching": batching, "process": process, **bound, "capacity_rps": capacity,
                    "first_failing_rps": first_fail,
                    **{k: float(at[column]) if at is not None else float("nan") for k, column in at_capacity.items()},
                    "rho_at_capacity": float(at["rho"]) if at is not None else float("nan"),
                    "valid_steps": int(len(valid)), "invalid_steps": int(len(group) - len(valid))})
    return pd.DataFrame(out)


def slo_capacity(steps: pd.DataFrame, slo_p99_ms: float) -> pd.DataFrame:
    """Per batching and process: the highest offered rate whose schedule-corrected p99 meets the bound."""
    return _highest_passing(steps, lambda step: step["slo_p99_ms"] <= slo_p99_ms, {"slo_p99_ms_bound": slo_p99_ms},
                            {"corr_p99_ms_at_capacity": "slo_p99_ms"})


def goodput_capacity(steps: pd.DataFrame, target: float, slos: dict[str, float]) -> pd.DataFrame:
    """Per batching and process: the highest offered rate whose goodput under ``slos`` is >= ``target``
    (steps_table's ``goodput`` column: share of all requests meeting every SLO; the point estimate decides)."""
    return _highest_passing(steps, lambda step: step["goodput"] >= target,
                            {"slos": describe_slos(slos), "goodput_target": target},
                            {"goodput_at_capacity": "goodput", "goodput_ci_low_at_capacity": "goodput_ci_low",
                             "good_per_s_at_capacity": "good_per_s"})


def capacity_pivot(capacity: pd.DataFrame) -> pd.DataFrame:
    """Capacity at the SLO as text: one row per process, one column per batching setting.

    ``< 9.7`` when even the first valid step missed the SLO; ``>= 49`` when no valid step missed it.
    """
    if capacity.empty:
        return capacity

    def cell(row) -> str:
        cap, fail = row["capacity_rps"], row["first_failing_rps"]
        if pd.isna(cap):
            return "n/a" if pd.isna(fail) else f"< {fail:g}"
        return f"{cap:g}" if not pd.isna(fail) else f">= {cap:g}"

    shown = capacity.assign(cell=capacity.apply(cell, axis=1))
    order = list(dict.fromkeys(capacity["process"]))
    return shown.pivot(index="process", columns="batching", values="cell").reindex(order).rename(
        columns=lambda b: f"batching {b} (req/s)").rename_axis(columns=None)


# -- figure --------------------------------------------------------------------------------
def sweep_figure(steps: pd.DataFrame, sweep: dict, slo_p99_ms: float, path: Path) -> Path:
    """Latency against offered load: one curve per process, Kingman dashed, one column per batching."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .figures import save_figure

    settings = list(dict.fromkeys(steps["batching"]))
    processes = {p["name"]: p for p in sweep["plan"]["processes"]}
    colours = dict(zip(processes, plt.get_cmap("tab10").colors))
    measured_max = float(np.nanmax(steps[["corr_mean_ms", "corr_p99_ms"]].to_numpy(dtype=float)))
    fig, axes = plt.subplots(2, len(settings), figsize=(6.2 * len(settings), 8), squeeze=False, sharex="col")
    for col, batching in enumerate(settings):
        mean_ax, p99_ax = axes[0][col], axes[1][col]
        service = sweep.get("service", {}).get(batching)
        here = steps[steps["batching"] == batching]
        for name, process in processes.items():
            measured = here[(here["process"] == name) & (here["kind"] == "step")].sort_values("offered_rps")
            if measured.empty:
                continue
            label = f"{name} ({process['label']})"
            c = colours[name]
            mean_ax.plot(measured["offered_rps"], measured["corr_mean_ms"], "o-", color=c, label=label)
            p99_ax.plot(measured["offered_rps"], measured["corr_p99_ms"], "o-", color=c, label=label)
            if service is not None:
                top = min(measured["offered_rps"].max(), 0.995 * service["capacity_rps"])
                grid = np.linspace(0, top, 200)
                kingman = kingman_latency_ms(grid, service["mean_ms"], service["cs2"], arrival_ca2(process))
                kingman[kingman > 3 * measured_max] = np.nan  # its asymptote at rho = 1 would flatten the data
                mean_ax.plot(grid, kingman, "--", color=c, alpha=0.8, label=f"Kingman, ca²={arrival_ca2(process):.2f}")
        if service is not None:
            for ax in (mean_ax, p99_ax):
                ax.axvline(service["capacity_rps"], color="grey", linestyle=":",
                           label=f"1/E[S] = {service['capacity_rps']:.1f} req/s")
        p99_ax.axhline(slo_p99_ms, color="black", linestyle="-.", label=f"SLO p99 {slo_p99_ms:g} ms")
        title = f"batching {batching}"
        if service is not None:
            title += f": E[S] {service['mean_ms']:.1f} ms, cs² {service['cs2']:.2f} (light-load step)"
        mean_ax.set_title(title, fontsize=9)
        mean_ax.set_ylabel("mean schedule-corrected latency (ms)")
        p99_ax.set_ylabel("p99 schedule-corrected latency (ms)")
        p99_ax.set_xlabel("offered load (requests/s)")
        for ax in (mean_ax, p99_ax):
            ax.set_yscale("log")
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=7)
    fig.suptitle(f"capacity sweep {sweep.get('name', '')}\nvariant {sweep['plan'].get('variant')}, "
                 f"model {sweep['plan'].get('model_name')}; dashed: Kingman's approximation", fontsize=10)
    return save_figure(fig, path)


# -- report --------------------------------------------------------------------------------
SHOWN = {"batching": "batching", "process": "process", "kind": "kind", "offered_rps": "offered/s", "rho": "rho",
         "achieved_rps": "achieved/s", "requests": "n", "failed": "failed", "users": "users", "in_flight_max": "in flight max",
         "p50_ms": "p50", "p99_ms": "p99", "corr_p50_ms": "corr p50", "corr_p95_ms": "corr p95",
         "corr_p99_ms": "corr p99", "kingman_ms": "Kingman mean", "corr_mean_ms": "corr mean",
         "lateness_p99_ms": "late p99", "batch_mean": "batch", "valid": "valid", "meets_slo": "SLO met",
         "saturated": "saturated"}


GOODPUT_SHOWN = {"goodput": "goodput", "good_per_s": "good/s", "meets_goodput": "goodput met"}


def _shown(steps: pd.DataFrame) -> pd.DataFrame:
    names = {**SHOWN, **(GOODPUT_SHOWN if "goodput" in steps.columns else {})}
    shown = steps[list(names)].rename(columns=names)
    if "goodput" in shown.columns:  # a share near 1: 1.0 would hide a 0.995
        shown["goodput"] = shown["goodput"].map(lambda v: "n/a" if pd.isna(v) else f"{v:.4f}")
    for column in shown.columns:
        if shown[column].dtype.kind == "f":
            shown[column] = shown[column].map(lambda v: "n/a" if pd.isna(v) else f"{v:.1f}" if abs(v) >= 10 else f"{v:.2f}")
    return shown


def write_sweep_report(sweep_dir: str | Path, slo_p99_ms: float | None = None, slos: dict[str, float] | None = None,
                       goodput_target: float | None = None) -> tuple[str, list[Path]]:
    """steps.csv/md, capacity.csv/md and latency_vs_load.png into the sweep folder; the text printed.

    With SLOs (``slos``, else the plan's): also the capacity at the goodput target, goodput_capacity.csv.
    """
    sweep_dir = Path(sweep_dir)
    sweep = load_sweep(sweep_dir)
    slo = float(slo_p99_ms if slo_p99_ms is not None else sweep["plan"]["slo_p99_ms"])
    judged = goodput_plan(sweep["plan"], slos, goodput_target)
    steps = steps_table(sweep_dir, slo, judged["slo"], judged["goodput_target"])
    capacity = slo_capacity(steps, slo)
    pivot = capacity_pivot(capacity)
    files = [sweep_dir / "steps.csv", sweep_dir / "steps.md", sweep_dir / "capacity.csv", sweep_dir / "capacity.md"]
    steps.to_csv(files[0], index=False, float_format="%.3f")
    capacity.to_csv(files[2], index=False, float_format="%.3f")
    goodput_md = goodput_text = ""
    if judged["slo"]:
        target, slos_text = judged["goodput_target"], describe_slos(judged["slo"])
        by_goodput = goodput_capacity(steps, target, judged["slo"])
        files.append(sweep_dir / "goodput_capacity.csv")
        by_goodput.to_csv(files[-1], index=False, float_format="%.4f")
        goodput_rule = (f"Goodput: share of all requests (failed ones included) meeting {slos_text}; capacity = "
                        f"the highest valid step with goodput >= {target:g} below the first that falls short.")
        goodput_md = (f"\n## Capacity at goodput >= {target:g}\n\n{goodput_rule}\n\n"
                      + capacity_pivot(by_goodput).to_markdown() + "\n\n"
                      + by_goodput.to_markdown(index=False, floatfmt=".4g") + "\n")
        goodput_text = (f"\ncapacity at goodput >= {target:g} ({slos_text}), req/s:\n"
                        + capacity_pivot(by_goodput).to_string() + "\n")
    plan = sweep["plan"]
    service_lines = [f"- batching {b}: E[S] {s['mean_ms']:.2f} ms, Var[S] {s['var_ms2']:.2f} ms², cs² {s['cs2']:.3f}, "
                     f"1/E[S] {s['capacity_rps']:.1f} req/s ({s['samples']} requests"
                     f"{' that found the service idle' if s['idle_only'] else ', all successful ones'})"
                     for b, s in sweep.get("service", {}).items()]
    rules = (f"SLO: p99 of schedule-corrected latency <= {slo:g} ms, failed requests counted as over it. "
             f"Valid step: complete, >= {plan['min_requests']} requests and >= {plan['min_duration_s']:g} s of schedule. "
             f"Saturated: achieved < {plan['saturation_ratio']:.0%} of the scheduled rate, or > "
             f"{plan['max_failed_share']:.0%} failed.")
    steps_md = (f"# Capacity sweep steps: {sweep_dir.name}\n\n{rules}\n\nService time at light load:\n"
                + "\n".join(service_lines) + "\n\nLatencies in ms; corr = schedule-corrected; Kingman mean = "
                "E[S] + rho/(1-rho)(ca²+cs²)/2 E[S].\n\n" + _shown(steps).to_markdown(index=False) + "\n")
    files[1].write_text(steps_md)
    capacity_md = (f"# Capacity at the SLO: {sweep_dir.name}\n\n{rules}\n\n" + pivot.to_markdown() + "\n\n"
                   + capacity.to_markdown(index=False, floatfmt=".1f") + "\n" + goodput_md)
    files[3].write_text(capacity_md)
    files.append(sweep_figure(steps, sweep, slo, sweep_dir / "latency_vs_load.png"))
    text = (f"{rules}\nservice time at light load:\n" + "\n".join(service_lines) + "\n\nsteps (ms):\n"
            + _shown(steps).to_string(index=False) + f"\n\ncapacity at the SLO (p99 corrected <= {slo:g} ms), req/s:\n"
            + pivot.to_string() + "\n" + goodput_text)
    return text, files


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="burstbench sweep-report", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("sweep_dir", help="a sweep folder: results/<UTC>-sweep")
    p.add_argument("--slo-p99-ms", default=None, help="re-judge with another bound (default: the sweep's)")
    p.add_argument("--slo", action="append", default=None, metavar="METRIC=MS",
                   help="an SLO for the goodput criterion, repeatable: ttft_ms, tpot_ms, latency_ms, itl_p<NN>_ms or "
                   "itl_max_ms = a bound in ms (default: the sweep's; any --slo replaces them all)")
    p.add_argument("--goodput-target", default=None,
                   help=f"capacity: the highest rate whose goodput stays >= this share, in (0, 1] (default: the "
                   f"sweep's, else {DEFAULT_GOODPUT_TARGET:g})")
    args = p.parse_args(argv)
    try:
        slo = None
        if args.slo_p99_ms is not None:
            slo = float(args.slo_p99_ms)
            if not (0 < slo < math.inf):
                raise ValueError
    except ValueError:
        print(f"burstbench sweep-report: --slo-p99-ms must be a number of ms > 0 (got {args.slo_p99_ms!r})",
              file=sys.stderr)
        return 2
    try:
        slos = parse_slos(args.slo)
        target = None if args.goodput_target is None else parse_goodput_target(args.goodput_target)
        text, files = write_sweep_report(args.sweep_dir, slo, slos, target)
    except (RunError, ValueError) as err:
        print(f"burstbench sweep-report: {err}", file=sys.stderr)
        return 2
    print(text)
    print("written: " + ", ".join(str(f) for f in files))
    return 0


if __name__ == "__main__":
    sys.exit(main())
