"""The resilience harness: plans and their errors, kubectl rendering, the per-disruption analysis, real disruptions.

The real runs start the tiny model's BentoML server on loopback (under supervisord, or with no
supervisor), run arrival-paced Locust against it and disrupt it: about 2 minutes together.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from burstbench.analysis.resilience import recovery_offset_s, resilience_table, write_report
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
     "disruption[0].action must be one of kill-worker, freeze-server, kill-server (got 'reboot')"),
    (plan_dict({"at_s": 10, "action": "command", "command": "kubectl get pods"}),
     "disruption[0].action must be one of kill-worker, freeze-server, kill-server (got 'command')"),
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
    assert unknown.returncode == 2 and "one of k3s-paper, local-default, local-no-supervisor" in unknown.stderr
    assert "Traceback" not in unknown.stderr


def test_shipped_local_plans():
    default = load_plan("local-default")
    assert default.supervisor == "supervisord" and default.load.request_timeout_s == 5
    assert [d.action for d in default.disruptions] == ["kill-worker", "freeze-server", "kill-server"]
    bare = load_plan("local-no-supervisor")
    assert bare.supervisor == "none" and [d.action for d in bare.disruptions] == ["kill-server"]


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


def write_fake_run(run_dir: Path) -> None:
    """100 requests at 10/s; a disruption at 3 s: failures from 3.0 to 4.9 s; a second at 8 s that never recovers."""
    run_dir.mkdir()
    t0 = 1_000_000.0
    sent = t0 + np.arange(100) / 10
    offsets = np.arange(100) / 10
    failed = ((offsets >= 3.0) & (offsets < 5.0)) | (offsets >= 8.0)
    latency = np.where(failed, 3000.0, 20.0)
    latency[5] = 900.0  # a cold start in the first half of the steady window: not part of the steady p99
    rows = pd.DataFrame({"request_index": np.arange(100), "scheduled_epoch": sent, "sent_epoch": sent,
                         "lateness_ms": 0.0, "latency_ms": latency, "corrected_latency_ms": latency,
                         "status": np.where(failed, 0, 200), "ok": (~failed).astype(int),
                         "failure_kind": np.where(failed, np.where(offsets >= 8.0, "connection_refused", "timeout"), "")})
    rows.to_csv(run_dir / "requests.csv", index=False)
    info = {"status": "complete", "counts": {"rows": 100, "sent": 100, "ok": int((~failed).sum()),
                                             "failed": int(failed.sum())},
            "request_timeout_s": 3, "users": 4, "distribution": {"label": "test"},
            "resilience": {"plan": "fake", "recovery": {"consecutive_ok": 5, "latency_factor": 3.0, "min_threshold_ms": 50}},
            "events": [{"epoch": t0 + 3.0, "label": "first"}, {"epoch": t0 + 8.0, "label": "second"}]}
    (run_dir / "run.json").write_text(json.dumps(info))
    doc = {"plan": "fake", "target": "local", "service_ready_at_end": False,
           "disruptions": [{"label": "first", "epoch": t0 + 2.95, "readyz_ok_after_s": 2.1},
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
    assert first["ready_again_s"] == 2.1 and np.isnan(second["ready_again_s"])


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
    assert (run_dir / "resilience_timeline.png").is_file() and (run_dir / "resilience.md").is_file()
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
