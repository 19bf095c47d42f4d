"""Model variants: export and verification of every variant, caching, clear errors, the benchmark."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import requests

from conftest import REPO_ROOT, Server
from burstbench.service import models
from burstbench.service.inference import load_classifier, token_groups
from burstbench.service.models import MANIFEST, VARIANTS, ExportError, export_variants, find_variant, variants_dir


def test_every_variant_is_exported_and_verified(tiny_model):
    manifest = json.loads((variants_dir(tiny_model) / MANIFEST).read_text())
    assert list(manifest["variants"]) == list(VARIANTS)
    for variant, entry in manifest["variants"].items():
        limit = 2e-2 if variant.endswith("fp16") else 1e-3
        assert entry["check"]["max_abs_prob_diff"] <= limit, variant
        assert entry["check"]["argmax_agreement"] >= 0.95, variant
        assert entry["size_mb"] > 0
    sizes = {v: e["size_mb"] for v, e in manifest["variants"].items()}
    assert sizes["torch-fp16"] < 0.6 * sizes["torch-fp32"]  # half precision halves the weights
    assert sizes["onnx-fp16"] < 0.6 * sizes["onnx-fp32"]
    # The optimiser really fused the attention: one Attention node per layer of the tiny model (2).
    for variant in ("onnx-opt", "onnx-fp16"):
        fused = manifest["variants"][variant]["fused_operators"]
        assert fused["Attention"] == 2 and fused["SkipLayerNormalization"] == 4, fused


def test_second_export_is_cached(tiny_model, capsys):
    onnx = find_variant(tiny_model, "onnx-opt") / models.ONNX_FILE
    before = onnx.stat().st_mtime_ns
    export_variants(tiny_model)
    assert "reusing" in capsys.readouterr().out
    assert onnx.stat().st_mtime_ns == before


def test_cache_key_is_the_checkpoint_content(tiny_model, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(tiny_model, copy)
    assert variants_dir(copy) == variants_dir(tiny_model)  # same content, same artefacts
    (copy / "config.json").write_text((copy / "config.json").read_text().replace('"neutral"', '"meh"'))
    assert variants_dir(copy) != variants_dir(tiny_model)


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_variant_predicts_like_torch_fp32(tiny_model, variant):
    texts = ["the service was great", "terrible delivery, never again", "it arrived on tuesday"]
    reference = load_classifier(tiny_model, "torch-fp32", 32, "cpu", 1).probabilities(texts)
    clf = load_classifier(tiny_model, variant, 32, "cpu", 1)
    probs = clf.probabilities(texts)
    np.testing.assert_array_equal(probs.argmax(1), reference.argmax(1))
    assert np.abs(probs - reference).max() < (2e-2 if variant.endswith("fp16") else 1e-3)
    assert [p.label for p in clf.predict(texts)] == [clf.labels[i] for i in reference.argmax(1)]


def test_export_fails_loudly_past_the_tolerance(tiny_model, tmp_path, monkeypatch):
    monkeypatch.setitem(models.TOLERANCE, "fp16", (1e-9, 1.0))  # no FP16 graph can meet this
    with pytest.raises(ExportError, match=r"onnx-fp16 does not reproduce torch-fp32 .* max \|probability difference\|"):
        export_variants(tiny_model, root=tmp_path, variants=("onnx-fp16",))


def test_unknown_variant_and_missing_export_are_named(tiny_model, tmp_path):
    with pytest.raises(ValueError, match="variant must be one of torch-fp32, torch-fp16, onnx-fp32, onnx-opt, onnx-fp16"):
        find_variant(tiny_model, "onnx-int8")
    with pytest.raises(FileNotFoundError, match="is not exported: run 'burstbench export"):
        find_variant(tiny_model, "onnx-fp16", root=tmp_path)


def serve_cli(*args):
    # Refused before BentoML starts: the port is never bound.
    return subprocess.run([sys.executable, "-m", "burstbench.service", "serve", "--port", "3999", *args], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=120)


def test_a_variant_that_cannot_run_says_why_before_starting(tiny_model, tmp_path, monkeypatch):
    import torch

    if not torch.cuda.is_available():
        out = serve_cli("--model", str(tiny_model), "--device", "cuda")
        assert out.returncode == 2
        assert "device cuda requested but torch sees no CUDA device" in out.stderr
    monkeypatch.setenv("BURSTBENCH_VARIANTS_DIR", str(tmp_path))  # an empty cache: nothing exported
    out = serve_cli("--model", str(tiny_model), "--variant", "onnx-fp16")
    assert out.returncode == 2
    assert "variant onnx-fp16" in out.stderr and "is not exported" in out.stderr
    assert "Traceback" not in out.stderr


@pytest.mark.server
def test_service_serves_a_non_default_variant(tiny_model, tmp_path):
    srv = Server(tiny_model, tmp_path / "service.log", variant="torch-fp16", batching="off")
    try:
        body = requests.post(srv.url + "/analyze-sentiment", json={"text": "fine"}, timeout=30).json()
        assert body["variant"] == "torch-fp16" and body["batch_size"] == 1
        info = requests.post(srv.url + "/model-info", json={}, timeout=30).json()
        assert info["variant"] == "torch-fp16" and info["settings"]["batching"] is False
    finally:
        srv.stop()


def test_benchmark_runs_end_to_end(tiny_model, tmp_path):
    out = subprocess.run([sys.executable, "-m", "burstbench.service.bench", "--model", str(tiny_model), "--batch-sizes", "1,4",
                          "--repeats", "3", "--warmup", "1", "--quality-texts", "60", "--out", str(tmp_path)],
                         cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    import pandas as pd

    table = pd.read_csv(tmp_path / "bench.csv")
    assert set(table["variant"]) == set(VARIANTS) and set(table["batch_size"]) == {1, 4}
    assert (table["throughput_per_s"] > 0).all() and (table["repeats"] == 3).all()
    assert np.allclose(table.loc[table["variant"] == "torch-fp32", "throughput_vs_torch_fp32"], 1.0)
    assert table["accuracy"].between(0, 1).all() and (table["agreement_with_torch_fp32"] >= 0.95).all()
    md = (tmp_path / "bench.md").read_text()
    assert "Table 1: latency (ms per sample)" in md and "Table 2: throughput (samples/s)" in md
    assert "fastest at batch 1:" in out.stdout
    for png in ("bench_latency.png", "bench_throughput.png"):
        assert (tmp_path / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_benchmark_bad_arguments_name_the_flag(tiny_model):
    out = subprocess.run([sys.executable, "-m", "burstbench.service.bench", "--model", str(tiny_model), "--variants", "onnx-int8"],
                         cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "--variants: unknown ['onnx-int8']" in out.stderr


def test_token_groups_pack_similar_lengths_within_the_budget():
    assert token_groups([20, 128, 10, 20, 30], 64) == [[2, 0, 3], [4], [1]]  # 3 x 20 <= 64; 128 alone
    assert token_groups([5] * 10, 16) == [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9]]
    assert token_groups([], 64) == []
    groups = token_groups(list(range(1, 40)), 100)
    assert sorted(i for g in groups for i in g) == list(range(39))
    assert all(len(g) * max(g) + len(g) <= 100 or len(g) == 1 for g in groups)  # lengths are index + 1


def test_grouped_predictions_equal_one_padded_batch(tiny_model):
    texts = ["ok", "great service " * 40, "the battery died after a day", "fine", "slow " * 12, "meh"]
    clf = load_classifier(tiny_model, "onnx-fp32", 32, "cpu", 1)
    whole, grouped = clf.predict(texts), clf.predict(texts, token_budget=16)
    assert [(p.label, p.tokens, p.truncated) for p in grouped] == [(p.label, p.tokens, p.truncated) for p in whole]
    assert [p.score for p in grouped] == pytest.approx([p.score for p in whole], abs=1e-5)
    assert grouped[1].truncated and grouped[1].tokens == 32
