"""The resilience harness: plans and their errors, kubectl rendering, the per-disruption analysis, real disruptions.

The real runs start the tiny model's BentoML server on loopback (under supervisord, or with no
supervisor), run arrival-paced Locust against it and disrupt it: about 4.5 minutes together (the
three runs: supervised 80 s, faults 72 s, bare 20 s of load, each with the service start).
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from burstbench.analysis.resilience import (first_good_offset_s, recovery_offset_s, resilience_table,
                                            steady_back_offset_s, verdicts, write_report)
from burstbench.analysis.resilience_sides import counter_total, generator_line, peak_in_flight
from burstbench.analysis.runs import load_run
from conftest import REPO_ROOT, only_run_dir
from burstbench.resilience.plan import PlanError, load_plan, parse_plan

PLAN_HEAD = {"name": "t", "target": "local", "load": {"mean": 0.1, "duration": 30, "request_timeout": 3}}


def plan_dict(*disruptions, **overrides) -> dict:
    raw = json.loads(json.dumps(PLAN_HEAD))
    for key, value in overrides.items():
        raw[key] = value
    raw["disruption"] = list(disruptions)
    return raw


def resilience_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "burstbench.resilience", *args], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=timeout)


# -- plans -----------------------------------------------------------------------------
@pytest.mark.parametrize("raw, message", [
    (plan_dict({"at_s": 40, "action": "kill-worker"}), "disruption[0].at_s must be a number of seconds in (0, 30)"),
    (plan_dict({"at_s": 0, "action": "kill-worker"}), "disruption[0].at_s must be a number of seconds in (0, 30)"),
    (plan_dict({"at_s": 10, "action": "kill-server"}, {"at_s": 5, "action": "kill-worker"}),
     "disruption[1].at_s = 5 must come after the previous disruption, which is at 10 s"),
    (plan_dict({"at_s": 10, "action": "freeze-server", "for_s": 5}, {"at_s": 12, "action": "kill-worker"}),
     "disruption[1].at_s = 12 must come after the previous disruption, which ends at 15 s"),
    (plan_dict({"at_s": 28, "action": "freeze-server", "for_s": 5}), "ends after load.duration = 30 s"),
    (plan_dict({"at_s": 10, "action": "freeze-server"}), "disruption[0].for_s is required for freeze-server"),
    (plan_dict({"at_s": 10, "action": "kill-worker", "for_s": 2}), "for_s applies only to action = \"freeze-server\""),
    (plan_dict({"at_s": 10, "action": "reboot"}),
     "disruption[0].action must be one of kill-worker, freeze-server, kill-server, stop-worker, memory-limit, "
     "slow-start (got 'reboot')"),
    (plan_dict({"at_s": 10, "action": "stop-worker"}), "disruption[0].for_s is required for stop-worker (seconds stopped"),
    (plan_dict({"at_s": 10, "action": "memory-limit", "limit_mb": 100}),
     "disruption[0].for_s is required for memory-limit (seconds the limit holds, in (0, 3600])"),
    (plan_dict({"at_s": 10, "action": "memory-limit", "for_s": 5}),
     "disruption[0].memory-limit needs exactly one of limit_mb (MiB, in (0, 1048576]) and limit_fraction"),
    (plan_dict({"at_s": 10, "action": "memory-limit", "for_s": 5, "limit_mb": 100, "limit_fraction": 0.5}),
     "needs exactly one of limit_mb (MiB, in (0, 1048576]) and limit_fraction (of the worker's RSS when set, "
     "in (0, 10]) (got 2)"),
    (plan_dict({"at_s": 10, "action": "memory-limit", "for_s": 5, "limit_fraction": 0}),
     "disruption[0].limit_fraction must be a number in (0, 10] (below 1: the worker is over the limit at once) (got 0)"),
    (plan_dict({"at_s": 10, "action": "memory-limit", "for_s": 5, "limit_mb": "1G"}),
     "disruption[0].limit_mb must be a number of MiB in (0, 1048576] (got '1G')"),
    (plan_dict({"at_s": 10, "action": "kill-worker", "limit_mb": 100}),
     "disruption[0].limit_mb applies only to action = \"memory-limit\""),
    (plan_dict({"at_s": 10, "action": "slow-start"}), "disruption[0].delay_s is required for slow-start"),
    (plan_dict({"at_s": 10, "action": "slow-start", "delay_s": 900}),
     "disruption[0].delay_s must be a number of seconds in (0, 600] (got 900)"),
    (plan_dict({"at_s": 10, "action": "slow-start", "delay_s": 5}, server={"supervisor": "none"}),
     "disruption[0].action = \"slow-start\" needs server.supervisor = \"supervisord\""),
    (plan_dict({"at_s": 10, "action": "freeze-server", "for_s": 2, "delay_s": 5}),
     "disruption[0].delay_s applies only to action = \"slow-start\""),
    (plan_dict({"at_s": 10, "action": "kill-worker"}, recovery={"ready_deadline_s": 0}),
     "recovery.ready_deadline_s must be a number of seconds in (0, 3600] (got 0)"),
    (plan_dict({"at_s": 10, "action": "kill-worker"}, recovery={"steady_tolerance": -0.1}),
     "recovery.steady_tolerance must be a number in [0, 10] (0.1: within 10 % of the steady p99) (got -0.1)"),
    (plan_dict({"at_s": 10, "action": "kill-worker"}, recovery={"first_good_within_s": True}),
     "recovery.first_good_within_s must be a number of seconds in (0, 3600] (got True)"),
    (plan_dict({"at_s": 10, "action": "command", "command": "kubectl get pods"}),
     "disruption[0].action must be one of kill-worker, freeze-server, kill-server, stop-worker, memory-limit, "
     "slow-start (got 'command')"),
    (plan_dict({"at_s": 10, "action": "kill-worker"}, target="docker"), "target must be one of local, k8s (got 'docker')"),
    (plan_dict({"at_s": 10, "action": "kill-worker"}, server={"supervisor": "systemd"}),
     "server.supervisor must be one of supervisord, none (got 'systemd')"),
    (plan_dict({"at_s": 10, "action": "kill-worker"}, load={"mean": -1, "duration": 30}),
     "load.mean must be a number > 0 (got -1)"),  # the load spec's own rule, named as the file's key
    (plan_dict({"at_s": 10, "action": "kill-worker"}, load={"shape": -1, "arrival": "gamma", "duration": 30}),
     "load.shape must be a number > 0 (got -1)"),
    (plan_dict({"at_s": 10, "action": "kill-worker"}, load={"rate": 5, "mean": 0.2, "duration": 30}),
     "give load.rate or load.mean, not both"),
    (plan_dict({"at_s": 10, "action": "kill-worker"}, load={"arrival": "gamma", "duration": 30}),
     "load.shape is required with load.arrival = \"gamma\""),
    (plan_dict({"at_s": 10, "action": "kill-worker"}, load={"duration": 30, "users": 0}),
     "load.users must be an integer >= 1 (got 0)"),
    (plan_dict({"at_s": 10, "action": "kill-worker"}, load={"duration": 30, "timeout": 3}),
     "unknown field load.timeout; accepted: load.arrival, load.shape, load.mean"),
    (plan_dict({"at_s": 10, "action": "kill-worker"}, recovery={"consecutive_ok": 0}),
     "recovery.consecutive_ok must be an integer in [1, 10000] (got 0)"),
    (plan_dict(), "needs at least one [[disruption]] with at_s and action"),
    (plan_dict({"at_s": 10, "action": "command", "command": "{kubectl} delete pod -l {labels}"}, target="k8s"),
     "disruption[0].command: unknown placeholder {labels}; accepted: {kubectl}, {namespace}, {deployment}"),
    (plan_dict({"at_s": 10, "action": "command"}, target="k8s"), "disruption[0].command is required"),
    (plan_dict({"at_s": 10, "action": "command", "command": "kubectl 'unclosed"}, target="k8s"),
     "cannot be split into arguments"),
    (plan_dict({"at_s": 10, "action": "command", "command": "true"}, target="k8s", server={"supervisor": "none"}),
     "[server] applies only to target = \"local\""),
])
def test_plan_errors_name_the_field_and_the_accepted_values(raw, message):
    with pytest.raises(PlanError) as err:
        parse_plan(raw, Path("my-plan.toml"))
    text = str(err.value)
    assert text.startswith("my-plan.toml: ") and message in text and "\n" not in text


def test_bad_plan_file_is_one_line_without_traceback(tmp_path):
    plan = tmp_path / "bad.toml"
    plan.write_text('target = "local"\n[load]\nduration = 20\n[[disruption]]\nat_s = 25\naction = "kill-worker"\n')
    result = resilience_cli("run", "--plan", str(plan), "--results-dir", str(tmp_path / "results"))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"burstbench resilience: {plan}: disruption[0].at_s must be a number of seconds in (0, 20) "
        "(inside load.duration) (got 25)"]
    assert not (tmp_path / "results").exists()
    unknown = resilience_cli("plan", "no-such-plan")
    assert unknown.returncode == 2 and "one of k3s-paper, local-default, local-faults, local-no-supervisor" in unknown.stderr
    assert "Traceback" not in unknown.stderr


def test_shipped_local_plans():
    default = load_plan("local-default")
    assert default.supervisor == "supervisord" and default.load.request_timeout_s == 5
    assert [d.action for d in default.disruptions] == ["kill-worker", "freeze-server", "kill-server"]
    # 40 s steady (100 requests in the p99's half at 5/s) and >= 35 s per disruption: each recovery is seen
    assert [d.at_s for d in default.disruptions] == [40, 75, 110] and default.load.duration_s == 145
    bare = load_plan("local-no-supervisor")
    assert bare.supervisor == "none" and [d.action for d in bare.disruptions] == ["kill-server"]
    faults = load_plan("local-faults")
    assert [(d.action, d.at_s, d.for_s, d.limit_fraction, d.delay_s) for d in faults.disruptions] == [
        ("stop-worker", 40, 5, 0, 0), ("memory-limit", 75, 10, 0.9, 0), ("slow-start", 125, 0, 0, 25)]
    assert faults.recovery.ready_deadline_s == 30 and faults.recovery.first_good_within_s == 2


def test_plan_renders_the_new_disruptions_and_targets():
    raw = plan_dict({"at_s": 3, "action": "stop-worker", "for_s": 2}, {"at_s": 8, "action": "memory-limit", "for_s": 4,
                                                                       "limit_mb": 512},
                    {"at_s": 15, "action": "memory-limit", "for_s": 2, "limit_fraction": 0.8},
                    {"at_s": 20, "action": "slow-start", "delay_s": 40, "label": "slow"},
                    recovery={"ready_deadline_s": 30, "steady_tolerance": 0.2, "first_good_within_s": 1})
    lines = parse_plan(raw, Path("p.toml")).render().splitlines()
    assert lines[3:] == [
        "recovery: 10 good in a row (ok within max(3 x steady p99, 100 ms)); back to steady: 10 in a row within "
        "steady p99 x 1.2; readiness deadline 30 s",
        "targets: first good answer within 1 s of /readyz answering again, back to the steady p99 within 10 s of it, "
        "none lost",
        "1. at 3 s: SIGSTOP one BentoML worker: SIGSTOP one worker process (the arbiter runs on), SIGCONT after 2 s",
        "2. at 8 s: worker memory limit: kill -9 any worker whose RSS exceeds 512 MiB, for 4 s (as a container's OOM killer)",
        "3. at 15 s: worker memory limit: kill -9 any worker whose RSS exceeds 0.8 x the worker's RSS now, for 2 s "
        "(as a container's OOM killer)",
        "4. at 20 s: slow: kill -9 the server; supervisord restarts it with BURSTBENCH_START_DELAY_S=40 "
        "(readiness deadline 30 s)"]


def test_k3s_plan_renders_the_papers_five_commands_in_order():
    plan = load_plan("k3s-paper")
    assert plan.target == "k8s"
    assert [(d.at_s, d.label, d.argv) for d in plan.disruptions] == [
        (60, "control-plane restart", ("sudo", "-n", "systemctl", "restart", "k3s")),
        (160, "containerd termination", ("sudo", "-n", "pkill", "-KILL", "-x", "containerd")),
        (260, "rollout restart", ("kubectl", "-n", "burstbench", "rollout", "restart", "deployment/sentiment")),
        (360, "delete ReplicaSet", ("kubectl", "-n", "burstbench", "delete", "replicaset", "-l",
                                    "app.kubernetes.io/name=sentiment", "--wait=false")),
        (460, "delete Pod", ("kubectl", "-n", "burstbench", "delete", "pod", "-l",
                             "app.kubernetes.io/name=sentiment", "--wait=false")),
    ]


def test_command_templates_use_the_context_and_quote_values():
    raw = plan_dict({"at_s": 5, "action": "command", "command": "{kubectl} -n {namespace} delete pod -l {selector}"},
                    target="k8s", kubernetes={"context": "k3s lab", "namespace": "ml serving", "selector": "app=x,tier in (a)"})
    d = parse_plan(raw, Path("p.toml")).disruptions[0]
    assert d.argv == ("kubectl", "--context", "k3s lab", "-n", "ml serving", "delete", "pod", "-l", "app=x,tier in (a)")
    assert d.command_line == "kubectl --context 'k3s lab' -n 'ml serving' delete pod -l 'app=x,tier in (a)'"


def test_dry_run_prints_the_commands_and_runs_nothing(tmp_path):
    result = resilience_cli("run", "--plan", "k3s-paper", "--target", "k8s", "--dry-run",
                            "--results-dir", str(tmp_path / "results"))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    steps = [line for line in lines if line[:2] in ("1.", "2.", "3.", "4.", "5.")]
    assert steps == [
        "1. at 60 s: control-plane restart: sudo -n systemctl restart k3s",
        "2. at 160 s: containerd termination: sudo -n pkill -KILL -x containerd",
        "3. at 260 s: rollout restart: kubectl -n burstbench rollout restart deployment/sentiment",
        "4. at 360 s: delete ReplicaSet: kubectl -n burstbench delete replicaset -l app.kubernetes.io/name=sentiment --wait=false",
        "5. at 460 s: delete Pod: kubectl -n burstbench delete pod -l app.kubernetes.io/name=sentiment --wait=false",
    ]
    assert lines[-1] == "dry run: nothing was started, sent or run"
    assert not (tmp_path / "results").exists()
    wrong = resilience_cli("run", "--plan", "k3s-paper", "--target", "local", "--dry-run")
    assert wrong.returncode == 2 and "plan k3s-paper is for target k8s" in wrong.stderr


# -- the analysis, on a made-up run with known answers ---------------------------------
def test_recovery_offset_rule():
    sent = np.arange(10, dtype=float)
    good = np.array([1, 1, 0, 0, 1, 1, 0, 1, 1, 1], dtype=bool)
    assert recovery_offset_s(sent, good, 3) == 7.0     # the first run of 3 good after the first bad one
    assert recovery_offset_s(sent, good, 4) is None    # never 4 in a row after it
    assert recovery_offset_s(sent, np.ones(10, dtype=bool), 3) == 0.0  # nothing bad: no impact


def test_first_good_and_back_to_steady_rules():
    sent = np.arange(10, dtype=float)
    good = np.array([1, 0, 0, 1, 1, 1, 1, 1, 1, 1], dtype=bool)
    at_steady = np.array([1, 0, 0, 0, 0, 1, 1, 1, 1, 1], dtype=bool)  # 3 and 4 good but slower than steady
    assert first_good_offset_s(sent, good) == 3.0
    assert recovery_offset_s(sent, good, 3) == 3.0
    assert steady_back_offset_s(sent, good, at_steady, 3) == 5.0
    assert steady_back_offset_s(sent, good, at_steady, 6) is None   # only 5 at steady in a row after the bad ones
    assert first_good_offset_s(sent, np.array([1, 1, 0, 0, 0, 0, 0, 0, 0, 0], dtype=bool)) is None
    assert first_good_offset_s(sent, np.ones(10, dtype=bool)) == 0.0  # nothing bad: no impact
    assert steady_back_offset_s(sent, np.ones(10, dtype=bool), np.zeros(10, dtype=bool), 3) == 0.0


def write_fake_run(run_dir: Path, started: int = 100) -> None:
    """100 requests at 10/s; a disruption at 3 s: failures from 3.0 to 4.9 s, then 5 slower answers (50 ms, good
    but above the steady p99) from 5.0 s; a second disruption at 8 s that never recovers. ``started``: run.json's
    count of requests sent (above 100: some started requests have no row, they are lost)."""
    run_dir.mkdir()
    t0 = 1_000_000.0
    sent = t0 + np.arange(100) / 10
    offsets = np.arange(100) / 10
    failed = ((offsets >= 3.0) & (offsets < 5.0)) | (offsets >= 8.0)
    latency = np.where(failed, 3000.0, 20.0)
    latency[5] = 900.0  # a cold start in the first half of the steady window: not part of the steady p99
    latency[50:55] = 50.0  # the backlog drains: within 3 x p99 (good), not within 1.1 x p99 (steady)
    rows = pd.DataFrame({"request_index": np.arange(100), "scheduled_epoch": sent, "sent_epoch": sent,
                         "lateness_ms": 0.0, "latency_ms": latency, "corrected_latency_ms": latency,
                         "status": np.where(failed, 0, 200), "ok": (~failed).astype(int),
                         "failure_kind": np.where(failed, np.where(offsets >= 8.0, "connection_refused", "timeout"), "")})
    rows.to_csv(run_dir / "requests.csv", index=False)
    info = {"status": "complete", "counts": {"rows": 100, "sent": started, "ok": int((~failed).sum()),
                                             "failed": int(failed.sum())},
            "request_timeout_s": 3, "users": 4, "distribution": {"label": "test"},
            "resilience": {"plan": "fake", "recovery": {"consecutive_ok": 5, "latency_factor": 3.0, "min_threshold_ms": 50,
                                                        "ready_deadline_s": 3, "first_good_within_s": 0.5,
                                                        "steady_within_s": 2}},
            "events": [{"epoch": t0 + 3.0, "label": "first"}, {"epoch": t0 + 8.0, "label": "second"}]}
    (run_dir / "run.json").write_text(json.dumps(info))
    doc = {"plan": "fake", "target": "local", "service_ready_at_end": False,
           "disruptions": [{"label": "first", "epoch": t0 + 2.95, "readyz_ok_after_s": 1.5},
                           {"label": "second", "epoch": t0 + 7.95, "readyz_ok_after_s": None}]}
    (run_dir / "disruptions.json").write_text(json.dumps(doc))


def test_windows_partition_the_run_and_recovery_is_measured(tmp_path):
    write_fake_run(tmp_path / "run")
    table = resilience_table(load_run(tmp_path / "run"))
    assert list(table["window"]) == ["steady (before the first disruption)", "first", "second", "total"]
    assert list(table["sent"]) == [30, 50, 20, 100]
    assert list(table["ok"]) == [30, 30, 0, 60]
    assert list(table["failed"]) == [0, 20, 20, 40]
    assert table.attrs["steady_p99_ms"] == pytest.approx(20.0)
    assert table.attrs["threshold_ms"] == pytest.approx(60.0)  # max(3 x 20 ms, 50 ms)
    first, second = table.iloc[1], table.iloc[2]
    assert first["failure_kinds"] == "timeout 20" and second["failure_kinds"] == "connection_refused 20"
    assert first["first_failure_s"] == pytest.approx(0.05)
    assert first["recovery_s"] == pytest.approx(2.05) and first["recovered"] == "yes"
    assert np.isnan(second["recovery_s"]) and second["recovered"] == "not recovered (run ended)"
    assert first["ready_again_s"] == 1.5 and np.isnan(second["ready_again_s"])


def test_users_view_of_recovery_on_known_rows(tmp_path):
    write_fake_run(tmp_path / "run")
    table = resilience_table(load_run(tmp_path / "run"))
    first, second, total = table.iloc[1], table.iloc[2], table.iloc[3]
    assert first["first_good_s"] == 2.05               # the 50 ms answer sent at 5.0 s, 2.05 s after the disruption
    assert first["first_good_after_ready_s"] == 0.55   # /readyz answered again at 1.5 s
    assert first["steady_p99_back_s"] == 2.55          # 5 in a row within 1.1 x 20 ms: from 5.5 s
    assert first["steady_after_ready_s"] == 1.05
    assert first["readiness"] == "yes"                 # 1.5 s within the 3 s deadline
    assert second["readiness"] == "not ready within the plan's readiness deadline (3 s)"  # never
    assert np.isnan(second["first_good_s"]) and np.isnan(second["steady_p99_back_s"])
    assert list(table["lost"]) == [0, 0, 0, 0]
    assert verdicts(table) == [
        "- first: first good answer 0.6 s after /readyz (target 0.5 s): NOT MET; back to the steady p99 1.1 s after "
        "/readyz (target 2 s): met; lost 0: met",
        "- second: first good answer: NOT MET (/readyz never answered 200 again); back to the steady p99: NOT MET "
        "(/readyz never answered 200 again); lost 0: met; not ready within the plan's readiness deadline (3 s)",
        "Targets met in 0 of 2 disruption windows; lost in the whole run: 0 (met)."]
    assert total["lost"] == 0


def test_lost_requests_are_counted_against_run_json(tmp_path):
    write_fake_run(tmp_path / "run", started=103)  # 3 requests started that never came back as rows
    files = write_report(tmp_path / "run")
    table = files["table"]
    assert table.iloc[-1]["lost"] == 3 and list(table["lost"][:-1]) == [0, 0, 0]
    text = files["markdown"].read_text()
    assert "Accounting: 3 requests lost (started, per run.json, without an outcome)" in text
    assert "lost in the whole run: 3 (NOT MET)" in text
    assert pd.read_csv(files["csv"])["lost"].tolist() == [0, 0, 0, 3]


def test_report_files_and_not_recovered_wording(tmp_path):
    write_fake_run(tmp_path / "run")
    files = write_report(tmp_path / "run")
    text = files["markdown"].read_text()
    assert "not recovered (run ended)" in text and "Service ready at the end of the run: NO." in text
    assert "the windows add up to the run's counts" in text
    assert pd.read_csv(files["csv"])["sent"].iloc[-1] == 100
    assert files["figure"].stat().st_size > 10_000


# -- real disruptions under load -------------------------------------------------------
LOCAL_PLAN = """
name = "{name}"
target = "local"
[load]
mean = 0.1
duration = {duration}
request_timeout = 3
users = 40
seed = 3
[server]
supervisor = "{supervisor}"
[recovery]
consecutive_ok = 10
latency_factor = 3.0
min_threshold_ms = 250.0
"""


def run_plan(tmp_path, tiny_model, name, supervisor, duration, disruptions: str) -> tuple[subprocess.CompletedProcess, Path]:
    plan = tmp_path / f"{name}.toml"
    plan.write_text(LOCAL_PLAN.format(name=name, supervisor=supervisor, duration=duration) + disruptions)
    results = tmp_path / "results"
    result = subprocess.run(
        [sys.executable, "-m", "burstbench.resilience", "run", "--plan", str(plan), "--model", str(tiny_model),
         "--results-dir", str(results)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=duration + 240,
        env={**__import__("os").environ, "BURSTBENCH_MAX_LENGTH": "32"})
    return result, only_run_dir(results)


def assert_accounted(run_dir: Path) -> pd.DataFrame:
    run = load_run(run_dir)
    info = run.info
    counts = info["counts"]
    assert info["status"] == "complete"
    assert counts["rows"] == counts["sent"] == len(run.rows) == counts["ok"] + counts["failed"]
    assert counts["consistent"] is True
    table = pd.read_csv(run_dir / "resilience.csv", keep_default_na=False)
    body, total = table.iloc[:-1], table.iloc[-1]
    assert body["sent"].sum() == total["sent"] == len(run.rows)
    assert (body["sent"] == body["ok"] + body["failed"]).all()
    assert total["ok"] == counts["ok"] and total["failed"] == counts["failed"]
    assert (table["lost"] == 0).all()  # every started request came back with an outcome
    text = (run_dir / "resilience.md").read_text()
    assert "lost in the whole run: 0 (met)" in text and "none lost." in text
    assert (run_dir / "resilience_timeline.png").is_file()
    for _, row in body.iloc[1:].iterrows():
        if row["recovered"] == "yes":  # steady (1.1 x p99) is stricter than good (here >= 250 ms): the order is fixed
            assert float(row["first_good_s"]) <= float(row["recovery_s"]) <= float(row["steady_p99_back_s"])
    return table


@pytest.fixture(scope="module")
def supervised_run(tiny_model, tmp_path_factory):
    """Under supervisord: freeze at 6 s (2 s), kill -9 a worker at 16 s, kill the whole server at 46 s; 80 s."""
    disruptions = """
