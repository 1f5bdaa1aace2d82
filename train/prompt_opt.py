"""Prompt optimization with DSPy: adapt the *untuned* base model to the task by choosing few-shot demos, no weights
changed (the first of the three adaptation methods `make compare` weighs: DSPy prompt, local LoRA, OpenAI fine-tune).

    python -m train prompt-opt --run default                  # base GGUF behind llama_cpp.server on loopback
    python -m train prompt-opt --run default --set optimizer=bootstrap --set candidates=4
    python -m train prompt-opt --run default --set base_url=http://127.0.0.1:8000/v1 --set lm_model=NAME

The program is one ``dspy.Predict("command -> answer")``; an optimizer picks its demos from the train split,
scored by the task's contract scorer (per-call F1; a bootstrapped demo must match exactly):
``BootstrapFewShotWithRandomSearch`` (default) scores zero-shot, the labeled demos, the bootstrapped ones and
``candidates`` random demo sets on the val sample and keeps the best; ``BootstrapFewShot`` bootstraps one set.
A 135M base model rarely answers a train command exactly, so most demos end up labeled ones, not bootstrapped.
The DSPy adapter renders the program as the edge server's own chat (the system prompt, each demo a user/assistant
turn, the command), so what is optimized is what ``python -m serve --few-shot dspy`` serves. The LM is any
OpenAI-compatible endpoint; by default the embedded SmolLM2-135M served by ``llama_cpp.server`` on a free loopback
port, answers constrained by the contract's grammar as the edge server constrains them.

Writes runs/RUN/prompt_opt/: ``program.json`` (DSPy's saved state; ``load_program`` reloads it), ``demos.json``
(the chosen pairs as plain JSON for the server, see edgetune.demos) and ``dspy_cache/`` (DSPy's LM cache: a rerun
with the same settings makes no LM call). The run manifest's ``prompt_opt`` stage records budget, scores, timings.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator, Literal, Sequence

from edgetune import endpoint
from edgetune.artifacts import read_split, split_path
from edgetune.cli import Stage
from edgetune.config import ConfigError
from edgetune.demos import DEMOS_FILE, Demos, write_demos
from edgetune.deployed import resolve_deployed
from edgetune.embedded import ModelFetchError
from edgetune.rundir import RunDir, sha256_file
from edgetune.task import TaskSpec

PROGRAM_FILE = "program.json"
CACHE_DIR = "dspy_cache"


@dataclass
class PromptOptConfig:
    """The optimizer, its budget and the LM; every field is a ``--set key=value``."""

    optimizer: Literal["random_search", "bootstrap"] = "random_search"  #: BootstrapFewShot[WithRandomSearch]
    train_examples: int = 8  #: train-split examples the optimizer draws demos from (one LM call each to bootstrap)
    val_examples: int = 8  #: val-split examples the optimized program is scored on (random_search: per candidate)
    max_bootstrapped_demos: int = 2  #: demos the base model itself answered exactly right
    max_labeled_demos: int = 4  #: demos in all (the rest taken as labeled from the train split)
    candidates: int = 2  #: random_search: random demo sets tried beyond its fixed baselines
    seed: int = 0  #: which train/val examples are drawn
    base_url: str = ""  #: OpenAI-compatible endpoint; empty = start llama_cpp.server on `model` on loopback
    lm_model: str = ""  #: model name at base_url (empty with base_url empty: the served GGUF)
    api_key_env: str = "OPENAI_API_KEY"  #: variable holding base_url's key (a local server needs none)
    model: str = ""  #: GGUF for the local server; empty = the embedded SmolLM2-135M (the untuned base)
    grammar: bool = True  #: local server: constrain answers with the contract's GBNF, as the edge server does
    n_threads: int = 0  #: local server threads (0: cores // 2, llama.cpp's default)
    n_ctx: int = 2048  #: local server context (demos + command + answer)
    startup_timeout_s: float = 120.0  #: how long the local server may take to load

    def check(self) -> Iterator[tuple[str, str]]:
        if self.train_examples < 1:
            yield "train_examples", "need at least 1 train example to draw demos from"
        if self.val_examples < 1:
            yield "val_examples", "need at least 1 val example to score the program"
        if self.max_labeled_demos < 1 or self.max_bootstrapped_demos < 0:
            yield "max_labeled_demos", "need max_labeled_demos >= 1 and max_bootstrapped_demos >= 0"
        if self.candidates < 0:
            yield "candidates", "must be >= 0"
        if self.n_ctx < 256:
            yield "n_ctx", "must be >= 256 tokens"


def _import_dspy() -> Any:
    """dspy, without the model price map DSPy and LiteLLM fetch from GitHub on first use (no network here)."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    try:
        import dspy
    except ImportError as exc:
        raise ConfigError("environment", "dspy", "not installed; `make setup` installs it (the dev extra: "
                          "pip install -e '.[dev]')") from exc
    return dspy


