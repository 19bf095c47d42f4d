"""Generated malformed traffic against the service's own OpenAPI schema (schemathesis), counting status codes.

    burstbench fuzz --cases 500 --url http://127.0.0.1:3000     # a running service
    burstbench fuzz --cases 500                                 # starts the tiny model's own server

Schemathesis draws request bodies from the schema BentoML serves at /docs.json: valid ones
("positive") and ones that break it ("negative": wrong types, missing fields, non-JSON bytes...).
Most cases go to POST /analyze-sentiment; the other operations get the rest. The draw is seeded,
so a seed gives the same cases. Target: no 5xx, no dropped connection, /readyz 200 afterwards.
Exit status 0 when the target is met, 1 when not, 2 on bad arguments.
"""
from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from burstbench import harness


ROUTE = "/analyze-sentiment"
TINY_MODEL = Path("build") / "models" / "untrained-roberta-tiny"
READY_DEADLINE_S = 180
# Shares of the cases per (path, mode); the rest is split over the schema's other operations.
PLAN = {(ROUTE, "negative"): 0.5, (ROUTE, "positive"): 0.3}
MAX_TOP_UPS = 20  # extra seeded rounds when a strategy's space ran out before its share


@dataclass
class FuzzReport:
    statuses: Counter = field(default_factory=Counter)  # (operation, mode, status or error name) -> cases
    server_errors: list = field(default_factory=list)   # (operation, mode, status, body excerpt) of every 5xx
    ready_after: bool | None = None

    @property
    def total(self) -> int:
        return sum(self.statuses.values())

    def by_status(self) -> Counter:
        out = Counter()
        for (_, _, status), n in self.statuses.items():
            out[status] += n
        return out

    @property
    def ok(self) -> bool:
        return not self.server_errors and self.ready_after is True and all(
            isinstance(status, int) for status in self.by_status())

    def table(self) -> str:
        """Cases per operation and mode, one column per status code (errors: the exception's name)."""
        statuses = sorted(self.by_status(), key=str)
        rows = sorted({(op, mode) for op, mode, _ in self.statuses})
        width = max(len(f"{op} {mode}") for op, mode in rows) if rows else 10
        lines = [f"{'operation':<{width}}  " + "  ".join(f"{str(s):>6}" for s in statuses) + "   total"]
        for op, mode in rows:
            counts = [self.statuses.get((op, mode, s), 0) for s in statuses]
            lines.append(f"{op + ' ' + mode:<{width}}  " + "  ".join(f"{n:>6}" for n in counts) + f"  {sum(counts):>6}")
        lines.append(f"{'all':<{width}}  " + "  ".join(f"{self.by_status()[s]:>6}" for s in statuses) + f"  {self.total:>6}")
        return "\n".join(lines)


