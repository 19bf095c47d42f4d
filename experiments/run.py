"""``burstbench run``: one run, against the bundled service (started and stopped here) or any ``--host``.

    burstbench run steady --requests 200                       # serve the default model, load it, summarise
    burstbench run --arrival gamma --shape 0.8 --rate 20 --requests 500 --host http://127.0.0.1:8000 \\
        --preset plain --path /predict
    burstbench run --config load.toml --seed 3                 # a spec file; flags override it
    burstbench run --config results/<run>/run.json             # that run again: same schedule, same texts
    burstbench run steady --requests 100 -- --csv-full-history # anything unknown (or after --) goes to Locust

Without ``--host`` the bundled service is built when missing, started on loopback, waited for, and
stopped afterwards; with it, the shipped ``http`` locustfile sends the request template given by
``--preset``/``--path``/``--payload``... Every load parameter is declared once (``burstbench.spec``); the
validated spec is written into the run's run.json, so ``--config results/<run>/run.json`` repeats it.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from burstbench.errors import ParameterError
from burstbench.processes import check_port_free
from burstbench.spec import (BY_NAME, FIELDS, REPEATABLE_FIELDS, REQUEST_FIELDS, SCENARIO_NAMES, LoadSpec,
                             flag_of, spec_from_file)

SERVICE_ONLY = ("port", "model", "variant", "batching", "ready_timeout")
REQUEST_HELP = {
    "preset": "request template of a known API: plain, kserve-v2, openai-completions, openai-chat, ... (with --host)",
    "model_name": "model name for the kserve-v2 and openai-* presets", "method": "HTTP method (default POST)",
    "path": "endpoint path, e.g. /v1/classify", "payload": "JSON template with {text} or {texts}",
    "batch_size": "texts per request (>= 1)", "header": "NAME: VALUE, repeatable; ${ENV} is substituted",
    "expect_status": "status that counts as success (default: any 2xx)",
    "expect_field": "dotted JSON field that a successful answer must hold",
    "input_name": "input tensor name for kserve-v2", "max_tokens": "max_tokens for the openai-* presets",
    "stream": "on or off: read server-sent events (default on for the openai-* presets and sse)",
    "stream_usage": "on or off: ask for usage in the last chunk (default on)",
    "chunk_field": "--preset sse: the dotted JSON field of each event holding one chunk",
    "tokenizer": "a tokenizer folder (or hub id) to count tokens and make --input-tokens exact",
    "input_tokens": "synthetic prompts of this length: 128, uniform:64,256, normal:512,128, lognormal:...",
    "output_tokens": "max_tokens drawn per request from this length distribution",
    "ignore_eos": "on or off: with --output-tokens, send ignore_eos and min_tokens (default on)",
    "slo": "METRIC=MS, repeatable: ttft_ms, tpot_ms, latency_ms, itl_p<NN>_ms, itl_max_ms (goodput)",
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="burstbench run", description=__doc__, add_help=True,
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                usage="burstbench run [SCENARIO] [options] [-- LOCUST OPTIONS]")
    p.add_argument("--config", default=None, help="a TOML load spec, or a run's run.json to repeat it")
    load = p.add_argument_group("load (burstbench.spec; also the [load] table of --config)")
    for f in FIELDS:
        if f.section == "load":
            load.add_argument(flag_of(f.name), dest=f.name, default=argparse.SUPPRESS, help=_help(f))
    target = p.add_argument_group("target (the [target] table of --config)")
    target.add_argument("--host", dest="host", default=argparse.SUPPRESS, help=BY_NAME["host"].help)
    for name in REQUEST_FIELDS:
        target.add_argument(flag_of(name), dest=name, default=argparse.SUPPRESS, help=REQUEST_HELP[name],
                            **({"action": "append"} if name in REPEATABLE_FIELDS else {}))
    service = p.add_argument_group("the bundled service (without --host)")
    service.add_argument("--port", default=argparse.SUPPRESS, help="loopback port to serve on (default 3000)")
    service.add_argument("--model", type=Path, default=argparse.SUPPRESS,
                         help="model folder (default: build the untrained default)")
    service.add_argument("--variant", default=argparse.SUPPRESS, help="served model variant (onnx-fp32, torch-fp32, ...)")
    service.add_argument("--batching", default=argparse.SUPPRESS, help="BentoML adaptive batching: on or off")
    service.add_argument("--ready-timeout", dest="ready_timeout", default=argparse.SUPPRESS,
                         help="seconds to wait for /readyz (default 300)")
    return p


def _help(f) -> str:
    default = "" if f.default is None or f.default == "" else f" [default {f.default}]"
    return f.help + (default if "default" not in f.help else "")


def parse(argv: list[str]):
    """(spec, service options, Locust's own arguments) from the command line; ValueError with one line."""
    argv = list(argv)
    locust_args = []
    if "--" in argv:
        cut = argv.index("--")
        argv, locust_args = argv[:cut], argv[cut + 1:]
    positional = argv.pop(0) if argv and not argv[0].startswith("-") else None
    ns, unknown = build_parser().parse_known_args(argv)
    given = vars(ns)
    config = given.pop("config", None)
    service = {k: given.pop(k) for k in SERVICE_ONLY if k in given}
    if positional is not None:
        if positional == "trace":
            if "trace" not in given and not config:
                raise ValueError("the 'trace' scenario needs --trace FILE")
        elif positional in SCENARIO_NAMES:
            given["scenario"] = positional
        else:
            raise ValueError(f"--scenario must be one of {', '.join(SCENARIO_NAMES)} (or trace, with --trace FILE; "
                             f"got {positional!r})")
    try:
        spec = spec_from_file(config, given) if config else LoadSpec.from_values(given)
    except ParameterError as err:
        raise ValueError(err.as_flags()) from None
    if positional not in (None, "trace") and spec.trace is not None:
        raise ValueError(f"with --trace the scenario is 'trace' (got {positional!r})")
    if spec.trace is not None and not Path(spec.trace).is_file():
        raise ValueError(f"--trace {spec.trace}: no such file")
    return spec, _check_service(spec, service), unknown + locust_args


def _check_service(spec: LoadSpec, service: dict) -> dict:
    if spec.host is not None:
        given = [flag_of(k) for k in service]
        if given:
            verb = "configures" if len(given) == 1 else "configure"
            raise ValueError(f"{', '.join(given)} {verb} the bundled service; with --host burstbench serves "
                             "nothing (drop them, or drop --host)")
        return {}
    if spec.request:
        raise ValueError(f"{flag_of(next(iter(spec.request)))} describes another service's endpoint: it needs --host "
                         "(the bundled service has its own)")
    port = _int("--port", service.get("port", 3000))
    if not 1 <= port <= 65535:
        raise ValueError(f"--port must be in [1, 65535] (got {service.get('port')!r})")
    check_port_free(port)
    batching = service.get("batching")
    if batching not in (None, "on", "off"):
        raise ValueError(f"--batching must be on or off (got {batching!r})")
    try:
        ready = float(service.get("ready_timeout", 300.0))
    except (TypeError, ValueError):
        ready = -1.0
    if not 0 < ready < float("inf"):
        raise ValueError(f"--ready-timeout must be a number of seconds > 0 (got {service.get('ready_timeout')!r})")
    return {"port": port, "model": service.get("model"), "variant": service.get("variant"),
            "batching": batching, "ready_timeout": ready}


def _int(flag, raw) -> int:
    try:
        return int(raw)
    except (TypeError, ValueError):
        raise ValueError(f"{flag} must be an integer (got {raw!r})") from None


def check_endpoint(spec: LoadSpec) -> None:
    """The request template, judged by the locustfile's own rules before any traffic."""
    from burstbench.locustfiles.endpoint import DEFAULT_MAX_TOKENS, EndpointSpec

    defaults = {"preset": None, "model_name": None, "method": None, "path": None, "payload": None, "batch_size": "1",
                "header": [], "expect_status": None, "expect_field": None, "input_name": "text",
                "max_tokens": str(DEFAULT_MAX_TOKENS), "seed": spec.seed}
    request = dict(spec.request)
    if isinstance(request.get("slo"), dict):
        request["slo"] = [f"{k}={v}" for k, v in request["slo"].items()]
    EndpointSpec.from_options(argparse.Namespace(**{**defaults, **request}))


def main(argv=None) -> int:
    try:
        spec, service, locust_args = parse(sys.argv[1:] if argv is None else argv)
        if spec.host is not None:
            check_endpoint(spec)
    except ValueError as err:
        print(f"burstbench run: {err}", file=sys.stderr)
        return 2
    from burstbench.experiments.execute import execute

    return execute(spec, service, locust_args)


if __name__ == "__main__":
    sys.exit(main())
