"""``make compare``: the three ways to adapt a model to the task side by side on the same held-out test commands,
on quality, latency and cost -- DSPy prompt optimization (base model + optimized few-shot demos), local LoRA (the
bundle's tuned GGUF) and OpenAI fine-tuning -- with the untuned base model zero-shot as the floor.

    python -m bench.compare --run default                     # what `make compare` runs
    python -m bench.compare --run default --set prompts=48 --set prompt_opt.optimizer=random_search
    python -m bench.compare --run default --prices my_prices.yaml

Every local method answers through the real edge server (``python -m serve`` on a free loopback port, one context,
sequential requests, the bundle's sampling): the base GGUF with no few-shot turns, the base GGUF with the DSPy
demos as its few-shot turns (``--few-shot dspy``, optimized first by train.prompt_opt, whose LM cache makes a
rerun cheap), the tuned GGUF with the contract's grammar and without. The OpenAI fine-tuned model answers when
runs/RUN/openai_ft.json names one and a key is set; otherwise its row says why it was skipped. Costs come from the
dated table bench/prices.yaml: one-time (teacher data, machine time of training or optimization, OpenAI training
tokens) and per 1,000 commands (API tokens, or machine time here).

Writes runs/RUN/compare/{compare.json, COMPARE.md, compare.png} and links COMPARE.md from bundle/REPORT.md.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import random
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

from bench.prices import Prices, load_prices
from bench.targets import TargetUnavailable, default_threads, edge_server_process, fine_tuned_model, free_port
from edgetune.artifacts import (ExportStage, FineTuneRecord, TrainStage, bundle_manifest_path, read_bundle_manifest,
                                read_split, read_stage, split_path)
from edgetune.cli import Stage
from edgetune.rundir import RunDir, atomic_write_json, package_versions
from edgetune.task import TaskSpec
from train.prompt_opt import PromptOptConfig

SCHEMA = "edgetune.compare/v1"
#: method -> what it is (the table's order)
METHODS = {
    "base_zero_shot": "base model, zero-shot (grammar on)",
    "base_dspy": "base model + DSPy-optimized few-shot prompt (grammar on)",
    "lora_grammar": "local LoRA, bundle quant, grammar on",
    "lora_free": "local LoRA, bundle quant, grammar off",
    "openai_ft": "OpenAI fine-tuned model",
}


@dataclass
class CompareConfig:
    """What to compare and how hard; every field is a ``--set key=value`` (``prompt_opt.X`` for the optimizer)."""

    prompts: int = 32  #: test commands per method (a seeded sample of the test split); 32 keeps it < 10 min on 2 cores
    seed: int = 0  #: which test commands are drawn
    methods: list[str] = field(default_factory=lambda: list(METHODS))  #: which rows to run
    prompt_opt: PromptOptConfig = field(default_factory=PromptOptConfig)  #: DSPy's optimizer and budget
    warmup: int = 1  #: unmeasured requests per server before the measured ones
    threads: int = 0  #: llama.cpp threads of each server (0: cores // 2, as the bench)
    n_ctx: int = 2048  #: context per sequence (few-shot demos + command + answer)
    startup_timeout_s: float = 120.0  #: how long a server may take to load its model
    request_timeout_s: float = 120.0  #: one answer's deadline

    def check(self) -> Iterator[tuple[str, str]]:
        if self.prompts < 1:
            yield "prompts", "need at least 1 test command"
        unknown = sorted(set(self.methods) - set(METHODS))
        if unknown:
            yield "methods", f"unknown {unknown}; choose from {list(METHODS)}"
        if self.warmup < 0:
            yield "warmup", "must be >= 0"


@dataclass
class Sample:
    """One answer."""

    text: str
    latency_ms: float  #: the whole call as the client saw it
    prompt_tokens: int
    completion_tokens: int
    decode_s: float  #: the engine's time for this answer (for tokens/s)


class Skipped(RuntimeError):
    """A method that cannot run here; the message is the row's reason."""


