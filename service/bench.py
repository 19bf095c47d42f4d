"""The model benchmark (the paper's Tables 1-2): every variant, in one run, interleaved.

    burstbench bench-model [--model DIR] [--variants ...] [--batch-sizes 1,2,4,8,16,32]

Per variant and batch size: per-sample latency (ms) and throughput (samples/s) as medians over
timed repetitions after warm-up, with the interquartile range; model size on disk; and quality
on the bundled labelled texts (accuracy, macro and weighted F1), agreement with torch-fp32 and
the largest probability difference. Repetitions are interleaved across variants (one timed
call of each variant in turn) so that a noisy moment of the machine hits them all alike.
Writes CSV, Markdown in the paper's layout and PNG figures into results/bench-<UTC time>/.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd

from .inference import default_threads, load_classifier
from .model_builder import DEFAULT_MODEL_DIR
from .models import DEFAULT_VARIANTS_DIR, MANIFEST, VARIANTS, variants_dir
from .texts import LABELS, load_bundled

BATCH_SIZES = (1, 2, 4, 8, 16, 32)


def machine_label(device: str, threads: int) -> str:
    if device == "cuda":
        import torch

        name = torch.cuda.get_device_name(0)
    else:
        name = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                     if line.startswith("model name")), platform.processor() or "CPU")
        import os

        name = f"{name}, {os.cpu_count()} cores"
    versions = ", ".join(f"{p} {_version(p)}" for p in ("torch", "onnxruntime", "transformers"))
    return f"{name}; {threads} intra-op threads; {versions}"


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "-"


def quality(classifier, texts: list[str], labels: list[str], batch: int = 32) -> tuple[dict, np.ndarray]:
    """Accuracy and F1 on the labelled texts, and the probabilities for the agreement check."""
    from sklearn.metrics import accuracy_score, f1_score

    probs = np.concatenate([classifier.probabilities(texts[i:i + batch]) for i in range(0, len(texts), batch)])
    predicted = [classifier.labels[i] for i in probs.argmax(1)]
    return {
        "accuracy": accuracy_score(labels, predicted),
        "f1_macro": f1_score(labels, predicted, average="macro", labels=list(LABELS), zero_division=0),
        "f1_weighted": f1_score(labels, predicted, average="weighted", labels=list(LABELS), zero_division=0),
    }, probs


def benchmark(model_dir: Path, variants, batch_sizes, repeats: int, warmup: int, quality_texts: int,
              threads: int, device: str, variants_root: Path = DEFAULT_VARIANTS_DIR, progress=print) -> pd.DataFrame:
    manifest = json.loads((variants_dir(model_dir, variants_root) / MANIFEST).read_text())
    data = load_bundled()[:quality_texts]
    texts, labels = [t for t, _ in data], [label for _, label in data]
    classifiers = {v: load_classifier(model_dir, v, manifest["max_length"], device, threads, variants_root)
                   for v in variants}
    rows = []
    scores, probs = {}, {}
    for variant, clf in classifiers.items():
        scores[variant], probs[variant] = quality(clf, texts, labels)
    reference = probs.get("torch-fp32")
    for batch in batch_sizes:
        # Different texts in every call (and exactly ``batch`` of them), the same for every variant.
        inputs = [[texts[(i * batch + k) % len(texts)] for k in range(batch)] for i in range(repeats + warmup)]
        timings = {v: [] for v in variants}
        for i, chunk in enumerate(inputs):
            for variant, clf in classifiers.items():  # interleaved: one call of each in turn
                started = time.perf_counter()
                clf.probabilities(chunk)
                if i >= warmup:
                    timings[variant].append(time.perf_counter() - started)
        for variant in variants:
            t = np.asarray(timings[variant])
            q1, median, q3 = np.quantile(t, [0.25, 0.5, 0.75])
            rows.append({"variant": variant, "batch_size": batch, "latency_ms_per_sample": 1000 * median / batch,
                         "latency_iqr_ms_per_sample": 1000 * (q3 - q1) / batch, "throughput_per_s": batch / median,
                         "throughput_q1_per_s": batch / q3, "throughput_q3_per_s": batch / q1, "repeats": len(t)})
        progress(f"[bench] batch {batch}: " + ", ".join(
            f"{r['variant']} {r['latency_ms_per_sample']:.2f} ms/sample" for r in rows if r["batch_size"] == batch))
    table = pd.DataFrame(rows)
    for variant in variants:
        extra = {"size_mb": manifest["variants"][variant]["size_mb"], **scores[variant]}
        if reference is not None:
            extra["agreement_with_torch_fp32"] = float((probs[variant].argmax(1) == reference.argmax(1)).mean())
            extra["max_abs_prob_diff"] = float(np.abs(probs[variant] - reference).max())
        for key, value in extra.items():
            table.loc[table["variant"] == variant, key] = value
    if "torch-fp32" in variants:
        base = table[table["variant"] == "torch-fp32"].set_index("batch_size")["throughput_per_s"]
        table["throughput_vs_torch_fp32"] = table["throughput_per_s"] / table["batch_size"].map(base)
    return table


def paper_tables(table: pd.DataFrame) -> dict[str, pd.DataFrame]:
    wide = {
        "latency_ms_per_sample": "Table 1: latency (ms per sample), lower is better",
        "throughput_per_s": "Table 2: throughput (samples/s), higher is better",
    }
    order = list(dict.fromkeys(table["variant"]))  # the run's order, not alphabetical
    out = {title: table.pivot(index="variant", columns="batch_size", values=col).reindex(order)
           for col, title in wide.items()}
    if "throughput_vs_torch_fp32" in table:
        out["throughput as a ratio to torch-fp32 at the same batch size"] = table.pivot(
            index="variant", columns="batch_size", values="throughput_vs_torch_fp32").reindex(order)
    cols = [c for c in ("size_mb", "accuracy", "f1_macro", "f1_weighted", "agreement_with_torch_fp32",
                        "max_abs_prob_diff") if c in table]
    out["size and quality on the bundled texts"] = table.groupby("variant", sort=False)[cols].first()
    return out


def figures(table: pd.DataFrame, out: Path, caption: str) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    for column, ylabel, name in (("latency_ms_per_sample", "latency per sample (ms)", "bench_latency.png"),
                                 ("throughput_per_s", "throughput (samples/s)", "bench_throughput.png")):
        fig, ax = plt.subplots(figsize=(7.5, 4.5))
        for variant, part in table.groupby("variant", sort=False):
            ax.plot(part["batch_size"], part[column], marker="o", label=variant)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xticks(sorted(table["batch_size"].unique()), [str(b) for b in sorted(table["batch_size"].unique())])
        ax.set_xlabel("batch size")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.suptitle(caption, fontsize=7)
        fig.tight_layout()
        fig.savefig(out / name, dpi=110)
        plt.close(fig)
        paths.append(out / name)
    return paths


def fastest(table: pd.DataFrame, batch: int) -> str:
    part = table[table["batch_size"] == batch]
    return part.loc[part["throughput_per_s"].idxmax(), "variant"] if len(part) else "-"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="burstbench bench-model", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, default=DEFAULT_MODEL_DIR)
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--batch-sizes", default=",".join(map(str, BATCH_SIZES)))
    p.add_argument("--repeats", type=int, default=20, help="timed calls per variant and batch size")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--quality-texts", type=int, default=300, help="labelled texts for accuracy and F1")
    p.add_argument("--threads", type=int, default=0, help="intra-op threads (0: all cores)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    try:
        variants = [v.strip() for v in args.variants.split(",") if v.strip()]
        unknown = [v for v in variants if v not in VARIANTS]
        if unknown or not variants:
            raise ValueError(f"--variants: unknown {unknown}; accepted: {', '.join(VARIANTS)}")
        batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
        if any(b < 1 or b > 1024 for b in batch_sizes):
            raise ValueError(f"--batch-sizes must be integers in [1, 1024] (got {args.batch_sizes})")
        if args.repeats < 3 or args.warmup < 0:
            raise ValueError("--repeats must be >= 3 and --warmup >= 0")
        if not (variants_dir(args.model) / MANIFEST).is_file():
            raise ValueError(f"--model {args.model}: variants not exported; run "
                             f"'burstbench export --model {args.model}'")
    except ValueError as err:
        print(f"burstbench bench-model: {err}", file=sys.stderr)
        return 2
    from .inference import resolve_device

    device = resolve_device(args.device)
    threads = args.threads or default_threads()
    out = args.out or Path("results") / f"bench-{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}"
    out.mkdir(parents=True, exist_ok=True)
    caption = machine_label(device, threads)
    print(f"[bench] {args.model.name}: {', '.join(variants)}; batch sizes {batch_sizes}; {args.repeats} timed "
          f"repeats after {args.warmup} warm-up; {caption}", file=sys.stderr)
    table = benchmark(args.model, variants, batch_sizes, args.repeats, args.warmup, args.quality_texts, threads,
                      device, progress=lambda line: print(line, file=sys.stderr, flush=True))
    table.to_csv(out / "bench.csv", index=False)
    tables = paper_tables(table)
    summary = (f"fastest at batch {min(batch_sizes)}: {fastest(table, min(batch_sizes))}; "
               f"at batch {max(batch_sizes)}: {fastest(table, max(batch_sizes))}")
    md = [f"# Model benchmark: {args.model.name}", "", f"Machine: {caption}", "", summary, ""]
    for title, frame in tables.items():
        md += [f"## {title}", "", frame.to_markdown(floatfmt=".4g"), ""]
    paths = figures(table, out, f"{args.model.name} - {caption}")
    md += [f"![{p.stem}]({p.name})" for p in paths]
    (out / "bench.md").write_text("\n".join(md) + "\n")
    (out / "bench.json").write_text(json.dumps({"model": str(args.model), "machine": caption, "device": device,
                                                "threads": threads, "repeats": args.repeats, "warmup": args.warmup,
                                                "batch_sizes": batch_sizes, "variants": variants}, indent=2))
    for title, frame in tables.items():
        print(f"\n{title}\n{frame.to_markdown(floatfmt='.4g')}")
    print(f"\n{summary}\nwritten: {out}/bench.md, bench.csv, {', '.join(p.name for p in paths)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
