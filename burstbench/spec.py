"""The load spec: every load parameter declared, typed and validated once. Imports no Locust.

Read from flags (``burstbench run``, the Locust plugin), from a config file (``--config run.toml``, or a
run's own ``run.json``, whose ``spec`` repeats that run), and from the resilience plans' ``[load]`` table.
Values given as flags override the file's. Domain errors name the field (:class:`SpecError`); only the
reader turns the name into the user's spelling: ``--mean`` for a flag, ``plan.toml: load.mean`` for a file.

    [load]                       # burstbench run --config this.toml
    scenario = "extreme"         # or arrival = "gamma", shape = 0.8
    rate = 20                    # requests/s (or mean = 0.05, the mean gap in s; one of the two)
    requests = 500
    users = 8
    seed = 0
    [target]
    host = "http://127.0.0.1:8000"
    preset = "plain"
    path = "/predict"
"""
from __future__ import annotations

import json
import math
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from burstbench.arrivals.dispatch import MODES as DISPATCH_MODES
from burstbench.errors import ParameterError, flag_of

SCENARIO_NAMES = ("steady", "moderate", "extreme")
ARRIVALS = ("exponential", "gamma")
PACINGS = ("arrival", "think", "concurrency")
PROCESS_FIELDS = ("arrival", "shape", "mean", "rate", "distribution", "stages", "mmpp", "trace")
DEFAULT_MEAN_S = 2.0
SECTIONS = ("load", "target")
REDACTED = "<redacted>"  # what run.json keeps of a header's value


class SpecError(ParameterError):
    """A bad load spec value: ``str()`` names fields as flags (``--mean``), ``in_file`` as a file's keys."""


@dataclass(frozen=True)
class Field:
    name: str
    kind: str                 # int, float, str, choice, list
    default: Any
    help: str
    accepted: str = ""        # what the error says is accepted
    low: float | None = None  # numbers: the accepted range (low < v, or low <= v when closed)
    high: float | None = None
    closed_low: bool = False
    choices: tuple = ()
    section: str = "load"
    locust: bool = True       # a flag of the Locust plugin too (not only of ``burstbench run``)


def _f(name, kind, default, help_, **kw) -> Field:
    return Field(name, kind, default, help_, **kw)


