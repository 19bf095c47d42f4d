"""Disruption plans: small TOML files saying which disruption happens when, under which load.

    name = "local-default"
    target = "local"                      # local processes, or "k8s" (commands run with your kubectl context)
    [load]                                # a load spec (burstbench.spec), arrival-paced, for the whole plan
    arrival = "exponential"               # or "gamma" with shape = ...
    mean = 0.2                            # mean gap between requests in s (or rate = 5, requests/s)
    duration = 110                        # how long the schedule of sends lasts, s (the plan's own key)
    request_timeout = 5                   # a hung connection counts as a failure after this many s
    users = 40                            # concurrent senders (enough to cover the hung requests)
    seed = 0
    [server]                              # local plans only
    supervisor = "supervisord"            # or "none": a killed server stays dead
    [recovery]
    consecutive_ok = 10                   # N requests in a row by send time, all ok ...
    latency_factor = 3.0                  # ... each within max(factor x steady p99, min_threshold_ms)
    min_threshold_ms = 100.0
    steady_tolerance = 0.1                # "back to steady": N in a row within steady p99 x (1 + this)
    ready_deadline_s = 60                 # /readyz later than this: "not ready within the readiness deadline"
    first_good_within_s = 2               # targets (verdicts): the first good answer this soon after /readyz ...
    steady_within_s = 10                  # ... and latency back to the steady p99 this soon after it
    [[disruption]]
    at_s = 20                             # seconds after the load starts
    action = "kill-worker"                # one of the actions below
    label = "kill -9 one BentoML worker"  # optional: the timeline's marker

Local actions: kill-worker, freeze-server (for_s), kill-server, stop-worker (for_s: SIGSTOP the worker
alone), memory-limit (for_s, and limit_mb or limit_fraction: an RSS limit enforced as a container's
OOM killer would, resilience/disruptions.py says how) and slow-start (delay_s: the server is killed and
its restart policy starts it with BURSTBENCH_START_DELAY_S; supervisord plans only). k8s: command.

Every error is one line naming the file, the field and what is accepted.
"""
from __future__ import annotations

import shlex
import string
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from burstbench.errors import ParameterError
from burstbench.spec import LoadSpec

PLANS_DIR = Path(__file__).resolve().parent / "plans"
TARGETS = ("local", "k8s")
SUPERVISORS = ("supervisord", "none")
LOCAL_ACTIONS = ("kill-worker", "freeze-server", "kill-server", "stop-worker", "memory-limit", "slow-start")
TIMED_ACTIONS = {"freeze-server": "seconds frozen", "stop-worker": "seconds stopped",
                 "memory-limit": "seconds the limit holds"}  # the actions with a for_s
K8S_ACTIONS = ("command",)
# Placeholders a command may use; each value is shell-quoted when substituted.
PLACEHOLDERS = ("kubectl", "namespace", "deployment", "selector", "context")
DEFAULT_LABELS = {"kill-worker": "kill -9 one BentoML worker", "freeze-server": "SIGSTOP the server",
                  "kill-server": "kill -9 the whole server", "stop-worker": "SIGSTOP one BentoML worker",
                  "memory-limit": "worker memory limit", "slow-start": "slow server start"}


# A plan's load unless it says otherwise: Poisson at 5 requests/s, a 5 s timeout, 40 users.
LOAD_DEFAULTS = {"arrival": "exponential", "mean": 0.2, "request_timeout": 5.0, "users": 40, "seed": 0}
LOAD_KEYS = ("arrival", "shape", "mean", "rate", "duration", "request_timeout", "users", "seed")


class PlanError(ValueError):
    """A plan that cannot run; the message names the file and the field."""


@dataclass(frozen=True)
class Load:
    """The plan's ``[load]``: a load spec (``burstbench.spec``: arrival, shape, mean or rate, request_timeout,
    users, seed) and, the plan's own, ``duration`` (seconds the schedule of sends lasts)."""

    spec: LoadSpec = field(default_factory=lambda: LoadSpec.from_values(LOAD_DEFAULTS))
    duration_s: float = 60.0

    arrival = property(lambda self: self.spec.arrival)
    shape = property(lambda self: self.spec.shape)
    mean_s = property(lambda self: self.spec.mean_s)
    request_timeout_s = property(lambda self: self.spec.request_timeout)
    users = property(lambda self: self.spec.users)
    seed = property(lambda self: self.spec.seed)

    @property
    def distribution(self):
        return self.spec.process()