# ------------------------------------------------------------------------------------------------ the methods
def _test_sample(run_dir: RunDir, config: CompareConfig) -> tuple[list[str], list[str]]:
    pairs = [(c.user, c.answer) for c in read_split(split_path(run_dir, "test"))]
    pairs = random.Random(config.seed).sample(pairs, min(config.prompts, len(pairs)))
    return [p for p, _ in pairs], [r for _, r in pairs]


def _edge_server(run_dir: RunDir, config: CompareConfig, task: TaskSpec, model: Path | None, few_shot: str):
    """``python -m serve`` for this run on a free port: the bundle (or ``model`` in its place), one context."""
    from serve.client import Client

    port = free_port()
    argv = [sys.executable, "-m", "serve", "--run", run_dir.root.name, "--host", "127.0.0.1", "--port", str(port),
            "--contexts", "1", "--threads", str(config.threads or default_threads()), "--n-ctx", str(config.n_ctx),
            "--backend", "local", "--few-shot", few_shot, "--log-level", "warning"]
    if model is not None:
        argv += ["--model", str(model)]
    if not bundle_manifest_path(run_dir.bundle).is_file():
        argv += ["--task", task.name]
    client = Client(f"127.0.0.1:{port}", timeout=config.request_timeout_s)
    name = f"edge_server_{few_shot}_{'bundle' if model is None else model.stem}"
    return client, edge_server_process(client, argv, run_dir, run_dir.compare / "logs" / f"{name}.log",
                                       config.startup_timeout_s)


def _ask_edge(client: Any, prompts: list[str], constraint: str, warmup: int) -> list[Sample]:
    for prompt in prompts[:warmup]:
        client.generate(prompt, backend="local", constraint=constraint)
    out = []
    for prompt in prompts:
        answer = client.generate(prompt, backend="local", constraint=constraint)
        if answer.finish_reason == "error":
            raise RuntimeError(f"the edge server failed on {prompt!r}: {answer.error}")
        t = answer.timings
        out.append(Sample(answer.text, t.client_total_ms, answer.prompt_tokens, answer.completion_tokens,
                          max(t.total_ms - t.queue_ms, 1e-3) / 1000))
    return out


def _remote(run_dir: RunDir, prompts: list[str], system_prompt: str, max_tokens: int,
            timeout_s: float) -> tuple[list[Sample], FineTuneRecord]:
    """The OpenAI fine-tuned model (runs/RUN/openai_ft.json), non-streaming so the usage is exact."""
    try:
        record, api = fine_tuned_model(run_dir.root)
    except TargetUnavailable as exc:
        raise Skipped(str(exc)) from None
    import openai

    client = openai.OpenAI(base_url=api.base_url, api_key=api.api_key, timeout=timeout_s)
    out = []
    for prompt in prompts:
        started = time.monotonic()
        reply = client.chat.completions.create(
            model=record.model, temperature=0.0, max_tokens=max_tokens,
            messages=[{"role": "system", "content": system_prompt}, {"role": "user", "content": prompt}])
        seconds = time.monotonic() - started
        usage = reply.usage
        out.append(Sample(reply.choices[0].message.content or "", seconds * 1000,
                          usage.prompt_tokens if usage else 0, usage.completion_tokens if usage else 0, seconds))
    return out, record