FIELDS: tuple[Field, ...] = (
    _f("scenario", "choice", "steady", "steady (exponential), moderate (gamma 1.2) or extreme (gamma 0.8); "
       "default steady", choices=SCENARIO_NAMES),
    _f("arrival", "choice", None, "exponential or gamma: overrides the scenario's process", choices=ARRIVALS),
    _f("shape", "float", None, "gamma shape (> 0); < 1 is burstier than Poisson", accepted="a number > 0", low=0),
    _f("mean", "float", None, "mean gap between requests in seconds (> 0); default 2. Or --rate",
       accepted="a number > 0", low=0),
    _f("rate", "float", None, "requests per second (> 0): the same as --mean 1/rate; one of the two",
       accepted="a number of requests/s > 0", low=0),
    _f("distribution", "str", None, "gaps from any continuous scipy.stats law, rescaled to --rate/--mean: "
       "'lognorm(s=1.2)', 'weibull_min(c=0.7)', 'pareto(b=3)'", accepted="name or name(param=number, ...)"),
    _f("stages", "str", None, "a rate profile over the process (its burstiness kept): 'ramp 5 to 50 over 5m, "
       "hold 10m, spike 200 for 30s, hold 20 for 10m', 'sine 5 to 35 period 24h for 48h'",
       accepted="comma-separated pieces (docs/arrivals.md)"),
    _f("mmpp", "str", None, "Markov-modulated Poisson bursts: 'calm 5/s for 8s, burst 40/s for 2s' (each state's "
       "rate and mean dwell); --rate scales the states to that mean rate", accepted="two or more 'RATE/s for DWELL'"),
    _f("trace", "str", None, "replay the arrival times in this CSV/JSONL/Parquet file instead of a generated "
       "process (--mean or --rate rescales it)"),
    _f("trace_column", "str", "timestamp", "the trace's timestamp column: seconds, or date-times (default: timestamp)"),
    _f("trace_input_tokens", "str", None, "the trace's column of prompt lengths in tokens (BurstGPT: 'Request "
       "tokens'): each request gets a synthetic prompt that long (openai-* presets)"),
    _f("trace_output_tokens", "str", None, "the trace's column of output lengths (BurstGPT: 'Response tokens'): "
       "each request's max_tokens (openai-* presets; 0 is sent as 1)"),
    _f("pacing", "choice", "arrival", "arrival (default: a schedule fixed ahead; -u caps the requests in flight), "
       "think (the paper's closed loop) or concurrency (-u requests always in flight, no arrival process)",
       choices=PACINGS),
    _f("requests", "int", None, "requests to send, then stop (>= 1; default 1000, or every timestamp of --trace)",
       accepted="an integer >= 1", low=1, closed_low=True),
    _f("seed", "int", 0, "seed of the schedule and the texts (integer >= 0)", accepted="an integer >= 0", low=0,
       closed_low=True),
    _f("dataset", "str", "bundled", "bundled, hub, hub:<name>[:split], or a CSV, JSONL or Parquet file"),
    _f("text_column", "str", "text", "the dataset's column of texts (default: text)"),
    _f("subset", "int", 1000, "size of the seeded text subset", accepted="an integer >= 1", low=1, closed_low=True),
    _f("results_dir", "str", "results", "where the run folder is created (default: ./results)"),
    _f("run_name", "str", None, "suffix of the run folder (default: the scenario)"),
    _f("request_timeout", "float", 30.0, "seconds before a request counts as timed out",
       accepted="a number of seconds in (0, 3600]", low=0, high=3600),
    _f("max_response_bytes", "int", 8 * 2**20, "the largest response body read, in bytes (default 8 MiB = 8388608); "
       "a larger one is a response_too_large failure", accepted="an integer in [1024, 1073741824]", low=1024,
       high=2**30, closed_low=True),
    _f("progress_every", "float", 10.0, "seconds between progress lines (> 0)", accepted="a number of seconds > 0",
       low=0),
    _f("dispatcher", "choice", "auto", "how arrival-paced senders wait for their slot: auto (timerfd on Linux, "
       f"else spin), {', '.join(DISPATCH_MODES)}", choices=("auto", *DISPATCH_MODES)),
    _f("telemetry", "choice", "on", "on (default): sample the server's metrics, the service's and the load "
       "processes' CPU and memory, and NVIDIA GPUs, in a process beside the load; off: none of it",
       choices=("on", "off")),
    _f("server_metrics", "str", "/metrics", "the target's Prometheus metrics: a path on --host (default /metrics), "
       "a full URL, or off", section="target"),
    _f("metrics_every", "float", 1.0, "seconds between telemetry samples (0.25 to 60; default 1)",
       accepted="a number of seconds in [0.25, 60]", low=0.25, high=60, closed_low=True),
    _f("service_pid", "int", None, "pid of the service on this machine: its whole process tree's CPU and memory "
       "are sampled (burstbench run passes the bundled service's)", accepted="a process id >= 1", low=1,
       closed_low=True, section="target"),
    _f("service_port", "int", None, "or the port it listens on, on this machine (found again if it restarts)",
       accepted="a port in [1, 65535]", low=1, high=65535, closed_low=True, section="target"),
    _f("users", "int", 10, "concurrent Locust users (>= 1)", accepted="an integer >= 1", low=1,
       closed_low=True, locust=False),
    _f("workers", "int", None, "load processes: a Locust master and N workers on this machine, one schedule split "
       "across them", accepted="an integer in [1, 64]", low=1, high=64, closed_low=True, locust=False),
    _f("host", "str", None, "the service's base URL; without it burstbench run serves the bundled model itself",
       section="target", locust=False),
)
BY_NAME = {f.name: f for f in FIELDS}
# The request template of any HTTP endpoint (locustfiles/endpoint.py validates it; kept as given here).
REQUEST_FIELDS = ("preset", "model_name", "method", "path", "payload", "batch_size", "header", "expect_status",
                  "expect_field", "input_name", "max_tokens", "stream", "stream_usage", "chunk_field", "tokenizer",
                  "input_tokens", "output_tokens", "ignore_eos", "slo")
REPEATABLE_FIELDS = ("header", "slo")  # flags given once per value; ``slo`` may also be a table in a file


def section_of(name: str) -> str:
    return "target" if name in REQUEST_FIELDS else BY_NAME[name].section if name in BY_NAME else "load"