@dataclass(frozen=True)
class Recovery:
    consecutive_ok: int = 10
    latency_factor: float = 3.0
    min_threshold_ms: float = 100.0
    steady_tolerance: float = 0.1      # back to steady: consecutive_ok in a row within steady p99 x (1 + this)
    ready_deadline_s: float = 60.0     # the readiness deadline (a startup probe's): later is "not ready"
    first_good_within_s: float = 2.0   # target: first good answer at most this long after /readyz answered again
    steady_within_s: float = 10.0      # target: back to the steady p99 at most this long after /readyz


@dataclass(frozen=True)
class Kubernetes:
    namespace: str = "default"
    deployment: str = "burstbench"
    selector: str = "app=burstbench"
    context: str = ""            # empty: kubectl's current context
    url: str = ""                # where the load goes (NodePort, LoadBalancer or port-forward)
    command_timeout_s: float = 120.0

    def values(self) -> dict[str, str]:
        kubectl = "kubectl" + (f" --context {shlex.quote(self.context)}" if self.context else "")
        return {"kubectl": kubectl, "namespace": shlex.quote(self.namespace),
                "deployment": shlex.quote(self.deployment), "selector": shlex.quote(self.selector),
                "context": shlex.quote(self.context)}


@dataclass(frozen=True)
class Disruption:
    at_s: float
    action: str
    label: str
    for_s: float = 0.0          # freeze-server, stop-worker: seconds between SIGSTOP and SIGCONT; memory-limit: held
    delay_s: float = 0.0        # slow-start: BURSTBENCH_START_DELAY_S of the restarted server
    limit_mb: float = 0.0       # memory-limit: the worker's RSS limit in MiB ...
    limit_fraction: float = 0.0  # ... or as a fraction of its RSS when the limit is set
    command: str = ""           # command: the template as written in the plan
    argv: tuple[str, ...] = ()  # command: the rendered command line, split as the shell would

    @property
    def command_line(self) -> str:
        return shlex.join(self.argv)


@dataclass(frozen=True)
class Plan:
    name: str
    path: Path
    target: str
    description: str
    load: Load
    recovery: Recovery
    supervisor: str
    kubernetes: Kubernetes
    disruptions: tuple[Disruption, ...] = field(default_factory=tuple)

    def render(self) -> str:
        """What the plan would do, one line per step; nothing is run."""
        lines = [f"plan {self.name} ({self.path}): target {self.target}",
                 f"load: {self.load.distribution}, {self.load.duration_s:g} s, request timeout "
                 f"{self.load.request_timeout_s:g} s, {self.load.users} users, seed {self.load.seed}"]
        if self.target == "local":
            lines.append(f"server: {'under supervisord (autorestart=true)' if self.supervisor == 'supervisord' else 'no supervisor'}")
        else:
            k = self.kubernetes
            lines.append(f"cluster: namespace {k.namespace}, deployment {k.deployment}, selector {k.selector}, "
                         f"context {k.context or '(kubectl current context)'}, load to {k.url or '(--host)'}")
        r = self.recovery
        lines.append(f"recovery: {r.consecutive_ok} good in a row (ok within max({r.latency_factor:g} x steady p99, "
                     f"{r.min_threshold_ms:g} ms)); back to steady: {r.consecutive_ok} in a row within steady p99 x "
                     f"{1 + r.steady_tolerance:g}; readiness deadline {r.ready_deadline_s:g} s")
        lines.append(f"targets: first good answer within {r.first_good_within_s:g} s of /readyz answering again, "
                     f"back to the steady p99 within {r.steady_within_s:g} s of it, none lost")
        for i, d in enumerate(self.disruptions, 1):
            what = {"kill-worker": "kill -9 one worker process of the server (BentoML respawns it)",
                    "freeze-server": f"SIGSTOP every server process, SIGCONT after {d.for_s:g} s",
                    "kill-server": "kill -9 every server process (arbiter and workers)",
                    "stop-worker": f"SIGSTOP one worker process (the arbiter runs on), SIGCONT after {d.for_s:g} s",
                    "memory-limit": "kill -9 any worker whose RSS exceeds "
                                    + (f"{d.limit_mb:g} MiB" if d.limit_mb else
                                       f"{d.limit_fraction:g} x the worker's RSS now")
                                    + f", for {d.for_s:g} s (as a container's OOM killer)",
                    "slow-start": f"kill -9 the server; supervisord restarts it with BURSTBENCH_START_DELAY_S="
                                  f"{d.delay_s:g} (readiness deadline {self.recovery.ready_deadline_s:g} s)",
                    "command": d.command_line}[d.action]
            lines.append(f"{i}. at {d.at_s:g} s: {d.label}: {what}")
        return "\n".join(lines)


