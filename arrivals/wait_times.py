"""One-call Locust wait times driven by an arrival process, for any ``User``:

    from locust import HttpUser, task
    from burstbench.arrivals import gamma

    class Client(HttpUser):
        wait_time = gamma(shape=0.8, rate=20)      # open loop: 20 requests/s, burstier than Poisson

        @task
        def predict(self):
            self.client.post("/predict", json={"text": "fine"})

Open-loop factories (``poisson``, ``gamma``, ``from_distribution``, ``replay``, ``stages``, ``mmpp``) share
one schedule per load process, drawn lazily from the seed (``arrivals.lazy``): a user about to become
idle claims the next slot and sleeps until it is due, so a slow response delays no other request while
another user is free; a late slot is sent at once and its lateness counted, never re-timed. ``-u`` is
therefore the cap on requests in flight. Assigned in a class body, the wait time also makes the class
wait for its first slot before its first task (after the class's own ``on_start``) and give an unsent
slot back when a user is stopped: no ``on_start`` and no ``StopUser`` in the locustfile. With
``requests=N`` the run stops cleanly once N requests are answered; without it the run lasts ``-t``.

Under ``--master``/``--worker`` the workers split the one schedule (worker k takes slots k, k+W, ...;
``locustfiles/native.py``), rather than each sending a copy of it. ``think`` is the reference paper's
closed loop (a fresh draw after each response) and ``concurrency`` keeps ``-u`` requests in flight.

Nothing here imports Locust: under Locust the glue is attached when a factory is called.
"""
from __future__ import annotations

import itertools
import math
from array import array
import os
import sys
import time
import types
from pathlib import Path
from typing import Callable

import numpy as np

from burstbench.errors import ParameterError

from .distributions import Exponential, Gamma
from .lazy import LazySchedule, StreamDispenser
from .locust_wait import think_time
from .notation import parse_stages, scale_mmpp
from .processes import MMPP, FromDistribution
from .schedule import check_requests, check_seed
from .stages import RateProfile, Stages

_pacing_ids = itertools.count()


def _python_error(err: ParameterError, factory: str) -> ValueError:
    """A ParameterError spelled as the Python call's arguments; under the locust command, one line and exit."""
    message = f"burstbench.arrivals.{factory}: " + err.render(lambda name: f"{name}=")
    if os.path.basename(sys.argv[0] or "").startswith("locust"):
        sys.exit(message)  # imported by `locust -f`: one line before any traffic, not a traceback
    return ValueError(message)


def _mean_from(rate, mean, factory: str, default_mean: float | None = None) -> float:
    if rate is not None and mean is not None:
        raise _python_error(ParameterError("give {rate} (requests/s) or {mean} (s), not both", "rate", "mean"),
                            factory)
    value, name = (rate, "rate") if rate is not None else (mean, "mean")
    if value is None:
        if default_mean is not None:
            return default_mean
        raise _python_error(ParameterError("needs {rate} (requests/s) or {mean} (the mean gap in s)", "rate",
                                           "mean"), factory)
    try:
        value = float(value)
    except (TypeError, ValueError):
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise _python_error(ParameterError(f"{{{name}}} must be a finite number > 0 (got {value!r})", name), factory)
    return 1.0 / value if name == "rate" else value


