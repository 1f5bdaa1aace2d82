"""Training throughput: the default settings against a naive baseline, measured side by side in one run.

    python -m bench.finetune                         embedded SmolLM2-135M, runs/default/data, 6 steps each
    python -m bench.finetune --steps 10 --with fp32,nf4   also the fp32 and NF4 variants (what auto chooses)
    python -m bench.finetune --with compiled         also the default with torch.compile'd decoder layers

Variants (each a LoRA on all linear layers, same examples, same batches, one optimizer step = --batch examples):
  default   the shipped settings: padding-free rows holding the shared system prompt once, per-sequence causal
            attention, logits only where the loss is, the auto dtype (bf16 on bf16-capable CPUs)
  no-share  default without the shared prefix (trl's padding-free rows)
  padded    padded batches, stock sdpa, otherwise default
  naive     padded batches, stock sdpa, logits for every position (HF's built-in loss), float32: the usual recipe
  fp32      default in float32                       (--with fp32)
  nf4       default on an NF4-quantized base         (--with nf4; bitsandbytes)
  compiled  default with each decoder layer under torch.compile (--with compiled; what compile_layers=auto does
            for CPU runs of 200+ steps); its one-off compile falls in the untimed warm-up step

Steps of all variants are interleaved (one step of each in turn), so a busy or shared machine slows them alike;
tokens/s counts real tokens (no padding) over wall time. The first step of each variant is a warm-up, not timed.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from dataclasses import dataclass
from typing import Any


@dataclass
class Variant:
    name: str
    layout: str  #: "shared" (shared-prefix rows), "free" (trl padding-free rows) or "padded"
    answer_only_logits: bool
    dtype: str
    quant: str = "none"
    compiled: bool = False
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    tokens: int = 0
    losses: tuple[float, ...] = ()


def _build(variant: Variant, directory: Any, lora_r: int, lora_alpha: int, stack: contextlib.ExitStack
           ) -> tuple[Any, Any]:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    from train.packed_attention import register

    kwargs: dict[str, Any] = {"dtype": getattr(torch, variant.dtype),
                              "attn_implementation": "sdpa" if variant.layout == "padded" else register()}
    if variant.quant == "nf4":
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=getattr(torch, variant.dtype))
        kwargs["device_map"] = {"": "cpu"}
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(directory, **kwargs)
    model = get_peft_model(model, LoraConfig(r=lora_r, lora_alpha=lora_alpha, target_modules="all-linear",
                                             task_type="CAUSAL_LM"))
    model.train()
    if variant.compiled:
        from train.finetune_setup import compiled_layers

        stack.enter_context(compiled_layers(model, True))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    return model, optimizer


def _step(variant: Variant, model: Any, optimizer: Any, batch: dict[str, Any]) -> float:
    import torch

    from train.sft_trainer import answer_only_loss

    batch = {k: v for k, v in batch.items() if k != "example_tokens"}
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=variant.dtype == "bfloat16"):
        if variant.answer_only_logits:
            loss, _ = answer_only_loss(model, batch)
        else:
            loss = model(**batch, use_cache=False).loss
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss.item()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.finetune", description=__doc__.split("\n\n")[0],
                                     epilog=__doc__.split("\n\n", 2)[2], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", default="default", help="run directory whose data/train.jsonl is used")
    parser.add_argument("--base-model", default="", help="a .gguf or HF model directory (default: embedded)")
    parser.add_argument("--steps", type=int, default=6, help="timed optimizer steps per variant")
    parser.add_argument("--batch", type=int, default=0, help="examples per step (default: the default config's batch_size)")
    parser.add_argument("--with", dest="extra", default="", help="extra variants: fp32,nf4,compiled")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = all cores)")
    args = parser.parse_args(argv)

    from train.finetune_config import load_config

    import torch
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    from edgetune.artifacts import read_split, split_path
    from edgetune.base_model import ensure_hf_checkpoint, resolve_base_model
    from edgetune.rundir import RunDir
    from train.finetune_setup import cpu_has_native_bf16
    from train.sft_data import encode_all, ensure_chat_template

    torch.set_num_threads(args.threads or os.cpu_count() or 1)
    config = load_config()
    args.batch = args.batch or config.batch_size
    directory = ensure_hf_checkpoint(resolve_base_model(args.base_model or None))
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(directory)
    ensure_chat_template(tokenizer)
    conversations = [c.turns for c in read_split(split_path(RunDir.named(args.run), "train"))]
    needed = args.batch * (args.steps + 1)
    encoded, _ = encode_all(tokenizer, conversations[:needed], config.max_length, "train")
    batches = [encoded[i:i + args.batch] for i in range(0, len(encoded), args.batch)][: args.steps + 1]
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    from train.packed_attention import SharedPrefixCollator, shared_prefix_length

    prefix = shared_prefix_length([e.input_ids for e in encoded], [e.prompt_length for e in encoded])
    collate = {"shared": SharedPrefixCollator(prefix),
               "free": DataCollatorForLanguageModeling(pad_token_id=pad_id, padding_free=True),
               "padded": DataCollatorForLanguageModeling(pad_token_id=pad_id)}

    auto_dtype = "bfloat16" if cpu_has_native_bf16() else "float32"
    variants = [Variant("default", "shared", True, auto_dtype), Variant("no-share", "free", True, auto_dtype),
                Variant("padded", "padded", True, auto_dtype), Variant("naive", "padded", False, "float32")]
    extra = {e.strip() for e in args.extra.split(",") if e.strip()}
    if "fp32" in extra:
        variants.append(Variant("fp32", "shared", True, "float32"))
    if "nf4" in extra:
        variants.append(Variant("nf4", "shared", True, auto_dtype, quant="nf4"))
    if "compiled" in extra:
        variants.append(Variant("compiled", "shared", True, auto_dtype, compiled=True))
    unknown = extra - {"fp32", "nf4", "compiled"}
    if unknown:
        parser.error(f"--with: unknown variant(s) {sorted(unknown)}; choose from fp32, nf4, compiled")
    stack = contextlib.ExitStack()
    built = {v.name: _build(v, directory, config.lora.r, config.lora.alpha, stack) for v in variants}

    print(f"{len(batches) - 1} timed steps x {args.batch} examples per variant (shared prefix: {prefix} tokens); torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, {os.cpu_count()} cores, OMP_WAIT_POLICY="
          f"{os.environ.get('OMP_WAIT_POLICY')}, load average {os.getloadavg()[0]:.1f}", file=sys.stderr)
    for index, examples in enumerate(batches):
        for variant in variants:
            batch = collate[variant.layout](
                [{"input_ids": e.input_ids, "labels": e.labels} for e in examples])
            wall, cpu = time.perf_counter(), time.process_time()
            loss = _step(variant, *built[variant.name], batch)
            if index == 0:
                continue  # warm-up
            variant.seconds += time.perf_counter() - wall
            variant.cpu_seconds += time.process_time() - cpu
            variant.tokens += sum(len(e.input_ids) for e in examples)
            variant.losses += (loss,)
        print(f"  step {index}/{len(batches) - 1} done", file=sys.stderr)
    stack.close()  # the compiled variant's layers run their plain forward again

    naive = next(v for v in variants if v.name == "naive")
    print(f"\n{'variant':8s} {'dtype':9s} {'quant':5s} {'tokens/s':>9s} {'x naive':>8s} {'s/step':>7s} "
          f"{'cpu s/step':>10s}")
    for v in variants:
        rate = v.tokens / v.seconds
        print(f"{v.name:8s} {v.dtype:9s} {v.quant:5s} {rate:9.1f} {rate / (naive.tokens / naive.seconds):8.2f} "
              f"{v.seconds / (len(batches) - 1):7.2f} {v.cpu_seconds / (len(batches) - 1):10.2f}")
    print(f"\n(load average after: {os.getloadavg()[0]:.1f}; tokens are real tokens, padding excluded)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