def plan_path(name_or_path: str) -> Path:
    """A shipped plan by name (``local-default``) or a TOML file by path."""
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.exists():
        if not path.is_file():
            raise PlanError(f"{path}: no such plan file")
        return path
    shipped = PLANS_DIR / f"{name_or_path}.toml"
    if not shipped.is_file():
        raise PlanError(f"plan {name_or_path!r} not found: give a .toml file or one of {', '.join(shipped_plans())}")
    return shipped


def shipped_plans() -> list[str]:
    return sorted(p.stem for p in PLANS_DIR.glob("*.toml"))


def load_plan(name_or_path: str) -> Plan:
    path = plan_path(name_or_path)
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as err:
        raise PlanError(f"{path}: not valid TOML ({err})") from None
    return parse_plan(raw, path)


def parse_plan(raw: dict, path: Path) -> Plan:
    f = _Fields(path)
    f.only(raw, "", ("name", "target", "description", "load", "server", "recovery", "kubernetes", "disruption"))
    target = f.choice(raw, "target", TARGETS, default=None)
    load_raw = f.table(raw, "load")
    f.only(load_raw, "load.", LOAD_KEYS)
    duration_s = f.number(load_raw, "load.duration", Load.duration_s, lambda v: 1 <= v <= 86400,
                          "a number of seconds in [1, 86400]")
    given = {k: v for k, v in load_raw.items() if k != "duration"}
    defaults = {k: v for k, v in LOAD_DEFAULTS.items() if not (k == "mean" and "rate" in given)}
    if ({**defaults, **given}["arrival"] == "gamma") != ("shape" in given):
        raise PlanError(f"{path}: load.shape is required with load.arrival = \"gamma\" and only then (a number > 0)")
    try:
        load = Load(spec=LoadSpec.from_values({**defaults, **given}), duration_s=duration_s)
    except ParameterError as err:
        raise PlanError(err.in_file(str(path))) from None
    rec_raw = f.table(raw, "recovery")
    f.only(rec_raw, "recovery.", tuple(Recovery.__dataclass_fields__))
    r = Recovery()
    seconds = "a number of seconds in (0, 3600]"
    recovery = Recovery(
        consecutive_ok=f.integer(rec_raw, "recovery.consecutive_ok", r.consecutive_ok, 1, 10_000),
        latency_factor=f.number(rec_raw, "recovery.latency_factor", r.latency_factor, lambda v: 1 <= v <= 1000,
                                "a number in [1, 1000]"),
        min_threshold_ms=f.number(rec_raw, "recovery.min_threshold_ms", r.min_threshold_ms, lambda v: 0 <= v <= 600_000,
                                  "a number of milliseconds in [0, 600000]"),
        steady_tolerance=f.number(rec_raw, "recovery.steady_tolerance", r.steady_tolerance, lambda v: 0 <= v <= 10,
                                  "a number in [0, 10] (0.1: within 10 % of the steady p99)"),
        ready_deadline_s=f.number(rec_raw, "recovery.ready_deadline_s", r.ready_deadline_s, _in_hour, seconds),
        first_good_within_s=f.number(rec_raw, "recovery.first_good_within_s", r.first_good_within_s, _in_hour, seconds),
        steady_within_s=f.number(rec_raw, "recovery.steady_within_s", r.steady_within_s, _in_hour, seconds),
    )
    server_raw = f.table(raw, "server")
    k8s_raw = f.table(raw, "kubernetes")
    if target == "local":
        f.only(server_raw, "server.", ("supervisor",))
        if k8s_raw:
            raise PlanError(f"{path}: [kubernetes] applies only to target = \"k8s\"")
    else:
        if server_raw:
            raise PlanError(f"{path}: [server] applies only to target = \"local\" (the cluster runs the server)")
    supervisor = f.choice(server_raw, "server.supervisor", SUPERVISORS, "supervisord") if target == "local" else "none"
    f.only(k8s_raw, "kubernetes.", ("namespace", "deployment", "selector", "context", "url", "command_timeout_s"))
    k = Kubernetes()
    kubernetes = Kubernetes(
        namespace=f.text(k8s_raw, "kubernetes.namespace", k.namespace),
        deployment=f.text(k8s_raw, "kubernetes.deployment", k.deployment),
        selector=f.text(k8s_raw, "kubernetes.selector", k.selector),
        context=f.text(k8s_raw, "kubernetes.context", k.context, allow_empty=True),
        url=f.text(k8s_raw, "kubernetes.url", k.url, allow_empty=True),
        command_timeout_s=f.number(k8s_raw, "kubernetes.command_timeout_s", k.command_timeout_s,
                                   lambda v: 0 < v <= 3600, "a number of seconds in (0, 3600]"),
    )
    disruptions = _disruptions(f, raw.get("disruption"), target, load, kubernetes, supervisor)
    name = f.text(raw, "name", path.stem)
    return Plan(name=name, path=path, target=target, description=f.text(raw, "description", "", allow_empty=True),
                load=load, recovery=recovery, supervisor=supervisor, kubernetes=kubernetes, disruptions=disruptions)


