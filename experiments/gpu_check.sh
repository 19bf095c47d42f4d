#!/usr/bin/env bash
# make gpu-check: the project's CUDA paths in one call, on a fresh NVIDIA machine (docs/gpu-check.md).
#
#   make gpu-check                         # or: bash experiments/gpu_check.sh
#   GPU_CHECK_DRY_RUN=1 make gpu-check     # print every command, in order, with its timeout; run none
#
# Steps: record nvidia-smi; `make install EXTRAS=gpu,test` (a new .venv; PyPI's CUDA torch and onnxruntime-gpu,
# about 2-3 minutes); the environment (torch.cuda, ONNX Runtime's providers, NVML, pip freeze); build the default
# model; export the five variants; bench-model on cuda at batch sizes 1-32; serve onnx-fp16 on cuda; a short
# bursty run (gamma 0.8) against it with telemetry on; its report; the GPU Bento (no containerize: no Docker);
# onnx-fp16 beside the paper's numbers. Every step runs under `timeout` and is recorded (ok, FAILED, skipped
# when a step it needs failed); a failure never stops the steps that do not need it. Exit 0 when all passed,
# 1 when any failed or was skipped, 2 when there is no NVIDIA GPU (before anything is installed).
# Everything lands in ONE folder, results/gpu-check-<UTC time>-<gpu>/, printed at the end; summary.md first.
#
# Settings (environment): GPU_CHECK_DRY_RUN=1; GPU_CHECK_RESULTS_DIR (parent folder, default results);
# GPU_CHECK_PORT (default 3917); GPU_CHECK_RATE (req/s, default 200); GPU_CHECK_REQUESTS (default 3000);
# GPU_CHECK_USERS (default 64); GPU_CHECK_EXTRAS (default gpu,test); GPU_CHECK_DEADLINE_S (default 540: no step
# starts or runs past it, so one call fits a 10-minute limit); PYTHON (for the venv, default python3).
# GPU_CHECK_REHEARSAL=1: the same steps on this CPU machine (no GPU needed, existing .venv kept, no install;
# device cpu, the tiny model, small sizes), to try the script itself before a GPU is lent.
set -u

DRY=${GPU_CHECK_DRY_RUN:-0}
REHEARSAL=${GPU_CHECK_REHEARSAL:-0}
SELF_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=${GPU_CHECK_REPO:-$(dirname "$SELF_DIR")}
cd "$REPO" || { echo "gpu-check: cannot enter the repository folder $REPO" >&2; exit 2; }

PYTHON=${PYTHON:-python3}
EXTRAS=${GPU_CHECK_EXTRAS:-gpu,test}
VENV=.venv
PY=$VENV/bin/python
BB=$VENV/bin/burstbench
VARIANTS=torch-fp32,torch-fp16,onnx-fp32,onnx-opt,onnx-fp16
SERVE_VARIANT=onnx-fp16
PORT=${GPU_CHECK_PORT:-3917}
URL=http://127.0.0.1:$PORT
USERS=${GPU_CHECK_USERS:-64}
DEADLINE_S=${GPU_CHECK_DEADLINE_S:-540}
RESERVE_S=15  # kept back for stopping the service and writing the summary
if [[ $REHEARSAL == 1 ]]; then
    DEVICE=cpu MODEL_SIZE=tiny BATCH_SIZES=1,2,4 REPEATS=5
    RATE=${GPU_CHECK_RATE:-20} REQUESTS=${GPU_CHECK_REQUESTS:-200}
else
    DEVICE=cuda MODEL_SIZE=base BATCH_SIZES=1,2,4,8,16,32 REPEATS=20
    RATE=${GPU_CHECK_RATE:-200} REQUESTS=${GPU_CHECK_REQUESTS:-3000}
