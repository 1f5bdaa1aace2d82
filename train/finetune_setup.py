"""What a fine-tuning job runs on: device, quantization and dtype resolved from "auto", the base model and its
tokenizer loaded (NF4 on CUDA, packed attention for padding-free rows), and trl's SFTTrainer built around the LoRA
adapter. train/finetune.py runs the job with them."""

from __future__ import annotations

import contextlib
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from edgetune.config import ConfigError
from train.finetune_config import FinetuneConfig, FinetuneError, LoraSettings


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


def load_model(ref: Any, hardware: Hardware, padding_free: bool) -> tuple[Any, Any, bool]:
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


def planned_steps(config: FinetuneConfig, hardware: Hardware, examples: int) -> int:
    """Optimizer steps the job will take: max_steps, or epochs over the examples."""
    per_step = config.batch_size * config.grad_accum * hardware.world_size
    return config.max_steps or max(1, math.ceil(config.epochs * examples / per_step))


#: below this many steps compiling the layers (~20 s on 2 cores) costs more than it saves
COMPILE_MIN_STEPS = 200


def compile_choice(config: FinetuneConfig, hardware: Hardware, steps: int) -> tuple[bool, str]:
    """Whether to compile the decoder layers while training, and why (for the report)."""
    if config.compile_layers != "auto":
        return config.compile_layers == "on", f"compile_layers={config.compile_layers}"
    if hardware.device != "cpu":
        return False, "compile_layers=auto -> off on CUDA (the CPU path is the measured one)"
    if steps < COMPILE_MIN_STEPS:
        return False, f"compile_layers=auto -> off ({steps} steps < {COMPILE_MIN_STEPS}: compiling would not pay off)"
    return True, f"compile_layers=auto -> on ({steps} steps on cpu)"


@contextlib.contextmanager
def compiled_layers(model: Any, enabled: bool) -> Iterator[None]:
    """Train with every decoder layer's forward under torch.compile (regional compilation: the layers share one
    graph, so compiling takes seconds, not minutes); afterwards the layers run their plain forward again, so the
    merged model generates in eager mode."""
    if not enabled:
        yield
        return
    import torch

    layers = list(next((m for name, m in model.named_modules()
                        if isinstance(m, torch.nn.ModuleList) and name.split(".")[-1] == "layers"), ()))
    for layer in layers:
        layer.forward = torch.compile(layer.forward, dynamic=True)
    try:
        yield
    finally:
        for layer in layers:
            del layer.forward  # the instance attribute: the class's forward again


def build_trainer(config: FinetuneConfig, hardware: Hardware, model: Any, tokenizer: Any,
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
    total_steps = planned_steps(config, hardware, len(encoded["train"]))
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
        target_modules=lora_targets(model, config.lora),
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


def lora_targets(model: Any, lora: LoraSettings) -> str | list[str]:
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
