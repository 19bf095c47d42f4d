"""What every burstbench locustfile shares: flags, the validated plan, pacing, rows, run.json, progress, Ctrl-C.

A locustfile supplies a *target*, the one thing that differs between services: how a
request is built from a text and how its response is judged. ``install`` wires the rest
into Locust's events:

    class MyUser(PacedUser):
        host = "http://127.0.0.1:8000"

    install(MyUser, build_target=lambda options: MyTarget(...))

Bad configuration stops before any traffic, and before the run folder exists, with one
line ``burstbench: <flag> ...`` on stderr.
"""
import locust  # noqa: F401  (first: gevent's monkey-patching must precede other imports)
from locust import FastHttpUser, HttpUser, events
from locust.exception import StopUser
from locust.stats import PERCENTILES_TO_REPORT, StatsCSVFileWriter

import gc
import json
import os
import signal
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol
from urllib.parse import urlsplit

import gevent
import gevent.event
import numpy as np

from burstbench.arrivals import ArrivalSchedule, SlotDispenser, make_distribution, scenario, think_time
from burstbench.arrivals.dispatch import MODES as DISPATCH_MODES, Dispatcher, check_mode
from burstbench.arrivals.schedule import check_requests, check_seed
from burstbench.arrivals.traces import Trace
from burstbench.locustfiles.endpoint import redact_argv
from burstbench.locustfiles.flags import number
from burstbench.locustfiles.progress import progress_line
from burstbench.locustfiles.distributed import Coordinator, WorkerSide
from burstbench.locustfiles import stamps
from burstbench.locustfiles.self_monitor import GENERATOR_FILE, GeneratorMonitor, generator_verdict, write_csv
from burstbench.locustfiles.recording import FLUSH_EVERY_S, RowBuffer, RowRecorder, check_run_dir, make_run_dir
from burstbench.locustfiles.run_info import git_commit, machine, package_versions
from burstbench.locustfiles.texts import DEFAULT_COLUMN, PAPER_SUBSET, TextSubset, load_texts

PACINGS = ("arrival", "think")
REACHABLE_TIMEOUT_S = 3.0
_EPOCH_OFFSET_S = time.time() - time.perf_counter()  # the clock of closed-loop rows (no dispatcher)
START_LEAD_S = 0.2      # a single process's schedule starts this long after its users are spawned and warmed
MAX_SPAWN_LEAD_S = 2.0  # ... waiting at most this long for a slow spawn (-r): later users join a running schedule
REWARM_IDLE_S = 1.0     # a connection idle this long is checked (and reopened if closed) before the next slot
BUILD_LEAD_S = 0.0003   # a stamped sender wakes this much (plus the dispatcher's lead) before its slot to
                        # build the request; the socket holds the write until the slot (stamps.StampedSocket)


def add_run_arguments(parser, dataset_help: str) -> None:
    g = parser.add_argument_group("burstbench", "arrival process, pacing, texts and results")
    g.add_argument("--scenario", default="steady",
                   help="steady (exponential), moderate (gamma 1.2) or extreme (gamma 0.8); default steady")
    g.add_argument("--arrival", default=None, help="exponential or gamma: overrides the scenario's process")
    g.add_argument("--shape", type=str, default=None, help="gamma shape (> 0); < 1 is burstier than Poisson")
    g.add_argument("--mean", type=str, default=None, help="mean gap between requests in seconds (> 0); default 2")
    g.add_argument("--trace", default=None,
                   help="replay the arrival times in this CSV/JSONL/Parquet file instead of a generated process "
                        "(--mean rescales it to that mean gap)")
    g.add_argument("--trace-column", default="timestamp",
                   help="the trace's timestamp column: seconds, or date-times (default: timestamp)")
    g.add_argument("--pacing", default="arrival",
                   help="arrival (default: a schedule fixed ahead) or think (the paper's closed loop)")
    g.add_argument("--requests", type=str, default=None,
                   help="requests to send, then stop (>= 1; default 1000, or every timestamp of --trace)")
    g.add_argument("--seed", type=str, default="0", help="seed of the schedule and the texts (integer >= 0)")
    g.add_argument("--dataset", default="bundled", help=dataset_help)
    g.add_argument("--text-column", default=DEFAULT_COLUMN, help="the dataset's column of texts (default: text)")
    g.add_argument("--subset", type=str, default=str(PAPER_SUBSET), help="size of the seeded text subset")
    g.add_argument("--results-dir", default="results", help="where the run folder is created")
    g.add_argument("--run-name", default=None, help="suffix of the run folder (default: the scenario)")
    g.add_argument("--run-dir", default=None,
                   help="the exact run folder to write (must not exist yet, or be empty); default "
                        "<results-dir>/<UTC time>-<run-name>. Harnesses pass it so they never guess the folder")
    g.add_argument("--request-timeout", type=str, default="30", help="seconds before a request counts as timed out")
    g.add_argument("--progress-every", type=str, default="10", help="seconds between progress lines (> 0)")
    g.add_argument("--dispatcher", default="auto",
                   help=f"how arrival-paced senders wait for their slot: auto (default: timerfd on Linux, else spin), "
                        f"{', '.join(DISPATCH_MODES)} (sleep = gevent.sleep, millisecond-coarse; see arrivals/dispatch.py)")


