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
PROTOC := PATH="$(abspath $(VENV))/bin:$$PATH" $(PY) -m grpc_tools.protoc -I proto --python_out=. --grpc_python_out=. --mypy_out=. --mypy_grpc_out=.
PROTOS := $(wildcard proto/edgetune/v1/*.proto)
BASE_FLAG := $(if $(BASE_MODEL),--base-model "$(BASE_MODEL)",)

.PHONY: help setup data train export serve bench llama-server openai-ft test proto docker-train docker-edge clean distclean

help: ## list the targets
	@echo "usage: make TARGET [RUN=default TASK=robot_sdk BASE_MODEL=... TEACHER=synth|openai PORT=50051 ARGS=...]"
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-13s %s\n", $$1, $$2}'

setup: $(STAMP) ## create .venv, install edgetune + extras, fetch the default model, generate stubs (idempotent)
	@$(PY) -m edgetune fetch-model >/dev/null
	@$(if $(PROTOS),$(PROTOC) $(PROTOS),true)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[train,export,serve,dev]'
	@touch $@

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