class Pacing:
    """A wait time (``wait_time = ...``) that claims slots of one schedule; see the module's docstring.

    ``dispatcher``: "auto" (the precise dispatcher of ``arrivals.dispatch``, made at the first wait), or
    None to return the sleep until due instead of waiting (tests with a fake ``clock``).
    """

    open_loop = True
    stop_user: type[BaseException] | None = None  # Locust's StopUser, looked up at the first stop (tests set it)

    def __init__(self, process, seed: int = 0, requests: int | None = None, dispatcher="auto",
                 clock: Callable[[], float] = time.time, factory: str = "pacing"):
        self.process = process
        self.factory = factory
        try:
            self.seed = check_seed(seed)
            self.requests = None if requests is None else check_requests(requests)
        except ParameterError as err:
            raise _python_error(err, factory) from None
        self.schedule = self._make_schedule()
        self.clock = clock
        self.dispenser = StreamDispenser(self.schedule, clock=clock)
        self.dispatcher = dispatcher
        self.id = next(_pacing_ids)  # every load process imports the same locustfile: the same ids
        self.ready = None            # a worker's: set when the master's share arrives (locustfiles.native)
        self.on_exhausted = None     # called once the share is used up and every user has stopped
        self.sent = 0
        self.late_ms = array("d")  # 8 bytes a send: a long run keeps every lateness
        self.users: set[int] = set()
        self.exhausted = False
        if "locust" in sys.modules:
            from burstbench.locustfiles import native

            native.attach(self)

    def _make_schedule(self):
        return LazySchedule(self.process, self.seed, limit=self.requests)

    # -- as a class attribute ---------------------------------------------------------------
    def __set_name__(self, owner, name) -> None:
        _wrap_lifecycle(owner, self)

    def __get__(self, obj, owner=None):
        return self if obj is None else types.MethodType(self, obj)

    # -- the wait ---------------------------------------------------------------------------
    def __call__(self, obj) -> float:
        user = getattr(obj, "user", obj)  # a TaskSet's wait_time is called on the TaskSet
        user.burstbench_waited = True
        slot = self._claim(user)
        if slot is None:
            self._user_stopped(user)
            raise self._stop_user()
        return self._wait_for(user, slot)

    def _stop_user(self) -> BaseException:
        if self.stop_user is None:
            from locust.exception import StopUser

            self.stop_user = StopUser
        return self.stop_user()

    def _claim(self, user):
        if self.ready is not None:
            self.ready(user)  # a worker waits for its share of the schedule
        self.users.add(id(user))
        slot = self.dispenser.claim()
        user.burstbench_slot = slot
        return slot

    def _wait_for(self, user, slot) -> float:
        if self.dispatcher is None:
            user.burstbench_slot = None
            self._count_sent(slot, slot.due_epoch)
            return max(0.0, slot.due_epoch - self.clock())
        if self.dispatcher == "auto":
            from .dispatch import Dispatcher

            self.dispatcher = Dispatcher()
        due = self.dispatcher.to_perf(slot.due_epoch)
        self.dispatcher.sleep_coarse(due)
        self.dispatcher.wait_until(due)
        user.burstbench_slot = None  # only now: a user stopped while waiting gives the slot back
        self._count_sent(slot, self.dispatcher.to_epoch(time.perf_counter()))
        return 0.0

    def _count_sent(self, slot, released_epoch: float) -> None:
        self.sent += 1
        self.late_ms.append((released_epoch - slot.due_epoch) * 1000)

    def first_wait(self, user) -> None:
        """Before a user's first task: its first slot; with none left it stays idle (no task, no error)."""
        if getattr(user, "burstbench_waited", False):  # the class's own on_start waited already
            return
        user.burstbench_waited = True
        slot = self._claim(user)
        if slot is None:
            self._user_stopped(user)
            self.idle(user)
            return
        self._wait_for(user, slot)

    def idle(self, user) -> None:
        """A user with no slot left before its first task stays idle until the run ends (StopUser in on_start
        would be logged by Locust as an error)."""
        import gevent

        gevent.sleep(365 * 24 * 3600)

    def stopped(self, user) -> None:
        """A user stopped (``-t`` over, rebalancing, Ctrl-C): an unsent slot goes back, nothing is lost."""
        slot = getattr(user, "burstbench_slot", None)
        if slot is not None:
            user.burstbench_slot = None
            self.dispenser.give_back(slot)
        self._user_stopped(user)

    def _user_stopped(self, user) -> None:
        self.users.discard(id(user))
        if not self.users and self.dispenser.total is not None and self.dispenser.claimed >= self.dispenser.total:
            if not self.exhausted and self.on_exhausted is not None:
                self.exhausted = True
                self.on_exhausted()

    # -- what it did --------------------------------------------------------------------------
    def lateness_ms(self) -> np.ndarray:
        return np.frombuffer(self.late_ms, dtype=float) if len(self.late_ms) else np.empty(0)

    def describe(self) -> dict:
        return {"pacing": "arrival", "process": self.process.describe(), "seed": self.seed,
                "requests": self.requests, "label": str(self)}

    def __str__(self) -> str:
        bound = f", {self.requests} requests" if self.requests is not None else ""
        return f"{self.factory}: {self.process}, seed {self.seed}{bound}"


