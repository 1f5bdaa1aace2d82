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


def bundle_manifest(task: TaskSpec, file: str, quant: str = "Q4_1", **fields):
    """A complete bundle manifest (edgetune.artifacts.BundleManifest) for ``task`` deploying ``file``, with
    ``fields`` replaced; as plain JSON data, so a test can also write one that is broken."""
    from edgetune.artifacts import BundleEval, BundleManifest, BundleSelection, ChosenQuant, QuantScore
    from edgetune.config import to_dict

    score = QuantScore(quant=quant, file=file, sha256="abc", size_bytes=1, n=1, exact_match=1.0, valid_rate=1.0,
                       f1=1.0, constrained_exact_match=1.0, constrained_valid_rate=1.0, constrained_invalid_stopped=0,
                       constrained_reused=0, truncated=0, human_n=0, human_exact_match=None, human_valid_rate=None,
                       tokens_per_second=1.0, tensor_types={}, eligible=True, rejected_because=[])
    manifest = BundleManifest(
        run="r", chosen=ChosenQuant(quant, file, "abc", 1), quants=[score], task=task.name, system_prompt=task.system,
        sampling=task.generation, grammar=task.contract.grammar(), contract=task.contract, chat_template="{{ x }}",
        n_ctx=2048, base_model=None, adapter_sha256="", data_sha256={},
        eval=BundleEval(samples=1, test_examples=1, seed=0, human_samples=0, greedy_prompts=1, greedy_agreement=1.0),
        selection=BundleSelection(tolerance_points=2.0, max_model_mb=0.0, max_truncated=0.0,
                                  min_greedy_agreement=0.75),
        versions={}, created_at="")
    return {**to_dict(manifest), **fields}