@dataclass(frozen=True)
class RunPlan:
    """Validated flags: built before any traffic, so a bad value stops the run with one clear line."""

    name: str
    distribution: object   # an arrival distribution, or the Trace replayed
    pacing: str
    requests: int
    seed: int
    dataset: str
    text_column: str
    subset: int
    results_dir: Path
    request_timeout_s: float
    progress_every_s: float
    trace: Trace | None = None
    dispatcher: str = "timerfd"
    run_dir: Path | None = None

    @classmethod
    def from_options(cls, o, role: str = "local") -> "RunPlan":
        """``role`` is local, master or worker; a worker gets its slots from the master, never from a trace file."""
        mean = None if o.mean is None else number("--mean", o.mean, float, "a number > 0", lambda v: 0 < v < float("inf"))
        shape = None if o.shape is None else number("--shape", o.shape, float, "a number > 0", lambda v: 0 < v < float("inf"))
        trace = None
        if o.trace is not None:
            if o.arrival is not None or shape is not None:
                raise ValueError("--trace replays a file's arrival times: it cannot be combined with --arrival or --shape")
            if role != "worker":
                trace = Trace.load(o.trace, o.trace_column, mean)
            dist, name = trace, f"trace-{Path(o.trace).stem}"
        elif o.arrival is None:
            if shape is not None:
                raise ValueError("--shape needs --arrival gamma (the scenarios fix their own shape)")
            dist, name = scenario(o.scenario, mean), o.scenario
        else:
            dist = make_distribution(o.arrival, 2.0 if mean is None else mean, shape)
            name = f"{dist.kind}" + (f"-a{dist.shape:g}" if dist.kind == "gamma" else "")
        if o.pacing not in PACINGS:
            raise ValueError(f"--pacing must be one of {', '.join(PACINGS)} (got {o.pacing!r})")
        if o.pacing == "think" and trace is not None:
            raise ValueError("--pacing think cannot replay --trace: a trace is a schedule of arrival times (use arrival)")
        if o.pacing == "think" and role != "local":
            raise ValueError("--pacing think is the paper's single-process closed loop; distributed runs "
                             "(--master/--worker/--processes) use --pacing arrival, one schedule split across workers")
        if o.requests is None:
            requests = len(trace) if trace is not None else 1000
        else:
            requests = number("--requests", o.requests, int, "an integer >= 1", lambda v: check_requests(v) > 0)
            if trace is not None and requests > len(trace):
                raise ValueError(f"--requests must be in [1, {len(trace)}] for --trace {o.trace} "
                                 f"(it has {len(trace)} timestamps; got {requests})")
        return cls(
            name=o.run_name or name,
            distribution=dist,
            pacing=o.pacing,
            requests=requests,
            seed=number("--seed", o.seed, int, "an integer >= 0", lambda v: check_seed(v) >= 0),
            dataset=o.dataset,
            text_column=o.text_column,
            subset=number("--subset", o.subset, int, "an integer >= 1", lambda v: v >= 1),
            results_dir=Path(o.results_dir),
            request_timeout_s=number("--request-timeout", o.request_timeout, float, "a number of seconds in (0, 3600]",
                                     lambda v: 0 < v <= 3600),
            progress_every_s=number("--progress-every", o.progress_every, float, "a number of seconds > 0",
                                    lambda v: 0 < v < float("inf")),
            trace=trace,
            dispatcher=check_mode(o.dispatcher),
            run_dir=None if getattr(o, "run_dir", None) is None else check_run_dir(Path(o.run_dir)),
        )


