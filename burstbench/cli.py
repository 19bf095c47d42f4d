"""The ``burstbench`` command: one subcommand per job, each handed to the module that does it.

    burstbench run steady --requests 200              # serve the bundled model, load it, stop it, summarise
    burstbench run --host http://127.0.0.1:8000 --preset plain --path /predict --rate 20 --requests 50
    burstbench report --latest
    burstbench help-all                               # every subcommand's --help (docs/cli.md is made from it)

Modules are imported only for the subcommand asked for, so ``burstbench report`` never imports Locust or
gevent and ``burstbench run --host ...`` never imports the bundled service's model libraries.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from dataclasses import dataclass

from . import __version__


@dataclass(frozen=True)
class Command:
    module: str
    prefix: tuple[str, ...]  # arguments put before the user's, for modules that hold several jobs
    summary: str
    example: str
    group: str


COMMANDS = {
    "run": Command("burstbench.experiments.run", (), "one run against the bundled service (started and "
                   "stopped for you) or against --host; unknown flags go to Locust",
                   "burstbench run steady --requests 200 --seed 0\n"
                   "  burstbench run --host http://127.0.0.1:8000 --preset plain --path /predict --requests 50 --rate 20\n"
                   "  burstbench run --config results/<run>/run.json          # the same run again",
                   "load"),
    "sweep": Command("burstbench.experiments.sweep", (), "capacity sweep: open-loop rate steps per arrival process "
                     "until the p99 SLO breaks", "burstbench sweep --rates 2,4,8 --processes steady --slo-p99-ms 500",
                     "load"),
    "soak": Command("burstbench.experiments.soak", (), "a long bursty run against the bundled service: per-window "
                    "throughput and p50/p99, RSS leak and latency drift verdicts",
                    "burstbench soak --minutes 60 --rate 5 --scenario extreme", "load"),
    "resilience": Command("burstbench.resilience.__main__", (), "disrupt the service on a plan while load runs, "
                          "and report recovery", "burstbench resilience run --plan local-default", "load"),
    "bench-generator": Command("burstbench.experiments.bench_generator", (), "how precisely each dispatcher and "
                               "peer tool sends an arrival process, judged from a packet capture",
                               "burstbench bench-generator --cases exponential@200x4000 --peers none", "load"),
    "bench-streaming": Command("burstbench.experiments.bench_streaming", (), "TTFT and inter-token latency beside "
                               "AIPerf's, both against transformers serve with a tiny LLM at one Poisson rate",
                               "burstbench bench-streaming --rate 4 --requests 200", "load"),
    "bench-telemetry": Command("burstbench.experiments.bench_telemetry", (), "does scraping the target every "
                               "0.25 s disturb the schedule? telemetry off and on alternating, judged on the wire",
                               "burstbench bench-telemetry --pairs 3 --rate 400", "load"),
    "peers": Command("burstbench.experiments.peers", (), "run a peer load generator (AIPerf) from its own venv "
                     "under build/", "burstbench peers --peer aiperf --url http://127.0.0.1:8080 --rate 200 "
                     "--requests 400", "load"),
    "locustfile": Command("burstbench.cli", (), "print the path of a shipped locustfile, for plain `locust -f`",
                          "locust -f \"$(burstbench locustfile http)\" --headless --host http://127.0.0.1:8000 ...",
                          "load"),
    "report": Command("burstbench.analysis.__main__", ("report",), "full report of one run: Markdown, HTML, "
                      "CSV tables and PNG figures", "burstbench report --latest", "analysis"),
    "summary": Command("burstbench.analysis.__main__", ("summary",), "the exact p50/p95/p99 table of one run",
                       "burstbench summary results/<run>", "analysis"),
    "compare": Command("burstbench.analysis.__main__", ("compare",), "runs side by side with bootstrap CIs and "
                       "statistical tests", "burstbench compare results/<a> results/<b> --baseline results/<a>",
                       "analysis"),
    "sweep-report": Command("burstbench.analysis.sweep", (), "a sweep's tables and figures again, optionally "
                            "against another SLO", "burstbench sweep-report results/<UTC>-sweep --slo-p99-ms 300",
                            "analysis"),
    "validate": Command("burstbench.record_schema", (), "check run folders' run.json against the shipped JSON "
                        "Schema", "burstbench validate results/<run>", "analysis"),
    "trace-fit": Command("burstbench.analysis.__main__", ("trace-fit",), "rank gamma, lognormal, Weibull, exponential "
                         "and MMPP fits of a trace; the command that generates traffic like it", "burstbench trace-fit my_trace.csv --column timestamp", "analysis"),
    "paper-gaps": Command("burstbench.analysis.__main__", ("paper-gaps",), "the three scenarios' drawn gaps beside "
                          "the reference paper's", "burstbench paper-gaps --seed 0", "analysis"),
    "superposition": Command("burstbench.analysis.__main__", ("superposition",), "why distributed runs split one "
                             "schedule: independent workers drift towards Poisson",
                             "burstbench superposition --shape 0.8 --workers 1,2,4,8", "analysis"),
    "serve": Command("burstbench.service.__main__", ("serve",), "serve the bundled sentiment model (BentoML) in "
                     "the foreground", "burstbench serve --port 3000 --variant onnx-fp32 --batching on", "service"),
    "build-model": Command("burstbench.service.__main__", ("build-model",), "build the untrained default model "
                           "(no hub needed), or prepare a checkpoint", "burstbench build-model --size tiny",
                           "service"),
    "build-llm": Command("burstbench.service.__main__", ("build-llm",), "build an untrained tiny causal LM (GPT-2 "
                         "shape, no hub needed) to serve with transformers serve, vLLM, ...",
                         "burstbench build-llm --size tiny", "service"),
    "export": Command("burstbench.service.models", ("export",), "export and verify the ONNX and FP16 variants",
                      "burstbench export --variants onnx-fp32,onnx-opt", "service"),
    "bench-model": Command("burstbench.service.bench", (), "the variants' latency and throughput across batch "
                           "sizes, without HTTP", "burstbench bench-model --variants onnx-fp32 --batch-sizes 1,8",
                           "service"),
    "fuzz": Command("burstbench.service.fuzz", (), "generated malformed traffic (schemathesis) against the "
                    "service's OpenAPI schema", "burstbench fuzz --max-examples 50", "service"),
}
GROUPS = {"load": "load", "analysis": "analysis (no Locust, no model libraries)",
          "service": "the bundled service (needs the [service] extra)"}
SHIPPED_LOCUSTFILES = {"http": "http_endpoint.py", "sentiment": "sentiment.py", "fixed-body": "fixed_body.py"}


def overview() -> str:
    lines = [f"burstbench {__version__}: load-test model-serving endpoints with bursty, verified traffic.", "",
             "usage: burstbench COMMAND [ARGS ...]      burstbench COMMAND --help", ""]
    for group, title in GROUPS.items():
        lines.append(f"{title}:")
        lines += [f"  {name:16} {cmd.summary}" for name, cmd in COMMANDS.items() if cmd.group == group]
        lines.append("")
    lines += ["examples:", "  burstbench run steady --requests 200",
              "  burstbench run --host http://127.0.0.1:8000 --preset plain --path /predict --requests 50 --rate 20",
              "  burstbench report --latest", ""]
    return "\n".join(lines)


def locustfile_path(name: str) -> str:
    if name not in SHIPPED_LOCUSTFILES:
        raise ValueError(f"locustfile must be one of {', '.join(SHIPPED_LOCUSTFILES)} (got {name!r})")
    from .harness import locustfile

    return str(locustfile(SHIPPED_LOCUSTFILES[name]))


def _locustfile_main(argv) -> int:
    p = argparse.ArgumentParser(prog="burstbench locustfile", description=COMMANDS["locustfile"].summary)
    p.add_argument("name", choices=list(SHIPPED_LOCUSTFILES),
                   help="http: any HTTP endpoint (presets); sentiment: the bundled service; fixed-body: a fixed request")
    args = p.parse_args(argv)
    print(locustfile_path(args.name))
    return 0


def _example_epilog(name: str) -> str:
    return f"example:\n  {COMMANDS[name].example}\n"


def dispatch(name: str, argv: list[str]) -> int:
    cmd = COMMANDS[name]
    wants_help = any(a in ("-h", "--help") for a in argv)
    if name == "locustfile":
        main = _locustfile_main
    else:
        main = importlib.import_module(cmd.module).main
    try:
        rc = main([*cmd.prefix, *argv])
    except SystemExit as done:  # argparse's --help and usage errors
        if wants_help and done.code in (0, None):
            print(_example_epilog(name))
        raise
    return 0 if rc is None else int(rc)


def help_all() -> str:
    """Every subcommand's --help, in the table's order (docs/cli.md is made from the same, by cli_reference)."""
    from .cli_reference import command_help

    return "\n".join([overview(), *(f"## burstbench {name}\n\n{command_help(name)}\n" for name in COMMANDS)])


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(overview())
        return 0 if argv else 2
    if argv[0] == "--version":
        print(f"burstbench {__version__}")
        return 0
    if argv[0] == "help-all":
        print(help_all())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"burstbench: unknown command {name!r}; choose one of {', '.join(COMMANDS)} (burstbench --help)",
              file=sys.stderr)
        return 2
    try:
        return dispatch(name, rest)
    except ValueError as err:
        print(f"burstbench {name}: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
