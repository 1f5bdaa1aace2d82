"""Shared fixtures. Tests build tiny models where a real one is not the point; the embedded SmolLM2-135M GGUF is
used where realism is the point (it is fetched by `make setup`).

Tests load GGUFs through edgetune.llama.load_llama, which runs llama.cpp on the file in a child process first: a
native crash (SIGILL on some AMX machines, issue 14) then fails the test that loads, with the signal named,
instead of killing the whole pytest process. The embedded model is probed once here, so that every test using it
fails with that message before it touches llama.cpp in process."""

from __future__ import annotations

import pytest

from edgetune.task import TaskSpec, load_task

pytest_plugins = ["pytester"]  # tests/edgetune/test_llama.py runs a pytest session in a child process
#: The settings the embedded model is probed with (those of most tests that load it).
EMBEDDED_PROBE = {"n_ctx": 512, "n_threads": 1, "verbose": False}


@pytest.fixture(scope="session")
def robot_task() -> TaskSpec:
    return load_task("robot_sdk")


@pytest.fixture(scope="session")
def embedded_gguf_path():
    from edgetune.embedded import embedded_gguf
    from edgetune.llama import LlamaCrash, safe_settings

    path = embedded_gguf()
    try:
        safe_settings(path, EMBEDDED_PROBE)
    except LlamaCrash as exc:
        pytest.fail(str(exc), pytrace=False)
    return path