class Target(Protocol):
    """What a locustfile says about its service: how to send texts, how to judge the answer."""

    endpoint: str      # run.json "endpoint" and Locust's request name
    batch_size: int    # texts per request

    def request(self, user, texts: list[str], timeout_s: float):
        """Locust's ``catch_response=True`` context manager for one request carrying ``texts``."""

    def judge(self, resp) -> tuple[bool, str, str, dict]:
        """(ok, failure kind, failure text, row fields such as batch_size or label)."""

    def describe(self) -> dict:
        """run.json "request": method, path, payload... never a secret."""

    def target_info(self, host: str) -> dict:
        """run.json "target": what the service says it serves (model, variant), recorded, never required."""

    def scrub(self, text: str) -> str:
        """``text`` with any secret this target sends replaced."""


def check_reachable(host: str | None, timeout_s: float = REACHABLE_TIMEOUT_S) -> None:
    """A TCP connect to ``--host`` before any traffic: a wrong port fails in one line, not in 1,000 rows."""
    if not host:
        raise ValueError("--host is required: the service's base URL, e.g. http://127.0.0.1:8000")
    parts = urlsplit(host)
    try:
        port = parts.port
    except ValueError:
        port = -1
    if parts.scheme not in ("http", "https") or not parts.hostname or port == -1:
        raise ValueError(f"--host must be an http:// or https:// URL with an optional port (got {host!r})")
    port = port or (443 if parts.scheme == "https" else 80)
    try:
        socket.create_connection((parts.hostname, port), timeout=timeout_s).close()
    except OSError as err:
        raise ValueError(f"--host {host} is not reachable ({type(err).__name__}: {err}); "
                         "is the service running on that address and port?") from None


