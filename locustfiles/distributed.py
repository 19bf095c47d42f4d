"""Distributed runs that keep the arrival process: one schedule, partitioned across Locust workers.

Independent per-worker schedules would superpose towards Poisson and silently lose the
burstiness asked for. So the master draws the one schedule from the seed and, when the test
starts, sends worker k of W its slots k, k+W, k+2W, ... with one common start epoch. Epochs are
wall-clock time, so workers on other machines need clocks kept in step (NTP, chrony), as any
shared schedule does; each worker reports how long the master's message took to reach it
(``message_delay_ms``), an upper bound on skew plus latency that shows a badly set clock.
Workers send their rows with their Locust stats reports, so the master's merged
``requests.csv`` and Locust's aggregated counts travel together and agree.

What happens to slots when workers come and go:

* a worker that connects after the start gets no slots (the partition is fixed at the start
  epoch); Locust moves some users onto it, and a user stopped on an older worker gives its
  claimed, unsent slot back to that worker's dispenser, so nothing is dropped;
* a worker that quits or stops answering heartbeats: the master counts its slots that never came
  back as rows as ``lost_slots`` (they may or may not have been sent; a request whose row was
  lost cannot be told apart from one never sent) and the run ends without them;
* Ctrl-C on the master: every worker stops, reports its last rows (requests cut off mid-flight
  are ``interrupted`` rows) and acknowledges, then the master quits.
"""
from __future__ import annotations

import gc
import logging
import time
from dataclasses import dataclass, field

import gevent
from gevent.event import Event
from locust.exception import StopUser
from locust.runners import STATE_MISSING

from burstbench.arrivals import SlotDispenser

PARTITION = "burstbench_partition"
STOP = "burstbench_stop"
REPORT_KEY = "burstbench"
START_LEAD_S = 1.0      # the start epoch is this far past the users' spawn, so every worker is ready first
STOP_FLUSH_S = 15.0     # how long Ctrl-C waits for workers' last rows
WATCH_EVERY_S = 0.5
PARTITION_WAIT_S = 60.0

log = logging.getLogger("burstbench")


def partition(offsets_s, count: int) -> list[tuple[list[int], list[float]]]:
    """Worker k of ``count`` gets slots k, k+count, ...: (indices, offsets) per worker."""
    n = len(offsets_s)
    return [(list(range(k, n, count)), [float(x) for x in offsets_s[k::count]]) for k in range(count)]


@dataclass
class WorkerShare:
    """The master's account of one worker."""

    client_id: str
    index: int
    share: int
    received: set = field(default_factory=set)
    started: int = 0
    message_delay_ms: float | None = None
    joined_late: bool = False
    lost_slots: int = 0
    lost: bool = False
    stopped: bool = False

    @property
    def done(self) -> bool:
        return len(self.received) >= self.share

    def describe(self) -> dict:
        return {"worker": self.index, "client_id": self.client_id, "slots": self.share, "rows": len(self.received),
                "sent": self.started, "lost_slots": self.lost_slots, "lost": self.lost, "joined_late": self.joined_late,
                "message_delay_ms": self.message_delay_ms}


