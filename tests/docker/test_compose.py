"""docker/compose.yaml: every service builds from a Dockerfile stage that exists, mounts what it needs (the bundle
read-only), gets the GPU the right way for its machine, and restarts as a server or a batch job should."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import yaml

from tests.docker.dockerfile import DOCKER_DIR, ROOT, parse

COMPOSE = DOCKER_DIR / "compose.yaml"


@pytest.fixture(scope="module")
def services() -> dict:
    return yaml.safe_load(COMPOSE.read_text())["services"]


def _mounts(service: dict) -> dict[str, tuple[str, str]]:
    """container path -> (host path, mode), with ${VAR:-default} filled by its default."""
    result = {}
    for volume in service.get("volumes", []):
        volume = re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", volume)
        host, container, *mode = volume.split(":")
        result[container] = (host, mode[0] if mode else "rw")
    return result


def test_every_service_builds_an_existing_stage(services):
    assert {"edge", "edge-cpu", "bench", "train"} <= set(services)
    for name, service in services.items():
        build = service["build"]
        context = (DOCKER_DIR / build["context"]).resolve()
        assert context == ROOT, f"{name}: the build context must be the repository root"
        dockerfile = parse(context / build["dockerfile"])
        dockerfile.stage(build["target"])
        variant = build.get("args", {}).get("VARIANT")
        if variant:
            dockerfile.stage(f"build-base-{variant}")


def test_host_paths_are_in_the_repository(services):
    for name, service in services.items():
        for container, (host, _) in _mounts(service).items():
            path = Path(os.path.normpath(DOCKER_DIR / host))  # models/ may be a symlink; the path is what counts
            assert path.is_relative_to(ROOT), f"{name}: {host} is outside the checkout"


def test_edge_serves_the_bundle_read_only(services):
    for name in ("edge", "edge-cpu", "bench"):
        mounts = _mounts(services[name])
        assert mounts["/app/runs/default/bundle"] == ("../runs/default/bundle", "ro"), name
        assert mounts["/app/runs"][1] == "rw", f"{name}: bench writes runs/RUN/bench"
        assert services[name]["network_mode"] == "host", name
    for name in ("edge", "edge-cpu"):
        assert services[name]["restart"] == "unless-stopped"
        assert services[name]["command"] == ["--run", "${RUN:-default}"]


def test_bench_targets_the_running_server(services):
    bench = services["bench"]
    assert bench["restart"] == "no" and bench["build"]["target"] == "bench"
    assert bench["command"] == ["--run", "${RUN:-default}", "--target", "127.0.0.1:${EDGETUNE_PORT:-50051}"]
    assert services["edge"]["environment"]["EDGETUNE_PORT"] == "${EDGETUNE_PORT:-50051}"
    assert services["edge"]["environment"]["EDGETUNE_N_GPU_LAYERS"] == "${EDGETUNE_N_GPU_LAYERS:--1}"


def test_gpu_access_fits_each_machine(services):
    assert services["edge"]["runtime"] == services["bench"]["runtime"] == "nvidia"  # Jetson's container runtime
    assert services["edge"]["build"]["args"]["VARIANT"] == "jetson"
    assert "runtime" not in services["edge-cpu"] and services["edge-cpu"]["build"]["args"]["VARIANT"] == "cpu"
    (device,) = services["train"]["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]  # x86: `--gpus all`


def test_train_is_a_batch_job_on_models_and_runs(services):
    train = services["train"]
    assert train["restart"] == "no"
    assert train["command"][:3] == ["make", "train", "export"]
    assert {"/app/models", "/app/runs"} <= set(_mounts(train))
