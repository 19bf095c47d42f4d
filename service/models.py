"""Every serving variant of a sequence-classification checkpoint, exported once and verified.

    burstbench export --model <checkpoint dir or hub id> [--out DIR] [--variants ...]

Variants (the paper's Tables 1-2):

* ``torch-fp32``: the checkpoint itself.
* ``torch-fp16``: loaded directly in half precision through transformers, saved as such.
* ``onnx-fp32``: exported with dynamic batch and sequence axes (eager attention, so that
  ONNX Runtime's transformer optimiser recognises the attention pattern).
* ``onnx-opt``: ONNX Runtime's transformer optimiser; the fused operators are counted.
* ``onnx-fp16``: the optimised graph converted to FP16, int64 inputs and float32 logits kept.

Artefacts live in ``<out>/<digest of the checkpoint's files>/<variant>/`` with a
``manifest.json``: a second export of the same checkpoint is instant. Every variant's
probabilities are compared with torch-fp32 on the bundled texts at export time, and the
export fails past a tolerance.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from .model_builder import DEFAULT_MODEL_DIR
from .texts import load_bundled

VARIANTS = ("torch-fp32", "torch-fp16", "onnx-fp32", "onnx-opt", "onnx-fp16")
DEFAULT_VARIANTS_DIR = Path("build") / "variants"
MANIFEST = "manifest.json"
ONNX_FILE = "model.onnx"
CHECK_TEXTS = 64
# Largest |probability difference| from torch-fp32 accepted at export, and the argmax agreement.
TOLERANCE = {"fp32": (1e-3, 1.0), "fp16": (2e-2, 0.95)}
FUSED_OPS = ("Attention", "MultiHeadAttention", "SkipLayerNormalization", "EmbedLayerNormalization",
             "BiasGelu", "FastGelu", "Gelu", "LayerNormalization")
_HASHED = ("config.json", "tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt")


class ExportError(RuntimeError):
    """A variant that could not be produced or did not reproduce torch-fp32."""


def checkpoint_digest(model_dir: Path) -> str:
    """Content hash of the files that define the model (weights, config, tokenizer)."""
    model_dir = Path(model_dir)
    files = sorted(p for p in model_dir.iterdir()
                   if p.is_file() and (p.name in _HASHED or p.suffix in (".safetensors", ".bin")))
    if not any(p.suffix in (".safetensors", ".bin") for p in files):
        raise ValueError(f"--model {model_dir}: no weights (*.safetensors or *.bin) in it")
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode())
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:16]


def variants_dir(model_dir: Path, root: Path = DEFAULT_VARIANTS_DIR) -> Path:
    return Path(root) / checkpoint_digest(model_dir)


def find_variant(model_dir: Path, variant: str, root: Path = DEFAULT_VARIANTS_DIR) -> Path:
    """The exported artefact folder of ``variant``; a clear error when it was never exported."""
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {', '.join(VARIANTS)} (got {variant!r})")
    if variant == "torch-fp32":
        return Path(model_dir)
    folder = variants_dir(model_dir, root)
    manifest = folder / MANIFEST
    if not manifest.is_file() or variant not in json.loads(manifest.read_text()).get("variants", {}):
        raise FileNotFoundError(f"variant {variant} of {model_dir} is not exported: run "
                                f"'burstbench export --model {model_dir}'")
    return folder / variant


def resolve_source(model: str) -> Path:
    """A local checkpoint folder, or a hub id downloaded where a hub is reachable."""
    path = Path(model)
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ValueError(f"--model {model}: no config.json, not a Hugging Face checkpoint folder")
        return path
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(model))
    except Exception as err:  # offline is the common case here: one line
        raise ValueError(f"--model {model}: not a local folder, and the hub could not provide it "
                         f"({type(err).__name__})") from None


def _size_mb(path: Path) -> float:
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    return round(sum(p.stat().st_size for p in files) / 2**20, 1)


def _check_texts(tokenizer, max_length: int):
    texts = [t for t, _ in load_bundled()][:CHECK_TEXTS]
    return tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_tensors="np")


def _softmax(logits: np.ndarray) -> np.ndarray:
    from scipy.special import softmax

    return softmax(logits.astype(np.float64), axis=-1)


def export_variants(model: str | Path, root: Path = DEFAULT_VARIANTS_DIR, variants=VARIANTS,
                    max_length: int = 128, force: bool = False) -> dict:
    """Export (or reuse) the variants of one checkpoint; returns the manifest."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise ValueError(f"--variants: unknown {unknown}; accepted: {', '.join(VARIANTS)}")
    source = resolve_source(str(model))
    folder = variants_dir(source, root)
    manifest_path = folder / MANIFEST
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() and not force else {}
    if manifest.get("max_length") not in (None, max_length):
        manifest = {}  # exported for another sequence length: start again
    done = manifest.setdefault("variants", {})
    todo = [v for v in variants if v not in done]
    if not todo:
        print(f"variants: reusing {folder} ({', '.join(variants)})")
        return manifest
    folder.mkdir(parents=True, exist_ok=True)
    manifest.update(source=str(source), digest=folder.name, max_length=max_length, labels=None)
    tokenizer = AutoTokenizer.from_pretrained(source)
    reference = AutoModelForSequenceClassification.from_pretrained(source, attn_implementation="eager").eval()
    manifest["labels"] = [reference.config.id2label[i] for i in range(reference.config.num_labels)]
    enc = _check_texts(tokenizer, max_length)
    with torch.inference_mode():
        reference_probs = _softmax(reference(input_ids=torch.from_numpy(enc["input_ids"]),
                                             attention_mask=torch.from_numpy(enc["attention_mask"])).logits.numpy())

    def verify(variant: str, probs: np.ndarray) -> dict:
        tolerance, min_agreement = TOLERANCE["fp16" if variant.endswith("fp16") else "fp32"]
        diff = float(np.abs(probs - reference_probs).max())
        agreement = float((probs.argmax(1) == reference_probs.argmax(1)).mean())
        if diff > tolerance or agreement < min_agreement:
            raise ExportError(f"{variant} does not reproduce torch-fp32 on {len(probs)} bundled texts: max "
                              f"|probability difference| {diff:.2e} (limit {tolerance:g}), argmax agreement "
                              f"{agreement:.3f} (limit {min_agreement:g})")
        return {"max_abs_prob_diff": diff, "argmax_agreement": agreement, "texts": len(probs)}

    def onnx_probs(path: Path) -> np.ndarray:
        import onnxruntime as ort

        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        (logits,) = session.run(["logits"], {"input_ids": enc["input_ids"].astype(np.int64),
                                             "attention_mask": enc["attention_mask"].astype(np.int64)})
        return _softmax(logits)

    for variant in todo:
        started = time.perf_counter()
        entry: dict = {}
        out = folder / variant
        if variant == "torch-fp32":
            out = source
            check = verify(variant, reference_probs)
        elif variant == "torch-fp16":
            half = AutoModelForSequenceClassification.from_pretrained(source, dtype=torch.float16).eval()
            shutil.rmtree(out, ignore_errors=True)
            half.save_pretrained(out)
            tokenizer.save_pretrained(out)
            with torch.inference_mode():
                logits = half(input_ids=torch.from_numpy(enc["input_ids"]),
                              attention_mask=torch.from_numpy(enc["attention_mask"])).logits.float().numpy()
            check = verify(variant, _softmax(logits))
        elif variant == "onnx-fp32":
            export_onnx(reference, tokenizer, out / ONNX_FILE)
            check = verify(variant, onnx_probs(out / ONNX_FILE))
        else:  # onnx-opt, onnx-fp16: from the exported FP32 graph
            fp32 = folder / "onnx-fp32" / ONNX_FILE
            if not fp32.is_file():
                export_onnx(reference, tokenizer, fp32)
            optimised, fused = optimise_onnx(fp32, reference.config)
            if variant == "onnx-fp16":
                optimised.convert_float_to_float16(keep_io_types=True)
            out.mkdir(parents=True, exist_ok=True)
            optimised.save_model_to_file(str(out / ONNX_FILE))
            check = verify(variant, onnx_probs(out / ONNX_FILE))
            entry["fused_operators"] = fused
        entry.update(path=str(out), size_mb=_size_mb(out if variant != "torch-fp32" else _weights(out)),
                     check=check, export_seconds=round(time.perf_counter() - started, 1))
        done[variant] = entry
        manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")  # after each: a crash keeps the rest
        fused = entry.get("fused_operators")
        print(f"variants: {variant:<10} {entry['size_mb']:8.1f} MB  max |dp| {check['max_abs_prob_diff']:.1e}  "
              f"agreement {check['argmax_agreement']:.3f}" + (f"  fused {fused}" if fused else ""))
    return manifest


