"""One resilience run: serve (local) or reach (k8s) the service, load it for the whole plan, disrupt it on time.

The load is the bundled locustfile, arrival-paced, as ``burstbench run`` runs
it; its requests are the record of what users lost. Disruption times count from the moment
Locust's run folder appears (its start; the exact offsets from the schedule's start are
recomputed afterwards from run.json). After Locust has finished, the disruptions go into
``disruptions.json`` and, as ``events``, into run.json, and the report is written.
"""
from __future__ import annotations

import json
import math
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

from burstbench.arrivals import ArrivalSchedule

from . import disruptions as act
from .plan import Plan, PlanError
from .server import LocalServer, free_port, temp_dir, wait_until

from burstbench.paths import package_folder  # noqa: E402

LOCUSTFILES_DIR = package_folder("locustfiles")
LOCUSTFILE = LOCUSTFILES_DIR / "sentiment.py"
DEFAULT_MODEL = Path("build") / "models" / "untrained-roberta-base"
RUN_FOLDER_TIMEOUT_S = 120
PROGRESS_EVERY_S = 10


def say(message: str) -> None:
    print(f"[resilience] {message}", file=sys.stderr, flush=True)


def requests_for(plan: Plan) -> int:
    """How many scheduled sends fall inside ``load.duration_s`` (at least 1): the run then lasts the plan."""
    load = plan.load
    n = max(16, math.ceil(load.duration_s / load.mean_s * 1.5) + 50)
    for _ in range(20):  # schedules are prefix-consistent: drawing more never changes the first sends
        offsets = ArrivalSchedule.draw(load.distribution, n, load.seed).offsets_s
        if offsets[-1] > load.duration_s:
            return max(1, int((offsets <= load.duration_s).sum()))
        n *= 2
    raise PlanError(f"{plan.path}: load.duration_s = {load.duration_s:g} s needs more than {n} requests "
                    f"at mean_s = {load.mean_s:g} s")


def locust_command(plan: Plan, host: str, results_dir: Path, requests: int) -> list[str]:
    load = plan.load
    cmd = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "--only-summary",
           "--host", host, "-u", str(load.users), "-r", str(load.users),
           "--arrival", load.arrival, "--mean", repr(load.mean_s), "--requests", str(requests),
           "--seed", str(load.seed), "--pacing", "arrival", "--request-timeout", repr(load.request_timeout_s),
           "--results-dir", str(results_dir), "--run-name", f"resilience-{plan.name}",
           "--progress-every", str(PROGRESS_EVERY_S)]
    if load.shape is not None:
        cmd += ["--shape", repr(load.shape)]
    return cmd


def check_programs(plan: Plan) -> list[str]:
    """For k8s plans: one line per command's program, found on PATH or not."""
    lines = []
    for d in plan.disruptions:
        if d.argv:
            where = shutil.which(d.argv[0])
            lines.append(f"{d.argv[0]}: {where}" if where else f"{d.argv[0]}: not found on PATH")
    return sorted(set(lines))