class Run:
    """Everything one test run owns: plan, schedule, texts, rows, Locust outputs, run.json.

    ``role`` is ``local`` (one process sends and records), ``master`` (workers send; their rows
    are merged here: see ``distributed``) or ``worker`` (sends its share, keeps no folder).
    """

    def __init__(self, environment, plan: RunPlan, target: Target, texts: TextSubset, host: str,
                 role: str = "local"):
        self.environment = environment
        self.plan = plan
        self.target = target
        self.texts = texts
        self.host = host
        self.role = role
        self.worker = 0
        self.share = plan.requests
        self.on_share_done = None
        opts = environment.parsed_options
        self.dispenser = None
        self.schedule = None
        self.coordinator = None
        self.next_think_index = 0
        self.latencies_ms: list[float] = []
        self.lateness_ms: list[float] = []   # the master's: every worker's rows' lateness (as reported)
        self.started_epoch: float | None = None
        self.quit_requested = False
        self.interrupted = False
        self.progress_greenlet = None
        self.finished = None
        self.stamped = False      # set by install: FastHttpUser over plain HTTP has socket-level stamps
        self.dispatcher = Dispatcher(plan.dispatcher) if plan.pacing == "arrival" else None
        self.monitor = GeneratorMonitor()      # this load process's CPU, loop delay and lateness
        self.worker_samples: list[dict] = []   # the master's: every worker's samples, as reported
        self.generator_verdict: list[str] = []
        if role == "worker":  # its slots and start epoch come from the master (``use_share``)
            self.run_dir = None
            self.rows = RowBuffer()
            return
        if plan.pacing == "arrival":
            self.schedule = (plan.trace.schedule(plan.requests) if plan.trace is not None
                             else ArrivalSchedule.draw(plan.distribution, plan.requests, plan.seed))
            self.dispenser = SlotDispenser(self.schedule)
            self.wait_time = lambda user: self.arrival_wait(user)  # a plain function binds as a method
        else:
            self.wait_time = think_time(plan.distribution, plan.seed)
        if role == "master":
            self.coordinator = Coordinator(self, environment.runner)
        self.run_dir = make_run_dir(plan.results_dir, plan.name, exact=plan.run_dir)
        self.rows = RowRecorder(self.run_dir)
        self.flush_greenlet = gevent.spawn(self._flush_loop)

        # Locust's own outputs go into the run folder unless the user chose elsewhere.
        self.csv_writer = None
        self.csv_greenlet = None
        if not opts.csv_prefix:
            self.csv_writer = StatsCSVFileWriter(environment, PERCENTILES_TO_REPORT, str(self.run_dir / "locust"),
                                                 opts.stats_history_enabled)
            self.csv_greenlet = gevent.spawn(self.csv_writer.stats_writer)
        if not opts.html_file:
            opts.html_file = str(self.run_dir / "locust.html")
        self.target_info = target.target_info(host)
        self.write_run_json(status="running")

    def use_share(self, dispenser: SlotDispenser, worker: int, on_done) -> None:
        """A worker's slots from the master; ``on_done`` runs when the last of them has a row."""
        self.dispenser = dispenser
        self.worker = worker
        self.monitor.worker = worker
        self.monitor.start()
        self.share = dispenser.total
        self.on_share_done = on_done
        if self.share == 0:
            on_done()

    def arrival_wait(self, user) -> float:
        """Locust's wait (a stopping user is killed here): claim the next slot, sleep to just before it.

        The last 2 ms are waited in ``send`` by the dispatcher, so that nothing runs between the
        precise wake-up and the request (Locust's own ``gevent.sleep(0)`` after a wait would).
        """
        slot = self.dispenser.claim()
        user.arrival_slot = slot
        if slot is not None:
            due = self.dispatcher.to_perf(slot.due_epoch)
            user.claim_late_s = max(0.0, time.perf_counter() - due)  # no user was free when it fell due
            self.dispatcher.sleep_coarse(due)
            if self.stamped and time.perf_counter() - getattr(user, "burstbench_sent_s", 0.0) > REWARM_IDLE_S:
                try:  # servers close idle keep-alive connections (uvicorn after 5 s): reopen before the slot
                    stamps.warm_connection(user)
                except OSError:
                    pass  # the request will record the failure
        return 0.0

    def request_quit(self) -> None:
        if not self.quit_requested:
            self.quit_requested = True
            gevent.spawn(self.environment.runner.quit)

    # -- sending ------------------------------------------------------------------------
    def texts_for(self, index: int) -> tuple[int, list[str]]:
        """Request ``index`` carries texts index*k ... index*k+k-1 of the subset (k = the batch size)."""
        k = self.target.batch_size
        picked = [self.texts.for_request(index * k + j) for j in range(k)]
        return picked[0][0], [text for _, text in picked]

    def send(self, user) -> None:
        claim_late_ms: object = ""
        if self.plan.pacing == "arrival":
            slot = user.arrival_slot
            if slot is None:
                raise StopUser()
            index, scheduled = slot.index, slot.due_epoch
            claim_late_ms = round(getattr(user, "claim_late_s", 0.0) * 1000, 3)
            due = self.dispatcher.to_perf(scheduled)
            if self.stamped and self.dispatcher.mode != "sleep":  # sleep: gevent's own timing, for comparison
                # Wake early and build the request; the socket holds the first write until the slot.
                self.dispatcher.wake_before(due - BUILD_LEAD_S)
                gate = due
            else:
                self.dispatcher.wait_until(due)
                gate = None
            user.arrival_slot = None  # only now: a user stopped while waiting gives the slot back (on_stop)
            think_s = ""
        else:
            if self.next_think_index >= self.plan.requests:
                raise StopUser()
            index = self.next_think_index
            self.next_think_index += 1
            scheduled, think_s, gate = _perf_to_epoch(time.perf_counter()), round(getattr(user, "last_think_s", 0.0), 6), None
        text_index, texts = self.texts_for(index)
        row = {"request_index": index, "user": id(user) % 100_000, "scheduled_epoch": f"{scheduled:.6f}",
               "text_index": text_index, "text_chars": sum(len(t) for t in texts), "think_s": think_s,
               "batch_size": "", "tokens": "", "truncated": "", "label": "", "status": 0, "worker": self.worker,
               "claim_late_ms": claim_late_ms}
        user.burstbench_request_index = index  # a target may label the request with it (fixed_body does)
        stamp = stamps.begin(gate, self.dispatcher.others_due_before if gate is not None else None) \
            if self.stamped else None
        t0 = user.burstbench_sent_s = time.perf_counter()
        self.rows.mark_started()
        try:
            with self.target.request(user, texts, self.plan.request_timeout_s) as resp:
                ok, kind, failure, fields = self.target.judge(resp)
                failure = self.target.scrub(failure)
                if ok:
                    resp.success()
                    row.update(fields)
                else:
                    resp.failure(f"{kind}: {failure}")
                row.update(status=resp.status_code or 0, ok=int(ok), failure_kind=kind, failure_text=failure)
                done = time.perf_counter()
        except BaseException as err:  # killed mid-request (Ctrl-C, shutdown): still one row per request sent
            done = time.perf_counter()
            row.update(ok=0, failure_kind="interrupted",
                       failure_text=self.target.scrub(f"{type(err).__name__}: {err}")[:300])
            self._record(row, scheduled, t0, done, stamp)
            raise
        self._record(row, scheduled, t0, done, stamp)
        if self.rows.rows >= self.share:
            if self.role == "worker":
                if not self.quit_requested:
                    self.quit_requested = True
                    self.on_share_done()
            else:
                self.request_quit()

    def _record(self, row, scheduled, t0, done, stamp):
        """Times on one clock (see ``clocks`` in run.json): socket stamps where there are, else the client's."""
        if stamp is not None:
            stamps.end()
        to_epoch = self.dispatcher.to_epoch if self.dispatcher is not None else _perf_to_epoch
        # Lateness from the first thing put on the wire (a SYN when the connection had to be opened);
        # latency from the request's write (or that SYN) to the answer's last read.
        sent = stamp.first_action_s(t0) if stamp is not None else t0
        answered = stamp.last_recv_s if stamp is not None and stamp.last_recv_s is not None else done
        latency_ms = (answered - sent) * 1000
        sent_epoch = to_epoch(sent)
        row.update(sent_epoch=f"{sent_epoch:.6f}", lateness_ms=round((sent_epoch - scheduled) * 1000, 3),
                   latency_ms=round(latency_ms, 3), e2e_latency_ms=round((done - t0) * 1000, 3),
                   corrected_latency_ms=round((to_epoch(answered) - scheduled) * 1000, 3),
                   new_connection=int(stamp.connected) if stamp is not None else "")
        self.rows.record(row)
        self.monitor.note_send(row["lateness_ms"], bool(row["claim_late_ms"]))
        if row["ok"]:
            self.latencies_ms.append(latency_ms)

    # -- progress and bookkeeping -------------------------------------------------------
    def interrupt(self):
        """Ctrl-C: stop sending, keep every row. A second Ctrl-C leaves at once (rows are line-buffered)."""
        if self.interrupted:
            os._exit(130)
        self.interrupted = True
        print("[burstbench] interrupted: stopping; what was measured is kept (Ctrl-C again to leave now)",
              file=sys.stderr, flush=True)
        self.environment.process_exit_code = 130
        if self.coordinator is not None:
            self.coordinator.stop_workers()  # workers flush their last rows, then the master quits
        else:
            gevent.spawn(self.environment.runner.quit)

    def on_test_start(self):
        freeze_setup_garbage()
        if self.coordinator is None:  # a master sends nothing: its workers watch themselves
            self.monitor.start()
        self.started_epoch = time.time()
        if self.coordinator is not None:
            self.started_epoch = self.coordinator.on_test_start()
        if self.dispenser is not None:
            if self.coordinator is None:  # the first slot after every user is up with its connection open
                o = self.environment.parsed_options
                users = o.num_users or 1
                spawn_s = min(MAX_SPAWN_LEAD_S, users / max(o.spawn_rate or users, 1e-9))
                self.dispenser.start(self.started_epoch + START_LEAD_S + spawn_s)
            else:
                self.dispenser.start(self.started_epoch)
        self.progress_greenlet = gevent.spawn(self._progress_loop)

    def _flush_loop(self):
        while True:
            gevent.sleep(FLUSH_EVERY_S)
            self.rows.flush()

    def _progress_loop(self):
        while True:
            gevent.sleep(self.plan.progress_every_s)
            print(self.progress(), file=sys.stderr, flush=True)

    def progress(self) -> str:
        now = time.time()
        elapsed = now - (self.started_epoch or now)
        done, total = self.rows.rows, self.plan.requests
        if self.dispenser is not None and self.dispenser.start_epoch is not None:
            eta = max(0.0, self.dispenser.due_epoch(self.dispenser.total - 1) - now)
        else:
            eta = (total - done) * elapsed / done if done else None
        return progress_line(done, total, self.rows.ok, self.rows.failed, elapsed, eta)

    def finish(self):
        # On SIGTERM Locust's shutdown runs twice (its signal handler and its main greenlet), firing
        # ``quit`` twice: the second call waits for the first instead of racing it on closed files.
        if self.finished is not None:
            self.finished.wait(timeout=60)
            return
        self.finished = gevent.event.Event()
        try:
            self._finish()
        finally:
            self.finished.set()

    def _finish(self):
        if self.progress_greenlet is not None:
            self.progress_greenlet.kill(block=False)
        self.flush_greenlet.kill(block=False)
        self.rows.close()
        self._write_generator_samples()
        if self.csv_writer is not None:
            self.csv_greenlet.kill(block=True)
            self._final_locust_csv()
        counts = self.rows.counts()
        complete = counts["rows"] == self.plan.requests
        self.write_run_json(status="complete" if complete else "interrupted")
        print(self.progress(), file=sys.stderr)
        print(f"[burstbench] {self.summary_line()}", file=sys.stderr)
        for line in self.generator_verdict:
            print(f"[burstbench] {line}", file=sys.stderr)
        print(f"[burstbench] results: {self.run_dir}", file=sys.stderr, flush=True)

    def _write_generator_samples(self) -> None:
        """generator.csv: this process's samples (local) or every worker's (master), and the verdict on them."""
        if self.coordinator is None:
            self.monitor.stop()
            samples = self.monitor.samples
        else:
            samples = self.worker_samples
        if not samples:
            return
        write_csv(samples, self.run_dir / GENERATOR_FILE)
        lateness = self.sent_lateness_ms()
        p99 = float(np.percentile(lateness, 99)) if len(lateness) else float("nan")
        self.generator_verdict = generator_verdict(samples, p99, busy_wait=self.plan.dispatcher == "spin")

    def sent_lateness_ms(self) -> np.ndarray:
        """Every row's lateness: noted by this process's monitor, or (master) reported by the workers."""
        return np.asarray(self.lateness_ms) if self.coordinator is not None else self.monitor.lateness_values_ms()

    def summary_line(self) -> str:
        c = self.rows.counts()
        line = f"sent {c['sent']}, ok {c['ok']}, failed {c['failed']} {c['failure_kinds'] or ''}".rstrip()
        if self.latencies_ms:
            p50, p95, p99 = np.percentile(self.latencies_ms, [50, 95, 99])
            line += f"; service latency p50 {p50:.1f} ms, p95 {p95:.1f} ms, p99 {p99:.1f} ms (exact, ok requests)"
        lateness = self.sent_lateness_ms()
        if len(lateness) and self.plan.pacing == "arrival":
            late50, late99 = np.percentile(lateness, [50, 99])
            line += f"; send lateness p50 {late50:.3f} ms, p99 {late99:.3f} ms"
        return line

    def _final_locust_csv(self):
        """Locust rewrites its CSVs every 2 s; write the final state so they match the rows."""
        w = self.csv_writer
        for handle, writer, write in (
            (w.requests_csv_filehandle, w.requests_csv_writer, w.requests_csv),
            (w.failures_csv_filehandle, w.failures_csv_writer, w.failures_csv),
            (w.exceptions_csv_filehandle, w.exceptions_csv_writer, w.exceptions_csv),
        ):
            handle.seek(0)
            handle.truncate()
            write(writer)
        w.close_files()

    def write_run_json(self, status: str):
        total = self.environment.stats.total
        counts = self.rows.counts()
        interrupted = counts["failure_kinds"].get("interrupted", 0)
        info = {
            "status": status,
            "run_dir": str(self.run_dir),
            "argv": [self.target.scrub(arg) for arg in redact_argv(sys.argv)],
            "scenario": self.plan.name,
            "distribution": self.plan.distribution.describe(),
            "pacing": self.plan.pacing,
            "users": self.environment.parsed_options.num_users,
            "spawn_rate": self.environment.parsed_options.spawn_rate,
            "requests_planned": self.plan.requests,
            "seed": self.plan.seed,
            "host": self.host,
            "endpoint": self.target.endpoint,
            "request": self.target.describe(),
            "request_timeout_s": self.plan.request_timeout_s,
            "texts": {**self.texts.describe(), "dataset_flag": self.plan.dataset, "text_column": self.plan.text_column,
                      "skipped": self.texts.skipped, "per_request": self.target.batch_size},
            "schedule": None if self.schedule is None else {
                "duration_s": self.schedule.duration_s,
                "start_epoch": self.dispenser.start_epoch,
            },
            "dispatcher": None if self.dispatcher is None else self.dispatcher.describe(),
            "clocks": {
                "scheduled_epoch": "the slot's due time: start epoch + drawn offset",
                "sent_epoch": "just before the request's first socket write (socket-stamped)" if self.stamped
                else "just before the HTTP client builds the request (client-stamped)",
                "latency_ms": "first socket write to the last socket read of the answer" if self.stamped
                else "from before the request is built to after the client has read the answer",
                "e2e_latency_ms": "from before the request is built to after the answer is judged",
                "stamped_at": "socket" if self.stamped else "client",
            },
            "started_epoch": self.started_epoch,
            "finished_epoch": time.time() if status != "running" else None,
            "distributed": None if self.coordinator is None else self.coordinator.describe(),
            "generator": {"file": GENERATOR_FILE, "verdict": self.generator_verdict,
                          "kept_up": not self.generator_verdict} if status != "running" else None,
            "counts": {
                **counts,
                "not_sent": self.plan.requests - counts["sent"],
                # a worker that left: its slots that never came back as rows (sent or not, nobody can tell)
                "lost_slots": 0 if self.coordinator is None else self.coordinator.lost_slots,
                "locust_requests": total.num_requests,
                "locust_failures": total.num_failures,
                # Locust never records a request killed mid-flight; our rows do, as "interrupted".
                "consistent": counts["rows"] == counts["sent"] == counts["ok"] + counts["failed"]
                and total.num_requests == counts["rows"] - interrupted,
            },
            "target": self.target_info,
            "versions": package_versions(),
            "git": git_commit(),
            "machine": machine(),
            "files": {"rows": "requests.csv", "locust_csv_prefix": "locust", "locust_html": "locust.html"},
        }
        (self.run_dir / "run.json").write_text(json.dumps(info, indent=2, default=str) + "\n")