def _weights(model_dir: Path) -> Path:
    return next(p for p in sorted(Path(model_dir).iterdir()) if p.suffix in (".safetensors", ".bin"))


def export_onnx(model, tokenizer, path: Path) -> Path:
    """Export with dynamic batch and sequence axes (legacy exporter: no onnxscript needed)."""
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    sample = tokenizer(["a short example", "another one"], padding=True, return_tensors="pt")
    # The tracer warns about Python branches it freezes; the comparison with torch that follows
    # every export is the real check, so keep the screen quiet.
    with torch.inference_mode(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model, (sample["input_ids"], sample["attention_mask"]), str(path), dynamo=False,
            input_names=["input_ids", "attention_mask"], output_names=["logits"],
            dynamic_axes={"input_ids": {0: "batch", 1: "sequence"}, "attention_mask": {0: "batch", 1: "sequence"},
                          "logits": {0: "batch"}},
            opset_version=17,
        )
    return path


def optimise_onnx(path: Path, config):
    """ONNX Runtime's transformer optimiser; returns the model and its fused operator counts."""
    from onnxruntime.transformers.optimizer import optimize_model

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        optimised = optimize_model(str(path), model_type="bert", num_heads=config.num_attention_heads,
                                   hidden_size=config.hidden_size)
    ops = [node.op_type for node in optimised.model.graph.node]
    fused = {op: ops.count(op) for op in FUSED_OPS if ops.count(op)}
    if not fused.get("Attention") and not fused.get("MultiHeadAttention"):
        raise ExportError(f"onnx-opt: ONNX Runtime fused no attention in {path} (fused: {fused}); "
                          "the optimised variant would not be what its name says")
    return optimised, fused


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="burstbench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    e = sub.add_parser("export", help="export and verify every variant (cached by the checkpoint's content)")
    e.add_argument("--model", default=str(DEFAULT_MODEL_DIR),
                   help="checkpoint folder or hub id (default: the built default model)")
    e.add_argument("--out", type=Path, default=DEFAULT_VARIANTS_DIR, help="cache folder of the variants")
    e.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, from {', '.join(VARIANTS)}")
    e.add_argument("--max-length", type=int, default=128)
    e.add_argument("--force", action="store_true", help="export again even when cached")
    args = parser.parse_args(argv)
    try:
        manifest = export_variants(args.model, args.out, [v.strip() for v in args.variants.split(",") if v.strip()],
                                   args.max_length, args.force)
    except (ValueError, ExportError) as err:
        print(f"burstbench export: {err}", file=sys.stderr)
        return 2
    print(f"variants: {variants_dir(Path(manifest['source']), args.out) / MANIFEST}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