fi
MODEL=build/models/untrained-roberta-$MODEL_SIZE
ON_CUDA=$([[ $DEVICE == cuda ]] && echo 1 || echo 0)  # the environment must have CUDA; gpu.csv must be written
RUN_NAME=gpu-check-$SERVE_VARIANT
# The paper's onnx-fp16 on a Quadro RTX 8000: best throughput (batch 16) and batch-1 latency.
PAPER_GPU="Quadro RTX 8000" PAPER_BEST=1906 PAPER_BEST_BATCH=16 PAPER_LATENCY_MS=1.95

say() { printf '[gpu-check] %s\n' "$*"; }

# ------------------------------------------------------------------------------------------- the GPU, first
GPU_NAME=${GPU_CHECK_GPU_NAME:-}
if [[ $DRY == 1 ]]; then
    GPU_NAME=${GPU_NAME:-dry-run}
elif [[ $REHEARSAL == 1 ]]; then
    GPU_NAME=${GPU_NAME:-cpu-rehearsal}
else
    if ! command -v nvidia-smi >/dev/null 2>&1; then
        echo "gpu-check: no NVIDIA GPU found (nvidia-smi is not on PATH); nothing was installed" >&2
        exit 2
    fi
    if ! names=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>&1) || [[ -z ${names//[[:space:]]/} ]]; then
        echo "gpu-check: no NVIDIA GPU found (nvidia-smi failed: $(printf '%s' "${names:-no GPU listed}" | head -n 1)); nothing was installed" >&2
        exit 2
    fi
    GPU_NAME=${GPU_NAME:-$(printf '%s\n' "$names" | head -n 1)}
fi
SLUG=$(printf '%s' "$GPU_NAME" | tr '[:upper:]' '[:lower:]' | tr -cs 'a-z0-9' '-' | sed 's/^-*//; s/-*$//')
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
OUT=${GPU_CHECK_RESULTS_DIR:-results}/gpu-check-$STAMP-${SLUG:-gpu}
ABS_OUT=$OUT
[[ $OUT == /* ]] || ABS_OUT=$PWD/$OUT

# --------------------------------------------------------------------------------------------- the runner
declare -a ORDER=()
declare -A STATUS=() SECS=() SHOWN=() NOTE=() LOG=()
SERVICE_PID=""
RUN_DIR=""

record() {  # record NAME STATUS SECONDS COMMAND NOTE [LOG]
    ORDER+=("$1")
    STATUS[$1]=$2 SECS[$1]=$3 SHOWN[$1]=$4 NOTE[$1]=$5 LOG[$1]=${6:-}
}

show() {  # a command as one copy-pasteable line; inline Python shows as its first comment line
    local arg out=""
    for arg in "$@"; do
        if [[ $arg == *$'\n'* ]]; then
            arg=${arg%%$'\n'*}
            out+="<inline python: ${arg#\# }> "
        elif [[ $arg =~ ^[][A-Za-z0-9_./:=,@%+\<\>-]+$ ]]; then  # plain words, and the dry run's <placeholders>
            out+="$arg "
        else
            out+="$(printf '%q' "$arg") "
        fi
    done
    printf '%s' "${out% }"
}

time_left() { echo $((DEADLINE_S - SECONDS - RESERVE_S)); }

needs() {  # needs NAME DEP...: true when every DEP passed; otherwise NAME is recorded as skipped
    local name=$1 dep missing=()
    shift
    for dep in "$@"; do
        case ${STATUS[$dep]:-not run} in ok | dry | kept) ;; *) missing+=("$dep") ;; esac
    done
    ((${#missing[@]} == 0)) && return 0
    record "$name" skipped 0 "" "needs ${missing[*]} (${STATUS[${missing[0]}]:-not run})"
    say "skip   $name: needs ${missing[*]}"
    return 1
}

failed_tail() {  # the last lines of a failed step's log, indented
    [[ -s $1 ]] && tail -n 15 "$1" | sed 's/^/    | /'
}

step() {  # step NAME TIMEOUT [--log FILE] CMD...: run CMD under timeout, output to the log, record the outcome
    local name=$1 limit=$2 log shown left t0 rc
    shift 2
    log=$OUT/logs/$name.log
    if [[ ${1:-} == --log ]]; then log=$2; shift 2; fi
    shown=$(show "$@")
    if [[ $DRY == 1 ]]; then
        printf '[dry] %-14s timeout %4ss  %s\n' "$name" "$limit" "$shown"
        record "$name" dry 0 "$shown" "" "$log"
        return 0
    fi
    left=$(time_left)
    if ((left < 5)); then
        record "$name" skipped 0 "$shown" "no time left (GPU_CHECK_DEADLINE_S=$DEADLINE_S)"
        say "skip   $name: no time left"
        return 1
    fi
    ((limit > left)) && limit=$left
    say "run    $name (timeout ${limit}s): $shown"
    t0=$SECONDS
    timeout --kill-after=10 "$limit" "$@" >"$log" 2>&1 </dev/null
    rc=$?
    if ((rc == 0)); then
        record "$name" ok $((SECONDS - t0)) "$shown" "" "$log"
        say "ok     $name ($((SECONDS - t0)) s)"
        return 0
    fi
    local why="exit $rc"
    ((rc == 124 || rc == 137)) && why="timed out after ${limit}s"
    record "$name" FAILED $((SECONDS - t0)) "$shown" "$why" "$log"
    say "FAILED $name ($why, $((SECONDS - t0)) s); last lines of $log:"
    failed_tail "$log"
    return 1
}

# ------------------------------------------------------------------------------------ inline Python helpers
define() { IFS= read -r -d '' "$1" || true; }  # define NAME <<'PY': the here-document, verbatim, into NAME
define PY_ENVIRONMENT <<'PY'
# environment: ONNX Runtime providers and a CUDA session, torch.cuda, NVML
import sys
from importlib import metadata

require_cuda = sys.argv[1] == "1"
problems = []


def version(dist):
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def ort_probe(ort):
    """A one-node graph on CUDAExecutionProvider: the provider ONNX Runtime really took."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Add", ["x", "x"], ["y"])], "probe",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    session = ort.InferenceSession(model.SerializeToString(),
                                   providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
    session.run(None, {"x": np.ones(2, dtype=np.float32)})
    return session.get_providers()[0]


print(f"python {sys.version.split()[0]} at {sys.executable}")
print(", ".join(f"{d} {version(d)}" for d in ("torch", "onnxruntime", "onnxruntime-gpu", "onnx", "transformers",
                                              "bentoml", "locust", "nvidia-ml-py", "pynvml")))
if version("onnxruntime") != "not installed" and version("onnxruntime-gpu") != "not installed":
    problems.append("both onnxruntime and onnxruntime-gpu are installed: they provide one module, keep onnxruntime-gpu")
try:
    import onnxruntime as ort

    providers = ort.get_available_providers()
    print(f"onnxruntime: device {ort.get_device()}; available providers {providers}")
    if "CUDAExecutionProvider" not in providers:
        problems.append(f"ONNX Runtime has no CUDAExecutionProvider (providers {providers})")
    else:
        try:  # before torch is imported: whether ONNX Runtime finds the CUDA libraries by itself
            print(f"onnxruntime CUDA session before importing torch: {ort_probe(ort)}")
        except Exception as err:
            print(f"onnxruntime CUDA session before importing torch: failed: {err!r}")
except Exception as err:
    ort = None
    problems.append(f"import onnxruntime: {err!r}")
try:
    import torch

    print(f"torch {torch.__version__}; built for CUDA {torch.version.cuda}; cuDNN {torch.backends.cudnn.version()}")
    print(f"torch.cuda.is_available(): {torch.cuda.is_available()}; devices {torch.cuda.device_count()}")
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            p = torch.cuda.get_device_properties(i)
            print(f"  cuda:{i} {p.name}, {p.total_memory / 2**30:.1f} GiB, compute capability {p.major}.{p.minor}")
        x = torch.ones(64, 64, device="cuda", dtype=torch.float16)
        print(f"  a float16 matmul on cuda:0: {float((x @ x).sum()):.0f} (expected {64 ** 3})")
    else:
        problems.append("torch sees no CUDA device" + (" (a CPU build of torch)" if torch.version.cuda is None else ""))
except Exception as err:
    problems.append(f"torch on CUDA: {err!r}")
if ort is not None and "CUDAExecutionProvider" in ort.get_available_providers():
    try:  # what the service does: torch imported first, then the session
        taken = ort_probe(ort)
        print(f"onnxruntime CUDA session after importing torch: {taken}")
        if taken != "CUDAExecutionProvider":
            problems.append(f"ONNX Runtime fell back to {taken}: its CUDA provider did not load")
    except Exception as err:
        problems.append(f"onnxruntime CUDA session: {err!r}")
try:
    import pynvml

    pynvml.nvmlInit()
    count = pynvml.nvmlDeviceGetCount()
    names = [pynvml.nvmlDeviceGetName(pynvml.nvmlDeviceGetHandleByIndex(i)) for i in range(count)]
    print(f"NVML: driver {pynvml.nvmlSystemGetDriverVersion()}; {count} GPU(s): {names}")
except Exception as err:
    print(f"NVML (pynvml, for gpu.csv): unavailable: {err!r}")
for problem in problems:
    print(f"PROBLEM: {problem}")
sys.exit(1 if problems and require_cuda else 0)
PY

define PY_WAIT_READY <<'PY'
# wait-ready: GET /readyz until 200, while the service process lives
import os, sys, time, urllib.request

url, pid, limit = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
deadline = time.monotonic() + limit
while time.monotonic() < deadline:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        sys.exit(f"the service (pid {pid}) exited before {url}/readyz answered: see service.log")
    try:
        with urllib.request.urlopen(f"{url}/readyz", timeout=2) as resp:
            if resp.status == 200:
                print(f"ready: {url}/readyz answered 200")
                sys.exit(0)
    except OSError:
        pass
    time.sleep(0.5)
sys.exit(f"{url}/readyz did not answer 200 within {limit:.0f} s")
PY

define PY_PORT_FREE <<'PY'
# port-free: nothing listens on the service's port yet (a service left there would answer instead)
import socket, sys

port = int(sys.argv[1])
with socket.socket() as sock:
    try:
        sock.bind(("127.0.0.1", port))
    except OSError as err:
        sys.exit(f"port {port} is taken ({err.strerror}): stop what listens there, or set GPU_CHECK_PORT")
PY

define PY_MODEL_INFO <<'PY'
# model-info: POST /model-info names the variant and the device asked for
import json, sys, urllib.request

url, device, variant, out = sys.argv[1:5]
req = urllib.request.Request(f"{url}/model-info", data=b"{}", headers={"Content-Type": "application/json"})
with urllib.request.urlopen(req, timeout=30) as resp:
    info = json.load(resp)
open(out, "w").write(json.dumps(info, indent=2) + "\n")
print(json.dumps(info, indent=2))
wrong = [f"{k} {info.get(k)!r} (expected {v!r})" for k, v in (("device", device), ("variant", variant))
         if info.get(k) != v]
sys.exit(f"/model-info: {'; '.join(wrong)}" if wrong else 0)
PY

define PY_TELEMETRY <<'PY'
# telemetry: gpu.csv, processes.csv and server_metrics.csv in the run folder, and what telemetry.json says
import csv, json, sys
from pathlib import Path

run, want_gpu = Path(sys.argv[1]), sys.argv[2] == "1"
missing = []
for name in ("server_metrics.csv", "processes.csv") + (("gpu.csv",) if want_gpu else ()):
    path = run / name
    rows = sum(1 for _ in csv.reader(path.open())) - 1 if path.is_file() else -1
    print(f"{name}: {rows} rows" if rows >= 0 else f"{name}: missing")
    if rows <= 0:
        missing.append(name)
if (run / "processes.csv").is_file():
    roles = {row["role"] for row in csv.DictReader((run / "processes.csv").open())}
    print(f"processes.csv roles: {sorted(roles)}")
    if "service" not in roles:
        missing.append("processes.csv rows of the service (role service)")
if (run / "gpu.csv").is_file():
    rows = list(csv.DictReader((run / "gpu.csv").open()))
    if rows:
        util = [float(r["utilization_percent"]) for r in rows if r.get("utilization_percent") not in (None, "")]
        peak = max(util) if util else float("nan")
        name = rows[0].get("name")
        print(f"gpu.csv: {name}; utilization max {peak:.0f} %")
summary = run / "telemetry.json"
if summary.is_file():
    print(json.dumps(json.loads(summary.read_text()), indent=2))
else:
    missing.append("telemetry.json")
sys.exit(f"missing or empty: {', '.join(missing)}" if missing else 0)
PY

define PY_PAPER <<'PY'
# paper-compare: onnx-fp16 here beside the paper (Quadro RTX 8000), and every variant for context
import sys
import pandas as pd

bench, out, gpu, paper_gpu = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
paper_best, paper_batch, paper_ms = float(sys.argv[5]), int(sys.argv[6]), float(sys.argv[7])
table = pd.read_csv(bench)
model = sys.argv[8]
lines = ["# onnx-fp16 beside the paper", "",
         f"Per-sample latency and samples/s: bench-model medians (tokenising included) of {model}.",
         ("The default model is UNTRAINED, with RoBERTa-base's shape (12 layers, hidden 768, 128 tokens): its cost\n"
          "is comparable to the paper's model, its labels are not. The paper's GPU is another one."
          if model.endswith("roberta-base") else "Not RoBERTa-base: the numbers are not comparable with the paper's."),
         "",
         f"| onnx-fp16 | paper ({paper_gpu}) | here ({gpu}) | here / paper |", "|---|---:|---:|---:|"]
fp16 = table[table["variant"] == "onnx-fp16"]
if len(fp16):
    best = fp16.loc[fp16["throughput_per_s"].idxmax()]
    lines.append(f"| best throughput (samples/s) | {paper_best:,.0f} at batch {paper_batch} | "
                 f"{best.throughput_per_s:,.0f} at batch {int(best.batch_size)} | {best.throughput_per_s / paper_best:.2f} |")
    one = fp16[fp16["batch_size"] == 1]
    if len(one):
        ms = float(one["latency_ms_per_sample"].iloc[0])
        lines.append(f"| latency at batch 1 (ms) | {paper_ms:.2f} | {ms:.2f} | {ms / paper_ms:.2f} |")
    same = fp16[fp16["batch_size"] == paper_batch]
    if len(same):
        lines.append(f"| throughput at batch {paper_batch} (samples/s) | {paper_best:,.0f} | "
                     f"{float(same.throughput_per_s.iloc[0]):,.0f} | {float(same.throughput_per_s.iloc[0]) / paper_best:.2f} |")
else:
    lines.append("| (no onnx-fp16 rows in bench.csv) | | | |")
lines += ["", "Every variant here:", "", "| variant | best samples/s (batch) | ms per sample at batch 1 |", "|---|---:|---:|"]
for variant, part in table.groupby("variant", sort=False):
    best = part.loc[part["throughput_per_s"].idxmax()]
    one = part[part["batch_size"] == 1]["latency_ms_per_sample"]
    lines.append(f"| {variant} | {best.throughput_per_s:,.0f} ({int(best.batch_size)}) | "
                 + (f"{float(one.iloc[0]):.2f} |" if len(one) else "- |"))
text = "\n".join(lines) + "\n"
open(out, "w").write(text)
print(text)
PY

# ------------------------------------------------------------------------------------------------ the steps
step_nvidia_smi() {
    step nvidia-smi 30 --log "$OUT/nvidia-smi.txt" nvidia-smi
    step nvidia-smi-q 30 --log "$OUT/nvidia-smi-q.txt" nvidia-smi -q
}

step_install() {  # make install: a new .venv with the [gpu] extra (PyPI's CUDA torch: about 2-3 minutes)
    if [[ $REHEARSAL == 1 ]]; then
        record install kept 0 "make install EXTRAS=$EXTRAS PYTHON=$PYTHON" "rehearsal: the existing .venv is used"
        return 0
    fi
    step install 330 make install "EXTRAS=$EXTRAS" "PYTHON=$PYTHON"
}

step_environment() {
    needs environment install || return 0
    step environment 90 --log "$OUT/environment.txt" "$PY" -c "$PY_ENVIRONMENT" "$ON_CUDA"
    step pip-freeze 60 --log "$OUT/pip-freeze.txt" "$PY" -m pip freeze
}

step_build_model() {  # the checkpoint only; the next step exports the variants (timed on its own)
    needs build-model install || return 0
    step build-model 180 "$BB" build-model --size "$MODEL_SIZE" --variants torch-fp32
}

step_export() {
    needs export build-model || return 0
    step export 240 "$BB" export --model "$MODEL" --variants "$VARIANTS"
}

step_bench_model() {  # torch-fp32/fp16 and the ONNX variants on CUDA: the torch-cuda path too
    needs bench-model export || return 0
    step bench-model 200 "$BB" bench-model --model "$MODEL" --variants "$VARIANTS" --batch-sizes "$BATCH_SIZES" \
        --repeats "$REPEATS" --device "$DEVICE" --out "$OUT/bench-model"
}

step_serve() {  # in the background, its own session (process group); ready when /readyz answers 200
    needs serve export || return 0
    local cmd=(env "BURSTBENCH_DEVICE=$DEVICE" "BURSTBENCH_VARIANT=$SERVE_VARIANT" "$BB" serve --port "$PORT"
        --model "$MODEL" --variant "$SERVE_VARIANT" --device "$DEVICE" --batching on)
    local shown limit=240 left
    shown=$(show "${cmd[@]}")
    if [[ $DRY == 1 ]]; then
        printf '[dry] %-14s timeout %4ss  setsid %s > %s 2>&1 &   (in the background; waits for GET %s/readyz)\n' \
            serve "$limit" "$shown" "$OUT/service.log" "$URL"
        record serve dry 0 "$shown" ""
        SERVICE_PID="<service-pid>"
        return 0
    fi
    left=$(time_left)
    if ((left < 5)); then
        record serve skipped 0 "$shown" "no time left (GPU_CHECK_DEADLINE_S=$DEADLINE_S)"
        say "skip   serve: no time left"
        return 0
    fi
    ((limit > left)) && limit=$left
    say "run    serve (ready within ${limit}s): setsid $shown > $OUT/service.log &"
    local t0=$SECONDS
    if ! "$PY" -c "$PY_PORT_FREE" "$PORT" >"$OUT/logs/serve.log" 2>&1; then
        record serve FAILED 0 "$shown" "$(tail -n 1 "$OUT/logs/serve.log")" "$OUT/logs/serve.log"
        say "FAILED serve: $(tail -n 1 "$OUT/logs/serve.log")"
        return 0
    fi
    setsid "${cmd[@]}" >"$OUT/service.log" 2>&1 </dev/null &
    SERVICE_PID=$!
    echo "$SERVICE_PID" >"$OUT/service.pid"
    if "$PY" -c "$PY_WAIT_READY" "$URL" "$SERVICE_PID" "$limit" >"$OUT/logs/serve.log" 2>&1; then
        record serve ok $((SECONDS - t0)) "$shown" "pid $SERVICE_PID" "$OUT/service.log"
        say "ok     serve ($((SECONDS - t0)) s, pid $SERVICE_PID)"
    else
        cat "$OUT/logs/serve.log" >>"$OUT/service.log"
        record serve FAILED $((SECONDS - t0)) "$shown" "$(tail -n 1 "$OUT/logs/serve.log")" "$OUT/service.log"
        say "FAILED serve; last lines of $OUT/service.log:"
        failed_tail "$OUT/service.log"
    fi
}

step_model_info() {
    needs model-info serve || return 0
    step model-info 30 "$PY" -c "$PY_MODEL_INFO" "$URL" "$DEVICE" "$SERVE_VARIANT" "$OUT/model-info.json"
}

step_scenario() {  # gamma 0.8 ("extreme") at RATE req/s: about REQUESTS/RATE seconds (15 s by default)
    needs scenario serve || return 0
    step scenario 150 "$BB" run extreme --host "$URL" --preset plain --path /analyze-sentiment --expect-field label \
        --rate "$RATE" --requests "$REQUESTS" --users "$USERS" --seed 0 --results-dir "$OUT" --run-name "$RUN_NAME" \
        --telemetry on --server-metrics /metrics --metrics-every 0.5 --service-pid "$SERVICE_PID"
    if [[ $DRY == 1 ]]; then
        RUN_DIR="$OUT/<UTC-time>-$RUN_NAME"
    else
        RUN_DIR=$(find "$OUT" -mindepth 1 -maxdepth 1 -type d -name "*-$RUN_NAME*" | sort | tail -n 1)
    fi
}

step_stop_service() {  # SIGTERM to the service's process group; SIGKILL after 30 s
    [[ -n $SERVICE_PID ]] || return 0
    if [[ $DRY == 1 ]]; then
        printf '[dry] %-14s timeout %4ss  kill -TERM -- -%s   (then -KILL)\n' stop-service 30 "$SERVICE_PID"
        record stop-service dry 0 "kill -TERM -- -<service-pid>" ""
        SERVICE_PID=""
        return 0
    fi
    local pid=$SERVICE_PID t0=$SECONDS
    SERVICE_PID=""
    if ! kill -0 "$pid" 2>/dev/null; then
        record stop-service FAILED 0 "kill -TERM -- -$pid" "the service (pid $pid) had already exited" "$OUT/service.log"
        return 0
    fi
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null
    while kill -0 "$pid" 2>/dev/null && ((SECONDS - t0 < 30)); do sleep 0.5; done
    if kill -0 "$pid" 2>/dev/null; then
        kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null
        record stop-service FAILED $((SECONDS - t0)) "kill -TERM -- -$pid" "still running 30 s after SIGTERM: killed" \
            "$OUT/service.log"
    else
        record stop-service ok $((SECONDS - t0)) "kill -TERM -- -$pid" ""
    fi
    wait "$pid" 2>/dev/null
}

step_telemetry() {
    needs telemetry scenario || return 0
    step telemetry 30 "$PY" -c "$PY_TELEMETRY" "$RUN_DIR" "$ON_CUDA"
}

step_report() {
    needs validate scenario && step validate 60 "$BB" validate "$RUN_DIR"
    needs report scenario && step report 150 "$BB" report "$RUN_DIR"
    return 0
}

step_bento() {  # the GPU Bento (bentoml build is offline; containerize needs Docker: not here)
    needs bento-gpu install || return 0
    step bento-gpu 90 env "BENTOML_HOME=$ABS_OUT/bentoml-home" BENTOML_DO_NOT_TRACK=True "$VENV/bin/bentoml" build \
        -f deploy/bento/bentofile.gpu.yaml -o tag .
}

step_paper() {
    needs paper-compare bench-model || return 0
    step paper-compare 60 "$PY" -c "$PY_PAPER" "$OUT/bench-model/bench.csv" "$OUT/paper-comparison.md" "$GPU_NAME" \
        "$PAPER_GPU" "$PAPER_BEST" "$PAPER_BEST_BATCH" "$PAPER_LATENCY_MS" "${MODEL##*/}"
}

# ------------------------------------------------------------------------------------------------ summary
SUMMARY_WRITTEN=0
write_summary() {
    [[ $SUMMARY_WRITTEN == 1 ]] && return 0
    SUMMARY_WRITTEN=1
    local name failed=0 commit
    for name in "${ORDER[@]}"; do
        case ${STATUS[$name]} in ok | dry | kept) ;; *) failed=$((failed + 1)) ;; esac
    done
    if [[ $DRY == 1 ]]; then
        say "dry run: ${#ORDER[@]} steps listed; nothing was run"
        echo "results folder (not created in a dry run): $OUT"
        return 0
    fi
    commit=$(git rev-parse --short HEAD 2>/dev/null || echo "unknown (no git)")
    {
        echo "# gpu-check: $GPU_NAME, $STAMP"
        echo
        echo "$( ((failed == 0)) && echo "All ${#ORDER[@]} steps passed." || echo "$failed of ${#ORDER[@]} steps FAILED or were skipped.")" \
            "Commit $commit$([[ -n $(git status --porcelain 2>/dev/null | head -n 1) ]] && echo ' (with uncommitted changes)');" \
            "$SECONDS s in all; device $DEVICE$([[ $REHEARSAL == 1 ]] && echo ' (REHEARSAL on CPU: not a GPU result)')."
        echo
        echo "| step | status | seconds | command | note |"
        echo "|---|---|---:|---|---|"
        for name in "${ORDER[@]}"; do
            # shellcheck disable=SC2016  # the backticks are Markdown's
            printf '| %s | %s | %s | `%s` | %s |\n' "$name" "${STATUS[$name]}" "${SECS[$name]}" \
                "${SHOWN[$name]//|/\\|}" "${NOTE[$name]//|/\\|}"
        done
        echo
        if [[ -s $OUT/paper-comparison.md ]]; then
            sed '1s/^# /## /' "$OUT/paper-comparison.md"
            echo
        fi
        echo "## Files"
        echo
        echo "nvidia-smi.txt, nvidia-smi-q.txt, environment.txt, pip-freeze.txt, bench-model/ (bench.md, bench.csv, figures),"
        echo "service.log, model-info.json, ${RUN_DIR:+${RUN_DIR#"$OUT"/}/ (the run; report/ inside), }logs/ (one per step)."
        for name in "${ORDER[@]}"; do
            [[ ${STATUS[$name]} == FAILED ]] || continue
            echo
            echo "## $name: FAILED (${NOTE[$name]})"
            echo
            echo '```'
            echo "\$ ${SHOWN[$name]}"
            [[ -n ${LOG[$name]} && -s ${LOG[$name]} ]] && tail -n 20 "${LOG[$name]}"
            echo '```'
        done
    } >"$OUT/summary.md"
    echo
    cat "$OUT/summary.md"
    echo
    echo "results folder: $OUT"
}

# shellcheck disable=SC2317  # run by the EXIT trap
on_exit() {
    local rc=$?
    [[ -n $SERVICE_PID && $DRY != 1 ]] && step_stop_service
    [[ -d $OUT || $DRY == 1 ]] && write_summary
    exit "$rc"
}

# ------------------------------------------------------------------------------------------------ main
if [[ $DRY == 1 ]]; then
    say "dry run: the commands, in order, with their timeouts; none is run (results folder: $OUT)"
    say "a step's timeout is cut to what is left of GPU_CHECK_DEADLINE_S=${DEADLINE_S}s (${RESERVE_S}s kept for the summary)"
else
    mkdir -p "$OUT/logs" || { echo "gpu-check: cannot create $OUT" >&2; exit 2; }
    say "results folder: $OUT (GPU: $GPU_NAME; deadline ${DEADLINE_S}s)"
    trap on_exit EXIT
    trap 'say "interrupted"; exit 130' INT TERM
fi
[[ $REHEARSAL == 1 ]] || step_nvidia_smi
step_install
step_environment
step_build_model
step_export
step_bench_model
step_serve
step_model_info
step_scenario
step_stop_service
step_telemetry
step_report
step_bento
step_paper

if [[ $DRY == 1 ]]; then
    write_summary
    exit 0
fi
trap - EXIT
write_summary
for name in "${ORDER[@]}"; do
    case ${STATUS[$name]} in ok | kept) ;; *) exit 1 ;; esac
done
exit 0
