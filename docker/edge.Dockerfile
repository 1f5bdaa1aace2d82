# syntax=docker/dockerfile:1
# edgetune edge-serving image: the gRPC server (llama.cpp through llama-cpp-python) on a Jetson Orin, or on CPU.
#
#   Jetson Orin, JetPack 6.1/6.2 (L4T r36.4, CUDA 12.6, aarch64), built on the Jetson itself:
#     docker build -f docker/edge.Dockerfile -t edgetune-edge .                 (= make docker-edge)
#   x86-64 (or any) laptop, CPU only, the same server:
#     docker build -f docker/edge.Dockerfile --build-arg VARIANT=cpu -t edgetune-edge:cpu .
#   run (docs/README.docker.md; docker/compose.yaml wires all of this):
#     docker run --runtime nvidia --network host -v "$PWD/runs:/app/runs" \
#       -v "$PWD/runs/default/bundle:/app/runs/default/bundle:ro" edgetune-edge --run default
#
# Stages: build-base-<variant> (toolchain) -> build (venv with the serve extra, llama-cpp-python compiled from
# source, gRPC stubs generated) -> runtime-base-<variant> -> runtime-common (that venv on a runtime base; no
# compiler) -> runtime (the server, default) and bench (the benchmark client, `--target bench`).

# Which toolchain and runtime: jetson (CUDA, sm_87) or cpu.
ARG VARIANT=jetson
# JetPack 6.1 = L4T r36.4.0; l4t-jetpack carries nvcc, l4t-cuda *-runtime only the CUDA 12.6 runtime libraries.
ARG L4T_JETPACK_IMAGE=nvcr.io/nvidia/l4t-jetpack:r36.4.0
ARG L4T_CUDA_RUNTIME_IMAGE=nvcr.io/nvidia/l4t-cuda:12.6.11-runtime
# Ubuntu 22.04, as L4T r36 is: the CPU variant runs the same distro Python as the Jetson one.
ARG CPU_IMAGE=ubuntu:22.04

FROM ${L4T_JETPACK_IMAGE} AS build-base-jetson
# Orin's GPU is sm_87 and its CPU a Cortex-A78AE (armv8.2-a + dotprod + fp16). GGML_NATIVE=OFF so a build under
# emulation (docker buildx --platform linux/arm64) targets the Orin, not the machine that builds.
ARG CUDA_ARCHITECTURES=87
ARG GGML_CPU_ARM_ARCH=armv8.2-a+dotprod+fp16
ENV PATH=/usr/local/cuda/bin:${PATH} \
    CUDACXX=/usr/local/cuda/bin/nvcc \
    CMAKE_ARGS="-DGGML_CUDA=on -DCMAKE_CUDA_ARCHITECTURES=${CUDA_ARCHITECTURES} -DGGML_NATIVE=OFF -DGGML_CPU_ARM_ARCH=${GGML_CPU_ARM_ARCH} -DCMAKE_EXE_LINKER_FLAGS=-Wl,--allow-shlib-undefined"

FROM ${CPU_IMAGE} AS build-base-cpu
# Portable x86-64 build (AVX2/FMA/F16C, no -march=native of the build machine): no AVX-512, and no AMX kernels,
# which die with SIGILL on some Xeon VMs (issue 14).
ENV CMAKE_ARGS="-DGGML_NATIVE=OFF"

FROM ${L4T_CUDA_RUNTIME_IMAGE} AS runtime-base-jetson

FROM ${CPU_IMAGE} AS runtime-base-cpu

# ---------------------------------------------------------------------------------------------------------------
# The base is one of the stages above (tagged through their ARGs), picked by VARIANT.
# hadolint ignore=DL3006
FROM build-base-${VARIANT} AS build
ARG PYTHON_VERSION=3.10
ARG PIP_VERSION=26.3
ARG LLAMA_CPP_PYTHON_VERSION=0.3.36
ARG GRPCIO_TOOLS_VERSION=1.85.1
ARG MYPY_PROTOBUF_VERSION=5.1.0
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
# The slow layer first (10-20 min on an Orin), so that source edits below do not rebuild it. CMAKE_ARGS comes
# from the build-base stage.
RUN pip install --no-binary=llama-cpp-python "llama-cpp-python==${LLAMA_CPP_PYTHON_VERSION}"
# protoc lives in its own venv: the runtime venv gets the generated stubs, not the generator. Its own RUN (layer)
# so that bumping it does not recompile llama-cpp-python.
# hadolint ignore=DL3059
RUN "python${PYTHON_VERSION}" -m venv /opt/protoc \
    && /opt/protoc/bin/pip install "grpcio-tools==${GRPCIO_TOOLS_VERSION}" "mypy-protobuf==${MYPY_PROTOBUF_VERSION}"