class ConcurrencyPacing(Pacing):
    """No wait: each of ``-u`` users sends again as soon as it is answered (a fixed number in flight)."""

    open_loop = False

    def __init__(self, requests: int | None = None):
        super().__init__(None, requests=requests, dispatcher=None, factory="concurrency")

    def _make_schedule(self):
        return _Unpaced(self.requests)

    def _wait_for(self, user, slot) -> float:
        user.burstbench_slot = None
        self.sent += 1
        return 0.0

    def describe(self) -> dict:
        return {"pacing": "concurrency", "requests": self.requests, "label": str(self)}

    def __str__(self) -> str:
        return "concurrency: -u requests always in flight" + (f", {self.requests} requests" if self.requests else "")


class _Unpaced:
    """The schedule of ``concurrency``: every slot is due at once; a count bounds it, or nothing does."""

    def __init__(self, limit: int | None):
        self.limit = limit

    def offset(self, index: int) -> float | None:
        return None if self.limit is not None and index >= self.limit else -math.inf


def _wrap_lifecycle(owner, pacing: Pacing) -> None:
    """The owner's own on_start first, then the first slot; on_stop gives an unsent slot back, then the owner's."""
    own_start, own_stop = owner.on_start, owner.on_stop

    def on_start(self):
        own_start(self)
        pacing.first_wait(getattr(self, "user", self))

    def on_stop(self):
        pacing.stopped(getattr(self, "user", self))
        own_stop(self)

    owner.on_start, owner.on_stop = on_start, on_stop


# -- the factories --------------------------------------------------------------------------------
def poisson(rate: float | None = None, mean: float | None = None, *, seed: int = 0,
            requests: int | None = None) -> Pacing:
    """Poisson arrivals: exponential gaps at ``rate`` requests/s (or a ``mean`` gap in s)."""
    return Pacing(Exponential(mean=_mean_from(rate, mean, "poisson")), seed, requests, factory="poisson")


def gamma(shape: float, rate: float | None = None, mean: float | None = None, *, seed: int = 0,
          requests: int | None = None) -> Pacing:
    """Gamma gaps: ``shape`` < 1 is burstier than Poisson (gap CV = 1 / sqrt(shape)), > 1 more regular."""
    mean_s = _mean_from(rate, mean, "gamma")
    try:
        return Pacing(Gamma(shape=shape, mean=mean_s), seed, requests, factory="gamma")
    except ValueError as err:
        if isinstance(err, ParameterError):
            raise
        raise _python_error(ParameterError(f"{{shape}} must be a finite number > 0 (got {shape!r})", "shape"),
                            "gamma") from None


def from_distribution(name: str, rate: float | None = None, mean: float | None = None, *, seed: int = 0,
                      requests: int | None = None, **params: float) -> Pacing:
    """Renewal gaps from ``scipy.stats.<name>(**params)`` rescaled to the rate: ``from_distribution("lognorm",
    s=1.2, rate=20)``. Refused when the law is unknown, discrete, can give negative gaps or has no mean."""
    mean_s = _mean_from(rate, mean, "from_distribution")
    try:
        return Pacing(FromDistribution(name, params, mean=mean_s), seed, requests, factory="from_distribution")
    except ParameterError as err:
        raise _python_error(err, "from_distribution") from None


