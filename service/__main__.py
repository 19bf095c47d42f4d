"""``burstbench``: build the default model, prepare a checkpoint, or serve.

    burstbench build-model [--size base|tiny] [--out DIR]      # and export every variant
    burstbench build-model --from CHECKPOINT_DIR_OR_HUB_ID --out DIR
    burstbench serve [--port 3000] [--model DIR] [--variant onnx-fp32] [--batching on|off]
                     [--max-concurrency 1000] [--deadline-ms 0] [--timeout-s 60]
    burstbench build-llm [--size tiny|small] [--out DIR]              # an untrained causal LM for streaming tests
"""
from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path

from .inference import resolve_device
from .models import VARIANTS, ExportError, export_variants, find_variant
from .settings import ServiceSettings
from .model_builder import DEFAULT_MODEL_DIR, DEFAULT_SEED, SHAPES, build_default_model, prepare_checkpoint
from .llm_builder import DEFAULT_LLM_DIR, LLM_SHAPES, build_tiny_llm


def server_home(bentoml_home: str | None, port: int) -> Path:
    """A BentoML home of this server's own, one per port, under the user's (default ~/bentoml).

    BentoML keeps its Prometheus multiprocess files in ``$BENTOML_HOME/prometheus_multiproc_dir`` and
    empties that folder whenever a server starts: a second server on the same machine (a test's, a
    sweep's) would wipe the first one's counters and both /metrics pages would then report the second
    server's requests. Nothing else of the home is used here (the model is read from its folder).
    """
    base = Path(bentoml_home) if bentoml_home else Path.home() / "bentoml"
    return base / "burstbench-servers" / f"port-{int(port)}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="burstbench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    b = sub.add_parser("build-model", help="build the untrained default model, or prepare a checkpoint")
    b.add_argument("--out", type=Path, default=None, help=f"model folder (default {DEFAULT_MODEL_DIR})")
    b.add_argument("--size", choices=sorted(SHAPES), default="base", help="default model shape (default base)")
    b.add_argument("--from", dest="source", default=None, help="a Hugging Face checkpoint folder or hub id instead")
    b.add_argument("--seed", type=int, default=DEFAULT_SEED)
    b.add_argument("--max-length", type=int, default=128, help="tokens per text, in [8, 512]")
    b.add_argument("--force", action="store_true", help="rebuild even when an identical build exists")
    b.add_argument("--variants", default=",".join(VARIANTS), help="variants to export (default: all)")

    g = sub.add_parser("build-llm", help="build an untrained causal LM (GPT-2 shape, no hub needed) for any "
                       "OpenAI-compatible server")
    g.add_argument("--out", type=Path, default=DEFAULT_LLM_DIR, help=f"model folder (default {DEFAULT_LLM_DIR})")
    g.add_argument("--size", choices=sorted(LLM_SHAPES), default="tiny", help="tiny (about 1 MB) or small "
                   "(GPT-2 small's shape); default tiny")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--force", action="store_true", help="rebuild even when an identical build exists")

    s = sub.add_parser("serve", help="serve the model in the foreground (bentoml serve)")
    s.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: loopback only)")
    s.add_argument("--port", type=int, default=3000)
    s.add_argument("--model", type=Path, default=None, help="model folder (default: the built default model)")
    s.add_argument("--variant", choices=VARIANTS, default=None)
    s.add_argument("--batching", choices=("on", "off"), default=None, help="BentoML adaptive batching")
    s.add_argument("--device", choices=("auto", "cpu", "cuda"), default=None, help="default auto: CUDA when present")
    s.add_argument("--max-batch-size", type=int, default=None)
    s.add_argument("--max-latency-ms", type=int, default=None)
    s.add_argument("--max-concurrency", type=int, default=None,
                   help="requests in flight before answering 429 (default 1000; 0: unbounded)")
    s.add_argument("--deadline-ms", type=int, default=None,
                   help="drop queued work older than this (default 0: only X-Request-Timeout-Ms)")
    s.add_argument("--timeout-s", type=int, default=None, help="BentoML's traffic timeout: 504 after it (default 60)")

    args = parser.parse_args(argv)
    if args.command == "build-model":
        warnings.filterwarnings("ignore")  # the ONNX exporter's tracer warnings are not the user's concern
        try:
            if args.source:
                if args.out is None:
                    parser.error("--from needs --out DIR")
                model_dir = prepare_checkpoint(args.source, args.out, args.force)
            else:
                model_dir = build_default_model(args.out or DEFAULT_MODEL_DIR, args.size, args.seed, args.max_length,
                                                force=args.force)
            export_variants(model_dir, variants=[v.strip() for v in args.variants.split(",") if v.strip()],
                            max_length=args.max_length)
        except (ValueError, ExportError) as err:
            print(f"burstbench build-model: {err}", file=sys.stderr)
            return 2
        return 0

    if args.command == "build-llm":
        warnings.filterwarnings("ignore")
        out = build_tiny_llm(args.out, args.size, args.seed, args.force)
        print(f"model: untrained-gpt2-{args.size} in {out}; serve it with\n"
              f"  HF_HUB_OFFLINE=1 transformers serve {out} --host 127.0.0.1 --port 8000 --device cpu\n"
              f"and load it with --preset openai-chat --model-name {out}")
        return 0

    if not 1 <= args.port <= 65535:
        parser.error(f"--port must be in [1, 65535] (got {args.port})")
    env = dict(os.environ)
    for name, value in (("MODEL", args.model), ("VARIANT", args.variant), ("BATCHING", args.batching),
                        ("DEVICE", args.device),
                        ("MAX_BATCH_SIZE", args.max_batch_size), ("MAX_LATENCY_MS", args.max_latency_ms),
                        ("MAX_CONCURRENCY", args.max_concurrency), ("DEADLINE_MS", args.deadline_ms),
                        ("TIMEOUT_S", args.timeout_s)):
        if value is not None:
            env[f"BURSTBENCH_{name}"] = str(Path(value).resolve()) if name == "MODEL" else str(value)
    try:
        settings = ServiceSettings.from_env(env)  # fail here with one line, not in a respawning worker
    except ValueError as err:
        print(f"burstbench serve: {err}", file=sys.stderr)
        return 2
    model_dir = settings.model_dir
    if not (model_dir / "config.json").exists():
        print(f"burstbench serve: no model in {model_dir}; run 'burstbench build-model' first",
              file=sys.stderr)
        return 2
    try:  # say why a variant cannot run here before BentoML starts (it respawns failing workers forever)
        find_variant(model_dir, settings.variant, settings.variants_dir)
        resolve_device(settings.device)
    except (FileNotFoundError, RuntimeError, ValueError) as err:
        print(f"burstbench serve: {err}", file=sys.stderr)
        return 2
    env.setdefault("BENTOML_DO_NOT_TRACK", "True")
    env["BENTOML_HOME"] = str(server_home(env.get("BENTOML_HOME"), args.port))
    cmd = [sys.executable, "-m", "bentoml", "serve", "burstbench.service.service:Sentiment",
           "--host", args.host, "--port", str(args.port), "--working-dir", os.getcwd()]
    os.execvpe(cmd[0], cmd, env)


if __name__ == "__main__":
    sys.exit(main())