def _convert(f: Field, raw):
    """``raw`` (a flag's string or a file's typed value) as ``f``'s type, or SpecError naming ``f``."""
    got = f"(got {raw!r})"
    if f.kind == "choice":
        if raw not in f.choices:
            raise SpecError(f"{{{f.name}}} must be one of {', '.join(f.choices)} {got}", f.name)
        return raw
    if f.kind == "str":
        if not isinstance(raw, str) or not raw:
            raise SpecError(f"{{{f.name}}} must be a non-empty string {got}", f.name)
        return raw
    try:
        if isinstance(raw, bool) or (f.kind == "int" and isinstance(raw, float)):
            raise TypeError
        value = int(raw) if f.kind == "int" else float(raw)
    except (TypeError, ValueError):
        raise SpecError(f"{{{f.name}}} must be {f.accepted} {got}", f.name) from None
    low_ok = f.low is None or (value >= f.low if f.closed_low else value > f.low)
    high_ok = not math.isinf(value) and (f.high is None or value <= f.high)
    if math.isnan(value) or not low_ok or not high_ok:
        raise SpecError(f"{{{f.name}}} must be {f.accepted} {got}", f.name)
    return value


@dataclass(frozen=True)
class LoadSpec:
    """A validated load: the values a run used, written into its run.json (``spec``) to repeat it."""

    scenario: str = "steady"
    arrival: str | None = None
    shape: float | None = None
    mean: float | None = None
    rate: float | None = None
    distribution: str | None = None
    stages: str | None = None
    mmpp: str | None = None
    trace: str | None = None
    trace_column: str = "timestamp"
    trace_input_tokens: str | None = None
    trace_output_tokens: str | None = None
    pacing: str = "arrival"
    requests: int | None = None
    seed: int = 0
    dataset: str = "bundled"
    text_column: str = "text"
    subset: int = 1000
    results_dir: str = "results"
    run_name: str | None = None
    request_timeout: float = 30.0
    max_response_bytes: int = 8 * 2**20
    progress_every: float = 10.0
    dispatcher: str = "auto"
    telemetry: str = "on"
    server_metrics: str = "/metrics"
    metrics_every: float = 1.0
    service_pid: int | None = None
    service_port: int | None = None
    users: int = 10
    workers: int | None = None
    host: str | None = None
    request: dict = field(default_factory=dict)  # the endpoint's request template, as given

    @property
    def mean_s(self) -> float | None:
        """The mean gap asked for (from --mean or --rate), or None for the scenario's own."""
        return self.mean if self.rate is None else 1.0 / self.rate

    @classmethod
    def from_values(cls, values: dict) -> "LoadSpec":
        """Convert and check every field of ``values`` (flat: field name -> raw value), then the combinations."""
        unknown = sorted(set(values) - set(BY_NAME) - set(REQUEST_FIELDS))
        if unknown:
            raise SpecError(f"{{{unknown[0]}}} is not a load parameter (known: {', '.join(BY_NAME)}, "
                            f"{', '.join(REQUEST_FIELDS)})", unknown[0])
        typed = {n: (None if raw is None else _convert(BY_NAME[n], raw)) for n, raw in values.items() if n in BY_NAME}
        request = {n: values[n] for n in REQUEST_FIELDS if values.get(n) not in (None, [])}
        spec = cls(**{**{f.name: f.default for f in FIELDS}, **{k: v for k, v in typed.items() if v is not None}},
                   request=request)
        spec.check_combinations()
        return spec

    def check_combinations(self) -> None:
        if self.mean is not None and self.rate is not None:
            raise SpecError("give {rate} or {mean}, not both (rate = 1 / mean)", "rate", "mean")
        if self.service_pid is not None and self.service_port is not None:
            raise SpecError("give {service_pid} or {service_port}, not both", "service_pid", "service_port")
        given = [n for n in PROCESS_FIELDS if getattr(self, n) is not None]
        if self.pacing == "concurrency" and given:
            raise SpecError(f"{{pacing}} concurrency keeps -u requests in flight and has no arrival process: drop "
                            f"{{{given[0]}}}", "pacing", given[0])
        columns = [n for n in ("trace_input_tokens", "trace_output_tokens") if getattr(self, n) is not None]
        if columns and self.trace is None:
            raise SpecError(f"{{{columns[0]}}} names a column of {{trace}}: give the trace file too", columns[0], "trace")
        if self.trace is not None:
            other = [n for n in ("arrival", "shape", "distribution", "stages", "mmpp") if getattr(self, n) is not None]
            if other:
                raise SpecError(f"{{trace}} replays a file's arrival times: it cannot be combined with {{{other[0]}}}",
                                "trace", other[0])
            if self.pacing == "think":
                raise SpecError("{pacing} think cannot replay {trace}: a trace is a schedule of arrival times "
                                "(use arrival)", "pacing", "trace")
        elif self.mmpp is not None:
            other = [n for n in ("arrival", "shape", "distribution", "stages") if getattr(self, n) is not None]
            if other:
                raise SpecError(f"{{mmpp}} is a whole arrival process: it cannot be combined with {{{other[0]}}}",
                                "mmpp", other[0])
        elif self.distribution is not None and (self.arrival is not None or self.shape is not None):
            name = "arrival" if self.arrival is not None else "shape"
            raise SpecError(f"{{distribution}} gives the gap law itself: drop {{{name}}}", "distribution", name)
        elif self.arrival is None and self.shape is not None:
            raise SpecError("{shape} needs {arrival} gamma (the scenarios fix their own shape)", "shape", "arrival")
        elif self.arrival == "exponential" and self.shape is not None:
            raise SpecError("{shape} applies to {arrival} gamma only (exponential has no shape)", "shape", "arrival")
        if self.stages is not None and self.mean_s is not None:
            name = "rate" if self.rate is not None else "mean"
            raise SpecError(f"{{stages}} sets the rate over time: drop {{{name}}} (write the rates into the profile)",
                            "stages", name)
        if self.pacing == "think" and (self.stages is not None or self.mmpp is not None):
            name = "stages" if self.stages is not None else "mmpp"
            raise SpecError(f"{{pacing}} think draws independent think times; {{{name}}} needs {{pacing}} arrival",
                            "pacing", name)
        if self.workers is not None:
            if self.pacing != "arrival":
                raise SpecError("{workers} needs {pacing} arrival (one schedule split across workers)",
                                "workers", "pacing")
            if self.users < self.workers:
                raise SpecError(f"{{users}} must be at least {{workers}} ({self.workers}): each worker needs a user",
                                "users", "workers")
        if self.trace is None and self.pacing != "concurrency":
            try:
                self.process()  # the arrival process's own rules (burstbench.arrivals)
            except SpecError:
                raise
            except ParameterError as err:
                raise SpecError(err.template, *err.names) from None

    def process(self):
        """The arrival process this spec declares (None under concurrency; traces: ``burstbench.arrivals.traces``)."""
        from burstbench.arrivals import Stages, make_distribution, scenario
        from burstbench.arrivals.notation import parse_distribution, parse_mmpp, parse_stages, scale_mmpp

        if self.pacing == "concurrency":
            return None
        if self.mmpp is not None:
            process = parse_mmpp(self.mmpp)
            return process if self.mean_s is None else scale_mmpp(process, 1.0 / self.mean_s)
        mean_s = DEFAULT_MEAN_S if self.mean_s is None else self.mean_s
        if self.distribution is not None:
            base = parse_distribution(self.distribution, mean_s)
        elif self.arrival is None:
            base = scenario(self.scenario, self.mean_s)
        else:
            base = make_distribution(self.arrival, mean_s, self.shape)
        return base if self.stages is None else Stages(base, parse_stages(self.stages))

    def run_label(self) -> str:
        """The run folder's suffix: the scenario, ``gamma-a0.8``, ``trace-<file>``, or ``run_name``."""
        if self.run_name:
            return self.run_name
        if self.trace is not None:
            return f"trace-{Path(self.trace).stem}"
        if self.pacing == "concurrency":
            return "concurrency"
        if self.mmpp is not None:
            return "mmpp"
        if self.stages is not None:
            return "stages"
        if self.distribution is not None:
            return self.distribution.split("(")[0].strip().lower()
        if self.arrival is None:
            return self.scenario
        return self.arrival + (f"-a{self.shape:g}" if self.arrival == "gamma" and self.shape is not None else "")

    @classmethod
    def from_dict(cls, doc: dict, source: str = "spec") -> "LoadSpec":
        """A sectioned spec (``to_dict``'s shape, as run.json records it) validated again."""
        try:
            return cls.from_values(flatten(doc, source))
        except ParameterError as err:
            raise ValueError(err.in_file(source, section_of)) from None

    def to_dict(self) -> dict:
        """Sectioned, as a config file holds it: ``{"load": {...}, "target": {...}}``, None left out."""
        out = {s: {} for s in SECTIONS}
        for f in FIELDS:
            value = getattr(self, f.name)
            if value is not None:
                out[f.section][f.name] = value
        out["target"].update(self.request)
        return out

    def to_record(self) -> dict:
        """``to_dict`` as run.json keeps it: header values are never written (``Name: <redacted>``)."""
        doc = self.to_dict()
        if "header" in doc["target"]:
            doc["target"]["header"] = [f"{h.partition(':')[0].strip()}: {REDACTED}" for h in doc["target"]["header"]]
        return doc

    def locust_args(self) -> list[str]:
        """The Locust plugin's flags for this spec (users, workers and host are the harness's)."""
        args = []
        for f in FIELDS:
            value = getattr(self, f.name)
            if f.locust and value is not None and value != f.default:
                args += [flag_of(f.name), str(value)]
        for name, value in self.request.items():
            if isinstance(value, dict):  # slo = {ttft_ms = 500} in a file
                value = [f"{k}={v}" for k, v in value.items()]
            for v in (value if isinstance(value, list) else [value]):
                args += [flag_of(name), str(v)]
        return args

    def with_values(self, **changes) -> "LoadSpec":
        spec = replace(self, **changes)
        spec.check_combinations()
        return spec