def _perf_to_epoch(perf_s: float) -> float:
    return perf_s + _EPOCH_OFFSET_S


def freeze_setup_garbage() -> None:
    """Move set-up objects (imports, texts, the schedule) out of the collector's reach.

    A full collection of them took 48-72 ms on the request path, near request 330 of every run;
    frozen, later collections only walk what the run itself allocates.
    """
    gc.collect()
    gc.freeze()


def _send(user) -> None:
    user.burstbench_run.send(user)


class _Paced:
    """Pacing and recording shared by both HTTP clients (Locust collects ``tasks`` from the class)."""

    burstbench_run: Run | None = None
    tasks = [_send]

    def wait_time(self):  # replaced by the run's pacing at init
        return 0.0

    def on_start(self):
        run = self.burstbench_run
        if not getattr(self, "uses_cookies", True) and hasattr(getattr(self, "client", None), "client"):
            self.client.client.cookiejar = None  # geventhttpclient skips cookie handling without a jar
        if run is not None and run.stamped:
            try:
                stamps.warm_connection(self)  # the TCP handshake before the first slot, not inside it
            except OSError:
                pass  # the first request will record the failure
        self.wait()  # claim the first slot (arrival) or sleep the first think time

    def on_stop(self):
        # Stopped while holding an unsent slot (Locust moving users between workers, Ctrl-C):
        # give it back so another user sends it on time, instead of losing it.
        slot = getattr(self, "arrival_slot", None)
        run = self.burstbench_run
        if slot is not None and run is not None and run.dispenser is not None:
            self.arrival_slot = None
            run.dispenser.give_back(slot)


