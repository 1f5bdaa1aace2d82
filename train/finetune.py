"""QLoRA / LoRA fine-tuning: runs/RUN/data -> runs/RUN/adapter, with base-vs-tuned task metrics.

    python -m train finetune --run default                                the embedded SmolLM2-135M on runs/default/data
    python -m train finetune --run r1 --base-model path/to/hf_dir_or.gguf any causal LM (Llama, Qwen2, Phi-3, ...)
    python -m train finetune --run r1 --config my.yaml lora.r=32 epochs=2 YAML config + key=value overrides
    python -m train finetune --run r1 --resume                            continue from the last checkpoint
    accelerate launch --multi_gpu --num_processes 2 -m train finetune --run r1   DDP (gloo on CPU) on the same entry point

The defaults (train/configs/default.yaml) are chosen for `make train` on a 2-core CPU in about 20 minutes,
evaluation included: padding-free batches, logits only where the loss is, LoRA on every linear layer of the top 20
decoder layers (backward stops below them) at a high learning rate, one pass over the training split. A completed
adapter for the same config, data and base model is not retrained unless --force is given.

Writes runs/RUN/adapter/: adapter_config.json + adapter_model.safetensors (PEFT), the tokenizer (with the chat
template it was trained with), train_config.yaml, train_report.json, mistakes.jsonl (every wrong tuned answer,
grammar on where measured), loss.png, versions.json; records stage "train" in the run manifest.

This module is the job (the steps of ``run``, checkpoints, publishing, the CLI); what it runs on is
train/finetune_setup.py (hardware, model, trainer), what it measures after training train/finetune_eval.py.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any, Sequence

import yaml

from edgetune.artifacts import (SPLITS, BaseModelFacts, DataStage, TrainStage, read_split, read_stage, record_stage,
                                split_path)
from edgetune.cli import Stage
from edgetune.config import to_dict
from edgetune.rundir import RunDir, atomic_write, atomic_write_json, package_versions
from train.finetune_config import DEFAULT_CONFIG, FinetuneConfig, FinetuneError
from train.finetune_eval import base_eval_key, evaluate_base_and_tuned, plot_loss, sample
from train.finetune_setup import (build_trainer, compile_choice, compiled_layers, load_model, planned_steps,
                                  resolve_hardware)
from train.sft_data import DatasetError

logger = logging.getLogger("train.finetune")

#: config fields that do not change what is trained or measured (left out of the fingerprint)
_NOT_FINGERPRINTED = ("run", "runs_dir", "threads", "resume", "force")


def task_name_of(run_dir: RunDir) -> str:
    """The task the dataset was built for, from the run manifest's "data" stage."""
    data_stage = read_stage(run_dir, DataStage)
    if data_stage is None:
        raise FinetuneError(
            f"{run_dir.manifest_path}: no \"data\" stage with a task name; build the dataset first: "
            f"make data RUN={run_dir.root.name} (python -m train data --run {run_dir.root.name})"
        )
    return data_stage.task


def fingerprint(config: FinetuneConfig, data_sha256: dict[str, str], base_model: dict[str, Any]) -> str:
    """What decides the adapter and its report: the config (less bookkeeping), the data and the base model."""
    facts = {k: v for k, v in to_dict(config).items() if k not in _NOT_FINGERPRINTED}
    facts.update(data=data_sha256, base_model={k: base_model.get(k) for k in ("path", "sha256")})
    return hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()[:16]


def run(config: FinetuneConfig) -> Path:
    """Fine-tune the base model on runs/RUN/data; returns runs/RUN/adapter.

    Steps: read the dataset and task -> resolve device/quant/dtype -> tokenize with the model's chat template (loss on
    the answer and its EOS only) -> LoRA/QLoRA with trl's SFTTrainer (val loss, checkpoints, resume) -> save the
    adapter -> score base and tuned models on the test split by greedy generation -> report, plot, manifest.
    """
    started = time.perf_counter()
    from edgetune.base_model import resolve_base_model
    from edgetune.task import load_holdout, load_task
    from train.sft_data import encode_all

    run_dir = RunDir.named(config.run, config.runs_dir or None)
    task = load_task(task_name_of(run_dir))
    split_paths = {name: split_path(run_dir, name) for name in SPLITS}
    conversations = {name: [c.turns for c in read_split(path)] for name, path in split_paths.items()}
    ref = resolve_base_model(config.base_model or None)
    base_model = {"source": ref.source, "kind": ref.kind, "path": str(ref.path), "sha256": ref.sha256,
                  "hf_dir": str(ref.hf_dir)}
    from edgetune.rundir import sha256_file

    data_sha256 = {name: sha256_file(path) for name, path in split_paths.items()}
    hardware = resolve_hardware(config)
    key = fingerprint(config, data_sha256, base_model)
    adapter_dir = run_dir.adapter
    if _is_up_to_date(adapter_dir, key) and not config.force:
        if hardware.rank == 0:
            print(f"{adapter_dir}: an adapter for this config, data and base model is complete "
                  f"(fingerprint {key}); nothing to do. Pass --force to train again.")
        return adapter_dir

    import torch
    from transformers import set_seed

    torch.set_num_threads(hardware.threads)
    set_seed(config.seed)
    model, tokenizer, fallback_template = load_model(ref, hardware, config.padding_free)

    encoded, dropped = {}, {}
    for name in ("train", "val"):
        items = conversations[name]
        if name == "train":
            items = sample(items, config.train_examples, config.seed)
        elif config.eval.val_examples:
            items = sample(items, config.eval.val_examples, config.seed)
        encoded[name], dropped[name] = encode_all(tokenizer, items, config.max_length, name)

    checkpoints = adapter_dir / "checkpoints"
    resume_from = _checkpoint_to_resume(checkpoints, key, config.resume, hardware.rank == 0)
    trainer = build_trainer(config, hardware, model, tokenizer, encoded, checkpoints)
    compile_on, compile_why = compile_choice(config, hardware, planned_steps(config, hardware, len(encoded["train"])))
    train_started = time.perf_counter()
    with compiled_layers(trainer.model, compile_on):
        result = trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    train_seconds = time.perf_counter() - train_started
    tokens = _sum_over_processes(trainer, trainer.train_tokens)

    staging = run_dir.root / ".adapter-staging"
    if trainer.is_world_process_zero():
        shutil.rmtree(staging, ignore_errors=True)
    trainer.save_model(str(staging))  # writes on the main process only
    trainer.accelerator.wait_for_everyone()
    if not trainer.is_world_process_zero():
        _leave_process_group()  # the main process evaluates alone; leaving cleanly lets it finish
        return adapter_dir
    tokenizer.save_pretrained(staging)
    for noise in ("training_args.bin", "README.md"):  # a pickle and an empty model-card template
        (staging / noise).unlink(missing_ok=True)

    sets = {"test": conversations["test"]}
    holdout = load_holdout(task)
    if holdout:
        sets["human"] = holdout
    evals = evaluate_base_and_tuned(config, task, trainer.model, tokenizer, sets, adapter_dir, staging,
                      key_base=base_eval_key(base_model, data_sha256, config, holdout),
                      vocabulary_gguf=ref.path if ref.kind == "gguf" else None)
    history = trainer.state.log_history
    report = {
        "fingerprint": key,
        "task": task.name,
        "base_model": base_model,
        "base": evals["base"]["test"],
        "tuned": evals["tuned"]["test"],
        **({"human": {"base": evals["base"]["human"], "tuned": evals["tuned"]["human"]}} if holdout else {}),
        "wall_seconds": round(time.perf_counter() - started, 1),
        "train_seconds": round(train_seconds, 1),
        "train_tokens": tokens,
        "train_tokens_per_second": round(tokens / train_seconds, 1) if train_seconds else 0.0,
        "steps": trainer.state.global_step,
        "resumed_from_step": _step_of(resume_from),
        "train_loss_first": next((h["loss"] for h in history if "loss" in h), None),
        "train_loss_last": next((h["loss"] for h in reversed(history) if "loss" in h), None),
        "val_loss": [{"step": h["step"], "loss": h["eval_loss"]} for h in history if "eval_loss" in h],
        "examples": {"train": len(encoded["train"]), "val": len(encoded["val"]), "dropped_too_long": dropped,
                     "test": evals["tuned"]["test"]["n"], "human": len(holdout)},
        "hardware": {"device": hardware.device, "quant": hardware.quant, "dtype": hardware.dtype,
                     "threads": hardware.threads, "processes": hardware.world_size, "auto": hardware.why,
                     "compile_layers": compile_on, "compile_why": compile_why, "cpu_count": os.cpu_count()},
        "chat_template_fallback": fallback_template,
        "shared_prefix_tokens": trainer.shared_prefix_tokens,
        "train_runtime_metrics": {k: v for k, v in result.metrics.items() if isinstance(v, (int, float))},
    }
    atomic_write(staging / "train_config.yaml", yaml.safe_dump(to_dict(config), sort_keys=False))
    atomic_write_json(staging / "versions.json", package_versions())
    plot_loss(history, staging / "loss.png", title=f"{task.name}: {Path(base_model['path']).name}")
    atomic_write_json(staging / "train_report.json", report)
    _publish(staging, adapter_dir)
    shutil.rmtree(checkpoints, ignore_errors=True)
    record_stage(run_dir, TrainStage(
        task=task.name,
        base_model=BaseModelFacts(**base_model),
        config=to_dict(config),
        inputs={"data_sha256": data_sha256},
        outputs={"adapter": str(adapter_dir), "files": sorted(p.name for p in adapter_dir.iterdir() if p.is_file())},
        timings={"wall_seconds": report["wall_seconds"], "train_seconds": report["train_seconds"]},
        metrics={"base_exact_match": report["base"]["exact_match"], "tuned_exact_match": report["tuned"]["exact_match"],
                 "tuned_valid_rate": report["tuned"]["valid_rate"],
                 **({"human_base_exact_match": report["human"]["base"]["exact_match"],
                     "human_tuned_exact_match": report["human"]["tuned"]["exact_match"]} if holdout else {}),
                 "train_tokens_per_second": report["train_tokens_per_second"]},
        fingerprint=key,
    ))
    _leave_process_group()
    return adapter_dir


def _leave_process_group() -> None:
    """End this process's part in DDP (a process exiting with the group alive aborts under torchrun)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def _is_up_to_date(adapter_dir: Path, key: str) -> bool:
    report = adapter_dir / "train_report.json"
    if not report.is_file() or not (adapter_dir / "adapter_model.safetensors").is_file():
        return False
    try:
        return json.loads(report.read_text(encoding="utf-8")).get("fingerprint") == key
    except json.JSONDecodeError:
        return False


def _checkpoint_to_resume(checkpoints: Path, key: str, resume: bool, main_process: bool) -> Path | None:
    """The checkpoint --resume continues from; checkpoints of another config/data/model are refused."""
    stamp = checkpoints / "fingerprint"
    newest = _resume_checkpoint(checkpoints)
    made_by = stamp.read_text(encoding="utf-8").strip() if stamp.is_file() else None
    if resume and newest is not None and made_by != key:
        raise FinetuneError(
            f"{checkpoints}: the checkpoints were made with another config, dataset or base model "
            f"(fingerprint {made_by}, now {key}); train without --resume to start over"
        )
    if resume and newest is None and main_process:
        logger.warning("--resume: no checkpoint in %s; training from the start", checkpoints)
    if not resume and newest is not None and main_process:
        logger.warning("%s holds checkpoints of an interrupted run; starting over (pass --resume to continue)",
                       checkpoints)
        shutil.rmtree(checkpoints)
    if main_process:
        atomic_write(stamp, key + "\n")
    return newest if resume else None


def _resume_checkpoint(checkpoints: Path) -> Path | None:
    found = [p for p in checkpoints.glob("checkpoint-*") if p.is_dir() and p.name.split("-")[-1].isdigit()]
    return max(found, key=lambda p: int(p.name.split("-")[-1])) if found else None


def _step_of(checkpoint: Path | None) -> int:
    return int(checkpoint.name.split("-")[-1]) if checkpoint else 0


def _sum_over_processes(trainer: Any, value: int) -> int:
    import torch

    if trainer.accelerator.num_processes == 1:
        return value
    return int(trainer.accelerator.reduce(torch.tensor(value, device=trainer.accelerator.device), "sum"))


def _publish(staging: Path, adapter_dir: Path) -> None:
    """Move the staged files into adapter/ (each rename atomic; the report last) and drop stale files."""
    adapter_dir.mkdir(parents=True, exist_ok=True)
    names = {p.name for p in staging.iterdir()}
    for old in adapter_dir.iterdir():
        if old.is_file() and old.name not in names:
            old.unlink()
    for item in sorted(staging.iterdir(), key=lambda p: p.name == "train_report.json"):
        target = adapter_dir / item.name
        if item.is_dir():
            shutil.rmtree(target, ignore_errors=True)
        os.replace(item, target)
    staging.rmdir()


def _run(config: FinetuneConfig, run_dir: RunDir, args) -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    adapter = run(config)
    if int(os.environ.get("RANK", "0")) == 0:
        report = json.loads((adapter / "train_report.json").read_text(encoding="utf-8"))
        print(f"adapter: {adapter}\n  base exact match {report['base']['exact_match']:.3f} -> tuned "
              f"{report['tuned']['exact_match']:.3f} (valid {report['tuned']['valid_rate']:.3f}) on the test split"
              + (f"; human set {report['human']['base']['exact_match']:.3f} -> "
                 f"{report['human']['tuned']['exact_match']:.3f}" if "human" in report else "")
              + f"; {report['train_tokens_per_second']:.0f} train tokens/s; {report['wall_seconds']:.0f}s")


STAGE = Stage(prog="python -m train finetune", config=FinetuneConfig, run=_run, doc=__doc__, defaults=DEFAULT_CONFIG,
              reads_run=True, bad_input=(DatasetError, FinetuneError, FileNotFoundError, ValueError),
              interrupted="interrupted: continue from the last checkpoint with --resume")


def main(argv: Sequence[str] | None = None) -> int:
    return STAGE.main(argv)