WORKDIR /src
COPY pyproject.toml README.md ./
COPY proto/ proto/
COPY edgetune/ edgetune/
COPY serve/ serve/
COPY bench/ bench/
# The stubs are generated, never committed: this is the Makefile's PROTOC (`make proto`), run before the wheel is
# built so that edgetune/v1/*_pb2*.py ship in it (pyproject package-data). Then the serve extra alone, no torch;
# its pins live in pyproject.toml, where hadolint cannot see them.
# hadolint ignore=DL3013
RUN PATH="/opt/protoc/bin:${PATH}" /opt/protoc/bin/python -m grpc_tools.protoc -I proto --python_out=. --grpc_python_out=. --mypy_out=. --mypy_grpc_out=. proto/edgetune/v1/*.proto \
    && pip install ".[serve]" \
    && ls /opt/venv/lib/python*/site-packages/edgetune/v1/*_pb2_grpc.py \
    && if python -c "import torch" 2>/dev/null; then echo "torch leaked into the serve image" >&2; exit 1; fi

# ---------------------------------------------------------------------------------------------------------------
# What the server and the bench share: that venv on a runtime base, a non-root user. Again a stage above, by VARIANT.
# hadolint ignore=DL3006
FROM runtime-base-${VARIANT} AS runtime-common
ARG PYTHON_VERSION=3.10
# The uid that owns runs/ on the host (bind mounts keep host ownership): 1000 is the first JetPack user.
ARG APP_UID=1000
ENV DEBIAN_FRONTEND=noninteractive
# The interpreter the venv links to, and OpenMP for llama.cpp's CPU threads (`python -m serve` makes them sleep,
# not spin, while they wait: serve/threads.py; -e OMP_WAIT_POLICY=... overrides). Nothing to compile with.
RUN apt-get update \
    && apt-get install -y --no-install-recommends "python${PYTHON_VERSION}" libgomp1 ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && if id -u ubuntu >/dev/null 2>&1; then userdel --remove ubuntu; fi \
    && useradd --uid "${APP_UID}" --create-home --shell /usr/sbin/nologin edgetune \
    && mkdir -p /app/runs /app/models \
    && chown -R edgetune:edgetune /app
COPY --from=build /opt/venv /opt/venv
# The server reads runs/$RUN/bundle (mounted read-only) and, without a bundle, models/ (the embedded model).
ENV PATH=/opt/venv/bin:${PATH} \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    EDGETUNE_RUNS=/app/runs \
    EDGETUNE_MODELS=/app/models \
    EDGETUNE_PORT=50051 \
    EDGETUNE_N_GPU_LAYERS=-1
WORKDIR /app
VOLUME ["/app/runs"]

# ---------------------------------------------------------------------------------------------------------------
# The benchmark client on the device, with the same CUDA llama.cpp as the server for its in-process baseline:
#   docker build -f docker/edge.Dockerfile --target bench -t edgetune-bench .
#   docker run --rm --runtime nvidia --network host -v "$PWD/runs:/app/runs" edgetune-bench \
#     --run default --target 127.0.0.1:50051
# Adds bench's plotting and the llama_cpp.server baseline's web stack: wheels only, nothing is compiled here.
FROM runtime-common AS bench
ARG APP_UID=1000
ARG LLAMA_CPP_PYTHON_VERSION=0.3.36
ARG MATPLOTLIB_VERSION=3.11.2
RUN pip install --only-binary=:all: "matplotlib==${MATPLOTLIB_VERSION}" \
        "llama-cpp-python[server]==${LLAMA_CPP_PYTHON_VERSION}"
USER ${APP_UID}
ENTRYPOINT ["python", "-m", "bench"]
CMD ["--help"]

# ---------------------------------------------------------------------------------------------------------------
# The server (the default target: last stage).
FROM runtime-common AS runtime
ARG APP_UID=1000
COPY docker/healthcheck.py /opt/edgetune/healthcheck.py
USER ${APP_UID}
EXPOSE 50051
HEALTHCHECK --interval=30s --timeout=10s --start-period=120s --retries=3 \
    CMD ["python", "/opt/edgetune/healthcheck.py"]
# `docker run IMAGE --run RUN [--host 0.0.0.0] [--model /app/runs/RUN/bundle/x.gguf]`: arguments go to the server
# (`python -m serve --help`); it listens on loopback unless told otherwise. EDGETUNE_N_GPU_LAYERS=-1 (auto): every
# layer on the GPU when llama.cpp was built with CUDA (the jetson variant), none on the cpu variant.
ENTRYPOINT ["/bin/sh", "-c", "exec python -m serve --port \"${EDGETUNE_PORT}\" --n-gpu-layers \"${EDGETUNE_N_GPU_LAYERS}\" \"$@\"", "serve"]
CMD ["--run", "default"]
