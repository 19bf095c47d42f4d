# Thin wrappers around the packages' own entry points. Every target installs what is missing first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
BB := $(VENV)/bin/burstbench
# onnxruntime and onnxruntime-gpu provide the same module: exactly one, chosen by the machine.
EXTRAS ?= $(if $(shell command -v nvidia-smi 2>/dev/null),gpu,cpu),test

REQUESTS ?= 1000
SEED ?= 0
PACING ?= arrival
USERS ?= 10
PORT ?= 3000
MEAN ?=
VARIANT ?=
BATCHING ?=
RUN ?=
MODEL ?= build/models/untrained-roberta-base
VARIANTS ?= torch-fp32,torch-fp16,onnx-fp32,onnx-opt,onnx-fp16
BATCH_SIZES ?= 1,2,4,8,16,32
SCENARIO ?= steady
WORKERS ?=
TRACE ?=
TRACE_COLUMN ?= timestamp

SCENARIO_FLAGS = --requests $(REQUESTS) --seed $(SEED) $(if $(WORKERS),--workers $(WORKERS)) --pacing $(PACING) --users $(USERS) --port $(PORT) \
	$(if $(MEAN),--mean $(MEAN)) $(if $(VARIANT),--variant $(VARIANT)) $(if $(BATCHING),--batching $(BATCHING))


.PHONY: replay superposition
.PHONY: install model bench-model compare-variants serve test browser scenario-steady scenario-moderate scenario-extreme summary report compare paper-gaps fuzz bento clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "burstbench needs Python >= 3.11 (found " + sys.version.split()[0] + "); run make PYTHON=python3.11 ...")'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[$(EXTRAS)]'
	@touch $@

model: install
	$(BB) build-model

serve: model
	$(BB) serve --port $(PORT) $(if $(VARIANT),--variant $(VARIANT)) $(if $(BATCHING),--batching $(BATCHING))

# The paper's Tables 1-2: every variant, interleaved, across batch sizes.
bench-model: model
	$(BB) export --model $(MODEL) --variants $(VARIANTS)
	$(BB) bench-model --model $(MODEL) --variants $(VARIANTS) --batch-sizes $(BATCH_SIZES)

# The paper's Tables 3-4 for variants: one scenario against each variant and batching on/off, compared.
compare-variants: model
	@set -e; before=$$(ls -d results/2*/ 2>/dev/null | wc -l); \
	for v in $$(echo $(VARIANTS) | tr , ' '); do \
	  $(BB) run $(SCENARIO) $(SCENARIO_FLAGS) --variant $$v --batching on; done; \
	$(BB) run $(SCENARIO) $(SCENARIO_FLAGS) --variant onnx-fp32 --batching off; \
	runs=$$(ls -d results/2*/ | tail -n +$$((before + 1))); \
	$(BB) compare $$runs

scenario-steady scenario-moderate scenario-extreme: scenario-%: install
	$(BB) run $* $(SCENARIO_FLAGS)

# Replay a trace's timestamps (all of them unless REQUESTS is given; MEAN rescales the trace).
replay: install
	@test -n "$(TRACE)" || { echo 'make replay TRACE=file.csv [TRACE_COLUMN=timestamp] [MEAN=s] [REQUESTS=n] [WORKERS=n]'; exit 2; }
	$(BB) trace-fit $(TRACE) --column $(TRACE_COLUMN) $(if $(MEAN),--mean $(MEAN))
	$(BB) run trace --trace $(TRACE) --trace-column $(TRACE_COLUMN) \
	  $(if $(filter command line environment,$(origin REQUESTS)),--requests $(REQUESTS)) --seed $(SEED) \
	  --users $(USERS) --port $(PORT) $(if $(MEAN),--mean $(MEAN)) $(if $(WORKERS),--workers $(WORKERS)) \
	  $(if $(VARIANT),--variant $(VARIANT)) $(if $(BATCHING),--batching $(BATCHING))

