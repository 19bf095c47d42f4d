"""One resilience run: serve (local) or reach (k8s) the service, load it for the whole plan, disrupt it on time.

The load is the bundled locustfile, arrival-paced, as ``burstbench run`` runs
it; its requests are the record of what users lost. Disruption times count from the moment
Locust's run folder appears (its start; the exact offsets from the schedule's start are
recomputed afterwards from run.json). Each disruption is appended to run.json's ``events`` the
moment it happens (``burstbench.record.append_event``); after Locust has finished, what was
observed about each goes into ``disruptions.json``, and the report is written.
"""
from __future__ import annotations

import json
import math
import shutil
import sys
import threading
import time
from pathlib import Path

from burstbench import harness
from burstbench.arrivals import ArrivalSchedule
from burstbench.record import RecordError, append_event, load_record, update_record

from . import disruptions as act
from .plan import Plan, PlanError
from .server import LocalServer, temp_dir

LOCUSTFILE = harness.locustfile("sentiment.py")
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
    raise PlanError(f"{plan.path}: load.duration = {load.duration_s:g} s needs more than {n} requests "
                    f"at a mean gap of {load.mean_s:g} s")


def run_name(plan: Plan) -> str:
    return f"resilience-{plan.name}"


def locust_flags(plan: Plan, requests: int) -> list[str]:
    """The plan's load spec as Locust flags, with the requests that fill ``load.duration``."""
    spec = plan.load.spec.with_values(requests=requests, pacing="arrival", run_name=run_name(plan),
                                      progress_every=float(PROGRESS_EVERY_S))
    return ["-u", str(spec.users), "-r", str(spec.users), *spec.locust_args()]


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
        self.interrupts: harness.Interrupts | None = None

    @property
    def interrupted(self) -> bool:
        return self.interrupts is not None and self.interrupts.interrupted

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
        # Ctrl-C reaches the harness only; each press goes on to Locust once, which stops and keeps its
        # rows; no further disruption starts, and the service is stopped here.
        with harness.forward_interrupts() as self.interrupts:
            try:
                if plan.target == "local":
                    self._start_local()
                else:
                    self._check_remote()
                return self._load_and_disrupt(requests)
            finally:
                if self.server is not None:
                    self.server.stop()

    def _start_local(self) -> None:
        model = self.model
        if model is None:
            say(f"building (or reusing) the default model in {harness.default_model_dir()}")
            model = harness.ensure_default_model("onnx-fp32")
        port = self.port or harness.free_port()
        self.server = LocalServer(model, port, self.plan.supervisor, temp_dir("burstbench-resilience-"))
        self.host = self.server.url
        how = "under supervisord" if self.plan.supervisor == "supervisord" else "with no supervisor"
        say(f"starting the service {how} on {self.host} (logs: {self.server.log_dir})")
        self.server.start()
        say(f"service ready after {self.server.wait_ready(self.ready_timeout_s):.1f} s")

    def _check_remote(self) -> None:
        try:
            harness.RemoteService(self.host).wait_ready(30, every_s=1)
        except harness.NotReady:
            raise PlanError(f"{self.host}/readyz did not answer 200 within 30 s: is the service reachable from here "
                            "(NodePort, port-forward)? give its URL in kubernetes.url or --host") from None

    def _load_and_disrupt(self, requests: int) -> Path:
        plan = self.plan
        self.results_dir.mkdir(parents=True, exist_ok=True)
        run_dir = harness.new_run_dir(self.results_dir, run_name(plan))
        flags = locust_flags(plan, requests)
        if self.server is not None:  # the server's tree (supervisord's, under the restart policy) is sampled
            flags += ["--service-pid", str(self.server.proc.pid)]
        locust = harness.Locust(LOCUSTFILE, self.host, run_dir, flags)
        say(f"load: {requests} requests over about {plan.load.duration_s:g} s -> {self.results_dir}")
        self.interrupts.target = locust
        locust.start()
        records: list[dict] = []
        watchers: list[tuple[dict, threading.Thread]] = []
        try:
            # Its start: the first rows, and run.json, are in the folder.
            if not locust.wait_for_files(RUN_FOLDER_TIMEOUT_S, ("requests.csv", "run.json")):
                raise RuntimeError(f"Locust created no run folder in {self.results_dir} within {RUN_FOLDER_TIMEOUT_S} s")
            start = time.time()
            update_record(run_dir, resilience=self._resilience_section())
            for i, d in enumerate(plan.disruptions):
                if not self._sleep_until(start + d.at_s, locust):
                    say(f"not carried out: {d.label} at {d.at_s:g} s (the load stopped first)")
                    continue
                say(f"{d.at_s:g} s: {d.label}")
                record = self._execute(d, run_dir)
                records.append(record)
                if record.get("error"):
                    say(f"  {record['error']}")
                nxt = plan.disruptions[i + 1].at_s if i + 1 < len(plan.disruptions) else \
                    plan.load.duration_s + plan.load.request_timeout_s
                watchers.append(self._watch_ready(record, start + nxt))
            locust.wait(plan.load.duration_s + plan.load.request_timeout_s + 300)
        except BaseException:
            locust.wind_down(60)  # SIGINT: Locust keeps its rows and writes run.json; then its group is stopped
            locust.written()      # an empty folder (it never started) is not left behind
            raise
        finally:
            self.interrupts.target = None
            locust.stop()
        ready_at_end = self._ready_now()
        for record, thread in watchers:
            thread.join(5)
            record.update(thread.result)  # type: ignore[attr-defined]
        records = [act.finish(r) for r in records]
        self._write(run_dir, records, ready_at_end, locust.returncode)
        return run_dir

    def _sleep_until(self, epoch: float, locust: harness.Locust) -> bool:
        while time.time() < epoch:
            if self.interrupted or not locust.running():
                return False
            time.sleep(min(0.05, max(0.0, epoch - time.time())))
        return not self.interrupted and locust.running()

    def _execute(self, d, run_dir: Path) -> dict:
        def note(kind, epoch, label, **detail):  # into run.json's events as it happens
            try:
                append_event(run_dir, kind, epoch, label=label, **detail)
            except (RecordError, OSError) as err:
                say(f"  could not record the event in run.json: {err}")

        if d.action == "command":
            return act.run_command(d, self.plan.kubernetes.command_timeout_s, note=note)
        return {"kill-worker": act.kill_worker, "freeze-server": act.freeze_server, "kill-server": act.kill_server,
                "stop-worker": act.stop_worker, "memory-limit": act.memory_limit,
                "slow-start": act.slow_start}[d.action](self.server, d, note=note)

    def _watch_ready(self, record: dict, deadline_epoch: float):
        result: dict = {}

        def run():
            result.update(act.watch_ready(self.host, record["epoch"], deadline_epoch))

        thread = threading.Thread(target=run, daemon=True)
        thread.result = result  # type: ignore[attr-defined]
        thread.start()
        return record, thread

    def _ready_now(self) -> bool:
        return harness.http_ok(f"{self.host}/readyz")

    # -- the record ---------------------------------------------------------------------
    def _resilience_section(self) -> dict:
        """run.json ``resilience``: the plan this run carries out (set when the load starts)."""
        return {"plan": self.plan.name, "plan_file": str(self.plan.path), "target": self.plan.target,
                "supervisor": self.plan.supervisor if self.plan.target == "local" else None,
                "recovery": vars(self.plan.recovery), "disruptions_file": "disruptions.json"}

    def _write(self, run_dir: Path, records: list[dict], ready_at_end: bool, locust_rc: int | None) -> None:
        record = load_record(run_dir)  # its events were appended as the disruptions happened
        start = (record.schedule.start_epoch if record.schedule is not None else None) or record.started_epoch
        for r in records:
            r["offset_s"] = None if start is None else round(r["epoch"] - start, 3)
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
