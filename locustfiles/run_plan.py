"""The Locust plugin's run plan: the load spec's flags, validated into what one run does. No Locust here.

``add_run_arguments`` registers ``burstbench.spec``'s fields as Locust flags; ``RunPlan.from_options``
validates them (one line naming the flag, before any traffic); ``recorded_spec`` is what run.json keeps
so that ``burstbench run --config run.json`` repeats the run.
"""
from __future__ import annotations

import argparse
import json
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

from burstbench.arrivals.dispatch import check_mode
from burstbench.arrivals.traces import Trace
from burstbench.locustfiles.recording import check_run_dir
from burstbench.spec import FIELDS as SPEC_FIELDS, REQUEST_FIELDS, LoadSpec, flag_of

LOCUST_FIELDS = tuple(f for f in SPEC_FIELDS if f.locust)
REACHABLE_TIMEOUT_S = 3.0


def add_run_arguments(parser, dataset_help: str) -> None:
    """The load spec's flags (``burstbench.spec``, declared once), plus where this run's folder goes."""
    g = parser.add_argument_group("burstbench", "arrival process, pacing, texts and results")
    for f in LOCUST_FIELDS:
        g.add_argument(flag_of(f.name), default=None if f.default is None else str(f.default),
                       help=dataset_help if f.name == "dataset" else f.help)
    # The harness's whole spec (users, workers, target), recorded in run.json as given; without it the
    # plugin records its own flags with Locust's users and host (see ``recorded_spec``).
    g.add_argument("--spec-json", default=None, help=argparse.SUPPRESS)
    g.add_argument("--run-dir", default=None,
                   help="the exact run folder to write (must not exist yet, or be empty); default "
                        "<results-dir>/<UTC time>-<run-name>. Harnesses pass it so they never guess the folder")


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
    max_response_bytes: int = 8 * 2**20
    trace: Trace | None = None
    dispatcher: str = "timerfd"
    run_dir: Path | None = None

    spec: LoadSpec | None = None

    @classmethod
    def from_options(cls, o, role: str = "local") -> "RunPlan":
        """``role`` is local, master or worker; a worker gets its slots from the master, never from a trace file."""
        spec = LoadSpec.from_values({f.name: getattr(o, f.name, None) for f in LOCUST_FIELDS})
        return cls.from_spec(spec, role, run_dir=getattr(o, "run_dir", None))

    @classmethod
    def from_spec(cls, spec: LoadSpec, role: str = "local", run_dir: str | None = None) -> "RunPlan":
        trace = None
        if spec.trace is not None:
            token_columns = spec.trace_input_tokens or spec.trace_output_tokens
            if role != "worker" or token_columns:  # a worker needs the file only for its requests' lengths
                trace = Trace.load(spec.trace, spec.trace_column, spec.mean_s,
                                   input_tokens_column=spec.trace_input_tokens,
                                   output_tokens_column=spec.trace_output_tokens)
            dist = trace
        else:
            dist = spec.process()
        if spec.pacing != "arrival" and role != "local":
            what = "the paper's" if spec.pacing == "think" else "a"
            raise ValueError(f"--pacing {spec.pacing} is {what} single-process closed loop; distributed runs "
                             "(--master/--worker/--processes) use --pacing arrival, one schedule split across workers")
        requests = spec.requests
        if requests is None:  # a trace: all of it; a rate profile: what it expects over its length
            profile = getattr(dist, "profile", None)
            requests = len(trace) if trace is not None else (
                max(1, round(profile.expected_requests)) if profile is not None else 1000)
        elif trace is not None and requests > len(trace):
            raise ValueError(f"--requests must be in [1, {len(trace)}] for --trace {spec.trace} "
                             f"(it has {len(trace)} timestamps; got {requests})")
        return cls(
            name=spec.run_label(),
            distribution=dist,
            pacing=spec.pacing,
            requests=requests,
            seed=spec.seed,
            dataset=spec.dataset,
            text_column=spec.text_column,
            subset=spec.subset,
            results_dir=Path(spec.results_dir),
            request_timeout_s=spec.request_timeout,
            max_response_bytes=spec.max_response_bytes,
            progress_every_s=spec.progress_every,
            trace=trace,
            dispatcher=check_mode(spec.dispatcher),
            # A worker keeps no folder: the master's --run-dir is the master's to check and fill.
            run_dir=None if run_dir is None or role == "worker" else check_run_dir(Path(run_dir)),
            spec=spec,
        )


def recorded_spec(plan: RunPlan, options, host: str | None) -> dict:
    """run.json's ``spec``: the harness's whole spec (``--spec-json``), else these flags with Locust's users,
    processes and host; ``burstbench run --config run.json`` repeats the run from it."""
    if getattr(options, "spec_json", None):
        return LoadSpec.from_dict(json.loads(options.spec_json), "--spec-json").to_record()
    request = {n: getattr(options, n) for n in REQUEST_FIELDS if getattr(options, n, None) not in (None, [])}
    processes = getattr(options, "processes", None)
    return plan.spec.with_values(users=getattr(options, "num_users", None) or plan.spec.users, host=host,
                                 workers=processes if processes and processes > 1 else None,
                                 request=request).to_record()


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