# Why distributed runs split one schedule: independent per-worker processes drift towards Poisson.
superposition: install
	$(BB) superposition --out results/superposition

summary: install
	$(BB) summary $(if $(RUN),$(RUN),--latest)

report: install
	$(BB) report $(if $(RUN),$(RUN),--latest)

compare: install
	@test -n "$(RUNS)" || { echo 'make compare RUNS="results/<a> results/<b> ..." [BASELINE=results/<a>]'; exit 2; }
	$(BB) compare $(RUNS) $(if $(BASELINE),--baseline $(BASELINE))

paper-gaps: install
	$(BB) paper-gaps --seed $(SEED)

# The HTML report's browser test drives Debian's chromium (no browser download is possible here).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	    echo "installing Debian's chromium for the report's browser test"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "chromium not found and cannot be installed here: the browser test will be skipped"; fi; }

test: install browser nginx tcpdump
	$(PY) -m pytest

# Unit tests only (no processes, servers or Locust; under a minute): the kinds are assigned in tests/conftest.py.
.PHONY: test-fast
test-fast: install
	$(PY) -m pytest -m unit

# docs/cli.md, generated from the subcommands' parsers (tests/test_docs_examples.py fails when it is stale).
.PHONY: docs-cli
docs-cli: install
	$(PY) -m burstbench.cli_reference --write docs/cli.md

# Disruptions under load (issue 6): make resilience [PLAN=local-default] [TARGET=local|k8s] [HOST=URL for k8s]
PLAN ?= local-default
TARGET ?=
HOST ?=
.PHONY: resilience
resilience: install
	$(BB) resilience run --plan $(PLAN) $(if $(TARGET),--target $(TARGET)) $(if $(HOST),--host $(HOST))

# Capacity sweep: open-loop steps up past saturation per arrival process, batching on and off
# (default model, onnx-fp32, 2 CPU cores: about 20-25 min). BATCHING=on|off|on,off; RATES=2,4,8 fixes the grid.
SLO_P99_MS ?= 500
.PHONY: sweep
sweep: install
	$(BB) sweep --slo-p99-ms $(SLO_P99_MS) --seed $(SEED) --port $(PORT) \
	  $(if $(VARIANT),--variant $(VARIANT)) $(if $(BATCHING),--batching $(BATCHING)) $(if $(RATES),--rates $(RATES)) \
	  $(if $(PROCESSES),--processes $(PROCESSES)) $(if $(TRACE),--trace $(TRACE))

# Soak: one long bursty run against the bundled service, then per-window throughput and p50/p99, failures, RSS,
# a leak verdict per process and a latency drift verdict (docs/soak.md). SCENARIO defaults to extreme here.
# make soak [MINUTES=60] [RATE=5] [SCENARIO=extreme] [WINDOW_S=300]
MINUTES ?= 60
RATE ?= 5
.PHONY: soak
soak: install
	$(BB) soak --minutes $(MINUTES) --rate $(RATE) --scenario $(if $(filter command line environment,$(origin SCENARIO)),$(SCENARIO),extreme) \
	  --seed $(SEED) --port $(PORT) $(if $(VARIANT),--variant $(VARIANT)) $(if $(BATCHING),--batching $(BATCHING)) \
	  $(if $(WINDOW_S),--window-s $(WINDOW_S))

# Generator accuracy judged from the wire (a packet capture on loopback) against Debian's nginx answering a
# fixed body: burstbench's dispatchers, Locust's constant_throughput and AIPerf (own venv under build/) side by side.
# make bench-generator [GEN_CASES=exponential@200x4000,gamma:0.5@20x1200,...] [GEN_DISPATCHERS=timerfd,spin,sleep]
#                      [GEN_PEERS=aiperf|none]; or a grid: GEN_RATES=500,1000 [GEN_ARRIVALS=...] [GEN_PROCESSES=1,2]
GEN_CASES ?=
GEN_RATES ?=
GEN_ARRIVALS ?= exponential,gamma:0.8
GEN_PROCESSES ?= 1
GEN_STEP_SECONDS ?= 3
GEN_DISPATCHERS ?= timerfd,spin,sleep
GEN_PEERS ?= aiperf
.PHONY: nginx tcpdump bench-generator
nginx:
	@command -v nginx >/dev/null 2>&1 || test -x /usr/sbin/nginx || { \
	  if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	    echo "installing Debian's nginx for the generator benchmark"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx >/dev/null; \
	  else echo "nginx not found and cannot be installed here (needs root and apt-get): apt-get install nginx"; exit 1; fi; }

