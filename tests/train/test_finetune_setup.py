"""What the fine-tuning job runs on (train/finetune_setup.py): LoRA targets of the top decoder layers. Hardware
resolution, model loading and the trainer run end to end in tests/train/test_finetune.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgetune.config import ConfigError
from tests.train.tiny_llama import build_tiny_llama
from train.finetune_config import LoraSettings
from train.finetune_setup import lora_targets

LINEAR_MODULES = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory, robot_task) -> Path:
    return build_tiny_llama(tmp_path_factory.mktemp("tiny") / "model", robot_task)


def test_top_layers_adapts_only_the_top_decoder_layers_and_backward_stops_below(tiny_model):
    """lora.top_layers=1 of 2: the adapter covers layer 1's linear modules only, and a backward pass computes no
    gradient below it (the saving it is for)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM


    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    targets = lora_targets(model, LoraSettings(top_layers=1))
    assert {name.split(".")[-1] for name in targets} == LINEAR_MODULES
    assert {name.split(".layers.")[1].split(".")[0] for name in targets} == {"1"}
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=targets, task_type="CAUSAL_LM"))
    seen = []
    peft_model.base_model.model.model.layers[0].register_full_backward_hook(lambda *args: seen.append(0))
    peft_model.base_model.model.model.layers[1].register_full_backward_hook(lambda *args: seen.append(1))
    ids = torch.tensor([[5, 6, 7, 8]])
    peft_model(input_ids=ids, labels=ids).loss.backward()
    assert seen == [1]
    with pytest.raises(ConfigError, match="lora.top_layers"):
        lora_targets(model, LoraSettings(top_layers=1, target_modules="no_such_proj"))