def task_of(run_dir: RunDir) -> tuple[TaskSpec, str, int]:
    """(task, system prompt, answer max_tokens) exactly as the server reads them (edgetune.deployed)."""
    deployed = resolve_deployed(run_dir)
    return deployed.task, deployed.system_prompt, deployed.sampling.max_tokens


def _pairs(run_dir: RunDir, split: str) -> list[tuple[str, str]]:
    return [(c.user, c.answer) for c in read_split(split_path(run_dir, split))]


def _adapter(system_prompt: str) -> Any:
    """A DSPy adapter that renders a Predict(command -> answer) as the edge server's chat, and parses it back."""
    Adapter = _import_dspy().adapters.base.Adapter

    class ServerChat(Adapter):
        def format(self, signature, demos, inputs):
            chat = [{"role": "system", "content": system_prompt}]
            for demo in demos:
                chat += [{"role": "user", "content": demo["command"]}, {"role": "assistant", "content": demo["answer"]}]
            return chat + [{"role": "user", "content": inputs["command"]}]

        def parse(self, signature, completion):
            return {"answer": completion.strip()}

    return ServerChat()


def metric(task: TaskSpec):
    """The contract's scorer as a DSPy metric: per-call F1; while bootstrapping (trace given) an exact match."""
    def score(example, prediction, trace=None):
        result = task.contract.score([prediction.answer or ""], [example.answer])
        return result.exact_match == 1.0 if trace is not None else result.f1

    return score


def new_program() -> Any:
    return _import_dspy().Predict("command -> answer")


def load_program(path: Path) -> Any:
    """The saved program, demos and all (DSPy's own loader)."""
    program = new_program()
    program.load(str(path))
    return program


def _optimizer(config: PromptOptConfig, task: TaskSpec) -> Any:
    dspy = _import_dspy()

    common = dict(metric=metric(task), max_bootstrapped_demos=config.max_bootstrapped_demos,
                  max_labeled_demos=config.max_labeled_demos, max_rounds=1)
    if config.optimizer == "random_search":
        return dspy.BootstrapFewShotWithRandomSearch(**common, num_candidate_programs=config.candidates,
                                                     num_threads=1)
    return dspy.BootstrapFewShot(**common)


class LMUnavailable(RuntimeError):
    """The optimizer's local LM server did not start; the message says why and where its log is."""


@contextlib.contextmanager
def _started(server: Any) -> Iterator[Any]:
    """Run ``server`` (bench's ServerProcess) for the block; its failure to start is an LMUnavailable, so this module
    needs bench only once it starts a server, not at import (train does not depend on bench)."""
    from bench.targets import TargetUnavailable

    try:
        server.__enter__()
    except TargetUnavailable as exc:
        raise LMUnavailable(str(exc)) from exc
    try:
        yield server
    finally:
        server.stop()


def _local_lm_server(config: PromptOptConfig, run_dir: RunDir):
    """llama_cpp.server on a free loopback port serving ``config.model`` (the embedded base by default)."""
    from bench.targets import ServerProcess, _http_ok, default_threads, free_port
    from edgetune.embedded import embedded_gguf

    model = Path(config.model) if config.model else embedded_gguf()
    if not model.is_file():
        raise ConfigError("command line", "model", f"{model} does not exist; pass a GGUF file")
    port = free_port()
    alias = f"{model.stem}-{sha256_file(model)[:12]}"  # the cache key: another GGUF never hits these answers
    argv = [sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--host", "127.0.0.1", "--port",
            str(port), "--n_ctx", str(config.n_ctx), "--n_threads", str(config.n_threads or default_threads()),
            "--model_alias", alias, "--interrupt_requests", "False"]
    base = f"http://127.0.0.1:{port}/v1"
    server = ServerProcess("llama_cpp.server", argv, run_dir.prompt_opt / "logs" / "llama_cpp_server.log",
                           lambda: _http_ok(f"{base}/models"), config.startup_timeout_s)
    return _started(server), base, alias, str(model)


def _evaluate(program: Any, task: TaskSpec, examples: list[Any]) -> dict[str, Any]:
    answers = [program(command=ex.command).answer or "" for ex in examples]
    return task.contract.score(answers, [ex.answer for ex in examples]).to_dict()