# The wire observer (experiments/wire_capture.py): Debian's tcpdump, capturing on loopback as root.
tcpdump:
	@command -v tcpdump >/dev/null 2>&1 || test -x /usr/sbin/tcpdump || test -x /usr/bin/tcpdump || { \
	  if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	    echo "installing Debian's tcpdump for the generator benchmark's wire capture"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq tcpdump >/dev/null; \
	  else echo "tcpdump not found and cannot be installed here (needs root and apt-get): apt-get install tcpdump"; exit 1; fi; }

bench-generator: install nginx tcpdump
	$(BB) bench-generator $(if $(GEN_CASES),--cases $(GEN_CASES)) \
	  $(if $(GEN_RATES),--rates $(GEN_RATES) --arrivals $(GEN_ARRIVALS) --processes $(GEN_PROCESSES) --step-seconds $(GEN_STEP_SECONDS)) \
	  --dispatchers $(GEN_DISPATCHERS) --peers $(GEN_PEERS) --seed $(SEED)

# Streaming cross-check (issue 14): AIPerf (own venv under build/) and burstbench at the same Poisson rate against
# transformers serve with the untrained tiny GPT-2 on CPU; TTFT and ITL medians side by side, differences explained.
# make bench-streaming [STREAM_RATE=4] [STREAM_REQUESTS=200]
.PHONY: bench-streaming
bench-streaming: install
	$(BB) bench-streaming $(if $(STREAM_RATE),--rate $(STREAM_RATE)) $(if $(STREAM_REQUESTS),--requests $(STREAM_REQUESTS)) \
	  --seed $(SEED)

# Does the telemetry sidecar disturb the schedule? Off and on (scraping every 0.25 s) alternating against nginx,
# judged from a packet capture: make bench-telemetry [TELEMETRY_PAIRS=3] [TELEMETRY_RATE=400]
.PHONY: bench-telemetry
bench-telemetry: install nginx tcpdump
	$(BB) bench-telemetry $(if $(TELEMETRY_PAIRS),--pairs $(TELEMETRY_PAIRS)) $(if $(TELEMETRY_RATE),--rate $(TELEMETRY_RATE)) \
	  --seed $(SEED)

# Generated malformed traffic (schemathesis) against the service's own OpenAPI schema; zero 5xx is the target.
# FUZZ_URL=http://host:port fuzzes a running service; otherwise the tiny model's own server is started.
FUZZ_CASES ?= 2000
fuzz: install
	$(BB) fuzz --cases $(FUZZ_CASES) --seed $(SEED) $(if $(FUZZ_URL),--url $(FUZZ_URL))

# The Bento (offline); `bentoml containerize sentiment:latest` then needs Docker (README: Deployment).
bento: install
	BENTOML_DO_NOT_TRACK=True $(VENV)/bin/bentoml build .

clean:
	rm -rf build .pytest_cache

# One-call GPU check (issue 15), on a fresh NVIDIA machine: installs the [gpu] extra itself (no `install`
# prerequisite), builds, exports and benchmarks every variant on CUDA, serves onnx-fp16 on CUDA under a bursty
# run with telemetry, reports; everything in results/gpu-check-<UTC>-<gpu>/ (docs/gpu-check.md).
# GPU_CHECK_DRY_RUN=1 prints the commands and runs none; without a GPU it says so and exits 2.
.PHONY: gpu-check
gpu-check:
	bash experiments/gpu_check.sh
