"""Locust glue for the one-call wait times (``burstbench.arrivals.gamma(...)`` and friends) in any locustfile.

Attached by the factory itself when Locust is loaded, through Locust's events:

* one process: the schedule starts a moment after the users are spawned (``START_LEAD_S`` plus the spawn
  time), and a count-bound run (``requests=N``) quits once every request is answered;
* ``--master``/``--worker``: every process imported the same locustfile, so every worker already holds the
  same seeded process; at test start the master tells worker k of W its index, W and the common start
  epoch, and worker k sends slots k, k+W, ... of the one schedule (``partition`` in the run's words:
  without it W workers would send W copies of every request). A worker that connects after the start
  gets no slots (the partition is fixed); one that goes missing is counted as lost with the slots it
  owed from then on. The master's closing line accounts for every slot that fell due.

Each worker reports what it sent, and its lateness, with its Locust stats reports.
"""
import locust  # noqa: F401  (first: gevent's monkey-patching must precede other imports)
from locust import events
from locust.runners import STATE_MISSING, MasterRunner, WorkerRunner

import sys
import time

import gevent
import numpy as np
from gevent.event import Event

START_LEAD_S = 0.2        # one process: the first slot this long after the users are up
MASTER_LEAD_S = 1.0       # distributed: the start epoch this far ahead, so every worker has its share first
MAX_SPAWN_LEAD_S = 2.0
SHARE_WAIT_S = 60.0       # a worker's users wait this long for the master's share, then stop
WATCH_EVERY_S = 0.5


def attach(pacing) -> None:
    events.init.add_listener(lambda environment, **_kw: _on_init(pacing, environment))


def _message(pacing, what: str) -> str:
    return f"burstbench_pacing_{pacing.id}_{what}"


def _spawn_s(options) -> float:
    users = getattr(options, "num_users", None) or 1
    return users / max(getattr(options, "spawn_rate", None) or users, 1e-9)


def _say(line: str) -> None:
    print(f"[burstbench] {line}", file=sys.stderr, flush=True)


def _lateness(values) -> str:
    values = np.asarray(values, dtype=float)
    if not len(values):
        return "no sends"
    p50, p99, top = np.percentile(values, [50, 99, 100])
    return f"release lateness p50 {p50:.3f} ms, p99 {p99:.3f} ms, max {top:.3f} ms"


def _on_init(pacing, environment) -> None:
    runner = environment.runner
    if runner is None:
        return
    if isinstance(runner, MasterRunner):
        _Master(pacing, environment)
    elif isinstance(runner, WorkerRunner):
        _Worker(pacing, environment)
    else:
        _Local(pacing, environment)


class _Local:
    def __init__(self, pacing, environment):
        self.pacing, self.environment = pacing, environment
        self.started = self.stopped = None
        pacing.on_exhausted = lambda: gevent.spawn(environment.runner.quit)
        environment.events.test_start.add_listener(self.on_test_start)
        environment.events.test_stopping.add_listener(self.on_stopping)
        environment.events.quit.add_listener(self.on_quit)

    def on_stopping(self, **_kw):
        self.stopped = self.stopped or time.time()  # the slots owed are those due until sending stopped

    def on_test_start(self, **_kw):
        options = self.environment.parsed_options
        lead = START_LEAD_S + min(MAX_SPAWN_LEAD_S, _spawn_s(options)) if options is not None else START_LEAD_S
        self.started = self.pacing.dispenser.start(time.time() + lead)

    def on_quit(self, **_kw):
        if not self.pacing.open_loop:
            _say(f"{self.pacing}: {self.pacing.sent} requests sent")
            return
        due = self.pacing.schedule.due_by((self.stopped or time.time()) - self.started) if self.started else 0
        _say(f"{self.pacing}: {due} slots fell due, {self.pacing.sent} sent, {max(0, due - self.pacing.sent)} not "
             f"sent at the stop; {_lateness(self.pacing.late_ms)}")