def _in_hour(v: float) -> bool:
    return 0 < v <= 3600


def _disruptions(f: "_Fields", raw, target: str, load: Load, kubernetes: Kubernetes,
                 supervisor: str) -> tuple[Disruption, ...]:
    path = f.path
    if not isinstance(raw, list) or not raw:
        raise PlanError(f"{path}: needs at least one [[disruption]] with at_s and action")
    actions = LOCAL_ACTIONS if target == "local" else K8S_ACTIONS
    out: list[Disruption] = []
    for i, item in enumerate(raw):
        where = f"disruption[{i}]."
        if not isinstance(item, dict):
            raise PlanError(f"{path}: disruption[{i}] must be a table ([[disruption]])")
        f.only(item, where, ("at_s", "action", "label", "for_s", "command", "delay_s", "limit_mb", "limit_fraction"))
        if "at_s" not in item:
            raise PlanError(f"{path}: {where}at_s is required (seconds after the load starts, in (0, load.duration))")
        at_s = f.number(item, f"{where}at_s", None, lambda v: 0 < v < load.duration_s,
                        f"a number of seconds in (0, {load.duration_s:g}) (inside load.duration)")
        action = f.choice(item, f"{where}action", actions, default=None)
        for_s = 0.0
        if action in TIMED_ACTIONS:
            for_s = f.number(item, f"{where}for_s", None, _in_hour, "a number of seconds in (0, 3600]")
            if for_s is None:
                raise PlanError(f"{path}: {where}for_s is required for {action} ({TIMED_ACTIONS[action]}, in (0, 3600])")
        elif "for_s" in item:
            raise PlanError(f"{path}: {where}for_s applies only to action = "
                            + " or ".join(f'"{a}"' for a in TIMED_ACTIONS))
        limit_mb, limit_fraction = _memory_limit(f, item, where, action)
        delay_s = _start_delay(f, item, where, action, supervisor)
        command, argv = "", ()
        if action == "command":
            command = f.text(item, f"{where}command", None)
            if command is None:
                raise PlanError(f"{path}: {where}command is required for action = \"command\"")
            argv = render_command(command, kubernetes, f"{path}: {where}command")
        elif "command" in item:
            raise PlanError(f"{path}: {where}command applies only to action = \"command\" (target k8s)")
        label = f.text(item, f"{where}label", DEFAULT_LABELS.get(action) or (argv[0] if argv else action))
        if out:
            prev = out[-1]
            if at_s <= prev.at_s + prev.for_s:
                ends = f"ends at {prev.at_s + prev.for_s:g} s" if prev.for_s else f"is at {prev.at_s:g} s"
                raise PlanError(f"{path}: {where}at_s = {at_s:g} must come after the previous disruption, which {ends} "
                                "(disruptions in time order, one at a time)")
        if at_s + for_s >= load.duration_s:
            raise PlanError(f"{path}: {where}for_s = {for_s:g} s from at_s = {at_s:g} s ends after load.duration = "
                            f"{load.duration_s:g} s")
        out.append(Disruption(at_s=at_s, action=action, label=label, for_s=for_s, command=command, argv=argv,
                              delay_s=delay_s, limit_mb=limit_mb, limit_fraction=limit_fraction))
    return tuple(out)