class PacedUser(_Paced, HttpUser):
    """A Locust user (requests-based HttpUser) paced and recorded by the run that ``install`` creates."""

    abstract = True


class PacedFastUser(_Paced, FastHttpUser):
    """The same on Locust's FastHttpUser (geventhttpclient): several times the request rate per process.

    Its timeout is per user, not per request: ``install`` sets ``network_timeout`` from --request-timeout.
    """

    abstract = True


def install(user_class: type[PacedUser] | type[PacedFastUser], build_target: Callable[[object], Target], *,
            add_arguments: Callable[[object], None] | None = None, check_host: bool = False,
            dataset_help: str = "bundled, hub, hub:<name>[:split], or a CSV, JSONL or Parquet file") -> None:
    """Register burstbench's flags and run lifecycle with Locust's events for ``user_class``.

    ``build_target(options)`` raises ValueError for a bad configuration. With ``check_host`` the
    host must accept a TCP connection before any traffic.
    """

    @events.init_command_line_parser.add_listener
    def _add_arguments(parser):
        add_run_arguments(parser, dataset_help)
        if add_arguments is not None:
            add_arguments(parser)

    @events.init.add_listener
    def _on_init(environment, **_kwargs):
        if environment.parsed_options is None:  # imported as a library, not run by the locust CLI
            return
        o = environment.parsed_options
        if o.worker:
            _install_worker(environment, user_class, build_target)
            return
        role = "master" if o.master else "local"
        try:
            plan = RunPlan.from_options(o, role)
            if role == "master" and (o.num_users or 1) < o.expect_workers:
                raise ValueError(f"-u/--users must be at least the number of workers ({o.expect_workers}): "
                                 f"a worker with no user would never send its share of the schedule (got {o.num_users})")
            target = build_target(o)
            texts = load_texts(plan.dataset, plan.seed, plan.subset, plan.text_column)
            host = environment.host or user_class.host
            if check_host:
                check_reachable(host)
            run = Run(environment, plan, target, texts, host, role)
        except ValueError as err:
            sys.exit(f"burstbench: {err}")
        user_class.burstbench_run = run
        user_class.wait_time = run.wait_time
        _use_client(run, user_class, host, plan)
        # Locust turns Ctrl-C into a KeyboardInterrupt in whichever greenlet runs, and some of its
        # greenlets swallow it; a signal handler stops the run the same way every time.
        gevent.signal_handler(signal.SIGINT, run.interrupt)
        print(f"[burstbench] {plan.name}: {plan.distribution}, pacing {plan.pacing}, {plan.requests} requests, "
              f"seed {plan.seed}, texts {texts.source} -> {run.run_dir}", file=sys.stderr, flush=True)

    @events.test_start.add_listener
    def _on_test_start(**_kwargs):
        run = user_class.burstbench_run
        if run is not None and run.role != "worker":
            run.on_test_start()

    @events.quit.add_listener
    def _on_quit(**_kwargs):
        run = user_class.burstbench_run
        if run is not None and run.role != "worker":
            run.finish()