# -- readers: a config file, flags, both ---------------------------------------------------------------
def read_config(path: str | Path) -> dict:
    """A TOML spec file, or a run.json (its ``spec``): flat field -> value; SpecError names the file and key."""
    path = Path(path)
    source = str(path)
    try:
        text = path.read_text()
    except OSError as err:
        raise ValueError(f"--config {source}: cannot be read ({err.strerror or err})") from None
    try:
        doc = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as err:
        raise ValueError(f"--config {source}: not valid {'JSON' if path.suffix == '.json' else 'TOML'} ({err})") from None
    if path.suffix == ".json":
        if not isinstance(doc.get("spec"), dict):
            raise ValueError(f"--config {source}: has no 'spec' (a run.json written before burstbench 0.2 does not "
                             "record its load spec; give the flags instead)")
        doc = doc["spec"]
    return flatten(doc, source)


def flatten(doc: dict, source: str) -> dict:
    """``{"load": {...}, "target": {...}}`` as one flat dict, refusing unknown sections and keys."""
    flat = {}
    for section, table in doc.items():
        if section not in SECTIONS or not isinstance(table, dict):
            raise ValueError(f"{source}: [{section}] is not a section of a load spec (sections: {', '.join(SECTIONS)})")
        for key, value in table.items():
            if key not in BY_NAME and key not in REQUEST_FIELDS:
                raise ValueError(f"{source}: {section}.{key} is not a load parameter")
            flat[key] = value
    return flat


