"""NVIDIA AIPerf as a peer (what ``peers``' docstring says about it holds here): command, counts, local tokenizer."""
from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from burstbench.experiments.peer_base import Peer, PeerInstallError, _last_error, say


@dataclass(frozen=True)
class AIPerf(Peer):
    """NVIDIA AIPerf: asyncio workers fed by a timing manager over ZMQ; OpenAI chat requests."""

    model_name: str = "burstbench-fixed"
    prompt_tokens: int = 8

    def tokenizer_dir(self, build_dir: Path) -> Path:
        return self.root(build_dir) / "tokenizer"

    def post_install(self, build_dir: Path, log_path: Path) -> None:
        out = self.tokenizer_dir(build_dir)
        say(f"{self.name}: writing a local tokenizer to {out} (no hub access needed)")
        with log_path.open("a") as log:
            made = subprocess.run([str(self.bin(build_dir, "python")), "-c", _TOKENIZER_SCRIPT, str(out)],
                                  stdout=log, stderr=subprocess.STDOUT, timeout=300, env=self.env(build_dir))
        if made.returncode != 0:
            raise PeerInstallError(f"{self.name}: building its local tokenizer failed (exit {made.returncode}): "
                                   f"{_last_error(log_path)}; log {log_path}")

    def command(self, build_dir, url, rate_per_s, requests, process, shape, seed, out_dir, timeout_s,
                concurrency=None) -> list[str]:
        cmd = [str(self.bin(build_dir, "aiperf")), "profile",
               "--model", self.model_name, "--tokenizer", str(self.tokenizer_dir(build_dir)),
               "--url", url, "--endpoint-type", "chat",
               "--request-rate", repr(float(rate_per_s)), "--request-count", str(requests),
               "--random-seed", str(seed)]
        if process == "exponential":
            cmd += ["--arrival-pattern", "poisson"]
        else:
            cmd += ["--arrival-pattern", "gamma", "--arrival-smoothness", repr(float(shape))]
        if concurrency is not None:
            cmd += ["--concurrency", str(concurrency)]
        cmd += ["--isl", str(self.prompt_tokens), "--use-server-token-count",
                "--request-timeout-seconds", f"{max(1.0, timeout_s):g}",
                "--no-server-metrics", "--no-gpu-telemetry", "--ui", "none",
                "--artifact-dir", str(self.artifacts(out_dir))]
        return cmd

    def counts(self, out_dir: Path, log_path: Path):
        artifacts = self.artifacts(out_dir)
        sent = None
        own_log = artifacts / "logs" / "aiperf.log"
        for path in (own_log, log_path):
            try:
                text = path.read_text(errors="replace")
            except OSError:
                continue
            found = re.findall(r"Phase profiling \(profiling\) sending complete \| sent=([\d,]+)", text)
            if found:  # "sent=1,000": thousands separators
                sent = int(found[-1].replace(",", ""))
                break
        completed = errors = None
        try:
            summary = json.loads((artifacts / "profile_export_aiperf.json").read_text())
        except (OSError, ValueError):
            return sent, completed, errors
        if isinstance(summary.get("request_count"), dict):
            completed = int(summary["request_count"]["avg"])
        errors = int(sum(e.get("count", 0) for e in summary.get("error_summary") or []))
        return sent, completed, errors


# A byte-level BPE with a few hundred tokens, trained on a fixed text: AIPerf only needs it to
# cut its synthetic prompts to length (and, without --use-server-token-count, to count tokens).
_TOKENIZER_SCRIPT = r"""
import json, sys
from pathlib import Path
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
out = Path(sys.argv[1]); out.mkdir(parents=True, exist_ok=True)
words = ("shall i compare thee to a summer day thou art more lovely and more temperate rough winds "
         "do shake the darling buds of may and summer lease hath all too short a date").split()
text = [" ".join(words[i:] + words[:i]) for i in range(len(words))]
tok = Tokenizer(models.BPE())
tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
tok.decoder = decoders.ByteLevel()
tok.train_from_iterator(text, trainers.BpeTrainer(vocab_size=512, special_tokens=["<|endoftext|>"],
                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False))
tok.save(str(out / "tokenizer.json"))
(out / "tokenizer_config.json").write_text(json.dumps({
    "tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>",
    "model_max_length": 1000000}, indent=1) + "\n")
from transformers import AutoTokenizer
check = AutoTokenizer.from_pretrained(str(out))
assert check.decode(check.encode("shall I compare thee?")) == "shall I compare thee?"
print(f"tokenizer: {tok.get_vocab_size()} tokens in {out}")
"""