# ------------------------------------------------------------------------------------------------- measuring
def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q
    low, high = int(rank), min(int(rank) + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def _row(task: TaskSpec, samples: list[Sample], references: list[str]) -> dict[str, Any]:
    score = task.contract.score([s.text for s in samples], references)
    latencies = [s.latency_ms for s in samples]
    return {
        "status": "ok", "n": score.n, "exact_match": score.exact_match, "valid_rate": score.valid_rate,
        "f1": score.f1, "p50_ms": _percentile(latencies, 0.5), "p95_ms": _percentile(latencies, 0.95),
        "mean_ms": statistics.fmean(latencies),
        "tokens_per_s": sum(s.completion_tokens for s in samples) / sum(s.decode_s for s in samples),
        "prompt_tokens_mean": statistics.fmean(s.prompt_tokens for s in samples),
        "completion_tokens_mean": statistics.fmean(s.completion_tokens for s in samples),
        "answers": [s.text for s in samples],
    }


def _data_cost(run_dir: RunDir) -> float:
    report = run_dir.data / "data_report.json"
    return float(json.loads(report.read_text(encoding="utf-8")).get("cost_usd") or 0.0) if report.is_file() else 0.0


def _local_costs(row: dict[str, Any], prices: Prices, one_time_s: float, data_usd: float) -> None:
    row["cost"] = {
        "one_time": data_usd + one_time_s * prices.local.per_second,
        "per_1k": row["mean_ms"] / 1000 * 1000 * prices.local.per_second,
        "one_time_basis": (f"{one_time_s:.0f} s of this machine" if one_time_s else "nothing to set up")
                          + (f" + ${data_usd:.2f} teacher data" if data_usd else ""),
        "per_1k_basis": "machine time here",
    }


def _lora_one_time_s(run_dir: RunDir) -> float:
    train, export = read_stage(run_dir, TrainStage), read_stage(run_dir, ExportStage)
    seconds = train.timings.get("wall_seconds", 0.0) if train else 0.0
    return seconds + (export.timings.get("total", 0.0) if export else 0.0)


def _remote_costs(row: dict[str, Any], prices: Prices, record: FineTuneRecord, data_usd: float) -> None:
    base = prices.base_of(record.base_model or record.model or "")
    training = prices.openai.training_per_mtok.get(base)
    tokens = record.trained_tokens
    if tokens and training is not None:
        one_time, basis = tokens / 1e6 * training, f"{tokens} trained tokens x ${training}/1M"
    else:
        one_time, basis = float(record.estimated_cost_usd or 0.0), "openai_ft.json's estimate"
    inference = prices.openai.inference_per_mtok.get(base)
    per_1k = None if inference is None else (row["prompt_tokens_mean"] * inference[0]
                                             + row["completion_tokens_mean"] * inference[1]) / 1e6 * 1000
    row["cost"] = {"one_time": one_time + data_usd, "per_1k": per_1k,
                   "one_time_basis": basis + (f" + ${data_usd:.2f} teacher data" if data_usd else ""),
                   "per_1k_basis": f"{base} fine-tuned prices" if inference else f"no price for {base} in the table"}


def run(run: str, config: CompareConfig, prices_path: str | Path = "", runs_dir: str | Path | None = None) -> Path:
    """Run every method of ``config`` on the run's test sample; returns runs/RUN/compare/compare.json."""
    from bench.compare_report import link_from_bundle_report, write_markdown, write_plot
    from edgetune.embedded import embedded_gguf
    from train import prompt_opt

    started = time.monotonic()
    run_dir = RunDir.named(run, runs_dir)
    prices = load_prices(prices_path)
    task, system_prompt, max_tokens = prompt_opt.task_of(run_dir)
    prompts, references = _test_sample(run_dir, config)
    base_model = Path(config.prompt_opt.model) if config.prompt_opt.model else embedded_gguf()
    bundle = bundle_manifest_path(run_dir.bundle)
    chosen = read_bundle_manifest(run_dir.bundle).chosen if bundle.is_file() else None
    data_usd = _data_cost(run_dir)
    rows: dict[str, dict[str, Any]] = {}

    def measure(name: str, model: Path | None, few_shot: str, constraints: dict[str, str]) -> None:
        """One server for the methods in ``constraints`` (method -> the request's constraint)."""
        client, server = _edge_server(run_dir, config, task, model, few_shot)
        gguf = model or run_dir.bundle / chosen.file
        with client, server:
            examples = client.model_info().few_shot_examples  # the demos the server puts before each command
            for method, constraint in constraints.items():
                print(f"compare: {method} ({len(prompts)} commands)", file=sys.stderr)
                rows[method] = _row(task, _ask_edge(client, prompts, constraint, config.warmup), references)
                rows[method].update(model={"path": str(gguf), "bytes": gguf.stat().st_size},
                                    few_shot_examples=examples)

    wanted = set(config.methods)
    if "base_zero_shot" in wanted:
        measure("base", base_model, "off", {"base_zero_shot": "contract"})
        _local_costs(rows["base_zero_shot"], prices, 0.0, 0.0)
    if "base_dspy" in wanted and importlib.util.find_spec("dspy") is None:
        rows["base_dspy"] = {"status": "skipped", "note": "dspy is not installed (`make setup` installs the dev extra)"}
    elif "base_dspy" in wanted:
        print("compare: optimizing the DSPy prompt (train.prompt_opt)", file=sys.stderr)
        demos_path = prompt_opt.run(run, config.prompt_opt, runs_dir)
        measure("dspy", base_model, "dspy", {"base_dspy": "contract"})
        stage = run_dir.stage("prompt_opt") or {}
        rows["base_dspy"]["optimizer"] = {k: stage.get(k) for k in ("optimizer", "train_examples", "val_examples",
                                          "demos", "bootstrapped_demos", "val", "seconds", "first_seconds")}
        rows["base_dspy"]["optimizer"]["demos_file"] = str(demos_path)
        _local_costs(rows["base_dspy"], prices, float(stage.get("first_seconds") or 0.0), 0.0)  # uncached run
    lora = {m: c for m, c in (("lora_grammar", "contract"), ("lora_free", "none")) if m in wanted}
    if lora and chosen is None:
        for method in lora:
            rows[method] = {"status": "skipped", "note": f"no bundle: run `make train export` for {bundle}"}
    elif lora:
        measure("lora", None, "off", lora)
        for method in lora:
            rows[method]["quant"] = chosen.quant
            _local_costs(rows[method], prices, _lora_one_time_s(run_dir), data_usd)
    if "openai_ft" in wanted:
        try:
            samples, record = _remote(run_dir, prompts, system_prompt, max_tokens, config.request_timeout_s)
        except Skipped as exc:
            rows["openai_ft"] = {"status": "skipped", "note": str(exc)}
        else:
            rows["openai_ft"] = _row(task, samples, references)
            rows["openai_ft"]["model"] = {"id": record.model, "bytes": None}
            _remote_costs(rows["openai_ft"], prices, record, data_usd)

    result = {
        "schema": SCHEMA, "run": run, "task": task.name, "config": asdict(config),
        "prompts": {"n": len(prompts), "source": str(split_path(run_dir, "test")), "seed": config.seed,
                    "commands": prompts, "references": references},
        "prices": asdict(prices), "methods": {m: {"label": METHODS[m], **rows[m]} for m in METHODS if m in rows},
        "environment": {"cpu": _cpu_name(), "logical_cpus": os.cpu_count(), "versions": package_versions()},
        "seconds": round(time.monotonic() - started, 1),
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    out = run_dir.compare
    path = atomic_write_json(out / "compare.json", result)
    write_markdown(result, out / "COMPARE.md")
    write_plot(result, out / "compare.png")
    link_from_bundle_report(run_dir)
    run_dir.record("compare", seconds=result["seconds"], methods={m: r["status"] for m, r in result["methods"].items()},
                   outputs={"json": str(path), "markdown": str(out / "COMPARE.md"), "plot": str(out / "compare.png")})
    print(f"compare: {path.parent}/COMPARE.md in {result['seconds']:.0f} s")
    return path


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()


def _flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--prices", default="", help="price table YAML (default: bench/prices.yaml)")


def _run(config: CompareConfig, run_dir: RunDir, args: argparse.Namespace) -> None:
    run(run_dir.root.name, config, args.prices, run_dir.root.parent)


STAGE = Stage(prog="python -m bench.compare", config=CompareConfig, run=_run, doc=__doc__, extra=_flags,
              reads_run=True, bad_input=(ValueError,), failed=(TargetUnavailable, RuntimeError))


def main(argv: Sequence[str] | None = None) -> int:
    return STAGE.main(argv)


if __name__ == "__main__":
    raise SystemExit(main())