def spec_from_file(path: str | Path, overrides: dict | None = None) -> LoadSpec:
    """The file's spec with ``overrides`` (flag values) on top; errors name the file's key or the flag."""
    values = read_config(path)
    overrides = overrides or {}
    if any(REDACTED in h for h in values.get("header") or []) and "header" not in overrides:
        raise ValueError(f"--config {path}: the run's headers were not recorded (run.json never keeps header values, "
                         "which may be secrets): give every --header again")
    try:
        return LoadSpec.from_values({**values, **overrides})
    except ParameterError as err:
        if any(n in overrides for n in err.names):
            raise ValueError(err.as_flags()) from None
        raise ValueError(err.in_file(str(path), section_of)) from None


def reference_table() -> str:
    """docs/configuration.md's table of every field (a test keeps the page in step with FIELDS)."""
    lines = ["| key (file) | flag | section | default | accepted | meaning |", "|---|---|---|---|---|---|"]
    for f in FIELDS:
        accepted = f.accepted or (", ".join(f.choices) if f.choices else "a string")
        default = "" if f.default is None else f"`{f.default}`"
        lines.append(f"| `{f.name}` | `{flag_of(f.name)}` | {f.section} | {default} | {accepted} | {f.help} |")
    lines.append(f"| `{'`, `'.join(REQUEST_FIELDS)}` | `--preset`, `--path`, ... | target | | see "
                 "[own-service.md](own-service.md) | the request template of any HTTP endpoint (with `host`) |")
    return "\n".join(lines) + "\n"

