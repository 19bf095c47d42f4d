"""The Locust side of a locustfile: the paced user classes and ``install``, which wires a target into
Locust's events (flags, the validated plan, the run, distributed roles).

    from burstbench.locustfiles.plugin import PacedFastUser, install

    class MyUser(PacedFastUser):
        host = "http://127.0.0.1:8000"

    install(MyUser, build_target=lambda options: MyTarget(...))

Both clients are bounded the same way (``request_guard``): the whole request within --request-timeout,
the body within --max-response-bytes. ``install`` given ``{"fast": A, "requests": B}`` adds ``--client``.
"""
import locust  # noqa: F401  (first: gevent's monkey-patching must precede other imports)
from locust import FastHttpUser, HttpUser, events

import signal
import sys
import time
from typing import Callable

import gevent

from burstbench.locustfiles import request_guard, stamps
from burstbench.locustfiles.core import Run
from burstbench.locustfiles.distributed import WorkerSide
from burstbench.locustfiles.run_plan import RunPlan, Target, add_run_arguments, check_reachable
from burstbench.locustfiles.texts import load_texts

SOCKET_SLACK_S = 1.0  # FastHttpUser's per-read timeouts trail --request-timeout: the whole-request bound fires first


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
                self.burstbench_sent_s = time.perf_counter()  # fresh: the first slot's idle check keeps it
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
    """A Locust user (requests-based HttpUser) paced and recorded by the run that ``install`` creates.

    Not socket-stamped: its rows carry the client's clock (run.json ``clocks``).
    """

    abstract = True

    def __init__(self, environment):
        super().__init__(environment)
        request_guard.use_bounded_requests_client(self.client, self.pool_manager)


class PacedFastUser(_Paced, FastHttpUser):
    """The same on Locust's FastHttpUser (geventhttpclient): several times the request rate per process.

    Its own timeouts bound each socket read; ``request_guard`` bounds the whole request.
    """

    abstract = True

    def __init__(self, environment):
        super().__init__(environment)
        request_guard.use_bounded_fast_client(self.client)


def install(user_class: type[PacedUser] | type[PacedFastUser] | dict[str, type],
            build_target: Callable[[object], Target],
            *, add_arguments: Callable[[object], None] | None = None, check_host: bool = False,
            dataset_help: str = "bundled, hub, hub:<name>[:split], or a CSV, JSONL or Parquet file") -> None:
    """Register burstbench's flags and run lifecycle with Locust's events for ``user_class``.

    ``user_class`` may be a mapping of client names to classes (the first is the default): ``--client``
    chooses one, the only one Locust runs. ``build_target(options)`` raises ValueError for a bad
    configuration. With ``check_host`` the host must accept a TCP connection before any traffic.
    """
    clients = user_class if isinstance(user_class, dict) else None
    if clients is not None:
        user_class = next(iter(clients.values()))

    @events.init_command_line_parser.add_listener
    def _add_arguments(parser):
        add_run_arguments(parser, dataset_help)
        if clients is not None:
            parser.add_argument("--client", default=next(iter(clients)),
                                help=f"the HTTP client: {' or '.join(clients)} (default {next(iter(clients))}); "
                                     "fast is FastHttpUser (geventhttpclient, socket-stamped), requests is HttpUser")
        if add_arguments is not None:
            add_arguments(parser)

    @events.init.add_listener
    def _on_init(environment, **_kwargs):
        nonlocal user_class
        if environment.parsed_options is None:  # imported as a library, not run by the locust CLI
            return
        o = environment.parsed_options
        if clients is not None:
            user_class = _choose_client(environment, clients)
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
            if role == "master" and getattr(o, "processes", None):
                _stop_forked_workers()
            sys.exit(f"burstbench: {err}")
        user_class.burstbench_run = run
        user_class.wait_time = run.wait_time
        _use_client(run, user_class, host, plan)
        # Locust turns Ctrl-C into a KeyboardInterrupt in whichever greenlet runs, and some of its
        # greenlets swallow it; a signal handler stops the run the same way every time.
        gevent.signal_handler(signal.SIGINT, run.interrupt)
        process = plan.distribution if plan.distribution is not None else "no arrival process"
        print(f"[burstbench] {plan.name}: {process}, pacing {plan.pacing}, {plan.requests} requests, "
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


def _stop_forked_workers() -> None:
    """--processes forked the workers before the master refused its configuration: left alone, a worker that
    has not yet reached the master retries for up to five minutes. They have sent nothing; stop them now."""
    import psutil

    for child in psutil.Process().children():
        try:
            child.kill()
        except psutil.Error:
            pass  # already gone


def _choose_client(environment, clients: dict[str, type]) -> type:
    """--client's class, made the only one Locust runs (a locustfile defines one per client)."""
    o = environment.parsed_options
    name = getattr(o, "client", None) or next(iter(clients))
    if name not in clients:
        sys.exit(f"burstbench: --client must be one of {', '.join(clients)} (got {name!r})")
    chosen = clients[name]
    named = set(o.user_classes or ())
    if named and named != {chosen.__name__}:
        sys.exit(f"burstbench: --client {name} runs {chosen.__name__}; do not name other user classes "
                 f"({', '.join(sorted(named))})")
    environment.user_classes = [chosen]
    return chosen


def _use_client(run: Run, user_class, host: str | None, plan: RunPlan) -> None:
    """FastHttpUser: per-read timeouts just past --request-timeout, and socket stamps over plain HTTP."""
    if issubclass(user_class, FastHttpUser):
        user_class.network_timeout = user_class.connection_timeout = plan.request_timeout_s + SOCKET_SLACK_S
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
