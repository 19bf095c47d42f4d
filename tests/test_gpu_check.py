"""`make gpu-check` (experiments/gpu_check.sh): the one-call GPU check, checked without a GPU.

What can be checked here: the script parses (`bash -n`, and shellcheck where installed); its dry run lists
every step in order with the flags that matter (CUDA, the five variants, batch sizes 1-32, onnx-fp16 served
on CUDA, the run's telemetry flags) and runs none of them; without an NVIDIA GPU it says so in one line and
exits 2 before installing anything. The real run needs a GPU machine (docs/gpu-check.md).
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import REPO_ROOT

SCRIPT = REPO_ROOT / "experiments" / "gpu_check.sh"
BASH = shutil.which("bash") or "/bin/bash"
VARIANTS = "torch-fp32,torch-fp16,onnx-fp32,onnx-opt,onnx-fp16"


def path_without_nvidia_smi() -> str:
    dirs = [d for d in os.environ.get("PATH", "/usr/bin:/bin").split(os.pathsep) if d]
    return os.pathsep.join(d for d in dirs if not (Path(d) / "nvidia-smi").exists())


def run_script(repo: Path, path: str, **env: str) -> subprocess.CompletedProcess:
    keep = {k: v for k, v in os.environ.items() if not k.startswith("GPU_CHECK_")}
    return subprocess.run([BASH, str(SCRIPT)], cwd=repo, capture_output=True, text=True, timeout=60,
                          env={**keep, "PATH": path, "GPU_CHECK_REPO": str(repo), **env})


@pytest.mark.unit
def test_make_target_runs_the_script_and_does_not_depend_on_install():
    text = (REPO_ROOT / "Makefile").read_text()
    target = re.search(r"^gpu-check:(.*)\n\t(.*)$", text, re.M)
    assert target is not None, "no gpu-check target in the Makefile"
    assert target.group(1).strip() == "", f"gpu-check must not have prerequisites (got {target.group(1)!r})"
    assert target.group(2).strip() == "bash experiments/gpu_check.sh"
    assert re.search(r"^\.PHONY:.*\bgpu-check\b", text, re.M)


@pytest.mark.unit
def test_a_failure_does_not_stop_the_script():
    text = SCRIPT.read_text()
    assert re.search(r"^set -u$", text, re.M)
    assert not re.search(r"^\s*set -[a-z]*e", text, re.M), "set -e would stop at the first failed step"


@pytest.mark.integration
def test_bash_parses_it():
    result = subprocess.run([BASH, "-n", str(SCRIPT)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr


@pytest.mark.integration
def test_shellcheck_is_clean():
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck is not installed (apt-get install shellcheck)")
    result = subprocess.run(["shellcheck", str(SCRIPT)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.integration
def test_dry_run_lists_every_step_in_order_and_runs_none(tmp_path):
    result = run_script(tmp_path, path_without_nvidia_smi(), GPU_CHECK_DRY_RUN="1")
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    dry = [line for line in lines if line.startswith("[dry] ")]
    steps = [line.split()[1] for line in dry]
    order = ["nvidia-smi", "install", "environment", "build-model", "export", "bench-model", "serve", "model-info",
             "scenario", "stop-service", "telemetry", "report", "bento-gpu", "paper-compare"]
    assert [s for s in steps if s in order] == order, steps
    assert all(re.search(r"timeout +\d+s ", line) for line in dry), dry
    by_step = dict(zip(steps, dry))

    assert "make install EXTRAS=gpu,test" in by_step["install"]
    assert ".venv/bin/burstbench build-model" in by_step["build-model"]
    assert f"export --model build/models/untrained-roberta-base --variants {VARIANTS}" in by_step["export"]
    bench = by_step["bench-model"]
    for flag in ("--device cuda", "--batch-sizes 1,2,4,8,16,32", f"--variants {VARIANTS}", "--out results/gpu-check-"):
        assert flag in bench, bench
    serve = by_step["serve"]
    for flag in ("burstbench serve", "--variant onnx-fp16", "--device cuda", "BURSTBENCH_DEVICE=cuda"):
        assert flag in serve, serve
    run = by_step["scenario"]
    for flag in ("burstbench run extreme", "--host http://127.0.0.1:", "--rate 200", "--requests 3000",
                 "--telemetry on", "--server-metrics /metrics", "--metrics-every 0.5", "--service-pid"):
        assert flag in run, run
    assert "burstbench report results/gpu-check-" in by_step["report"]
    assert "bentofile.gpu.yaml" in by_step["bento-gpu"]

    folder = re.search(r"results folder[^:]*: (results/gpu-check-\d{8}T\d{6}Z-\S+)", lines[-1])
    assert folder is not None, lines[-1]
    assert folder.group(1) in run
    assert list(tmp_path.iterdir()) == [], "the dry run created files (a .venv, a results folder)"


@pytest.mark.integration
def test_without_nvidia_smi_it_says_so_in_one_line_and_installs_nothing(tmp_path):
    result = run_script(tmp_path, path_without_nvidia_smi())
    assert result.returncode == 2
    said = (result.stdout + result.stderr).strip().splitlines()
    assert len(said) == 1 and "no NVIDIA GPU found" in said[0] and "nvidia-smi" in said[0], said
    assert list(tmp_path.iterdir()) == []


@pytest.mark.integration
def test_a_failing_nvidia_smi_is_no_gpu_either(tmp_path):
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "nvidia-smi").write_text("#!/bin/sh\necho 'NVIDIA-SMI has failed because it could not communicate "
                                     "with the NVIDIA driver.' >&2\nexit 9\n")
    (fake / "nvidia-smi").chmod(0o755)
    repo = tmp_path / "repo"
    repo.mkdir()
    result = run_script(repo, os.pathsep.join([str(fake), path_without_nvidia_smi()]))
    assert result.returncode == 2
    said = (result.stdout + result.stderr).strip().splitlines()
    assert len(said) == 1 and "no NVIDIA GPU found" in said[0] and "could not communicate" in said[0], said
    assert list(repo.iterdir()) == []
