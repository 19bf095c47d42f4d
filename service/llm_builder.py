"""Build a tiny causal language model offline and deterministically, for streaming tests and benchmarks.

GPT-2 architecture, seeded random weights and a byte-level BPE tokenizer trained here on the bundled
texts, with a plain chat template, so that any OpenAI-compatible server that loads Hugging Face
folders (``transformers serve``, vLLM, SGLang, TGI) can serve it without the hub. The model is
UNTRAINED: its words mean nothing, only its cost (tokens, time per token) does.

Its end-of-text token is suppressed in ``generation_config.json``: an untrained model would otherwise
stop at random, and a load test needs the output length it asked for (``max_tokens``) to be the
length it gets, as vLLM's ``ignore_eos`` does.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from .texts import load_bundled

DEFAULT_LLM_DIR = Path("build") / "models" / "untrained-gpt2-tiny"
METADATA_FILE = "burstbench-model.json"
END_OF_TEXT = "<|endoftext|>"
# A role-prefixed transcript: enough for /v1/chat/completions; what it says does not matter to an untrained model.
CHAT_TEMPLATE = ("{% for message in messages %}{{ message['role'] }}: {{ message['content'] }}\n{% endfor %}"
                 "{% if add_generation_prompt %}assistant:{% endif %}")


@dataclass(frozen=True)
class LlmShape:
    layers: int
    hidden: int
    heads: int
    vocab_size: int
    positions: int


LLM_SHAPES = {
    # About 1 MB of weights: a token costs a few milliseconds on one CPU core (tests, benchmarks here).
    "tiny": LlmShape(layers=2, hidden=64, heads=2, vocab_size=2000, positions=2048),
    # GPT-2 small's shape (about 500 MB): a token costs what a small real model's does.
    "small": LlmShape(layers=12, hidden=768, heads=12, vocab_size=8000, positions=2048),
}


def build_tiny_llm(out_dir: Path = DEFAULT_LLM_DIR, size: str = "tiny", seed: int = 0, force: bool = False) -> Path:
    """Build (or reuse, when built with the same parameters) the untrained causal LM in ``out_dir``."""
    import torch
    from tokenizers import ByteLevelBPETokenizer
    from transformers import GenerationConfig, GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    if size not in LLM_SHAPES:
        raise ValueError(f"--size must be one of {', '.join(LLM_SHAPES)} (got {size!r})")
    out_dir = Path(out_dir)
    params = {"size": size, "seed": seed}
    meta_path = out_dir / METADATA_FILE
    if not force and meta_path.exists() and json.loads(meta_path.read_text()).get("build_params") == params:
        return out_dir
    started = time.perf_counter()
    shape = LLM_SHAPES[size]
    out_dir.mkdir(parents=True, exist_ok=True)
    texts = [text for text, _ in load_bundled()]

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(texts, vocab_size=shape.vocab_size, min_frequency=2, special_tokens=[END_OF_TEXT],
                            show_progress=False)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer, eos_token=END_OF_TEXT,
                                        bos_token=END_OF_TEXT, unk_token=END_OF_TEXT, pad_token=END_OF_TEXT,
                                        model_max_length=shape.positions)
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.save_pretrained(out_dir)

    torch.manual_seed(seed)
    eos = tokenizer.eos_token_id
    config = GPT2Config(vocab_size=len(tokenizer), n_positions=shape.positions, n_embd=shape.hidden,
                        n_layer=shape.layers, n_head=shape.heads, bos_token_id=eos, eos_token_id=eos)
    model = GPT2LMHeadModel(config).eval()
    model.generation_config = GenerationConfig(bos_token_id=eos, eos_token_id=eos, pad_token_id=eos,
                                               suppress_tokens=[eos], do_sample=False)
    model.save_pretrained(out_dir)
    metadata = {
        "name": f"untrained-gpt2-{size}",
        "untrained": True,
        "description": "UNTRAINED GPT-2-architecture causal LM with seeded random weights and a tokenizer trained "
                       "on the bundled texts; its output is meaningless, only its cost per token is representative",
        "build_params": params,
        "shape": asdict(shape),
        "tokenizer_vocab": len(tokenizer),
        "parameters": sum(p.numel() for p in model.parameters()),
        "build_seconds": round(time.perf_counter() - started, 1),
    }
    meta_path.write_text(json.dumps(metadata, indent=2) + "\n")
    return out_dir
