# edgetune: one task prompt in, a fine-tuned, verified GGUF serving over gRPC out.
#   make train export    the main job on the embedded default model (sets itself up)
#   make test            the test suite
# Variables: RUN (run directory name), TASK, BASE_MODEL, TEACHER, PORT, ARGS (extra CLI flags for the stage).
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
RUN ?= default
TASK ?= robot_sdk
BASE_MODEL ?=
TEACHER ?= synth
PORT ?= 50051
ARGS ?=
PYTEST_ARGS ?=
STAMP := $(VENV)/.edgetune-setup
# llama-cpp-python is compiled from source by setup. On x86-64 its CPU kernels target x86-64-v3 (AVX2, FMA, F16C,
# BMI2; no AVX-512, no AMX) instead of -march=native: a native build on an Intel Xeon with AMX compiles ggml's AMX
# kernels, and those die with SIGILL in VMs that advertise AMX (issue 14; the cost is in docs/README.export.md).
# Other architectures keep llama.cpp's defaults. LLAMA_STAMP records the build in the venv; another version or
# other flags rebuild it. The wheel is built past pip's cache (which keys a locally built wheel by version alone and
# would hand back one built with other flags) into LLAMA_WHEELS, a folder named by the build, so a fresh clone
# with the same build reuses it instead of compiling again.
LLAMA_CPP_VERSION := $(shell sed -n 's/.*"llama-cpp-python==\([0-9.]*\)".*/\1/p' pyproject.toml | head -n 1)
X86_64_V3 := -DGGML_NATIVE=OFF -DGGML_SSE42=ON -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON \
  -DGGML_BMI2=ON -DGGML_AVX_VNNI=OFF -DGGML_AVX512=OFF -DGGML_AVX512_VBMI=OFF -DGGML_AVX512_VNNI=OFF \
  -DGGML_AVX512_BF16=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF -DGGML_CPU_REPACK=ON
LLAMA_CMAKE_ARGS ?= $(if $(filter x86_64 amd64,$(shell uname -m)),$(X86_64_V3))
LLAMA_BUILD := llama-cpp-python==$(LLAMA_CPP_VERSION) CMAKE_ARGS=$(strip $(LLAMA_CMAKE_ARGS))
LLAMA_STAMP := $(VENV)/.llama-cpp-build
LLAMA_BUILD_ID := $(shell uname -m)-$(shell printf '%s' '$(LLAMA_BUILD)' | cksum | cut -d' ' -f1)
LLAMA_WHEELS ?= $(HOME)/.cache/edgetune/wheels/$(LLAMA_BUILD_ID)
PROTOC := PATH="$(abspath $(VENV))/bin:$$PATH" $(PY) -m grpc_tools.protoc -I proto --python_out=. --grpc_python_out=. --mypy_out=. --mypy_grpc_out=.
PROTOS := $(wildcard proto/edgetune/v1/*.proto)
BASE_FLAG := $(if $(BASE_MODEL),--base-model "$(BASE_MODEL)",)

.PHONY: help setup data train export serve bench compare llama-server openai-ft test proto docker-train docker-edge clean distclean

help: ## list the targets
	@echo "usage: make TARGET [RUN=default TASK=robot_sdk BASE_MODEL=... TEACHER=synth|openai PORT=50051 ARGS=...]"
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-13s %s\n", $$1, $$2}'

setup: $(STAMP) ## create .venv, install edgetune + extras, fetch the default model, generate stubs (idempotent)
	@$(PY) -m edgetune fetch-model >/dev/null
	@$(if $(PROTOS),$(PROTOC) $(PROTOS),true)

$(STAMP): pyproject.toml $(LLAMA_STAMP)
	$(PY) -m pip install -q -e '.[train,export,serve,dev]'
	@touch $@

ifneq ($(file < $(LLAMA_STAMP)),$(LLAMA_BUILD))
.PHONY: $(LLAMA_STAMP)
endif
$(LLAMA_STAMP):
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	@if ! ls "$(LLAMA_WHEELS)"/llama_cpp_python-$(LLAMA_CPP_VERSION)-*.whl >/dev/null 2>&1; then \
	  mkdir -p "$(dir $(LLAMA_WHEELS))" && tmp=$$(mktemp -d "$(LLAMA_WHEELS).XXXXXX") && \
	  echo "compiling llama-cpp-python==$(LLAMA_CPP_VERSION) (a few minutes, once per build) into $(LLAMA_WHEELS)" && \
	  CMAKE_ARGS="$(strip $(LLAMA_CMAKE_ARGS))" $(PY) -m pip wheel -q --no-cache-dir --no-deps \
	    --no-binary llama-cpp-python -w "$$tmp" "llama-cpp-python==$(LLAMA_CPP_VERSION)" && \
	  { mv -T "$$tmp" "$(LLAMA_WHEELS)" 2>/dev/null || rm -rf "$$tmp"; }; \
	fi
	$(PY) -m pip install -q --force-reinstall --no-deps "$(LLAMA_WHEELS)"/llama_cpp_python-$(LLAMA_CPP_VERSION)-*.whl
	@printf '%s' '$(LLAMA_BUILD)' > $@

data: setup ## generate, validate, dedupe and split the dataset -> runs/$(RUN)/data
	$(PY) -m train data --run $(RUN) --task $(TASK) --teacher $(TEACHER) $(ARGS)

train: data ## QLoRA-tune BASE_MODEL on the dataset -> runs/$(RUN)/adapter
	$(PY) -m train finetune --run $(RUN) $(BASE_FLAG) $(ARGS)

export: setup ## merge, convert to GGUF, quantize, verify, pick a quant -> runs/$(RUN)/bundle
	$(PY) -m export --run $(RUN) $(ARGS)

serve: setup ## gRPC server on PORT for runs/$(RUN)/bundle (the embedded model if there is none)
	$(PY) -m serve --run $(RUN) --port $(PORT) $(ARGS)

bench: setup ## latency benchmarks -> runs/$(RUN)/bench
	$(PY) -m bench --run $(RUN) $(ARGS)

compare: setup ## DSPy prompt vs local LoRA vs OpenAI fine-tune on quality, latency, cost -> runs/$(RUN)/compare
	$(PY) -m bench.compare --run $(RUN) $(ARGS)

llama-server: setup ## build llama.cpp's C++ llama-server (the bench's peer) once, into ~/.cache/edgetune (~15 min)
	$(PY) -m bench.peer

openai-ft: setup ## fine-tune an OpenAI model on runs/$(RUN)/data (the server's fallback)
	$(PY) -m train openai-ft --run $(RUN) $(ARGS)

test: setup ## run the test suite
	$(PY) -m pytest $(PYTEST_ARGS)

proto: $(STAMP) ## generate the gRPC stubs from proto/ (not committed)
	$(PROTOC) $(PROTOS)

docker-train: ## build the GPU training image
	docker build -f docker/train.Dockerfile -t edgetune-train .

docker-edge: ## build the Jetson serving image
	docker build -f docker/edge.Dockerfile -t edgetune-edge .

clean: ## remove generated stubs and caches (keeps runs/, models/ and .venv)
	rm -rf edgetune/v1 .pytest_cache .hypothesis build dist *.egg-info
	find . -name __pycache__ -prune -not -path './$(VENV)/*' -exec rm -rf {} +

distclean: clean ## also remove .venv, models/ and runs/
	rm -rf $(VENV) models runs