def replay(trace_file: str | Path, column: str = "timestamp", rate: float | None = None, mean: float | None = None,
           *, requests: int | None = None) -> Pacing:
    """The arrival times of a trace file (CSV, JSONL, Parquet), optionally rescaled to a rate; stops at its end."""
    from .traces import Trace

    mean_s = None if rate is None and mean is None else _mean_from(rate, mean, "replay")
    try:
        return Pacing(Trace.load(trace_file, column, mean_s), 0, requests, factory="replay")
    except ParameterError as err:
        raise _python_error(err, "replay") from None


def stages(profile, base=None, *, shape: float | None = None, seed: int = 0, requests: int | None = None) -> Pacing:
    """A rate profile over a renewal base, burstiness kept: ``stages("ramp 5 to 50 over 5m, hold 10m", shape=0.8)``.

    ``profile``: the compact text (``arrivals.notation``), a ``RateProfile`` or ``(duration_s, start, end)``
    tuples; ``base``: a renewal process (default Poisson, or a gamma of ``shape``). After the profile the last
    rate holds; ``requests`` defaults to none (the run lasts ``-t``).
    """
    try:
        if isinstance(profile, str):
            profile = parse_stages(profile)
        elif not isinstance(profile, RateProfile):
            profile = RateProfile(tuple(profile))
        if base is not None and shape is not None:
            raise ParameterError("give {base} or {shape} (a gamma base), not both", "base", "shape")
        if base is None:
            base = Gamma(shape=shape, mean=1.0) if shape is not None else Exponential(mean=1.0)
        return Pacing(Stages(base, profile), seed, requests, factory="stages")
    except ParameterError as err:
        raise _python_error(err, "stages") from None
    except ValueError as err:  # a gamma shape out of range
        raise _python_error(ParameterError(f"{{shape}} {err}", "shape"), "stages") from None


def mmpp(rates, dwell, rate: float | None = None, *, seed: int = 0, requests: int | None = None) -> Pacing:
    """Markov-modulated Poisson bursts: state i sends at ``rates[i]`` requests/s for an exponential time of mean
    ``dwell[i]`` s, then the next state. ``rate`` scales every state's rate to that mean rate (dwell kept)."""
    try:
        process = MMPP(rates=tuple(rates), dwell_s=tuple(dwell))
        if rate is not None:
            process = scale_mmpp(process, 1.0 / _mean_from(rate, None, "mmpp"))
        return Pacing(process, seed, requests, factory="mmpp")
    except ParameterError as err:
        raise _python_error(err, "mmpp") from None


def think(process=None, *, shape: float | None = None, rate: float | None = None, mean: float | None = None,
          seed: int = 0):
    """The reference paper's closed loop: after each response a fresh draw of ``process`` (or of a gamma of
    ``shape``, or an exponential, at ``rate``/``mean``; default mean 2 s). A user's gap is think + response."""
    if process is None:
        mean_s = _mean_from(rate, mean, "think", default_mean=2.0)
        process = Gamma(shape=shape, mean=mean_s) if shape is not None else Exponential(mean=mean_s)
    elif isinstance(process, (MMPP, Stages)) or not hasattr(process, "sample"):
        # one fresh draw per wait needs independent gaps: an MMPP's and a profile's depend on what came before
        raise _python_error(ParameterError(f"{{process}} must be a renewal process (Exponential, Gamma, "
                                           f"FromDistribution); {type(process).__name__} is open-loop only: use "
                                           f"mmpp(...) or stages(...)", "process"), "think")
    return think_time(process, seed)


def concurrency(requests: int | None = None) -> ConcurrencyPacing:
    """Fixed concurrency: every user sends again at once, so ``-u`` requests are always in flight."""
    return ConcurrencyPacing(requests)
