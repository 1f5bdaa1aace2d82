"""The fine-tuning job's config: LoRA, evaluation and training settings, read from train/configs/default.yaml, an
optional YAML file and ``key=value`` overrides (``python -m train finetune --help`` lists every field)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from edgetune.config import load, read_yaml

DEFAULT_CONFIG = Path(__file__).resolve().parent / "configs" / "default.yaml"


class FinetuneError(RuntimeError):
    """The job cannot run as configured; the message names the cause and the fix."""


@dataclass
class LoraSettings:
    """The LoRA adapter."""

    r: int = 16  #: rank of the update matrices
    alpha: int = 32  #: scaling numerator (the update is scaled by alpha / r)
    dropout: float = 0.0  #: dropout on the adapter input (0 is fastest; short runs rarely overfit)
    target_modules: str = "all-linear"  #: "all-linear" or comma-separated module names (q_proj,v_proj)
    #: adapt only the top N decoder layers (0: all): backward then stops below them, so a step costs less
    top_layers: int = 20


@dataclass
class EvalSettings:
    """Validation loss during training and the task metric (greedy generation, contract scorer) after it."""

    batch_size: int = 48  #: prompts generated together (left-padded, KV cache)
    margin_tokens: int = 12  #: max_new_tokens = longest reference answer + this margin
    test_examples: int = 0  #: test examples scored for the tuned model (0 = the whole test split)
    base_examples: int = 48  #: test examples scored for the base model (0 = all; it rarely keeps to the task)
    val_examples: int = 48  #: validation examples used for the val loss (0 = all)
    val_evals: int = 2  #: how many times the val loss is computed during training (evenly spaced; 0 = never)


@dataclass
class FinetuneConfig:
    """One fine-tuning job."""

    run: str = "default"  #: run directory name under runs/
    runs_dir: str = ""  #: where run directories live (default: runs/ or $EDGETUNE_RUNS)
    base_model: str = ""  #: a .gguf file, a Hugging Face model directory, or "" for the embedded SmolLM2-135M
    device: Literal["auto", "cpu", "cuda"] = "auto"  #: auto = cuda when available, else cpu
    quant: Literal["auto", "nf4", "none"] = "auto"  #: base weights: nf4 (QLoRA, bitsandbytes) or none; auto = nf4 on cuda, none on cpu (faster there)
    dtype: Literal["auto", "float32", "bfloat16"] = "auto"  #: compute dtype; auto = bfloat16 where the hardware has it
    threads: int = 0  #: torch CPU threads per process (0 = cores / processes)
    seed: int = 0  #: seeds data order, adapter init and the training subset
    train_examples: int = 0  #: train on this many examples of the train split (0 = all), a seeded sample
    epochs: float = 1.0  #: passes over the training examples
    max_steps: int = 0  #: stop after this many optimizer steps (0 = from epochs)
    batch_size: int = 4  #: examples per device per step (padding-free: concatenated into one row)
    grad_accum: int = 1  #: micro-batches per optimizer step
    learning_rate: float = 3e-3  #: peak learning rate (small models like it high)
    lr_scheduler: Literal["linear", "cosine", "constant_with_warmup"] = "cosine"  #: decay after warmup
    warmup_ratio: float = 0.06  #: fraction of the steps spent warming up
    weight_decay: float = 0.0  #: AdamW weight decay on the adapter
    #: torch.compile each decoder layer while training (the layers share their graphs: compiled once); auto = on
    #: for CPU runs of 200+ steps, where ~20 s of compiling buys steps a tenth faster (python -m bench.finetune)
    compile_layers: Literal["auto", "on", "off"] = "auto"
    max_length: int = 256  #: longest example in tokens; longer ones are dropped (truncation would cut off EOS)
    padding_free: bool = True  #: concatenate a batch into one row (no padding) instead of padding it
    share_prefix: bool = True  #: padding-free rows hold the prompt prefix all examples share (system message) once
    save_steps: int = 20  #: checkpoint every this many steps (for --resume)
    lora: LoraSettings = field(default_factory=LoraSettings)
    eval: EvalSettings = field(default_factory=EvalSettings)
    resume: bool = False  #: continue from the newest checkpoint in runs/RUN/adapter/checkpoints
    force: bool = False  #: retrain even when an adapter for the same config, data and base model exists

    def check(self):
        positive = ("batch_size", "grad_accum", "max_length", "save_steps")
        for name in positive:
            if getattr(self, name) < 1:
                yield name, "must be at least 1"
        for name in ("train_examples", "max_steps", "threads"):
            if getattr(self, name) < 0:
                yield name, "must be 0 (meaning: automatic) or positive"
        if self.epochs <= 0 and self.max_steps == 0:
            yield "epochs", "must be positive (or set max_steps)"
        if not 0 < self.learning_rate < 1:
            yield "learning_rate", f"must be in (0, 1), got {self.learning_rate} (try 1e-3 for LoRA on small models)"
        if not 0 <= self.warmup_ratio < 1:
            yield "warmup_ratio", "must be in [0, 1)"
        if self.lora.r < 1 or self.lora.alpha < 1:
            yield "lora.r", "lora.r and lora.alpha must be at least 1"
        if self.lora.top_layers < 0:
            yield "lora.top_layers", "must be 0 (every layer) or a number of top decoder layers"
        if not 0 <= self.lora.dropout < 1:
            yield "lora.dropout", "must be in [0, 1)"
        if self.eval.batch_size < 1:
            yield "eval.batch_size", "must be at least 1"
        for name in ("test_examples", "base_examples", "val_examples", "val_evals", "margin_tokens"):
            if getattr(self.eval, name) < 0:
                yield f"eval.{name}", "must be 0 or positive"


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> FinetuneConfig:
    """The shipped defaults (train/configs/default.yaml), then the YAML at ``path``, then ``key=value`` overrides."""
    return load(FinetuneConfig, path, overrides, defaults=read_yaml(DEFAULT_CONFIG))