def _use_client(run: Run, user_class, host: str | None, plan: RunPlan) -> None:
    """FastHttpUser: per-user timeouts from --request-timeout, and socket stamps over plain HTTP."""
    if issubclass(user_class, FastHttpUser):
        user_class.network_timeout = user_class.connection_timeout = plan.request_timeout_s
        if (host or "").startswith("http://"):
            stamps.install()
            run.stamped = True


def _install_worker(environment, user_class, build_target) -> None:
    """A worker builds its run when the master's options arrive (at test start) and sends the share it is given."""

    def build_run() -> Run:
        o = environment.parsed_options
        try:
            plan = RunPlan.from_options(o, "worker")
            run = Run(environment, plan, build_target(o), load_texts(plan.dataset, plan.seed, plan.subset,
                                                                     plan.text_column),
                      environment.host or user_class.host, "worker")
        except ValueError as err:
            print(f"burstbench: worker: {err}", file=sys.stderr, flush=True)
            environment.process_exit_code = 2
            gevent.spawn(environment.runner.quit)
            raise
        user_class.burstbench_run = run
        _use_client(run, user_class, environment.host or user_class.host, plan)
        return run

    side = WorkerSide(environment, build_run)
    user_class.wait_time = lambda user: side.wait_time(user)
    gevent.signal_handler(signal.SIGINT, side.interrupt)