[[disruption]]
at_s = 6
action = "freeze-server"
for_s = 2
[[disruption]]
at_s = 16
action = "kill-worker"
[[disruption]]
at_s = 46
action = "kill-server"
"""
    return run_plan(tmp_path_factory.mktemp("supervised"), tiny_model, "supervised", "supervisord", 80, disruptions)


@pytest.mark.server
@pytest.mark.load
def test_worker_kill_under_load_recovers_and_counts_add_up(supervised_run):
    result, run_dir = supervised_run
    assert result.returncode == 0, result.stderr[-3000:]
    table = assert_accounted(run_dir)
    worker = table[table["window"] == "kill -9 one BentoML worker"].iloc[0]
    assert worker["failed"] > 0                      # the hung connections became failures ...
    assert worker["recovered"] == "yes"              # ... and BentoML's respawned worker answered again
    assert 0 < float(worker["recovery_s"]) < 30
    freeze = table[table["window"] == "SIGSTOP the server"].iloc[0]
    assert freeze["recovered"] in ("yes", "no impact")
    doc = json.loads((run_dir / "disruptions.json").read_text())
    kill = doc["disruptions"][1]
    assert kill["action"] == "kill-worker" and len(kill["pids_killed"]) == 1
    assert kill["respawned_worker_pid"] not in (None, kill["pids_killed"][0])
    info = json.loads((run_dir / "run.json").read_text())
    assert [e["label"] for e in info["events"]] == ["SIGSTOP the server", "SIGCONT", "kill -9 one BentoML worker",
                                                    "kill -9 the whole server"]
    report = (run_dir / "resilience.md").read_text()
    assert f"slots waited for a free user" in report and f"of {info['users']} users" in report
    # the service's side from its own counters, across the restart: its answers and the work it did not compute
    service = next(line for line in report.splitlines() if line.startswith("Service (its own /metrics): answered "))
    assert "dropped without computing: deadline passed " in service and "computed " in service


@pytest.mark.server
@pytest.mark.load
def test_server_kill_under_supervisord_recovers(supervised_run):
    result, run_dir = supervised_run
    assert result.returncode == 0, result.stderr[-3000:]
    table = assert_accounted(run_dir)
    killed = table[table["window"] == "kill -9 the whole server"].iloc[0]
    assert killed["failed"] > 0 and killed["recovered"] == "yes"
    doc = json.loads((run_dir / "disruptions.json").read_text())
    assert doc["service_ready_at_end"] is True
    assert doc["disruptions"][2]["restarted_server_pid"] is not None


@pytest.mark.server
@pytest.mark.load
def test_server_kill_without_supervisor_is_not_recovered(tiny_model, tmp_path):
    result, run_dir = run_plan(tmp_path, tiny_model, "bare", "none", 20,
                               '[[disruption]]\nat_s = 8\naction = "kill-server"\n')
    assert result.returncode == 0, result.stderr[-3000:]
    table = assert_accounted(run_dir)
    killed = table.iloc[1]
    assert killed["recovered"] == "not recovered (run ended)"
    assert killed["ok"] == 0 and "connection_refused" in killed["failure_kinds"]
    assert killed["ready_again_s"] == ""  # /readyz never answered again
    assert "not recovered (run ended)" in result.stdout and "Service ready at the end of the run: NO." in result.stdout


@pytest.fixture(scope="module")
def faults_run(tiny_model, tmp_path_factory):
    """Under supervisord: SIGSTOP the worker at 6 s (5 s), a memory limit of 0.8 x its RSS at 18 s (6 s), a
    slow start (12 s delay, readiness deadline 10 s) at 36 s; 80 s."""
    disruptions = """ready_deadline_s = 10
