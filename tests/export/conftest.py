"""Fixtures for the export tests: a tiny random Llama with SmolLM2's real tokenizer, a LoRA adapter on it with
non-zero B weights (so merging changes the model), and a run directory shaped like the train stage leaves it.

The tokenizer is SmolLM2-135M-Instruct's (from the embedded GGUF, dequantized once into models/hf/): a real BPE
tokenizer with a ChatML template that llama.cpp's converter recognises by its pre-tokenizer hash, so the tokenizer
checks compare against the real thing. hidden_size is 256 (not smaller) because k-quants need rows that are
multiples of 256; with less, llama.cpp silently falls back to other types and the tensor-type test would test
the fallback.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from edgetune.rundir import RunDir

TINY = dict(vocab_size=49152, hidden_size=256, intermediate_size=512, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=512, tie_word_embeddings=True, rms_norm_eps=1e-5,
            bos_token_id=1, eos_token_id=2, pad_token_id=2, initializer_range=0.1)
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@pytest.fixture(scope="session")
def smol_hf_dir() -> Path:
    from edgetune.base_model import ensure_hf_checkpoint, resolve_base_model

    return ensure_hf_checkpoint(resolve_base_model())


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory, smol_hf_dir) -> Path:
    """HF directory of a 2-layer random Llama (float32) with the SmolLM2 tokenizer."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(**TINY)).eval()
    out = tmp_path_factory.mktemp("tiny-base")
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(smol_hf_dir).save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_adapter(tmp_path_factory, tiny_base) -> Path:
    """A PEFT LoRA adapter for ``tiny_base`` with random, non-zero B weights, saved with its tokenizer."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(1)
    model = AutoModelForCausalLM.from_pretrained(tiny_base, dtype=torch.float32)
    peft_model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=LORA_TARGETS,
                                                  task_type="CAUSAL_LM"))
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.normal_(std=0.05)
    out = tmp_path_factory.mktemp("tiny-adapter")
    peft_model.save_pretrained(out)
    AutoTokenizer.from_pretrained(tiny_base).save_pretrained(out)
    return out


@pytest.fixture
def make_run(tmp_path, tiny_base, tiny_adapter, robot_task):
    """Build runs/<name>/ like the data and train stages leave it; returns its RunDir."""

    def build(name: str = "tiny", with_adapter: bool = True) -> RunDir:
        run = RunDir.named(name, tmp_path / "runs")
        run.data.mkdir(parents=True)
        lines = [json.dumps({"messages": [*robot_task.messages(e["user"]), {"role": "assistant", "content": e["assistant"]}]})
                 for e in robot_task.examples]
        (run.data / "test.jsonl").write_text("\n".join(lines) + "\n")
        run.record("data", task=robot_task.name, counts={"test": len(lines)}, sha256={})
        if with_adapter:
            shutil.copytree(tiny_adapter, run.adapter)
        base = {"source": str(tiny_base), "kind": "hf", "path": str(tiny_base), "sha256": None, "hf_dir": str(tiny_base)}
        run.record("train", task=robot_task.name, base_model=base)
        return run

    return build


@pytest.fixture(scope="session")
def tiny_merged(tmp_path_factory, tiny_base, tiny_adapter) -> Path:
    """The adapter merged into the tiny base (HF directory)."""
    from edgetune.base_model import BaseModelRef
    from export.merge import merge_adapter

    out = tmp_path_factory.mktemp("tiny-merged") / "merged"
    return merge_adapter(tiny_adapter, BaseModelRef(str(tiny_base), "hf", tiny_base), out)


@pytest.fixture(scope="session")
def tiny_f16(tmp_path_factory, tiny_merged) -> Path:
    """The merged tiny model converted to an F16 GGUF by llama.cpp's converter."""
    from export.convert import convert_to_gguf

    return convert_to_gguf(tiny_merged, tmp_path_factory.mktemp("tiny-gguf") / "tiny-F16.gguf")
