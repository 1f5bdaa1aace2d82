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
template it was trained with), train_config.yaml, train_report.json, loss.png, versions.json; records stage "train"
in the run manifest.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import random
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import yaml

from edgetune.artifacts import (SPLITS, BaseModelFacts, DataStage, TrainStage, read_split, read_stage, record_stage,
                                split_path)
from edgetune.cli import Stage
from edgetune.config import ConfigError, to_dict
from edgetune.rundir import RunDir, atomic_write, atomic_write_json, package_versions
from train.finetune_config import DEFAULT_CONFIG, FinetuneConfig, LoraSettings
from train.sft_data import DatasetError

logger = logging.getLogger("train.finetune")

#: config fields that do not change what is trained or measured (left out of the fingerprint)
_NOT_FINGERPRINTED = ("run", "runs_dir", "threads", "resume", "force")


@dataclass(frozen=True)
class Hardware:
    """Where and how the job runs, after resolving the "auto" settings."""

    device: str
    quant: str
    dtype: str
    threads: int
    world_size: int
    rank: int
    why: str  #: how the auto choices were made, for the report


class FinetuneError(RuntimeError):
    """The job cannot run as configured; the message names the cause and the fix."""


# --------------------------------------------------------------------------------------------------- set-up


def resolve_hardware(config: FinetuneConfig) -> Hardware:
    """Turn device/quant/dtype "auto" into concrete choices; CUDA asked for where there is none is an error."""
    import torch

    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    has_cuda = torch.cuda.is_available()
    if config.device == "cuda" and not has_cuda:
        build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
        raise FinetuneError(
            f"device=cuda was requested but no CUDA GPU is available (torch {torch.__version__} is {build}); "
            "use device=cpu or device=auto"
        )
    device = config.device if config.device != "auto" else ("cuda" if has_cuda else "cpu")
    why = []
    quant = config.quant
    if quant == "auto":
        quant = "nf4" if device == "cuda" else "none"
        why.append(
            "quant=auto -> nf4 on CUDA (4-bit weights, double quantization)" if device == "cuda"
            else "quant=auto -> none on CPU (bitsandbytes' CPU NF4 dequantizes every matmul: slower than plain "
                 "LoRA, see `python -m bench.finetune`; a 135M-1B model fits in RAM unquantized)"
        )
    dtype = config.dtype
    if dtype == "auto":
        if device == "cuda":
            dtype = "bfloat16" if torch.cuda.is_bf16_supported() else "float32"
        else:
            dtype = "bfloat16" if cpu_has_native_bf16() else "float32"
        why.append(f"dtype=auto -> {dtype} on {device}")
    threads = config.threads or max(1, (os.cpu_count() or 1) // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1"))))
    return Hardware(device, quant, dtype, threads, world_size, rank, "; ".join(why))


def cpu_has_native_bf16() -> bool:
    """True on CPUs with bf16 matmul instructions (AVX512-BF16 / AMX), where bf16 beats fp32."""
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def task_name_of(run_dir: RunDir) -> str:
    """The task the dataset was built for, from the run manifest's "data" stage."""
    data_stage = read_stage(run_dir, DataStage)
    if data_stage is None:
        raise FinetuneError(
            f"{run_dir.manifest_path}: no \"data\" stage with a task name; build the dataset first: "
            f"make data RUN={run_dir.root.name} (python -m train data --run {run_dir.root.name})"
        )
    return data_stage.task


def _sample(items: list, count: int, seed: int) -> list:
    """A seeded sample of ``count`` items in their original order (all of them when count is 0 or larger)."""
    if count == 0 or count >= len(items):
        return list(items)
    chosen = sorted(random.Random(seed).sample(range(len(items)), count))
    return [items[i] for i in chosen]


def fingerprint(config: FinetuneConfig, data_sha256: dict[str, str], base_model: dict[str, Any]) -> str:
    """What decides the adapter and its report: the config (less bookkeeping), the data and the base model."""
    facts = {k: v for k, v in to_dict(config).items() if k not in _NOT_FINGERPRINTED}
    facts.update(data=data_sha256, base_model={k: base_model.get(k) for k in ("path", "sha256")})
    return hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()[:16]


# ----------------------------------------------------------------------------------------------------- run


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
    model, tokenizer, fallback_template = _load_model(ref, hardware, config.padding_free)

    encoded, dropped = {}, {}
    for name in ("train", "val"):
        items = conversations[name]
        if name == "train":
            items = _sample(items, config.train_examples, config.seed)
        elif config.eval.val_examples:
            items = _sample(items, config.eval.val_examples, config.seed)
        encoded[name], dropped[name] = encode_all(tokenizer, items, config.max_length, name)

    checkpoints = adapter_dir / "checkpoints"
    resume_from = _checkpoint_to_resume(checkpoints, key, config.resume, hardware.rank == 0)
    trainer = _build_trainer(config, hardware, model, tokenizer, encoded, checkpoints)
    train_started = time.perf_counter()
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
    evals = _evaluate(config, task, trainer.model, tokenizer, sets, adapter_dir, staging,
                      key_base=_base_eval_key(base_model, data_sha256, config, holdout),
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
                     "cpu_count": os.cpu_count()},
        "chat_template_fallback": fallback_template,
        "shared_prefix_tokens": trainer.shared_prefix_tokens,
        "train_runtime_metrics": {k: v for k, v in result.metrics.items() if isinstance(v, (int, float))},
    }
    atomic_write(staging / "train_config.yaml", yaml.safe_dump(to_dict(config), sort_keys=False))
    atomic_write_json(staging / "versions.json", package_versions())
    _plot_loss(history, staging / "loss.png", title=f"{task.name}: {Path(base_model['path']).name}")
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