class Coordinator:
    """On the master: partition the schedule, merge rows, notice workers that join late or drop out."""

    def __init__(self, run, runner):
        self.run = run
        self.runner = runner
        self.workers: dict[str, WorkerShare] = {}
        self.count = 0
        self.start_epoch: float | None = None
        self.stop_requested = False
        self.watcher = None
        runner.environment.events.worker_report.add_listener(self.on_worker_report)

    def active_clients(self) -> list[str]:
        clients = self.runner.clients
        return sorted((c.id for c in clients.ready + clients.running + clients.spawning),
                      key=self.runner.get_worker_index)

    def on_test_start(self) -> float:
        """Partition over the workers connected now; return the common start epoch."""
        ids = self.active_clients()
        users = self.runner.environment.parsed_options.num_users or 0
        if users < len(ids):
            log.error("burstbench: -u %d users for %d workers: each worker needs at least one user, or its slots "
                      "would never be sent; stopping", users, len(ids))
            self.run.environment.process_exit_code = 2
            gevent.spawn(self.runner.quit)
        self.count = len(ids)
        # Workers spawn their users at --spawn-rate: a schedule starting before they exist starts late.
        options = self.runner.environment.parsed_options
        lead_s = START_LEAD_S + users / max(options.spawn_rate or users or 1, 1e-9)
        self.start_epoch = time.time() + lead_s
        for k, (client_id, (indices, offsets)) in enumerate(zip(ids, partition(self.run.schedule.offsets_s, len(ids)))):
            self.workers[client_id] = WorkerShare(client_id=client_id, index=k, share=len(indices))
            self._send_partition(client_id, k, indices, offsets)
        print(f"[burstbench] distributed: {len(self.run.schedule)} slots over {self.count} workers "
              f"(worker k takes slots k, k+{self.count}, ...), start in {lead_s:.1f} s", flush=True)
        self.watcher = gevent.spawn(self._watch)
        return self.start_epoch

    def _send_partition(self, client_id, k, indices, offsets):
        self.runner.send_message(PARTITION, {"worker": k, "workers": self.count, "start_epoch": self.start_epoch,
                                             "master_now": time.time(), "indices": indices, "offsets_s": offsets},
                                 client_id=client_id)

    def on_worker_report(self, client_id: str, data: dict, **_kwargs) -> None:
        report = data.get(REPORT_KEY)
        share = self.workers.get(client_id)
        if report is None or share is None:
            return
        for row in report["rows"]:
            share.received.add(row["request_index"])
            self.run.rows.record(row)
            self.run.lateness_ms.append(row["lateness_ms"])
            if row["ok"]:
                self.run.latencies_ms.append(row["latency_ms"])
                if row.get("ttft_ms", "") != "":
                    self.run.ttft_ms.append(row["ttft_ms"])
        self.run.worker_samples.extend(report.get("generator", []))
        share.started = report["started"]
        share.message_delay_ms = report.get("message_delay_ms")
        share.stopped = share.stopped or report.get("stopped", False)
        self.run.rows.started = sum(w.started for w in self.workers.values())
        self._maybe_finish()

    def _watch(self):
        while True:
            gevent.sleep(WATCH_EVERY_S)
            clients = self.runner.clients
            for client_id, share in self.workers.items():
                client = clients.get(client_id)
                if (share.lost or share.done or share.stopped or self.stop_requested
                        or (client is not None and client.state != STATE_MISSING)):
                    continue
                share.lost = True
                share.lost_slots = share.share - len(share.received)
                print(f"[burstbench] worker {share.index} left before sending its share: {share.lost_slots} of its "
                      f"{share.share} slots never came back as rows (counted as lost_slots)", flush=True)
            for client_id in self.active_clients():
                if client_id not in self.workers:  # joined after the start: no slots, its users stop at once
                    index = self.runner.get_worker_index(client_id)
                    self.workers[client_id] = WorkerShare(client_id=client_id, index=index, share=0, joined_late=True)
                    self._send_partition(client_id, index, [], [])
                    print(f"[burstbench] a worker (index {index}) joined after the start: it gets no slots "
                          "(the partition is fixed at the start epoch)", flush=True)
            self._maybe_finish()

    @property
    def lost_slots(self) -> int:
        return sum(w.lost_slots for w in self.workers.values())

    def _maybe_finish(self):
        if self.run.rows.rows + self.lost_slots >= self.run.plan.requests and self.workers:
            self.run.request_quit()

    def stop_workers(self) -> None:
        """Ctrl-C on the master: workers stop and flush their rows; quit once all said so (or after a deadline)."""
        if self.stop_requested:
            return
        self.stop_requested = True
        for client_id in self.workers:
            self.runner.send_message(STOP, None, client_id=client_id)

        def wait_then_quit():
            deadline = time.monotonic() + STOP_FLUSH_S
            while time.monotonic() < deadline:
                if all(w.stopped or w.lost or w.client_id not in self.runner.clients for w in self.workers.values()):
                    break
                gevent.sleep(0.1)
            self.runner.quit()

        gevent.spawn(wait_then_quit)

    def describe(self) -> dict:
        return {"workers": self.count, "start_epoch": self.start_epoch, "partition": "worker k takes slots k, k+W, ...",
                "lost_slots": self.lost_slots,
                "per_worker": [w.describe() for w in sorted(self.workers.values(), key=lambda w: w.index)]}


