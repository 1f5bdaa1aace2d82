"""Shared fixtures. Tests build tiny models where a real one is not the point; the embedded SmolLM2-135M GGUF is
used where realism is the point (it is fetched by `make setup`).

Tests load GGUFs through edgetune.llama.load_llama, which runs llama.cpp on the file in a child process first: a
native crash (SIGILL on some AMX machines, issue 14) then fails the test that loads, with the signal named,
instead of killing the whole pytest process. The embedded model is probed once here, so that every test using it
fails with that message before it touches llama.cpp in process."""

from __future__ import annotations

import pytest

from edgetune.task import TaskSpec, load_holdout, load_task

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


def write_small_run(root, task: TaskSpec, sizes=(12, 6, 6)):
    """A run directory with train/val/test splits cut from the task's held-out set (real, contract-valid pairs;
    what they were written for does not matter to tests of the stages that read splits)."""
    import json

    conversations = load_holdout(task)
    data = root / "data"
    data.mkdir(parents=True)
    start = 0
    for name, size in zip(("train", "val", "test"), sizes):
        lines = [json.dumps({"messages": c}) for c in conversations[start:start + size]]
        (data / f"{name}.jsonl").write_text("\n".join(lines) + "\n")
        start += size
    return root
