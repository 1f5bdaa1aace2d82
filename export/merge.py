"""Merge the LoRA adapter into the base model in full precision, on CPU.

The base is loaded dequantized in float32 (a GGUF base is dequantized once by edgetune.base_model); merging into
4-bit weights, the usual cause of "garbage after export", cannot happen here: a quantized base is refused.
"""

from __future__ import annotations

import json
from pathlib import Path

from edgetune.base_model import BaseModelRef, ensure_hf_checkpoint
from edgetune.rundir import sha256_file
from export import ExportError

ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")


def check_adapter(adapter_dir: Path) -> None:
    """A clear error unless ``adapter_dir`` holds a PEFT LoRA adapter."""
    missing = [name for name in ADAPTER_FILES if not (adapter_dir / name).is_file()]
    if missing:
        raise ExportError(
            f"{adapter_dir}: no PEFT adapter here ({', '.join(missing)} missing); "
            f"run `make train RUN={adapter_dir.parent.name}` first"
        )
    config = json.loads((adapter_dir / "adapter_config.json").read_text(encoding="utf-8"))
    if config.get("peft_type") != "LORA":
        raise ExportError(f"{adapter_dir / 'adapter_config.json'}: peft_type is {config.get('peft_type')!r}; "
                          "export merges LoRA adapters only")


def merge_adapter(adapter_dir: Path, base: BaseModelRef, out_dir: Path, threads: int = 0) -> Path:
    """Merge ``adapter_dir`` into ``base`` (float32) and save an HF checkpoint with the adapter's tokenizer to
    ``out_dir``: the tokenizer training used is the one the GGUF must carry."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    check_adapter(adapter_dir)
    if base.kind == "gguf":
        if not base.path.is_file():
            raise ExportError(f"base model {base.path} (recorded by the train stage) is missing; restore it or retrain")
        if base.sha256 and sha256_file(base.path) != base.sha256:
            raise ExportError(f"base model {base.path} does not match the sha256 the train stage recorded; the "
                              "adapter was trained on a different file. Restore that file or retrain")
    hf_dir = ensure_hf_checkpoint(base)
    config = json.loads((hf_dir / "config.json").read_text(encoding="utf-8"))
    if config.get("quantization_config"):
        method = config["quantization_config"].get("quant_method", "?")
        raise ExportError(f"{hf_dir}: the base checkpoint is quantized ({method}); merging into quantized weights "
                          "corrupts the model. Point BASE_MODEL at the full-precision checkpoint")
    if threads:
        torch.set_num_threads(threads)
    tokenizer_dir = adapter_dir if (adapter_dir / "tokenizer_config.json").is_file() else hf_dir
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    model = AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32)
    rows = model.get_input_embeddings().weight.shape[0]
    if len(tokenizer) > rows:
        raise ExportError(f"{tokenizer_dir}: the tokenizer has {len(tokenizer)} tokens but the base model's "
                          f"embedding only {rows}; the adapter must save the resized embeddings (modules_to_save)")
    merged = PeftModel.from_pretrained(model, adapter_dir).merge_and_unload()
    merged.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir
