"""The export stage: adapter -> merged HF -> GGUF (llama.cpp's converter) -> quants -> verified -> bundle.

    python -m export --run default                          # what `make export` runs
    python -m export --run default quants='[F16,Q8_0]' eval_samples=100 --max-model-mb 120
    python -m export --run default --config export.yaml

Reads runs/RUN/adapter/, the test split and the run manifest (base model and task of the train stage); writes
runs/RUN/bundle/: the GGUFs, the bundle manifest (edgetune.artifacts.BundleManifest), verification.json and
export.report's REPORT.md, quality_vs_size.png and Modelfile. Everything is built in a
staging folder inside the run and moved into place at the end: a failed or interrupted export leaves the previous
bundle untouched and no half-written file.
"""

from __future__ import annotations

import os
import random
import shutil
import tempfile
import time
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import Any, Sequence

from tqdm import tqdm

from edgetune.artifacts import (BundleEval, BundleManifest, BundleSelection, ChosenQuant, Conversation, DataStage,
                                ExportStage, QuantScore, TrainStage, read_split, read_stage,
                                record_stage, split_path, write_bundle_manifest)
from edgetune.base_model import BaseModelRef
from edgetune.config import to_dict
from edgetune.rundir import RunDir, atomic_write, atomic_write_json, package_versions, sha256_file
from edgetune.task import GenerationSpec, TaskSpec, load_holdout, load_task
from export import ExportError
from export.config import ExportConfig
from export.report import modelfile, plot_quality_vs_size, report

TOKENIZER_CHECK_CHATS = 20  #: test chats rendered and tokenized by both sides in the tokenizer check


# ------------------------------------------------------------------------------------------------------ inputs
def _base_model_of(run: RunDir) -> BaseModelRef:
    train = read_stage(run, TrainStage)
    if train is None:
        raise ExportError(f"{run.manifest_path}: no 'train' stage; run `make train RUN={run.root.name}` first")
    ref = train.base_model
    return BaseModelRef(ref.source, ref.kind, Path(ref.path), ref.sha256)


def _task_of(run: RunDir) -> TaskSpec:
    for stage in (read_stage(run, TrainStage), read_stage(run, DataStage)):
        if stage is not None:
            return load_task(stage.task)
    raise ExportError(f"{run.manifest_path}: neither the 'train' nor the 'data' stage records a 'task'")


def _data_hashes(run: RunDir) -> dict[str, str]:
    data = read_stage(run, DataStage)
    if data is not None and data.sha256:
        return data.sha256
    return {p.stem: sha256_file(p) for p in sorted(run.data.glob("*.jsonl"))}


def _tokenizer_probes(task: TaskSpec, tokenizer: Any, sample: Sequence[Conversation]) -> tuple[list[str], list[Any]]:
    """Strings and chats both tokenizers must agree on: the task's own text and rendered test conversations."""
    from export.verify import chat_text

    texts = [task.system, *(e[k] for e in task.examples for k in ("user", "assistant"))]
    for conversation in sample:
        texts += [m["content"] for m in conversation.messages]
        texts.append(chat_text(tokenizer, conversation.turns, False))
    return texts, [conversation.prompt for conversation in sample]


def _quant_entry(quant: str, path: Path, result: Any, tensor_types: dict[str, int]) -> dict[str, Any]:
    """One quant's line in the bundle manifest (``result``: export.verify.QuantResult)."""
    free, constrained = result.free, result.constrained
    return {
        "quant": quant, "file": path.name, "sha256": sha256_file(path), "size_bytes": path.stat().st_size,
        "n": result.n, "exact_match": free.exact_match, "valid_rate": free.valid_rate, "f1": free.f1,
        "constrained_exact_match": constrained.exact_match if constrained else None,
        "constrained_valid_rate": constrained.valid_rate if constrained else None,
        "constrained_invalid_stopped": constrained.stopped_invalid if constrained else 0,
        "constrained_reused": constrained.reused if constrained else None,
        "truncated": free.truncated + (constrained.truncated if constrained else 0),
        "human_n": len(result.human.answers) if result.human else 0,
        "human_exact_match": result.human.exact_match if result.human else None,
        "human_valid_rate": result.human.valid_rate if result.human else None,
        "tokens_per_second": round(free.tokens_per_second, 2),
        "tensor_types": tensor_types,
    }


# ---------------------------------------------------------------------------------------------------- choosing
def choose(quants: list[dict[str, Any]], config: ExportConfig) -> dict[str, Any]:
    """The smallest quant within ``tolerance`` points of F16's exact match (on the test sample and, where the task
    has one, the human set) that stops by itself and fits the budget; sets each quant's ``eligible``/``rejected_because``. Raises when none qualifies."""
    reference = next(q for q in quants if q["quant"] == "F16")
    budget = config.max_model_mb * 2**20
    for q in quants:
        reasons = []
        lost = 100 * (reference["exact_match"] - q["exact_match"])
        if lost > config.tolerance + 1e-9:
            reasons.append(f"exact match {100 * q['exact_match']:.1f} is {lost:.1f} points below F16 "
                           f"(tolerance {config.tolerance:g})")
        if q.get("human_exact_match") is not None and reference.get("human_exact_match") is not None:
            lost_human = 100 * (reference["human_exact_match"] - q["human_exact_match"])
            if lost_human > config.tolerance + 1e-9:
                reasons.append(f"human-set exact match {100 * q['human_exact_match']:.1f} is {lost_human:.1f} points "
                               f"below F16 (tolerance {config.tolerance:g})")
        answers = q["n"] * (2 if q["constrained_valid_rate"] is not None else 1)
        if q["truncated"] > config.max_truncated * answers:
            reasons.append(f"{q['truncated']} of {answers} answers ran into max_tokens instead of stopping")
        if q["constrained_valid_rate"] is not None and q["constrained_invalid_stopped"]:
            reasons.append(f"{q['constrained_invalid_stopped']} grammar-constrained answers stopped but are invalid")
        if budget and q["size_bytes"] > budget:
            reasons.append(f"{q['size_bytes'] / 2**20:.1f} MiB exceeds max_model_mb={config.max_model_mb:g}")
        q["eligible"], q["rejected_because"] = not reasons, reasons
    eligible = [q for q in quants if q["eligible"]]
    if not eligible:
        lines = "\n".join(f"  - {q['quant']}: {'; '.join(q['rejected_because'])}" for q in quants)
        raise ExportError(f"no quant qualifies:\n{lines}\nRaise max_model_mb or tolerance, or improve the model "
                          "(a model that does not stop needs more training or a correct EOS)")
    return min(eligible, key=lambda q: q["size_bytes"])


# ------------------------------------------------------------------------------------------------------- stage
def _remove_stale_staging(run_dir: RunDir) -> None:
    """Staging folders of exports that were killed outright (SIGKILL, power loss) and could not clean up."""
    for stale in run_dir.root.glob(".export-*"):
        pid = stale.name.split("-")[1]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            shutil.rmtree(stale, ignore_errors=True)


def _install(staged: Path, target: Path) -> None:
    """Replace ``target`` by the complete ``staged`` folder with two renames (same filesystem)."""
    old = target.with_name(f".{target.name}.old-{os.getpid()}")
    if target.exists():
        target.rename(old)
    staged.rename(target)
    shutil.rmtree(old, ignore_errors=True)


def run(config: ExportConfig) -> Path:
    """Export runs/RUN: merge, convert, quantize, verify, choose, bundle. Returns the bundle directory.

    Raises ExportError with the cause and the fix when an input is missing or broken or a check fails."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from export import convert, merge, quantize, verify

    started = time.time()
    timings: dict[str, float] = {}
    run_dir = RunDir.named(config.run, config.runs_dir or None)
    if not run_dir.root.is_dir():
        raise ExportError(f"{run_dir.root}: no such run; train one first (`make train RUN={config.run}`)")
    merge.check_adapter(run_dir.adapter)
    base = _base_model_of(run_dir)
    task = _task_of(run_dir)
    examples = read_split(split_path(run_dir, "test"))
    max_tokens = config.max_tokens or task.generation.max_tokens
    threads = config.threads or os.cpu_count() or 1
    torch.set_num_threads(threads)
    order = sorted(random.Random(config.seed).sample(range(len(examples)), min(len(examples), config.eval_samples or len(examples))))
    sample = [examples[i] for i in order]
    scored = [(c.prompt, c.answer) for c in sample]
    holdout = [(conv[:-1], conv[-1]["content"]) for conv in load_holdout(task)]
    if config.human_samples:
        holdout = [holdout[i] for i in sorted(random.Random(config.seed).sample(range(len(holdout)),
                                                                                 min(len(holdout), config.human_samples)))]
    quant_names = sorted(config.quants, key=lambda q: q != "F16")  # F16 first: every other quant is made from it
    name = config.run

    steps = tqdm(total=3 + len(quant_names), desc="export", unit="step")

    def step(label: str) -> None:
        steps.set_postfix_str(label)
        timings[label] = time.time()

    def done(label: str) -> None:
        timings[label] = round(time.time() - timings[label], 2)
        steps.update()

    _remove_stale_staging(run_dir)
    work = Path(tempfile.mkdtemp(prefix=f".export-{os.getpid()}-", dir=run_dir.root))
    logs = run_dir.root / "export-logs"
    logs.mkdir(exist_ok=True)
    try:
        staged = work / "bundle"
        staged.mkdir()
        step("merge")
        merged_dir = merge.merge_adapter(run_dir.adapter, base, work / "merged", threads)
        done("merge")

        step("convert")
        files = {q: staged / f"{name}-{q}.gguf" for q in quant_names}
        for quant in [q for q in quant_names if q in convert.FLOAT_OUTTYPES]:
            convert.convert_to_gguf(merged_dir, files[quant], quant)
            shutil.move(files[quant].with_suffix(".convert.log"), logs / f"convert-{quant}.log")
        done("convert")

        step("verify F16")
        tokenizer = AutoTokenizer.from_pretrained(merged_dir)
        if tokenizer.chat_template is None:
            raise ExportError(f"{run_dir.adapter}: the tokenizer saved with the adapter has no chat template, so "
                              "the GGUF could not be prompted the way the model was trained; save it with the adapter")
        texts, chats = _tokenizer_probes(task, tokenizer, sample[:TOKENIZER_CHECK_CHATS])
        tokenizer_summary = verify.check_tokenizer(files["F16"], tokenizer, texts, chats)
        model = AutoModelForCausalLM.from_pretrained(merged_dir, dtype=torch.float32)
        greedy_chats = [c.prompt for c in sample[:config.greedy_prompts]]
        greedy = verify.greedy_agreement(model, tokenizer, files["F16"], greedy_chats, max_tokens, config.n_ctx,
                                         threads)
        del model
        if greedy["agreement"] < config.min_greedy_agreement:
            worst = next(r for r in greedy["results"] if not r["identical"])
            raise ExportError(
                f"the F16 GGUF does not reproduce the merged model: greedy answers identical on only "
                f"{greedy['identical']}/{greedy['prompts']} test prompts (min_greedy_agreement="
                f"{config.min_greedy_agreement:g}). First difference: HF {worst['hf'][:120]!r} vs GGUF "
                f"{worst['gguf'][:120]!r}")
        shutil.rmtree(merged_dir)  # the HF copy is not part of the bundle; free the disk before quantizing
        done("verify F16")

        stops = sorted({tokenizer.convert_ids_to_tokens(i) for i in verify.stop_token_ids(tokenizer)})
        results = []
        for quant in quant_names:
            step(f"{quant}")
            if quant not in convert.FLOAT_OUTTYPES:
                quantize.quantize(files["F16"], files[quant], quant, threads)
                shutil.move(files[quant].with_suffix(".quantize.log"), logs / f"quantize-{quant}.log")
            reader = verify.read_gguf(files[quant])
            tensor_types = dict(Counter(t.tensor_type.name for t in reader.tensors).most_common())
            del reader
            verify.check_tokenizer(files[quant], tokenizer, texts, chats)
            result = verify.evaluate_quant(files[quant], quant, task, scored, max_tokens, config.n_ctx, threads,
                                           config.seed, stops, config.sequences, holdout)
            results.append((quant, result, tensor_types))
            done(quant)
        steps.close()

        quants = [_quant_entry(quant, files[quant], result, types) for quant, result, types in results]
        try:
            chosen = choose(quants, config)
        except ExportError as exc:
            raise ExportError(f"{exc}\nMeasurements of every quant: {logs / 'quants.json'}") from None
        finally:
            atomic_write_json(logs / "quants.json", quants)  # the measurements survive a failed choice
        gen = task.generation
        train_stage = read_stage(run_dir, TrainStage)
        manifest = BundleManifest(
            run=name,
            chosen=ChosenQuant(chosen["quant"], chosen["file"], chosen["sha256"], chosen["size_bytes"]),
            quants=[QuantScore(**q) for q in quants],
            task=task.name,
            system_prompt=task.system,
            sampling=GenerationSpec(temperature=gen.temperature, top_p=gen.top_p, top_k=gen.top_k,
                                    max_tokens=max_tokens, repeat_penalty=gen.repeat_penalty, stop=stops),
            grammar=task.contract.grammar(),
            contract=task.contract,
            chat_template=tokenizer.chat_template,
            n_ctx=config.n_ctx,
            base_model=train_stage.base_model if train_stage else None,
            adapter_sha256=sha256_file(run_dir.adapter / "adapter_model.safetensors"),
            data_sha256=_data_hashes(run_dir),
            eval=BundleEval(samples=len(sample), test_examples=len(examples), seed=config.seed,
                            human_samples=len(holdout), greedy_prompts=greedy["prompts"],
                            greedy_agreement=greedy["agreement"]),
            selection=BundleSelection(tolerance_points=config.tolerance, max_model_mb=config.max_model_mb,
                                      max_truncated=config.max_truncated,
                                      min_greedy_agreement=config.min_greedy_agreement),
            versions=package_versions(),
            created_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        )
        verification = {
            "tokenizer": tokenizer_summary, "greedy": greedy,
            "answers": {quant: asdict(result) for quant, result, _ in results},
            "samples": [{"user": conversation.user, "reference": conversation.answer,
                         "answers": {quant: result.free.answers[i] for quant, result, _ in results}}
                        for i, conversation in enumerate(sample[:3])],
        }
        write_bundle_manifest(staged, manifest)
        atomic_write_json(staged / "verification.json", verification)
        atomic_write(staged / "REPORT.md", report(manifest, verification, run_dir))
        plot_quality_vs_size(manifest.quants, chosen["quant"], staged / "quality_vs_size.png")
        atomic_write(staged / "Modelfile", modelfile(chosen["file"], tokenizer, task, stops, max_tokens, config.n_ctx))
        _install(staged, run_dir.bundle)
    finally:
        steps.close()
        shutil.rmtree(work, ignore_errors=True)

    timings["total"] = round(time.time() - started, 2)
    record_stage(run_dir, ExportStage(
        config=to_dict(config),
        inputs={"adapter_sha256": manifest.adapter_sha256, "base_model": to_dict(manifest.base_model),
                "data_sha256": manifest.data_sha256, "converter": f"llama-cpp-python=={convert.llama_cpp_version()}"},
        outputs={"bundle": str(run_dir.bundle), "chosen": to_dict(manifest.chosen),
                 "files": {q["file"]: q["sha256"] for q in quants}},
        timings=timings,
    ))
    return run_dir.bundle