class _Master:
    """Partitions the schedule at test start, watches workers come and go, accounts for every slot."""

    def __init__(self, pacing, environment):
        self.pacing, self.environment, self.runner = pacing, environment, environment.runner
        self.shares: dict[str, dict] = {}
        self.count = 0
        self.start_epoch = self.stopped = None
        self.watcher = None
        environment.events.test_start.add_listener(self.on_test_start)
        environment.events.test_stopping.add_listener(self.on_stopping)
        environment.events.worker_report.add_listener(self.on_worker_report)
        environment.events.quit.add_listener(self.on_quit)

    def active_clients(self) -> list[str]:
        clients = self.runner.clients
        return sorted((c.id for c in clients.ready + clients.running + clients.spawning),
                      key=self.runner.get_worker_index)

    def on_test_start(self, **_kw):
        ids = self.active_clients()
        self.count = len(ids)
        lead = MASTER_LEAD_S + _spawn_s(self.environment.parsed_options)
        self.start_epoch = time.time() + lead
        self.pacing.dispenser.start(self.start_epoch)
        for k, client_id in enumerate(ids):
            self._send_share(client_id, k, self.count)
        _say(f"distributed: {self.pacing} over {self.count} workers (worker k takes slots k, k+{self.count}, ...), "
             f"start in {lead:.1f} s")
        self.watcher = gevent.spawn(self._watch)

    def on_stopping(self, **_kw):
        self.stopped = self.stopped or time.time()

    def _send_share(self, client_id, k, workers, late=False):
        self.shares[client_id] = {"worker": k, "workers": workers, "sent": 0, "late_ms": [], "done": False,
                                  "lost_at": None, "joined_late": late}
        self.runner.send_message(_message(self.pacing, "share"),
                                 {"worker": k, "workers": workers, "start_epoch": self.start_epoch,
                                  "label": str(self.pacing)}, client_id=client_id)

    def on_worker_report(self, client_id, data, **_kw):
        report, share = data.get(_message(self.pacing, "report")), self.shares.get(client_id)
        if report is None or share is None:
            return
        share["sent"] = report["sent"]
        share["late_ms"].extend(report["late_ms"])
        share["done"] = share["done"] or report["done"]
        share["stopped_at"] = report.get("stopped_at")
        self._maybe_quit()

    def _watch(self):
        while True:
            gevent.sleep(WATCH_EVERY_S)
            for client_id, share in self.shares.items():
                client = self.runner.clients.get(client_id)
                if share["lost_at"] is None and not share["done"] and client is not None \
                        and client.state == STATE_MISSING:
                    share["lost_at"] = time.time()
                    _say(f"worker {share['worker']} went missing: the slots it owes are counted as lost")
            for client_id in self.active_clients():
                if client_id not in self.shares:
                    index = self.runner.get_worker_index(client_id)
                    self._send_share(client_id, index, 0, late=True)
                    _say(f"a worker (index {index}) joined after the start: it gets no slots (the partition is fixed)")
            self._maybe_quit()

    def _maybe_quit(self):
        if self.pacing.requests is None or not self.shares:
            return
        if all(s["done"] or s["lost_at"] is not None or s["workers"] == 0 for s in self.shares.values()):
            gevent.spawn(self.runner.quit)

    def on_quit(self, **_kw):
        if self.watcher is not None:
            self.watcher.kill(block=False)
        if self.start_epoch is None:
            return
        if not self.pacing.open_loop:
            _say(f"{self.pacing}: {sum(s['sent'] for s in self.shares.values())} requests sent")
            return
        # Workers stop sending a moment after the master stops: slots due until the last of them stopped count.
        stops = [self.stopped or time.time(), *(s["stopped_at"] for s in self.shares.values() if s.get("stopped_at"))]
        _say(self.accounting(max(stops) - self.start_epoch))

    def accounting(self, elapsed_s: float) -> str:
        """Every slot owed (due by the stop; a count-bound run owes its whole count) is sent, lost with a worker
        that went missing (its unreported sends among them: nobody can tell those apart), or not sent at the stop."""
        owed_total = sent_total = lost_total = 0
        parts = []
        for share in sorted(self.shares.values(), key=lambda s: s["worker"]):
            if share["workers"] == 0:
                parts.append(f"worker {share['worker']} joined late: no slots")
                continue
            lost = share["lost_at"] is not None
            owed = (_share_total(self.pacing.requests, share) if self.pacing.requests is not None and lost
                    else _share_due(self.pacing.schedule, share, elapsed_s))
            owed_total, sent_total = owed_total + owed, sent_total + share["sent"]
            part = f"worker {share['worker']}: {share['sent']} sent"
            if lost:
                lost_total += max(0, owed - share["sent"])
                part += f", went missing owing {max(0, owed - share['sent'])}"
            parts.append(part)
        unsent = max(0, owed_total - sent_total - lost_total)
        late = [v for s in self.shares.values() for v in s["late_ms"]]
        return (f"{self.pacing}: {owed_total} slots fell due, {sent_total} sent, {lost_total} lost, {unsent} not sent "
                f"at the stop ({'; '.join(parts)}); {_lateness(late)}")


