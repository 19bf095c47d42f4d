"""Service settings from environment variables, validated with messages naming the variable."""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

from .model_builder import DEFAULT_MODEL_DIR
from .models import DEFAULT_VARIANTS_DIR, VARIANTS

PREFIX = "BURSTBENCH_"
CPU_BATCH_TOKENS = 256  # measured best on 2 cores: service/inference.py token_groups


def token_budget(batch_tokens: int, device: str) -> int | None:
    """Padded tokens per model call: the setting, or automatic (a budget on a CPU, none on a GPU)."""
    return batch_tokens or (CPU_BATCH_TOKENS if device == "cpu" else None)


@dataclass(frozen=True)
class ServiceSettings:
    model_dir: Path = DEFAULT_MODEL_DIR
    variants_dir: Path = DEFAULT_VARIANTS_DIR
    variant: str = "onnx-fp32"
    device: str = "auto"
    batching: bool = True
    max_batch_size: int = 32
    max_latency_ms: int = 10_000
    max_length: int = 128
    max_body_bytes: int = 64 * 1024
    timeout_s: int = 60
    threads: int = 0  # 0: cores / model workers
    batch_tokens: int = 0  # most padded tokens per model call; 0: automatic (CPU_BATCH_TOKENS on a CPU, no limit on CUDA)
    # Admission and deadlines (docs/service.md, "Deadlines and admission").
    max_concurrency: int = 1000  # 0: unbounded; more in flight are answered 429 at once
    deadline_ms: int = 0  # ceiling on every request's deadline; 0: only the client's X-Request-Timeout-Ms
    # Test and disruption aids: a slow model start, a slower model.
    start_delay_s: float = 0.0
    compute_delay_ms: int = 0

    @classmethod
    def from_env(cls, env=os.environ) -> "ServiceSettings":
        d = cls()

        def get(name, convert, check, accepted):
            raw = env.get(PREFIX + name)
            if raw is None or raw == "":
                return getattr(d, name.lower())
            try:
                value = convert(raw)
            except ValueError:
                value = None
            if value is None or not check(value):
                raise ValueError(f"{PREFIX}{name} must be {accepted} (got {raw!r})")
            return value

        return cls(
            # Absolute from here on: the defaults are relative to the folder the service was started in.
            model_dir=Path(env.get(PREFIX + "MODEL") or d.model_dir).resolve(),
            variants_dir=Path(env.get(PREFIX + "VARIANTS_DIR") or d.variants_dir).resolve(),
            variant=get("VARIANT", str, lambda v: v in VARIANTS, f"one of {', '.join(VARIANTS)}"),
            device=get("DEVICE", str, lambda v: v in ("auto", "cpu", "cuda"), "one of auto, cpu, cuda"),
            batching=get("BATCHING", _on_off, lambda v: v is not None, "on or off"),
            max_batch_size=get("MAX_BATCH_SIZE", int, lambda v: 2 <= v <= 1024, "an integer in [2, 1024]"),
            max_latency_ms=get("MAX_LATENCY_MS", int, lambda v: 1 <= v <= 600_000, "an integer in [1, 600000]"),
            max_length=get("MAX_LENGTH", int, lambda v: 8 <= v <= 512, "an integer in [8, 512]"),
            max_body_bytes=get("MAX_BODY_BYTES", int, lambda v: 64 <= v <= 64 * 2**20, "an integer in [64, 67108864]"),
            timeout_s=get("TIMEOUT_S", int, lambda v: 1 <= v <= 3600, "an integer in [1, 3600]"),
            threads=get("THREADS", int, lambda v: 0 <= v <= 256, "an integer in [0, 256] (0: automatic)"),
            batch_tokens=get("BATCH_TOKENS", int, lambda v: v == 0 or 16 <= v <= 1_048_576,
                             "0 (automatic) or an integer in [16, 1048576]"),
            max_concurrency=get("MAX_CONCURRENCY", int, lambda v: 0 <= v <= 100_000,
                                "an integer in [0, 100000] (0: unbounded)"),
            deadline_ms=get("DEADLINE_MS", int, lambda v: 0 <= v <= 3_600_000, "an integer in [0, 3600000] (0: none)"),
            start_delay_s=get("START_DELAY_S", float, lambda v: 0 <= v <= 600, "a number of seconds in [0, 600]"),
            compute_delay_ms=get("COMPUTE_DELAY_MS", int, lambda v: 0 <= v <= 60_000, "an integer in [0, 60000]"),
        )

    def describe(self) -> dict:
        d = asdict(self)
        d["model_dir"] = str(self.model_dir)
        d["variants_dir"] = str(self.variants_dir)
        return d


def _on_off(raw: str) -> bool | None:
    return {"on": True, "1": True, "true": True, "off": False, "0": False, "false": False}.get(raw.lower())