def _load_model(ref: Any, hardware: Hardware, padding_free: bool) -> tuple[Any, Any, bool]:
    """Model (quantized or not, in the compute dtype) and tokenizer, with a chat template guaranteed."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from edgetune.base_model import ensure_hf_checkpoint
    from train.sft_data import ensure_chat_template

    directory = ensure_hf_checkpoint(ref)
    tokenizer = AutoTokenizer.from_pretrained(directory)
    fallback = ensure_chat_template(tokenizer)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token  # safe: labels are built from the chat, never from pad positions
    dtype = getattr(torch, hardware.dtype)
    kwargs: dict[str, Any] = {"dtype": dtype}
    if hardware.quant == "nf4":
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16 if hardware.dtype == "bfloat16" else torch.float32,
        )
        kwargs["device_map"] = {"": f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"} if hardware.device == "cuda" \
            else {"": "cpu"}
    if padding_free:
        from train.packed_attention import register

        kwargs["attn_implementation"] = register()  # causal SDPA per packed sequence instead of a dense mask
    model = AutoModelForCausalLM.from_pretrained(directory, **kwargs)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer, fallback


def _build_trainer(config: FinetuneConfig, hardware: Hardware, model: Any, tokenizer: Any,
                   encoded: dict[str, list], checkpoints: Path) -> Any:
    from datasets import Dataset
    from peft import LoraConfig
    from trl import SFTConfig

    from train.packed_attention import SharedPrefixCollator, shared_prefix_length
    from train.sft_trainer import AnswerOnlyTrainer, TokenProgress

    def as_dataset(items: list) -> Dataset:
        return Dataset.from_dict({"input_ids": [e.input_ids for e in items], "labels": [e.labels for e in items]})

    collator, prefix = None, 0
    if config.padding_free and config.share_prefix:
        everything = encoded["train"] + encoded["val"]
        prefix = shared_prefix_length([e.input_ids for e in everything], [e.prompt_length for e in everything])
        if prefix:
            collator = SharedPrefixCollator(prefix)
    per_step = config.batch_size * config.grad_accum * hardware.world_size
    total_steps = config.max_steps or max(1, math.ceil(config.epochs * len(encoded["train"]) / per_step))
    evals = config.eval.val_evals
    args = SFTConfig(
        output_dir=str(checkpoints),
        seed=config.seed,
        data_seed=config.seed,
        per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=config.batch_size,
        gradient_accumulation_steps=config.grad_accum,
        learning_rate=config.learning_rate,
        lr_scheduler_type=config.lr_scheduler,
        warmup_steps=config.warmup_ratio,  # < 1: a fraction of the steps
        weight_decay=config.weight_decay,
        num_train_epochs=config.epochs,
        max_steps=config.max_steps or -1,
        logging_steps=1,
        eval_strategy="steps" if evals else "no",
        eval_steps=max(1, math.ceil(total_steps / evals)) if evals else None,
        prediction_loss_only=True,
        save_strategy="steps",
        save_steps=config.save_steps,
        save_total_limit=1,
        report_to="none",
        disable_tqdm=True,
        use_cpu=hardware.device == "cpu",
        bf16=hardware.dtype == "bfloat16",
        activation_checkpointing=False,  # trl defaults to on: ~30% more compute for memory small models do not need
        padding_free=config.padding_free and collator is None,  # trl's own padding-free collator
        packing=False,
        max_length=None,  # already enforced by encode_all (dropping, not truncating)
        dataset_kwargs={"skip_prepare_dataset": True},
        remove_unused_columns=False,
        dataloader_num_workers=0,
        ddp_backend="gloo" if hardware.device == "cpu" and hardware.world_size > 1 else None,
        ddp_find_unused_parameters=False if hardware.world_size > 1 else None,
    )
    peft_config = LoraConfig(
        r=config.lora.r,
        lora_alpha=config.lora.alpha,
        lora_dropout=config.lora.dropout,
        target_modules=_lora_targets(model, config.lora),
        task_type="CAUSAL_LM",
    )
    trainer = AnswerOnlyTrainer(
        model=model,
        args=args,
        train_dataset=as_dataset(encoded["train"]),
        eval_dataset=as_dataset(encoded["val"]) if evals else None,
        processing_class=tokenizer,
        peft_config=peft_config,
        data_collator=collator,
    )
    trainer.shared_prefix_tokens = prefix
    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)  # a dict per step on stdout; the progress bar says it better
    trainer.add_callback(TokenProgress(trainer))
    return trainer


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


def _lora_targets(model: Any, lora: LoraSettings) -> str | list[str]:
    """peft's target modules; with ``top_layers``, the linear modules of the top decoder layers by full name (peft
    takes no layer range together with "all-linear")."""
    import torch

    names = lora.target_modules if lora.target_modules == "all-linear" else \
        [t.strip() for t in lora.target_modules.split(",") if t.strip()]
    if not lora.top_layers:
        return names
    total = model.config.num_hidden_layers
    top = {str(i) for i in range(max(0, total - lora.top_layers), total)}
    found = []
    for name, module in model.named_modules():
        parts = name.split(".")
        if isinstance(module, torch.nn.Linear) and "layers" in parts[:-1]:
            layer = parts[parts.index("layers") + 1]
            if layer in top and (names == "all-linear" or parts[-1] in names):
                found.append(name)
    if not found:
        raise ConfigError(None, "lora.top_layers", f"no linear modules in the top {lora.top_layers} of {total} "
                                                    "decoder layers match lora.target_modules")
    return found


def _sum_over_processes(trainer: Any, value: int) -> int:
    import torch

    if trainer.accelerator.num_processes == 1:
        return value
    return int(trainer.accelerator.reduce(torch.tensor(value, device=trainer.accelerator.device), "sum"))


def _base_eval_key(base_model: dict[str, Any], data_sha256: dict[str, str], config: FinetuneConfig,
                   holdout: list) -> str:
    facts = [base_model.get("path"), base_model.get("sha256"), data_sha256["test"], config.eval.base_examples,
             config.eval.margin_tokens, config.seed, config.dtype, config.quant, config.device,
             hashlib.sha256(json.dumps(holdout).encode()).hexdigest()]
    return hashlib.sha256(json.dumps(facts).encode()).hexdigest()[:16]


def _evaluate(config: FinetuneConfig, task: Any, model: Any, tokenizer: Any, sets: dict[str, list],
              adapter_dir: Path, staging: Path, key_base: str,
              vocabulary_gguf: Path | None) -> dict[str, dict[str, Any]]:
    """Base (adapter disabled; cached across runs) and tuned (adapter merged for speed) task metrics per set.

    ``sets`` maps a name (``test``, and ``human`` when the task has a held-out set) to conversations; the result maps
    ``base``/``tuned`` to ``{set name: TaskEval dict}``. With ``vocabulary_gguf`` (a GGUF base model: the tuned
    model shares its vocabulary) the tuned answers are also scored grammar-constrained, as the robot gets them.
    """
    from train.task_eval import Vocabulary, answer_budget, evaluate

    tokenizer.padding_side = "left"
    budgets = {name: answer_budget(tokenizer, [c[-1]["content"] for c in convs], config.eval.margin_tokens)
               for name, convs in sets.items()}
    batch = config.eval.batch_size
    cache = adapter_dir / "base_eval.json"
    base = None
    if cache.is_file():
        cached = json.loads(cache.read_text(encoding="utf-8"))
        base = cached.get("result") if cached.get("key") == key_base else None
    vocabulary = Vocabulary(vocabulary_gguf) if vocabulary_gguf and task.contract.grammar() else None
    if base is None:
        with model.disable_adapter():
            base = {name: evaluate(model, tokenizer, task, _sample(convs, config.eval.base_examples, config.seed),
                                   budgets[name], batch, f"eval base {name}", vocabulary=vocabulary,
                                   give_up=True).to_dict()
                    for name, convs in sets.items()}
    atomic_write_json(staging / "base_eval.json", {"key": key_base, "result": base})
    quantized = getattr(model, "is_loaded_in_4bit", False) or getattr(model.base_model, "is_loaded_in_4bit", False)
    tuned_model = model if quantized else model.merge_and_unload()  # merged: no adapter matmuls while decoding
    tuned = {}
    for name, convs in sets.items():
        subset = _sample(convs, config.eval.test_examples, config.seed) if name == "test" else convs
        tuned[name] = evaluate(tuned_model, tokenizer, task, subset, budgets[name], batch, f"eval tuned {name}",
                               vocabulary=vocabulary).to_dict()
    if vocabulary is not None:
        vocabulary.close()
    for name in sets:
        t = tuned[name]
        robot = t.get("constrained") or t  # what the robot gets: grammar on where it can be measured
        grammar = f", grammar on {robot['exact_match']:.3f} valid {robot['valid_rate']:.3f}" if robot is not t else ""
        grammar += f"; acted on {robot['acted_on_refusal']:.0%} of {robot['refusals']} refusals" \
            if robot["refusals"] else ""
        print(f"{name:5s} set: exact match base {base[name]['exact_match']:.3f} (n={base[name]['n']}) -> tuned "
              f"{t['exact_match']:.3f} (n={t['n']}, valid {t['valid_rate']:.3f}{grammar}, {t['seconds']:.0f}s)",
              file=sys.stderr)
    return {"base": base, "tuned": tuned}


def _plot_loss(history: list[dict[str, Any]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = [(h["step"], h["loss"]) for h in history if "loss" in h]
    val = [(h["step"], h["eval_loss"]) for h in history if "eval_loss" in h]
    fig, ax = plt.subplots(figsize=(7, 4))
    if train:
        ax.plot(*zip(*train), label="train loss", linewidth=1)
    if val:
        ax.plot(*zip(*val), "o-", label="val loss")
    ax.set(xlabel="optimizer step", ylabel="loss (answer tokens)", title=title, yscale="log")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    from edgetune.rundir import atomic_path

    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


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


# ----------------------------------------------------------------------------------------------------- CLI


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