[[disruption]]
at_s = 6
action = "stop-worker"
for_s = 5
[[disruption]]
at_s = 18
action = "memory-limit"
for_s = 6
limit_fraction = 0.8
[[disruption]]
at_s = 36
action = "slow-start"
delay_s = 12
"""
    # ready_deadline_s goes on LOCAL_PLAN's [recovery], which it ends with
    return run_plan(tmp_path_factory.mktemp("faults"), tiny_model, "faults", "supervisord", 80, disruptions)


def events_of(run_dir: Path, kind: str) -> list[dict]:
    return [e for e in json.loads((run_dir / "run.json").read_text())["events"] if e["kind"] == kind]


@pytest.mark.server
@pytest.mark.load
def test_stopped_worker_times_requests_out_and_keeps_its_pid(faults_run):
    result, run_dir = faults_run
    assert result.returncode == 0, result.stderr[-3000:]
    table = assert_accounted(run_dir)
    d = json.loads((run_dir / "disruptions.json").read_text())["disruptions"][0]
    assert d["action"] == "stop-worker" and d["pids_stopped"] == d["pids_resumed"] == d["workers_before"][:1]
    assert d["workers_after"] == d["workers_before"]  # the same worker, continued: nothing was respawned
    stop, resume = events_of(run_dir, "disruption")[0]["epoch"], events_of(run_dir, "resume")[0]["epoch"]
    assert resume - stop >= 5.0
    rows = load_run(run_dir).rows
    # Sent while the worker was stopped and timing out before it was continued (3 s timeout): all time out.
    hung = rows[(rows["sent_epoch"] > stop + 0.1) & (rows["sent_epoch"] < resume - 3.2)]
    assert len(hung) >= 5 and (hung["ok"] == 0).all() and (hung["failure_kind"] == "timeout").all()
    window = table[table["window"] == "SIGSTOP one BentoML worker"].iloc[0]
    assert window["recovered"] == "yes" and window["readiness"] == "yes"
    assert float(window["ready_again_s"]) >= 5.0  # polled from SIGCONT on
    later = rows[(rows["sent_epoch"] > resume + 2) & (rows["sent_epoch"] < events_of(run_dir, "disruption")[1]["epoch"])]
    assert (later["ok"] == 1).sum() > 0


@pytest.mark.server
@pytest.mark.load
def test_memory_limit_kills_each_worker_over_it_then_lifts(faults_run):
    result, run_dir = faults_run
    assert result.returncode == 0, result.stderr[-3000:]
    table = assert_accounted(run_dir)
    doc = json.loads((run_dir / "disruptions.json").read_text())
    d, before = doc["disruptions"][1], doc["disruptions"][0]["workers_after"][0]
    kills = d["oom_kills"]
    assert d["limit_mb"] == round(0.8 * d["rss_mb_before"][str(before)], 1)
    assert kills[0]["pid"] == before and kills[0]["after_s"] < 1.0  # over the limit at once: killed at the first poll
    assert all(k["rss_mb"] > d["limit_mb"] for k in kills) and d["pids_killed"] == [k["pid"] for k in kills]
    assert d["respawned_worker_pid"] not in (None, *d["pids_killed"])  # the worker after the limit was lifted
    assert len(events_of(run_dir, "oom-kill")) == len(kills)
    lifted = [e for e in events_of(run_dir, "resume") if e["label"] == "memory limit lifted"]
    assert len(lifted) == 1 and lifted[0]["epoch"] - events_of(run_dir, "disruption")[1]["epoch"] >= 6.0
    window = table[table["window"] == "worker memory limit"].iloc[0]
    assert window["failed"] > 0 and window["recovered"] == "yes"


@pytest.mark.server
@pytest.mark.load
def test_slow_start_is_ready_only_after_the_delay_and_past_the_deadline(faults_run):
    result, run_dir = faults_run
    assert result.returncode == 0, result.stderr[-3000:]
    table = assert_accounted(run_dir)
    doc = json.loads((run_dir / "disruptions.json").read_text())
    d = doc["disruptions"][2]
    assert d["delay_s"] == 12 and d["restarted_server_pid"] not in (None, *d["pids_killed"])
    assert d["readyz_ok_after_s"] >= 12  # the restarted service waited before loading the model
    assert "waiting 12 s before loading the model (BURSTBENCH_START_DELAY_S)" in (run_dir / "service.log").read_text()
    window = table[table["window"] == "slow server start"].iloc[0]
    assert window["readiness"] == "not ready within the plan's readiness deadline (10 s)"
    assert float(window["first_good_s"]) >= 12  # nothing good came back before the model was loaded
    assert window["recovered"] == "yes" and doc["service_ready_at_end"] is True
    assert "slow server start: first good answer" in result.stdout
    assert "not ready within the plan's readiness deadline (10 s)" in result.stdout


def test_peak_in_flight_counts_overlaps_and_an_answer_before_a_send_at_the_same_instant():
    sent = np.array([0.0, 0.5, 1.0, 3.0])
    done = np.array([2.0, 1.0, 2.5, 3.5])  # the second ends as the third is sent: 2 at once there, not 3
    assert peak_in_flight(sent, done) == 2
    assert peak_in_flight(np.array([0.0, 0.1, 0.2]), np.array([5.0, 5.0, 5.0])) == 3


def test_generator_line_says_which_side_failed(tmp_path):
    write_fake_run(tmp_path / "run")
    line = generator_line(load_run(tmp_path / "run"))
    # the 20 timeouts sent 3.0-4.9 s (3 s each) are all outstanding at 5.9 s, with that instant's 20 ms answer
    assert line.startswith("Generator: 0 of 100 slots waited for a free user; send lateness p99 0.00 ms")
    assert "at most 21 requests in flight of 4 users" in line and "the generator did not cause" in line
    rows = pd.read_csv(tmp_path / "run" / "requests.csv")
    rows["claim_late_ms"] = np.where(rows.index.isin([40, 41]), 12.5, 0.0)
    rows.to_csv(tmp_path / "run" / "requests.csv", index=False)
    line = generator_line(load_run(tmp_path / "run"))
    assert "2 of 100 slots waited for a free user" in line and "raise -u/--users" in line


def test_server_counters_read_across_a_restart():
    frame = pd.DataFrame({"epoch": [1.0, 2.0, 3.0, 4.0, 1.0, 2.0, 3.0, 4.0],
                          "metric": ["burstbench_deadline_dropped_total"] * 4 + ["other_total"] * 4,
                          "type": "counter", "labels": [{}] * 8, "labels_key": "", "value": [2, 5, 1, 4, 0, 0, 0, 0]})
    assert counter_total(frame, "burstbench_deadline_dropped_total") == 3 + 1 + 3  # 2->5, reset to 1, 1->4
    assert counter_total(frame, "burstbench_items_computed_total") is None