def run(run: str, config: PromptOptConfig, runs_dir: str | Path | None = None) -> Path:
    """Optimize the program for ``runs/RUN``; returns the path of demos.json."""
    dspy = _import_dspy()
    run_dir = RunDir.named(run, runs_dir)
    out = run_dir.prompt_opt
    task, system_prompt, max_tokens = task_of(run_dir)
    rng = random.Random(config.seed)
    train = _pairs(run_dir, "train")
    val = _pairs(run_dir, "val")
    trainset = [dspy.Example(command=c, answer=a).with_inputs("command")
                for c, a in rng.sample(train, min(config.train_examples, len(train)))]
    valset = [dspy.Example(command=c, answer=a).with_inputs("command")
              for c, a in rng.sample(val, min(config.val_examples, len(val)))]

    dspy.configure_cache(enable_disk_cache=True, enable_memory_cache=True, disk_cache_dir=str(out / CACHE_DIR))
    if config.base_url:
        server, base, name, model = contextlib.nullcontext(), config.base_url, config.lm_model, config.lm_model
        if not name:
            raise ConfigError("command line", "lm_model", "name the model served at base_url (--set lm_model=NAME)")
        extra: dict[str, Any] = {}
        api_key = endpoint.resolve(base, key_variables=(config.api_key_env,), require_key=False).api_key or "none"
    else:
        server, base, name, model = _local_lm_server(config, run_dir)
        grammar = task.contract.grammar() if config.grammar else None
        extra = {"extra_body": {"grammar": grammar}} if grammar else {}
        api_key = "none"
    started = time.monotonic()
    with server:
        lm = dspy.LM(f"openai/{name}", api_base=base, api_key=api_key, temperature=0.0, max_tokens=max_tokens,
                     cache=True, num_retries=0, **extra)
        with dspy.context(lm=lm, adapter=_adapter(system_prompt)):
            optimizer = _optimizer(config, task)
            compile_args = {"valset": valset} if config.optimizer == "random_search" else {}
            program = optimizer.compile(new_program(), trainset=trainset, **compile_args)
            optimized_s = time.monotonic() - started
            val_score = _evaluate(program, task, valset)
    seconds = time.monotonic() - started

    program_path = out / PROGRAM_FILE
    tmp = out / f".{PROGRAM_FILE}.{os.getpid()}.json"  # DSPy picks the format from the suffix; rename is atomic
    try:
        program.save(str(tmp))
        os.replace(tmp, program_path)
    finally:
        tmp.unlink(missing_ok=True)
    pairs = [{"user": demo["command"], "assistant": demo["answer"]} for demo in program.demos]
    bootstrapped = sum(1 for demo in program.demos if demo.get("augmented"))
    # what decides the LM calls; a rerun with the same one is answered from DSPy's cache, so it keeps the seconds
    # the first (uncached) run took: the optimization's real one-time cost
    splits = [sha256_file(split_path(run_dir, name)) for name in ("train", "val")]
    inputs = [asdict(config), name, system_prompt, *splits]
    fingerprint = hashlib.sha256(json.dumps(inputs).encode()).hexdigest()[:16]
    previous = run_dir.stage("prompt_opt") or {}
    first_seconds = previous["first_seconds"] if previous.get("fingerprint") == fingerprint else round(seconds, 1)
    facts = {"optimizer": type(optimizer).__name__, "config": asdict(config), "lm": {"model": model, "base_url": base,
             "grammar": bool(extra)}, "train_examples": len(trainset), "val_examples": len(valset),
             "demos": len(pairs), "bootstrapped_demos": bootstrapped, "val": val_score, "fingerprint": fingerprint,
             "seconds": round(seconds, 1), "optimize_seconds": round(optimized_s, 1), "first_seconds": first_seconds}
    demos_path = write_demos(out / DEMOS_FILE, Demos(task=task.name, pairs=pairs, facts=facts))
    run_dir.record("prompt_opt", task=task.name, **facts,
                   outputs={"program": str(program_path), "demos": str(demos_path)})
    print(f"prompt-opt: {len(pairs)} demos ({bootstrapped} bootstrapped) by {facts['optimizer']} in {seconds:.0f} s; "
          f"val exact {val_score['exact_match']:.2f}, F1 {val_score['f1']:.2f} on {len(valset)} -> {demos_path}")
    return demos_path


def _run(config: PromptOptConfig, run_dir: RunDir, args) -> None:
    run(run_dir.root.name, config, run_dir.root.parent)


STAGE = Stage(prog="python -m train prompt-opt", config=PromptOptConfig, run=_run, doc=__doc__, reads_run=True,
              bad_input=(ValueError,), failed=(LMUnavailable, ModelFetchError))


def main(argv: Sequence[str] | None = None) -> int:
    return STAGE.main(argv)


if __name__ == "__main__":
    raise SystemExit(main())