class Harness:
    def __init__(self, plan: Plan, *, results_dir: Path, model: Path | None = None, port: int | None = None,
                 host: str | None = None, ready_timeout_s: float = 300.0):
        self.plan = plan
        self.results_dir = Path(results_dir).resolve()
        self.model = model
        self.port = port
        self.host = host or (plan.kubernetes.url if plan.target == "k8s" else None)
        self.ready_timeout_s = ready_timeout_s
        self.server: LocalServer | None = None
        self.interrupted = False

    # -- the run ------------------------------------------------------------------------
    def run(self) -> Path:
        plan = self.plan
        requests = requests_for(plan)
        if plan.target == "k8s":
            missing = [line for line in check_programs(plan) if line.endswith("not found on PATH")]
            if missing:
                raise PlanError(f"{plan.path}: {missing[0]}; install it or change the command")
            if not self.host:
                raise PlanError(f"{plan.path}: kubernetes.url is empty: give the service's URL there or with --host")
        say(plan.render().replace("\n", "\n[resilience] "))
        previous = signal.signal(signal.SIGINT, self._on_sigint)
        try:
            if plan.target == "local":
                self._start_local()
            else:
                self._check_remote()
            return self._load_and_disrupt(requests)
        finally:
            if self.server is not None:
                self.server.stop()
            signal.signal(signal.SIGINT, previous)

    def _on_sigint(self, *_):
        # The terminal's Ctrl-C reaches Locust too, which stops and keeps its rows; no further disruption starts.
        self.interrupted = True

    def _start_local(self) -> None:
        model = self.model
        if model is None:
            say(f"building (or reusing) the default model in {DEFAULT_MODEL}")
            subprocess.run([sys.executable, "-m", "burstbench.service", "build-model", "--out", str(DEFAULT_MODEL),
                            "--variants", "onnx-fp32"], check=True)
            model = DEFAULT_MODEL
        port = self.port or free_port()
        self.server = LocalServer(model, port, self.plan.supervisor, temp_dir("burstbench-resilience-"))
        self.host = self.server.url
        how = "under supervisord" if self.plan.supervisor == "supervisord" else "with no supervisor"
        say(f"starting the service {how} on {self.host} (logs: {self.server.log_dir})")
        self.server.start()
        say(f"service ready after {self.server.wait_ready(self.ready_timeout_s):.1f} s")

    def _check_remote(self) -> None:
        def ready():
            try:
                with urllib.request.urlopen(f"{self.host}/readyz", timeout=2) as resp:
                    return resp.status == 200
            except OSError:
                return False

        if not wait_until(ready, 30, every_s=1):
            raise PlanError(f"{self.host}/readyz did not answer 200 within 30 s: is the service reachable from here "
                            "(NodePort, port-forward)? give its URL in kubernetes.url or --host")

    def _load_and_disrupt(self, requests: int) -> Path:
        plan = self.plan
        self.results_dir.mkdir(parents=True, exist_ok=True)
        before = set(self.results_dir.iterdir())
        cmd = locust_command(plan, self.host, self.results_dir, requests)
        say(f"load: {requests} requests over about {plan.load.duration_s:g} s -> {self.results_dir}")
        locust = subprocess.Popen(cmd)
        records: list[dict] = []
        watchers: list[tuple[dict, threading.Thread]] = []
        try:
            run_dir = wait_until(lambda: self._new_run_dir(before), RUN_FOLDER_TIMEOUT_S, every_s=0.1)
            if run_dir is None:
                raise RuntimeError(f"Locust created no run folder in {self.results_dir} within {RUN_FOLDER_TIMEOUT_S} s")
            start = time.time()
            for i, d in enumerate(plan.disruptions):
                if not self._sleep_until(start + d.at_s, locust):
                    say(f"not carried out: {d.label} at {d.at_s:g} s (the load stopped first)")
                    continue
                say(f"{d.at_s:g} s: {d.label}")
                record = self._execute(d)
                records.append(record)
                if record.get("error"):
                    say(f"  {record['error']}")
                nxt = plan.disruptions[i + 1].at_s if i + 1 < len(plan.disruptions) else \
                    plan.load.duration_s + plan.load.request_timeout_s
                watchers.append(self._watch_ready(record, start + nxt))
            locust.wait(timeout=plan.load.duration_s + plan.load.request_timeout_s + 300)
        except BaseException:
            if locust.poll() is None:
                locust.send_signal(signal.SIGINT)  # Locust keeps its rows and writes run.json
                try:
                    locust.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    locust.kill()
            raise
        ready_at_end = self._ready_now()
        for record, thread in watchers:
            thread.join(5)
            record.update(thread.result)  # type: ignore[attr-defined]
        records = [act.finish(r) for r in records]
        self._write(run_dir, records, ready_at_end, locust.returncode)
        return run_dir

    def _new_run_dir(self, before: set) -> Path | None:
        fresh = [p for p in self.results_dir.iterdir() if p not in before and (p / "requests.csv").is_file()]
        return fresh[0] if fresh else None

    def _sleep_until(self, epoch: float, locust: subprocess.Popen) -> bool:
        while time.time() < epoch:
            if self.interrupted or locust.poll() is not None:
                return False
            time.sleep(min(0.05, max(0.0, epoch - time.time())))
        return not self.interrupted and locust.poll() is None

    def _execute(self, d) -> dict:
        if d.action == "command":
            return act.run_command(d, self.plan.kubernetes.command_timeout_s)
        return {"kill-worker": act.kill_worker, "freeze-server": act.freeze_server,
                "kill-server": act.kill_server}[d.action](self.server, d)

    def _watch_ready(self, record: dict, deadline_epoch: float):
        result: dict = {}

        def run():
            result.update(act.watch_ready(self.host, record["epoch"], deadline_epoch))

        thread = threading.Thread(target=run, daemon=True)
        thread.result = result  # type: ignore[attr-defined]
        thread.start()
        return record, thread

    def _ready_now(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.host}/readyz", timeout=2) as resp:
                return resp.status == 200
        except OSError:
            return False

    # -- the record ---------------------------------------------------------------------
    def _write(self, run_dir: Path, records: list[dict], ready_at_end: bool, locust_rc: int | None) -> None:
        info_path = run_dir / "run.json"
        info = json.loads(info_path.read_text())
        start = (info.get("schedule") or {}).get("start_epoch") or info.get("started_epoch")
        for r in records:
            r["offset_s"] = None if start is None else round(r["epoch"] - start, 3)
        events = [e for r in records for e in r.pop("events")]
        info["events"] = sorted(events, key=lambda e: e["epoch"])
        info["resilience"] = {"plan": self.plan.name, "plan_file": str(self.plan.path), "target": self.plan.target,
                              "supervisor": self.plan.supervisor if self.plan.target == "local" else None,
                              "recovery": vars(self.plan.recovery), "disruptions_file": "disruptions.json"}
        info_path.write_text(json.dumps(info, indent=2, default=str) + "\n")
        doc = {"plan": self.plan.name, "target": self.plan.target, "host": self.host,
               "load_start_epoch": start, "service_ready_at_end": ready_at_end, "locust_exit_code": locust_rc,
               "interrupted": self.interrupted, "disruptions": records}
        (run_dir / "disruptions.json").write_text(json.dumps(doc, indent=2, default=str) + "\n")
        if self.server is not None:
            self.server.stop()
            for name in ("service.log", "supervisord.log", "supervisord.conf"):
                src = self.server.log_dir / name
                if src.is_file():
                    shutil.copy(src, run_dir / name)