class WorkerSide:
    """On a worker: wait for its share of the schedule, send it, ship rows with each stats report."""

    def __init__(self, environment, build_run):
        self.environment = environment
        self.build_run = build_run  # () -> Run, once the master's options have arrived (at test start)
        self.run = None
        self.partition: dict | None = None
        self.ready = Event()
        self.stopping = False
        self.message_delay_ms = None
        self.samples_sent = 0
        runner = environment.runner
        runner.register_message(PARTITION, self.on_partition)
        runner.register_message(STOP, lambda **_kw: gevent.spawn(self.stop_and_flush))
        environment.events.report_to_master.add_listener(self.on_report)
        environment.events.test_start.add_listener(self.on_test_start)

    def on_partition(self, environment, msg, **_kwargs):
        self.message_delay_ms = round((time.time() - msg.data["master_now"]) * 1000, 3)
        self.partition = msg.data
        self._maybe_ready()

    def on_test_start(self, **_kwargs):
        if self.run is None:
            self.run = self.build_run()
        self._maybe_ready()

    def _maybe_ready(self):
        if self.run is None or self.partition is None or self.ready.is_set():
            return
        p = self.partition
        gc.collect()
        gc.freeze()  # as core.freeze_setup_garbage: no full collection of set-up objects on the request path
        dispenser = SlotDispenser.for_slots(p["indices"], p["offsets_s"])
        dispenser.start(p["start_epoch"])
        self.run.use_share(dispenser, worker=p["worker"], on_done=self.flush)
        self.pacing = self.run.arrival_wait  # the precise dispatcher, as in a single process
        self.ready.set()
        print(f"[burstbench] worker {p['worker']} of {p['workers']}: {dispenser.total} slots, "
              f"the master's message took {self.message_delay_ms:.1f} ms", flush=True)

    def wait_time(self, user) -> float:
        if not self.ready.wait(timeout=PARTITION_WAIT_S):
            log.error("burstbench: no share of the schedule from the master after %.0f s; stopping this user",
                      PARTITION_WAIT_S)
            raise StopUser()
        if self.stopping:
            raise StopUser()
        return self.pacing(user)

    def on_report(self, client_id, data, **_kwargs):
        if self.run is None:
            return
        if self.stopping:
            self.run.monitor.stop()  # a last sample, in this (last) report
        samples = self.run.monitor.samples
        new_samples, self.samples_sent = samples[self.samples_sent:], len(samples)
        data[REPORT_KEY] = {"rows": self.run.rows.take(), "started": self.run.rows.started, "generator": new_samples,
                            "stopped": self.stopping, "message_delay_ms": self.message_delay_ms}

    def flush(self):
        """Send rows (and Locust's stats with them) now rather than at the next 3-second report."""
        gevent.spawn(self.environment.runner._send_stats)

    def stop_and_flush(self):
        self.stopping = True
        self.environment.runner.stop()  # users stop; a request cut off mid-flight is an ``interrupted`` row
        self.environment.runner._send_stats()

    def interrupt(self):
        """Ctrl-C on this worker: stop, hand the master every row, then leave."""
        if self.stopping:
            return
        print("[burstbench] worker interrupted: stopping, sending the last rows to the master", flush=True)
        self.stop_and_flush()
        gevent.spawn(self.environment.runner.quit)