def fuzz(url: str, cases: int, seed: int = 0, progress_every_s: float = 10.0, out=sys.stdout) -> FuzzReport:
    """Send about ``cases`` generated requests (at least that many unless every strategy runs dry)."""
    import requests
    import schemathesis
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as hypothesis_seed
    from hypothesis.errors import Unsatisfiable

    schema = schemathesis.openapi.from_url(url + "/docs.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    others = [(op, mode) for op in operations for mode in ("positive", "negative") if (op.path, mode) not in PLAN]
    budget = {(op, mode): round(cases * share) for op in operations for (path, mode), share in PLAN.items()
              if op.path == path}
    rest = cases - sum(budget.values())
    for i, key in enumerate(others):
        budget[key] = rest // len(others) + (i < rest % len(others))

    report = FuzzReport()
    session = requests.Session()
    last_progress = time.monotonic()

    def run(op, mode: str, n: int, round_seed: int) -> int:
        sent_before = report.total
        if n <= 0:
            return 0

        @hypothesis_seed(round_seed)
        @settings(max_examples=n, database=None, deadline=None, derandomize=False, phases=[Phase.generate],
                  suppress_health_check=list(HealthCheck), print_blob=False)
        @given(op.as_strategy(generation_mode=schemathesis.GenerationMode(mode)))
        def one(case):
            nonlocal last_progress
            key = f"{op.method.upper()} {op.path}"
            try:
                response = case.call(base_url=url, session=session, timeout=60)
                status = response.status_code
            except requests.RequestException as err:  # a dropped connection is a failure too
                status = type(err).__name__
                report.server_errors.append((key, mode, status, repr(case.body)[:200]))
            else:
                if status >= 500:
                    report.server_errors.append((key, mode, status, repr(case.body)[:200]))
            report.statuses[(key, mode, status)] += 1
            if time.monotonic() - last_progress >= progress_every_s:
                last_progress = time.monotonic()
                print(f"fuzz: {report.total}/{cases} cases, {len(report.server_errors)} 5xx or dropped", file=out)

        try:
            one()
        except Unsatisfiable:  # nothing to break: e.g. a negative case for GET /readyz, which takes no input
            pass
        return report.total - sent_before

    for (op, mode), n in budget.items():
        run(op, mode, n, seed)
    # Parameterless operations (GET /readyz...) run dry after one case: make up the count on the main route.
    main = next(op for op in operations if op.path == ROUTE)
    for top_up in range(1, MAX_TOP_UPS + 1):
        if report.total >= cases:
            break
        if run(main, "negative", cases - report.total, seed + top_up) == 0:
            break
    report.ready_after = ready(url)
    return report


def ready(url: str, timeout_s: float = 10.0) -> bool:
    return harness.http_ok(url + "/readyz", timeout_s)


class OwnServer:
    """The bundled service on a free loopback port, in its own process group, stopped on exit."""

    def __init__(self, model: Path, log_path: Path):
        self.service = harness.Service(model, harness.free_port(), log_path=log_path).start()
        self.url = self.service.url
        try:
            self.service.wait_ready(READY_DEADLINE_S)
        except harness.NotReady:
            self.stop()
            raise RuntimeError(f"the service did not become ready; its log: {log_path}") from None

    def stop(self):
        self.service.stop()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="burstbench fuzz", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default=None, help="a running service (default: start the tiny model's own)")
    parser.add_argument("--model", type=Path, default=None, help=f"model folder of the own server (default {TINY_MODEL}, built when missing)")
    parser.add_argument("--cases", type=int, default=500, help="generated requests, in [1, 1000000] (default 500)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the generated cases, >= 0 (default 0)")
    args = parser.parse_args(argv)
    if not 1 <= args.cases <= 1_000_000:
        parser.error(f"--cases must be in [1, 1000000] (got {args.cases})")
    if args.seed < 0:
        parser.error(f"--seed must be >= 0 (got {args.seed})")
    if args.url is not None and args.model is not None:
        parser.error("give --url (a running service) or --model (start one), not both")

    server = None
    url = (args.url or "").rstrip("/")
    if not url:
        model = args.model
        if model is None:
            from .model_builder import build_default_model
            from .models import export_variants

            model = build_default_model(TINY_MODEL, size="tiny")
            export_variants(model, variants=["onnx-fp32"])
        log_path = Path("build") / "fuzz-service.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        print(f"fuzz: starting the service with {model} (log: {log_path})")
        server = OwnServer(model, log_path)
        url = server.url
    elif not ready(url):
        print(f"burstbench fuzz: --url {url} is not ready (GET /readyz did not answer 200)", file=sys.stderr)
        return 2
    try:
        started = time.perf_counter()
        report = fuzz(url, args.cases, args.seed)
        elapsed = time.perf_counter() - started
    finally:
        if server is not None:
            server.stop()
    print(f"\n{report.total} generated cases against {url} in {elapsed:.0f} s (seed {args.seed}); status codes:")
    print(report.table())
    for key, mode, status, body in report.server_errors[:20]:
        print(f"  {status} from {key} ({mode}): body {body}")
    print(f"5xx or dropped connections: {len(report.server_errors)}; /readyz afterwards: "
          f"{'200' if report.ready_after else 'NOT ready'}")
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
