"""What every burstbench locustfile shares at run time: the schedule, pacing, rows, run.json, progress, Ctrl-C.

A locustfile supplies a *target*, the one thing that differs between services: how a
request is built from a text and how its response is judged. ``plugin.install`` wires the
rest into Locust's events; ``Run`` here is one test run's state.

Bad configuration stops before any traffic, and before the run folder exists, with one
line ``burstbench: <flag> ...`` on stderr.
"""
import locust  # noqa: F401  (first: gevent's monkey-patching must precede other imports)
from locust.exception import StopUser
from locust.stats import PERCENTILES_TO_REPORT, StatsCSVFileWriter

import gc
import os
import sys
import time

import gevent
import gevent.event
import numpy as np

from burstbench.arrivals import ArrivalSchedule, SlotDispenser, think_time
from burstbench.arrivals.dispatch import Dispatcher
from burstbench.locustfiles.endpoint import redact_argv
from burstbench.locustfiles.progress import progress_line
from burstbench.locustfiles.distributed import Coordinator
from burstbench.locustfiles import stamps
from burstbench.locustfiles.generator_health import busy_waits
from burstbench.locustfiles.run_telemetry import start_telemetry, telemetry_lines
from burstbench.locustfiles.self_monitor import GENERATOR_FILE, GeneratorMonitor, generator_verdict, write_csv
from burstbench.locustfiles.recording import FLUSH_EVERY_S, ITL_KEY, RowBuffer, RowRecorder, make_run_dir
from burstbench.locustfiles.run_info import build_record, environment_facts
from burstbench.locustfiles.run_plan import RunPlan, Target, recorded_spec
from burstbench.locustfiles.request_guard import exchange
from burstbench.locustfiles.stream_target import stream_of
from burstbench.record import write_record
from burstbench.slo import goodput_line
from burstbench.locustfiles.texts import TextSubset

