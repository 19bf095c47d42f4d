"""What each disruption of a resilience run cost the users, from the run's own requests.

Windows. A request belongs to the window in which it was *sent*: before the first disruption
("steady"), or from disruption k up to disruption k+1 (the last window to the end of the run).
The windows partition the rows, so their sent/ok/failed add up to the run's. A request sent
just before a disruption and caught by it counts in the earlier window; ``in_flight_failed``
counts those (informative, already included in the earlier window's failures).

Steady latency. The exact p99 of the service latency of successful requests sent in the second
half of the time before the first disruption (the first half warms the service up). A request is *good* when it succeeded within
``max(latency_factor x steady p99, min_threshold_ms)`` (the plan's [recovery], in run.json).

Time to first failure: from the disruption to the send of the first failed request of its window.
Time to recovery: from the disruption to the send of the first request of the first run of
``consecutive_ok`` good requests in a row (by send time) that starts after the window's first
bad request (failed or slow). A window without a bad request had no impact (recovery 0 s). A
window with no such run is "not recovered": before the next disruption, or before the run
ended, which for the last window means the service did not come back while it was measured.

Recovery as users see it (seconds from the disruption to a request's send, like the others;
"after ready" ones are those minus ``ready_again_s``, when /readyz answered 200 again, so
negative when requests succeeded before the readiness poll saw 200):

- ``first_good_s``: the send of the first good request after the window's first bad one (0 when
  nothing was bad; empty when no good one followed). ``first_good_after_ready_s``: minus ready_again_s.
- ``steady_p99_back_s``: latency back to the steady p99. The send of the first request of the first
  run of ``consecutive_ok`` requests in a row (by send time) that are each ok within
  ``steady p99 x (1 + steady_tolerance)`` and that starts after the window's first bad request (0
  when nothing was bad; empty when no such run, or no steady p99). A run of N, not a rolling p99:
  the p99 of a handful of requests is their maximum anyway, and "each of N in a row" is exact, needs
  no interpolation and is as strict as a rolling max; N = 10 steady requests are all within the
  steady p99 with probability 0.99^10 = 0.90, so a recovered service is seen back within a few runs.
  The first such run counts, as for recovery: a relapse later in the window is not looked for (the
  timeline shows it). ``steady_after_ready_s``: minus ready_again_s.
- ``lost``: sent - ok - failed, the requests of the window without an outcome (ok neither 1 nor 0;
  must be 0); the total row's is run.json's started requests (counts.sent) minus the rows with an outcome.
- ``readiness``: "yes" when /readyz answered 200 again within the plan's ``ready_deadline_s``,
  else "not ready within the plan's readiness deadline (N s)".

Targets (the plan's [recovery], printed as verdicts): the first good answer within
``first_good_within_s`` of /readyz answering again, back to the steady p99 within
``steady_within_s`` of it, and nothing lost.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from .runs import RunFolder, RunError, load_run
from .resilience_sides import side_lines

DISRUPTIONS_FILE = "disruptions.json"
DEFAULT_RECOVERY = {"consecutive_ok": 10, "latency_factor": 3.0, "min_threshold_ms": 100.0, "steady_tolerance": 0.1,
                    "ready_deadline_s": 60.0, "first_good_within_s": 2.0, "steady_within_s": 10.0}
COLUMNS = ("window", "at_s", "sent", "ok", "failed", "failure_kinds", "first_failure_s", "recovery_s", "recovered",
           "worst_ok_latency_ms", "in_flight_failed", "ready_again_s",
           "first_good_s", "first_good_after_ready_s", "steady_p99_back_s", "steady_after_ready_s", "lost", "readiness")


def load_disruptions(run: RunFolder) -> dict:
    path = run.path / DISRUPTIONS_FILE
    if not path.is_file():
        raise RunError(f"{path}: missing (not a resilience run? run: burstbench resilience run --plan NAME)")
    try:
        doc = json.loads(path.read_text())
        items = doc["disruptions"]
        for i, item in enumerate(items):
            float(item["epoch"]), str(item["label"])  # noqa: B018 (validation)
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
        raise RunError(f"{path}: malformed ({type(err).__name__}: {err}); expected "
                       "{\"disruptions\": [{\"epoch\": seconds, \"label\": text, ...}]}") from None
    epochs = [float(item["epoch"]) for item in items]
    if epochs != sorted(epochs):
        raise RunError(f"{path}: disruptions are not in time order")
    return doc


def disruption_items(run: RunFolder, doc: dict) -> list[dict]:
    """Each disruption: when and what from run.json's events (kind ``disruption``), what was observed from ``doc``.

    The record's events are appended by the harness when each disruption happens (format version
    2); a version 1 record's events were markers written afterwards, so its disruptions come from
    disruptions.json alone.
    """
    items = doc["disruptions"]
    if (run.record.schema_version or 1) < 2:
        return items
    marks = run.record.events_of("disruption")
    if len(marks) != len(items):
        raise RunError(f"{run.record_path}: {len(marks)} disruption events, but {run.path / DISRUPTIONS_FILE} "
                       f"lists {len(items)} disruptions")
    return [{**item, "epoch": mark.epoch, "label": mark.label} for mark, item in zip(marks, items)]


def recovery_settings(run: RunFolder) -> dict:
    settings = {**DEFAULT_RECOVERY, **((run.record.resilience or {}).get("recovery") or {})}
    return {key: int(settings[key]) if key == "consecutive_ok" else float(settings[key]) for key in DEFAULT_RECOVERY}


def steady_threshold_ms(steady_ok_latency_ms: np.ndarray, settings: dict) -> tuple[float, float]:
    """(steady p99, the good-request threshold) in ms."""
    p99 = float(np.percentile(steady_ok_latency_ms, 99))
    return p99, max(settings["latency_factor"] * p99, settings["min_threshold_ms"])


def recovery_offset_s(sent_s: np.ndarray, good: np.ndarray, consecutive_ok: int) -> float | None:
    """Seconds (from the window's start) to the first run of ``consecutive_ok`` good requests after the first bad one.

    ``sent_s`` and ``good`` are in send order. 0.0 when nothing was bad; None when no such run exists.
    """
    return steady_back_offset_s(sent_s, good, good, consecutive_ok)


def steady_back_offset_s(sent_s: np.ndarray, good: np.ndarray, at_steady: np.ndarray, consecutive_ok: int) -> float | None:
    """Seconds to the first run of ``consecutive_ok`` ``at_steady`` requests that starts after the first bad one.

    All three in send order. 0.0 when nothing was bad (not ``good``); None when no such run exists.
    """
    bad = np.flatnonzero(~good)
    if bad.size == 0:
        return 0.0
    runs = pd.Series(at_steady.astype(int)).rolling(consecutive_ok).sum().to_numpy()
    ends = np.flatnonzero(runs == consecutive_ok)  # index of the last request of each full run
    starts = ends - consecutive_ok + 1
    after = starts[starts > bad[0]]
    return float(sent_s[after[0]]) if after.size else None


def first_good_offset_s(sent_s: np.ndarray, good: np.ndarray) -> float | None:
    """Seconds to the send of the first good request after the first bad one; 0.0 when nothing was bad, else None."""
    bad = np.flatnonzero(~good)
    if bad.size == 0:
        return 0.0
    later = np.flatnonzero(good[bad[0] + 1:])
    return float(sent_s[bad[0] + 1 + later[0]]) if later.size else None


def resilience_table(run: RunFolder, doc: dict | None = None) -> pd.DataFrame:
    """One row per window (steady, then each disruption) and a total row; see the module's docstring."""
    doc = doc or load_disruptions(run)
    settings = recovery_settings(run)
    items = disruption_items(run, doc)
    rows = run.rows.sort_values("sent_epoch", kind="stable")
    sent = rows["sent_epoch"].to_numpy(dtype=float)
    done = sent + rows["latency_ms"].to_numpy(dtype=float) / 1000
    ok = rows["ok"].to_numpy() == 1
    failed_rows = rows["ok"].to_numpy() == 0
    latency = rows["latency_ms"].to_numpy(dtype=float)
    kinds = rows["failure_kind"].fillna("").astype(str).to_numpy()
    epochs = np.array([float(item["epoch"]) for item in items])
    window = np.searchsorted(epochs, sent, side="right")  # 0: steady, k: from disruption k
    first_sent = float(sent.min())

    steady_from = first_sent + (epochs[0] - first_sent) / 2 if len(epochs) else first_sent
    steady_ok = latency[(window == 0) & ok & (sent >= steady_from)]
    if steady_ok.size:
        p99, threshold = steady_threshold_ms(steady_ok, settings)
    else:  # the service was failing before any disruption: say so, judge by success alone
        p99, threshold = float("nan"), float("inf")
    good = ok & (latency <= threshold)
    at_steady = ok & (latency <= p99 * (1 + settings["steady_tolerance"]))  # all False without a steady p99

    records = []
    for k in range(len(items) + 1):
        mask = window == k
        start = first_sent if k == 0 else epochs[k - 1]
        rec = {"window": "steady (before the first disruption)" if k == 0 else items[k - 1]["label"],
               "at_s": round(start - first_sent, 2), "sent": int(mask.sum()), "ok": int((mask & ok).sum()),
               "failed": int((mask & failed_rows).sum()),
               "lost": int(mask.sum() - (mask & ok).sum() - (mask & failed_rows).sum()),
               "failure_kinds": _kinds(kinds[mask & ~ok]),
               "worst_ok_latency_ms": float(latency[mask & ok].max()) if (mask & ok).any() else np.nan}
        if k == 0:
            rec.update(first_failure_s=np.nan, recovery_s=np.nan, recovered="", in_flight_failed=0, ready_again_s=np.nan,
                       first_good_s=np.nan, first_good_after_ready_s=np.nan, steady_p99_back_s=np.nan,
                       steady_after_ready_s=np.nan, readiness="")
        else:
            item = items[k - 1]
            failed_sent = sent[mask & ~ok]
            rec["first_failure_s"] = round(float(failed_sent.min() - start), 2) if failed_sent.size else np.nan
            offset = recovery_offset_s(sent[mask] - start, good[mask], settings["consecutive_ok"])
            rec["recovery_s"] = np.nan if offset is None else round(offset, 2)
            last = k == len(items)
            rec["recovered"] = ("no impact" if offset == 0.0 else "yes" if offset is not None
                                else "not recovered (run ended)" if last else "not recovered (before next disruption)")
            rec["in_flight_failed"] = int(((sent < start) & (done >= start) & ~ok).sum())
            ready = item.get("readyz_ok_after_s")
            rec["ready_again_s"] = ready_s = np.nan if ready is None else float(ready)
            rec.update(_users_view(sent[mask] - start, good[mask], at_steady[mask], settings, ready_s))
        records.append(rec)
    table = pd.DataFrame(records, columns=list(COLUMNS))
    counts = run.record.counts
    started = counts.sent if counts is not None and counts.sent is not None else int(table["sent"].sum())
    total = {"window": "total", "at_s": np.nan, "sent": int(table["sent"].sum()), "ok": int(table["ok"].sum()),
             "failed": int(table["failed"].sum()), "failure_kinds": _kinds(kinds[~ok]),
             "lost": int(started - table["ok"].sum() - table["failed"].sum()), "readiness": "",
             "worst_ok_latency_ms": float(latency[ok].max()) if ok.any() else np.nan}
    table = pd.concat([table, pd.DataFrame([total])], ignore_index=True)[list(COLUMNS)]
    table.attrs.update(steady_p99_ms=p99, threshold_ms=threshold, **settings)
    return table


def _users_view(sent_s: np.ndarray, good: np.ndarray, at_steady: np.ndarray, settings: dict, ready_s: float) -> dict:
    """One disruption window's first good answer, return to the steady p99 and readiness (the module's docstring)."""
    first_good = first_good_offset_s(sent_s, good)
    back = steady_back_offset_s(sent_s, good, at_steady, settings["consecutive_ok"])
    first_good_s = np.nan if first_good is None else round(first_good, 2)
    back_s = np.nan if back is None else round(back, 2)
    deadline_s = settings["ready_deadline_s"]
    return {"first_good_s": first_good_s, "first_good_after_ready_s": round(first_good_s - ready_s, 2),
            "steady_p99_back_s": back_s, "steady_after_ready_s": round(back_s - ready_s, 2),
            "readiness": "yes" if ready_s <= deadline_s else
                         f"not ready within the plan's readiness deadline ({deadline_s:g} s)"}


def _kinds(values: np.ndarray) -> str:
    counts = pd.Series(values).value_counts()
    return ", ".join(f"{kind} {n}" for kind, n in counts.items()) if len(counts) else ""


def check_totals(run: RunFolder, table: pd.DataFrame) -> list[str]:
    """Problems with the accounting (empty when the windows add up to the run's counts and nothing was lost)."""
    total = table.iloc[-1]
    problems = []
    if not total["sent"] == total["ok"] + total["failed"]:
        problems.append(f"sent {total['sent']} != ok {total['ok']} + failed {total['failed']}")
    if total["sent"] != len(run.rows):
        problems.append(f"windows hold {total['sent']} requests, the run {len(run.rows)}")
    counts = run.record.counts
    if counts is not None and counts.rows is not None and counts.rows != total["sent"]:
        problems.append(f"run.json counts {counts.rows} rows, the windows {total['sent']}")
    for name, expected in (("ok", None if counts is None else counts.ok), ("failed", None if counts is None else counts.failed)):
        if expected is not None and expected != total[name]:
            problems.append(f"run.json counts {expected} {name}, the windows {total[name]}")
    if total["lost"]:
        problems.append(f"{total['lost']} requests lost (started, per run.json, without an outcome)")
    if counts is not None and counts.not_sent:
        problems.append(f"{counts.not_sent} planned requests never sent")
    if run.dropped_rows:
        problems.append(f"{run.dropped_rows} incomplete rows in requests.csv were left out")
    return problems


def _seconds(v) -> str:
    return "" if pd.isna(v) else f"{v:.1f}"


def format_table(table: pd.DataFrame) -> str:
    """The requests per window: counts, failures, recovery (the first table of resilience.md)."""
    shown = table.loc[:, list(COLUMNS[:12])].astype(object)
    shown.loc[shown["window"] == "total", ["recovered", "in_flight_failed"]] = ""
    for col in ("at_s", "first_failure_s", "recovery_s", "ready_again_s", "worst_ok_latency_ms"):
        shown[col] = shown[col].map(_seconds)
    shown.loc[(table["window"] != "total") & table["ready_again_s"].isna() & (table.index > 0), "ready_again_s"] = "never"
    shown.columns = ["window", "at (s)", "sent", "ok", "failed", "failure kinds", "first failure (s)",
                     "recovery (s)", "recovered", "worst ok latency (ms)", "in-flight failed", "/readyz again (s)"]
    return shown.to_markdown(index=False)


def format_users_table(table: pd.DataFrame) -> str:
    """Recovery as users see it, per disruption window, and the lost requests (the second table)."""
    shown = table.loc[1:, ["window", "ready_again_s", "readiness", "first_good_s", "first_good_after_ready_s",
                           "steady_p99_back_s", "steady_after_ready_s", "lost"]].astype(object)
    for col in ("ready_again_s", "first_good_s", "first_good_after_ready_s", "steady_p99_back_s", "steady_after_ready_s"):
        shown[col] = shown[col].map(_seconds)
    shown.loc[(shown["window"] != "total") & (shown["ready_again_s"] == ""), "ready_again_s"] = "never"
    shown.columns = ["window", "/readyz again (s)", "ready in deadline", "first good (s)", "first good after ready (s)",
                     "steady p99 back (s)", "steady after ready (s)", "lost"]
    return shown.to_markdown(index=False)


def _verdict(what: str, after_ready_s, target_s: float, row, never: str) -> tuple[bool, str]:
    if pd.isna(row["ready_again_s"]):
        return False, f"{what}: NOT MET (/readyz never answered 200 again)"
    if pd.isna(after_ready_s):
        return False, f"{what}: NOT MET ({never})"
    met = after_ready_s <= target_s
    return met, f"{what} {after_ready_s:.1f} s after /readyz (target {target_s:g} s): {'met' if met else 'NOT MET'}"


def verdicts(table: pd.DataFrame) -> list[str]:
    """The plan's targets, one line per disruption window, and a last line for the run."""
    a = table.attrs
    steady = np.isfinite(a["steady_p99_ms"])
    lines, met_windows = [], 0
    body = table.iloc[1:-1]
    for _, row in body.iterrows():
        checks = [_verdict("first good answer", row["first_good_after_ready_s"], a["first_good_within_s"], row,
                           "no good answer followed the first bad one"),
                  _verdict("back to the steady p99", row["steady_after_ready_s"], a["steady_within_s"], row,
                           "latency not back to the steady p99" if steady else "no steady p99 to come back to"),
                  (row["lost"] == 0, f"lost {row['lost']}: {'met' if row['lost'] == 0 else 'NOT MET'}")]
        if row["readiness"] != "yes":
            checks.append((False, row["readiness"]))
        met_windows += all(ok for ok, _ in checks)
        lines.append(f"- {row['window']}: " + "; ".join(text for _, text in checks))
    total = table.iloc[-1]
    lines.append(f"Targets met in {met_windows} of {len(body)} disruption windows; lost in the whole run: "
                 f"{total['lost']} ({'met' if total['lost'] == 0 else 'NOT MET'}).")
    return lines


def report_text(run: RunFolder, table: pd.DataFrame, doc: dict) -> str:
    a = table.attrs
    problems = check_totals(run, table)
    record = run.record
    dist = (record.distribution or {}).get("label")
    res = record.resilience or {}
    lines = [f"# Resilience run {run.name}", "",
             f"plan {res.get('plan', doc.get('plan'))}, target {doc.get('target')}"
             + (f", server supervisor: {res.get('supervisor')}" if res.get("supervisor") else "")
             + f"; load {dist}, request timeout {record.request_timeout_s} s, {record.users} users",
             (f"steady p99 {a['steady_p99_ms']:.1f} ms (exact, ok requests sent in the second half of the time before "
              f"the first disruption); a request is good "
              f"when ok within {a['threshold_ms']:.1f} ms = max({a['latency_factor']:g} x p99, {a['min_threshold_ms']:g} ms); "
              if np.isfinite(a["threshold_ms"]) else
              "NOT STEADY: no request succeeded in the second half of the time before the first disruption (the service "
              "was failing or overloaded before it was disrupted); a request is good when ok, with no latency bound; ")
             + f"recovered = {a['consecutive_ok']} good requests in a row (by send time) after the first bad one", "",
             format_table(table), "",
             "'at' is seconds since the first send. Other times are seconds from the disruption to the *send* of the request concerned; windows by send time. "
             "'/readyz again' is when the service's readiness endpoint answered 200 again (polled twice a second).", "",
             format_users_table(table), "",
             f"'first good': the first good request after the first bad one. 'steady p99 back': the first of "
             f"{a['consecutive_ok']} requests in a row each ok within the steady p99 x {1 + a['steady_tolerance']:g} "
             f"after the first bad one. 'after ready': minus '/readyz again' (negative: answers came before the poll "
             f"saw 200). 'ready in deadline': /readyz again within the plan's readiness deadline "
             f"({a['ready_deadline_s']:g} s). 'lost': sent - ok - failed; the total's: run.json's started requests "
             "without an outcome.", "",
             f"Targets: first good answer within {a['first_good_within_s']:g} s of /readyz answering again, back to "
             f"the steady p99 within {a['steady_within_s']:g} s of it, none lost.",
             *verdicts(table), "", *side_lines(run), "",
             f"Service ready at the end of the run: {'yes' if doc.get('service_ready_at_end') else 'NO'}.",
             "Accounting: " + ("the windows add up to the run's counts (sent = ok + failed), none lost." if not problems
                               else "; ".join(problems))]
    for i, item in enumerate(doc["disruptions"], 1):
        facts = [f"{key} {item[key]}" for key in ("pids_killed", "pids_stopped", "workers_before", "workers_after",
                                                 "limit_mb", "oom_kills", "delay_s", "respawned_worker_pid",
                                                 "respawned_worker_seen_after_s", "restarted_server_pid",
                                                 "restarted_server_seen_after_s", "argv", "returncode", "error")
                 if item.get(key) not in (None, [], "")]
        lines.append(f"- {i}. {item['label']} at {item.get('offset_s')} s: " + ("; ".join(facts) or "done"))
    return "\n".join(lines) + "\n"


def write_report(run_dir: str | Path) -> dict:
    """resilience.md, resilience.csv and resilience_timeline.png in the run folder."""
    from .timeline import timeline_figure

    run = load_run(run_dir)
    doc = load_disruptions(run)
    table = resilience_table(run, doc)
    text = report_text(run, table, doc)
    out = {"markdown": run.path / "resilience.md", "csv": run.path / "resilience.csv",
           "figure": run.path / "resilience_timeline.png"}
    out["markdown"].write_text(text)
    table.to_csv(out["csv"], index=False)
    timeline_figure(run, out["figure"])
    return {**out, "text": text, "table": table}