def _memory_limit(f: "_Fields", item: dict, where: str, action: str) -> tuple[float, float]:
    """memory-limit's limit: exactly one of limit_mb (MiB) and limit_fraction (of the worker's RSS then)."""
    given = [key for key in ("limit_mb", "limit_fraction") if key in item]
    if action != "memory-limit":
        if given:
            raise PlanError(f"{f.path}: {where}{given[0]} applies only to action = \"memory-limit\"")
        return 0.0, 0.0
    if len(given) != 1:
        raise PlanError(f"{f.path}: {where}memory-limit needs exactly one of limit_mb (MiB, in (0, 1048576]) and "
                        f"limit_fraction (of the worker's RSS when set, in (0, 10]) (got {len(given)})")
    limit_mb = f.number(item, f"{where}limit_mb", None, lambda v: 0 < v <= 1_048_576, "a number of MiB in (0, 1048576]")
    limit_fraction = f.number(item, f"{where}limit_fraction", None, lambda v: 0 < v <= 10,
                              "a number in (0, 10] (below 1: the worker is over the limit at once)")
    return limit_mb or 0.0, limit_fraction or 0.0


def _start_delay(f: "_Fields", item: dict, where: str, action: str, supervisor: str) -> float:
    """slow-start's delay_s; only a restart policy (supervisord) restarts the killed server."""
    if action != "slow-start":
        if "delay_s" in item:
            raise PlanError(f"{f.path}: {where}delay_s applies only to action = \"slow-start\"")
        return 0.0
    if supervisor != "supervisord":
        raise PlanError(f"{f.path}: {where}action = \"slow-start\" needs server.supervisor = \"supervisord\" "
                        f"(its restart policy starts the server again; got {supervisor!r})")
    delay_s = f.number(item, f"{where}delay_s", None, lambda v: 0 < v <= 600, "a number of seconds in (0, 600]")
    if delay_s is None:
        raise PlanError(f"{f.path}: {where}delay_s is required for slow-start (seconds the restarted server waits "
                        "before loading the model, in (0, 600])")
    return delay_s


def render_command(template: str, kubernetes: Kubernetes, where: str) -> tuple[str, ...]:
    """The template's placeholders filled in (each value shell-quoted), split as the shell would split it."""
    try:
        names = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    except ValueError as err:
        raise PlanError(f"{where}: {err} (write a literal brace as {{{{ or }}}})") from None
    unknown = sorted(n for n in names if n not in PLACEHOLDERS)
    if unknown:
        raise PlanError(f"{where}: unknown placeholder {{{unknown[0]}}}; accepted: "
                        + ", ".join(f"{{{p}}}" for p in PLACEHOLDERS))
    try:
        argv = tuple(shlex.split(template.format(**kubernetes.values())))
    except ValueError as err:
        raise PlanError(f"{where}: cannot be split into arguments ({err})") from None
    if not argv:
        raise PlanError(f"{where}: is empty")
    return argv


class _Fields:
    """Typed reads of TOML fields, each failing with one line naming the field and the accepted values."""

    def __init__(self, path: Path):
        self.path = path

    def only(self, table: dict, prefix: str, known: tuple[str, ...]) -> None:
        for key in table:
            if key not in known:
                raise PlanError(f"{self.path}: unknown field {prefix}{key}; accepted: "
                                + ", ".join(prefix + k for k in known))

    def table(self, raw: dict, key: str) -> dict:
        value = raw.get(key, {})
        if not isinstance(value, dict):
            raise PlanError(f"{self.path}: {key} must be a table ([{key}])")
        return value

    def _leaf(self, key: str) -> str:
        return key.rsplit(".", 1)[-1]

    def choice(self, raw: dict, key: str, accepted: tuple[str, ...], default):
        value = raw.get(self._leaf(key), default)
        if value not in accepted:
            got = "missing" if value is None else f"got {value!r}"
            raise PlanError(f"{self.path}: {key} must be one of {', '.join(accepted)} ({got})")
        return value

    def number(self, raw: dict, key: str, default, check, accepted: str):
        value = raw.get(self._leaf(key), default)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not check(float(value)):
            raise PlanError(f"{self.path}: {key} must be {accepted} (got {value!r})")
        return float(value)

    def integer(self, raw: dict, key: str, default: int, low: int, high: int) -> int:
        value = raw.get(self._leaf(key), default)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise PlanError(f"{self.path}: {key} must be an integer in [{low}, {high}] (got {value!r})")
        return value

    def text(self, raw: dict, key: str, default, allow_empty: bool = False):
        value = raw.get(self._leaf(key), default)
        if value is None:
            return None
        if not isinstance(value, str) or (not allow_empty and not value.strip()):
            raise PlanError(f"{self.path}: {key} must be a non-empty string (got {value!r})")
        return value