def _share_total(requests: int, share) -> int:
    k, w = share["worker"], share["workers"]
    return max(0, -(-(requests - k) // w))


def _share_due(schedule, share, elapsed_s: float) -> int:
    """Slots of worker k's share (k, k+W, ...) due within ``elapsed_s`` of the start."""
    due = schedule.due_by(elapsed_s)
    k, w = share["worker"], share["workers"]
    return max(0, -(-(due - k) // w))


class _Worker:
    """Waits for its share, sends it with the process's own (identical) lazy schedule, reports what it sent."""

    def __init__(self, pacing, environment):
        from burstbench.arrivals.lazy import StreamDispenser

        self.pacing, self.environment = pacing, environment
        self.dispenser_type = StreamDispenser
        self.has_share = Event()
        self.reported_late = 0
        self.done = False
        self.stopped_at = None
        pacing.ready = self.wait_for_share
        pacing.on_exhausted = self.on_exhausted
        environment.runner.register_message(_message(pacing, "share"), self.on_share)
        environment.events.report_to_master.add_listener(self.on_report)
        environment.events.test_stopping.add_listener(self.on_stopping)

    def on_stopping(self, **_kw):
        self.stopped_at = self.stopped_at or time.time()

    def on_share(self, environment, msg, **_kw):
        data = msg.data
        if data["label"] != str(self.pacing):
            _say(f"worker: the master's process is {data['label']!r}, this worker's {str(self.pacing)!r}: run the "
                 "same locustfile everywhere; this worker sends nothing")
            data = {**data, "workers": 0}
        dispenser = self.dispenser_type(self.pacing.schedule, data["worker"], data["workers"])
        dispenser.start(data["start_epoch"])
        self.pacing.dispenser = dispenser
        self.pacing.exhausted = False
        self.has_share.set()
        _say(f"worker {data['worker']} of {data['workers']}: slots {data['worker']}, "
             f"{data['worker']} + {data['workers']}, ... of {self.pacing}")

    def wait_for_share(self, user) -> None:
        if not self.has_share.wait(timeout=SHARE_WAIT_S):
            from locust.exception import StopUser

            _say(f"worker: no share of the schedule from the master after {SHARE_WAIT_S:.0f} s; stopping this user")
            raise StopUser()

    def on_exhausted(self):
        self.done = True
        gevent.spawn(self.environment.runner._send_stats)  # tell the master now, not at the next report

    def on_report(self, client_id, data, **_kw):
        late = self.pacing.late_ms
        data[_message(self.pacing, "report")] = {"sent": self.pacing.sent, "late_ms": late[self.reported_late:].tolist(),
                                                "done": self.done, "stopped_at": self.stopped_at}
        self.reported_late = len(late)