_EPOCH_OFFSET_S = time.time() - time.perf_counter()  # the clock of closed-loop rows (no dispatcher)
START_LEAD_S = 0.2      # a single process's schedule starts this long after its users are spawned and warmed
MAX_SPAWN_LEAD_S = 2.0  # ... waiting at most this long for a slow spawn (-r): later users join a running schedule
REWARM_IDLE_S = 1.0     # a connection idle this long is checked (and reopened if closed) before the next slot
BUILD_LEAD_S = 0.0003   # a stamped sender wakes this much (plus the dispatcher's lead) before its slot to
                        # build the request; the socket holds the write until the slot (stamps.StampedSocket)


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
        self.ttft_ms: list[float] = []  # ok streamed rows' (the master's: every worker's)
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
        self.wait_time_info = None  # a locustfile with Locust's own pacing says which (run.json wait_time)
        self.telemetry = None          # the sidecar sampling the server, the processes and GPUs (not on workers)
        self.telemetry_summary = None  # telemetry.json's content once it stopped: run.json's ``telemetry``
        if plan.trace is not None and plan.trace.token_columns != (None, None):
            use = getattr(target, "use_trace_lengths", None)
            if use is None:
                raise ValueError("--trace-input-tokens and --trace-output-tokens need a target that sends prompts "
                                 "and max_tokens (http_endpoint.py with an openai-* preset)")
            use(plan.trace)
        self.recorded_spec = None if role == "worker" else recorded_spec(plan, opts, host)
        self.environment_facts = None if role == "worker" else environment_facts()
        if role == "worker":  # its slots and start epoch come from the master (``use_share``)
            self.run_dir = None
            self.rows = RowBuffer()
            return
        if plan.pacing == "arrival":
            self.schedule = (plan.trace.schedule(plan.requests) if plan.trace is not None
                             else ArrivalSchedule.draw(plan.distribution, plan.requests, plan.seed))
            self.dispenser = SlotDispenser(self.schedule)
            self.wait_time = lambda user: self.arrival_wait(user)  # a plain function binds as a method
        elif plan.pacing == "concurrency":  # every user sends again as soon as it is answered
            self.wait_time = lambda user: 0.0
        else:
            self.wait_time = think_time(plan.distribution, plan.seed)
        if role == "master":
            self.coordinator = Coordinator(self, environment.runner)
        self.run_dir = make_run_dir(plan.results_dir, plan.name, exact=plan.run_dir)
        self.rows = RowRecorder(self.run_dir, getattr(target, "slo", None))
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
        self.telemetry = start_telemetry(plan.spec, host, self.run_dir)
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
        prompts = getattr(self.target, "prompts", None)
        if slot is not None and prompts is not None:  # made before the slot: a tokenized prompt takes about 1 ms
            user.prepared_prompt = (slot.index, *prompts.prompt(slot.index))
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
            think_s = "" if self.plan.pacing == "concurrency" else round(getattr(user, "last_think_s", 0.0), 6)
            scheduled, gate = _perf_to_epoch(time.perf_counter()), None
        prompts = getattr(self.target, "prompts", None)  # --input-tokens or a trace's lengths: its own prompt
        if prompts is not None:
            prepared = getattr(user, "prepared_prompt", None)
            prompt, prompt_tokens = prepared[1:] if prepared and prepared[0] == index else prompts.prompt(index)
            text_index, texts = -1, [prompt]
        else:
            text_index, texts = self.texts_for(index)
        row = {"request_index": index, "user": id(user) % 100_000, "scheduled_epoch": f"{scheduled:.6f}",
               "text_index": text_index, "text_chars": sum(len(t) for t in texts), "think_s": think_s,
               "batch_size": "", "tokens": "", "truncated": "", "label": "", "status": 0, "worker": self.worker,
               "claim_late_ms": claim_late_ms}
        user.burstbench_request_index = index  # a target may label the request with it (fixed_body does)
        request_fields = getattr(self.target, "request_fields", None)
        if request_fields is not None:
            row.update(request_fields(index))
        if prompts is not None and prompts.unit == "tokens":  # without a tokenizer the length is in words
            row["requested_input_tokens"] = prompt_tokens
        stream = None
        stamp = stamps.begin(gate, self.dispatcher.others_due_before if gate is not None else None) \
            if self.stamped else None
        t0 = user.burstbench_sent_s = time.perf_counter()
        self.rows.mark_started()
        try:
            # Within --request-timeout and --max-response-bytes, whatever the server does (request_guard).
            answer = exchange(self.target, user, texts, self.plan.request_timeout_s, self.plan.max_response_bytes)
            stream = stream_of(answer.fields)  # a streamed answer's chunk times, ok or not
            if answer.ok:
                row.update(answer.fields)
            row.update(status=answer.status, ok=int(answer.ok), failure_kind=answer.kind, failure_text=answer.failure)
            done = answer.judged_s
        except BaseException as err:  # killed mid-request (Ctrl-C, shutdown): still one row per request sent
            done = time.perf_counter()
            row.update(ok=0, failure_kind="interrupted",
                       failure_text=self.target.scrub(f"{type(err).__name__}: {err}")[:300])
            self._record(row, scheduled, t0, done, stamp, stream)
            raise
        self._record(row, scheduled, t0, done, stamp, stream)
        if self.rows.rows >= self.share:
            # Every send of this process is answered: its last sample ends here, so Locust's shutdown
            # and the files written after it are not judged as the generator's (generator_verdict).
            self.monitor.stop()
            if self.role == "worker":
                if not self.quit_requested:
                    self.quit_requested = True
                    self.on_share_done()
            else:
                self.request_quit()

    def _record(self, row, scheduled, t0, done, stamp, stream=None):
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
        if stream is not None and stream.token_times_s:
            row.update(stream_times(stream, sent, to_epoch, scheduled, row.get("output_tokens")))
        self.rows.record(row)
        self.monitor.note_send(row["lateness_ms"], bool(row["claim_late_ms"]))
        if row["ok"]:
            self.latencies_ms.append(latency_ms)
            if row.get("ttft_ms", "") != "":
                self.ttft_ms.append(row["ttft_ms"])

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
        telemetry_lines = self._stop_telemetry()  # every answer is in: its last scrape counts them all
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
        goodput = self.goodput_line()
        if goodput is not None:
            print(f"[burstbench] {goodput}", file=sys.stderr)
        for line in self.generator_verdict + telemetry_lines:
            print(f"[burstbench] {line}", file=sys.stderr)
        print(f"[burstbench] results: {self.run_dir}", file=sys.stderr, flush=True)

    def _stop_telemetry(self) -> list[str]:
        if self.telemetry is None:
            return []
        self.telemetry_summary = self.telemetry.stop()
        return telemetry_lines(self.telemetry_summary, self.telemetry.problem)

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
        self.generator_verdict = generator_verdict(samples, p99, busy_wait=busy_waits(self.plan.dispatcher))

    def sent_lateness_ms(self) -> np.ndarray:
        """Every row's lateness: noted by this process's monitor, or (master) reported by the workers."""
        return np.asarray(self.lateness_ms) if self.coordinator is not None else self.monitor.lateness_values_ms()

    def summary_line(self) -> str:
        c = self.rows.counts()
        line = f"sent {c['sent']}, ok {c['ok']}, failed {c['failed']} {c['failure_kinds'] or ''}".rstrip()
        if self.latencies_ms:
            p50, p95, p99 = np.percentile(self.latencies_ms, [50, 95, 99])
            line += f"; service latency p50 {p50:.1f} ms, p95 {p95:.1f} ms, p99 {p99:.1f} ms (exact, ok requests)"
        if self.ttft_ms:
            t50, t99 = np.percentile(self.ttft_ms, [50, 99])
            line += f"; TTFT p50 {t50:.1f} ms, p99 {t99:.1f} ms"
        lateness = self.sent_lateness_ms()
        if len(lateness) and self.plan.pacing == "arrival":
            late50, late99 = np.percentile(lateness, [50, 99])
            line += f"; send lateness p50 {late50:.3f} ms, p99 {late99:.3f} ms"
        return line

    def goodput_line(self) -> str | None:
        """Goodput under the run's --slo: every row counts, failed ones included (they never meet)."""
        rows = self.rows
        if not getattr(rows, "slos", None) or not rows.rows:
            return None
        return goodput_line(rows.good, rows.rows, rows.last_answer_epoch - rows.first_scheduled_epoch, rows.slos)

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
        """run.json as a typed, versioned record (burstbench.record); events a harness appended are kept."""
        argv = [self.target.scrub(arg) for arg in redact_argv(sys.argv)]
        write_record(self.run_dir, build_record(self, status, argv, GENERATOR_FILE), keep_external=True)


def stream_times(stream, sent_s: float, to_epoch, scheduled_epoch: float, output_tokens) -> dict:
    """TTFT from the actual and the scheduled send, TPOT, and every inter-token gap (for itl.csv)."""
    first, last = stream.token_times_s[0], stream.token_times_s[-1]
    out = {"ttft_ms": round((first - sent_s) * 1000, 3),
           "corrected_ttft_ms": round((to_epoch(first) - scheduled_epoch) * 1000, 3),
           ITL_KEY: [round(g * 1000, 3) for g in stream.itl_s]}
    tokens = output_tokens if isinstance(output_tokens, int) else len(stream.token_times_s)
    if tokens >= 2 and len(stream.token_times_s) >= 2:
        out["tpot_ms"] = round((last - first) * 1000 / (tokens - 1), 3)
    return out


def _perf_to_epoch(perf_s: float) -> float:
    return perf_s + _EPOCH_OFFSET_S


def freeze_setup_garbage() -> None:
    """Move set-up objects (imports, texts, the schedule) out of the collector's reach.

    A full collection of them took 48-72 ms on the request path, near request 330 of every run;
    frozen, later collections only walk what the run itself allocates.
    """
    gc.collect()
    gc.freeze()
