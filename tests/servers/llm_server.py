"""A real third-party OpenAI-compatible streaming server: Hugging Face's ``transformers serve``, serving the
untrained tiny GPT-2 of ``burstbench.service.llm_builder`` on CPU, on a free loopback port.

``transformers[serving]`` installs into the project's environment (the ``test`` extra): its pins (openai,
accelerate, fastapi, uvicorn) do not clash with BentoML's, unlike MLServer's. The model is built once into
``build/models/untrained-gpt2-tiny`` (about 6 s) and reused; the hub is never asked (HF_HUB_OFFLINE).

What this server does, as measured here (transformers 5.24): it streams one chunk per token, puts ``usage``
in the last chunk whether or not ``stream_options.include_usage`` is asked (and says it ignores that field),
sends no ``data: [DONE]`` (the finish reason ends the stream), and takes requests one at a time
without ``--continuous-batching``.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

from burstbench.service.llm_builder import build_tiny_llm
from servers.processes import ServerProcess, free_port

REPO_ROOT = Path(__file__).resolve().parent.parent.parent
MODEL_DIR = REPO_ROOT / "build" / "models" / "untrained-gpt2-tiny"
READY_DEADLINE_S = 120


def transformers_serve_command() -> list[str]:
    exe = shutil.which("transformers", path=str(Path(os.sys.executable).parent)) or shutil.which("transformers")
    if exe is None:
        raise RuntimeError("the `transformers` command is missing: install the test extra "
                           "(pip install -e '.[cpu,test]', which brings transformers[serving])")
    return [exe, "serve"]


class TransformersServe:
    """``transformers serve MODEL`` on 127.0.0.1; ``model`` is the name requests must carry."""

    def __init__(self, workdir: Path, model_dir: Path = MODEL_DIR, extra: tuple[str, ...] = ()):
        self.model_dir = build_tiny_llm(model_dir)
        self.model = str(self.model_dir)  # transformers serve names a local model by its path
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
        cmd = [*transformers_serve_command(), self.model, "--host", "127.0.0.1", "--port", str(self.port),
               "--device", "cpu", *extra]
        self.process = ServerProcess(cmd, f"{self.url}/health", Path(workdir) / "transformers-serve.log",
                                     cwd=Path(workdir), env=env, deadline_s=READY_DEADLINE_S)

    def stop(self) -> None:
        self.process.stop()
