"""Model variants behind one interface: texts in, (label, score, truncated) out.

Heavy libraries are imported inside the loaders so that importing this module (the
service's front process, the tests) stays cheap.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .models import DEFAULT_VARIANTS_DIR, ONNX_FILE, VARIANTS, find_variant


@dataclass(frozen=True)
class Prediction:
    label: str
    score: float
    tokens: int
    truncated: bool


def default_threads(workers: int = 1) -> int:
    """BentoML sets no thread counts: share the cores between the model workers."""
    return max(1, (os.cpu_count() or 1) // max(1, workers))


class Classifier:
    """Tokenise with truncation, run the model, turn logits into labels."""

    def __init__(self, model_dir: Path, variant: str, max_length: int, device: str, artefact: Path):
        from transformers import AutoConfig, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # a loading bar per worker start is noise in logs
        self.model_dir = Path(model_dir)
        self.artefact = Path(artefact)
        self.variant = variant
        self.max_length = max_length
        self.device = device
        self.tokenizer = AutoTokenizer.from_pretrained(self.model_dir)
        config = AutoConfig.from_pretrained(self.model_dir)
        self.labels = [config.id2label[i] for i in range(config.num_labels)]
        limit = getattr(config, "max_position_embeddings", max_length + 2) - 2
        if max_length > limit:
            raise ValueError(f"max length must be <= {limit} for this model (got {max_length})")

    def _encode(self, texts: list[str]):
        return self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="np")

    def _probabilities(self, enc) -> np.ndarray:
        from scipy.special import softmax

        logits = self._logits(enc["input_ids"].astype(np.int64), enc["attention_mask"].astype(np.int64))
        return softmax(logits.astype(np.float64), axis=1)

    def probabilities(self, texts: list[str]) -> np.ndarray:
        """Class probabilities, one row per text (tokenising included, as when serving)."""
        return self._probabilities(self._encode(texts))

    def predict(self, texts: list[str], token_budget: int | None = None) -> list[Prediction]:
        """Predictions in the texts' order. With ``token_budget``, texts of similar length are run together, each
        model call padding at most that many tokens (``token_groups``); without, one call pads all to the longest."""
        if not token_budget or len(texts) < 2:
            return self._predict(texts)
        lengths = [len(ids) for ids in self.tokenizer(texts, truncation=True, max_length=self.max_length)["input_ids"]]
        answers: list[Prediction | None] = [None] * len(texts)
        for group in token_groups(lengths, token_budget):
            for i, p in zip(group, self._predict([texts[i] for i in group])):
                answers[i] = p
        return answers  # type: ignore[return-value]

    def _predict(self, texts: list[str]) -> list[Prediction]:
        enc = self._encode(texts)
        probs = self._probabilities(enc)
        best = probs.argmax(axis=1)
        tokens = enc["attention_mask"].sum(axis=1)
        return [
            Prediction(
                label=self.labels[int(b)],
                score=float(p[b]),
                tokens=int(n),
                truncated=bool(e.overflowing),
            )
            for b, p, n, e in zip(best, probs, tokens, enc.encodings)
        ]

    def _logits(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError


def token_groups(lengths: list[int], budget: int) -> list[list[int]]:
    """Indices grouped for model calls: shortest first, each group's size x its longest length <= ``budget``.

    A batch is padded to its longest text, and on a CPU the cost grows with the padded tokens: one text of
    128 tokens among 27 of about 20 made a batch of 28 cost 4.1 s instead of 0.9 s in groups of at most
    256 tokens (the default model, 2 cores). A text longer than the budget runs alone.
    """
    groups: list[list[int]] = []
    current: list[int] = []
    longest = 0
    for i in sorted(range(len(lengths)), key=lambda i: (lengths[i], i)):
        if current and max(longest, lengths[i]) * (len(current) + 1) > budget:
            groups.append(current)
            current, longest = [], 0
        current.append(i)
        longest = max(longest, lengths[i])
    if current:
        groups.append(current)
    return groups


class TorchClassifier(Classifier):
    def __init__(self, model_dir, variant, max_length, device, threads, artefact):
        import torch
        from transformers import AutoModelForSequenceClassification

        super().__init__(model_dir, variant, max_length, device, artefact)
        torch.set_num_threads(threads)
        self.torch = torch
        dtype = torch.float16 if variant == "torch-fp16" else torch.float32
        self.model = AutoModelForSequenceClassification.from_pretrained(self.artefact, dtype=dtype).to(device).eval()

    def _logits(self, input_ids, attention_mask):
        torch = self.torch
        with torch.inference_mode():
            out = self.model(
                input_ids=torch.from_numpy(input_ids).to(self.device),
                attention_mask=torch.from_numpy(attention_mask).to(self.device),
            )
        return out.logits.float().cpu().numpy()


class OnnxClassifier(Classifier):
    def __init__(self, model_dir, variant, max_length, device, threads, artefact):
        import onnxruntime as ort

        super().__init__(model_dir, variant, max_length, device, artefact)
        path = self.artefact / ONNX_FILE
        wanted = ["CUDAExecutionProvider", "CPUExecutionProvider"] if device == "cuda" else ["CPUExecutionProvider"]
        if device == "cuda" and "CUDAExecutionProvider" not in ort.get_available_providers():
            raise RuntimeError(
                "device cuda requested but ONNX Runtime has no CUDAExecutionProvider "
                f"(available: {ort.get_available_providers()}); install onnxruntime-gpu instead of onnxruntime"
            )
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(path), sess_options=options, providers=wanted)
        # ONNX Runtime falls back to CPU silently when CUDA cannot load: refuse instead.
        if self.session.get_providers()[0] != wanted[0]:
            raise RuntimeError(f"ONNX Runtime could not load {wanted[0]} (got {self.session.get_providers()})")

    def _logits(self, input_ids, attention_mask):
        (logits,) = self.session.run(["logits"], {"input_ids": input_ids, "attention_mask": attention_mask})
        return logits


def resolve_device(requested: str) -> str:
    if requested not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device must be one of auto, cpu, cuda (got {requested!r})")
    if requested == "cpu":
        return "cpu"
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if requested == "cuda":
        raise RuntimeError("device cuda requested but torch sees no CUDA device")
    return "cpu"


def load_classifier(model_dir: Path, variant: str, max_length: int, device: str = "auto",
                    threads: int | None = None, variants_root: Path = DEFAULT_VARIANTS_DIR) -> Classifier:
    """The variant's classifier; raises with the reason (and the fix) when it cannot run here."""
    if not (Path(model_dir) / "config.json").exists():
        raise FileNotFoundError(
            f"no model in {model_dir}: build the default one with 'burstbench build-model' "
            "or point BURSTBENCH_MODEL at a Hugging Face checkpoint directory"
        )
    artefact = find_variant(model_dir, variant, variants_root)
    cls = OnnxClassifier if variant.startswith("onnx") else TorchClassifier
    return cls(model_dir, variant, max_length, resolve_device(device), threads or default_threads(), artefact)
