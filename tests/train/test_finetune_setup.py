"""What the fine-tuning job runs on (train/finetune_setup.py): LoRA targets of the top decoder layers, compiled
decoder layers, the planned steps. Hardware resolution, model loading and the trainer run end to end in
tests/train/test_finetune.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgetune.config import ConfigError
from tests.train.tiny_llama import build_tiny_llama
from train.finetune_config import FinetuneConfig, LoraSettings
from train.finetune_setup import (COMPILE_MIN_STEPS, Hardware, compile_choice, compiled_layers, lora_targets,
                                  planned_steps)

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


def test_compiled_layers_train_like_eager_ones_and_are_plain_again_after(tiny_model):
    """The compiled decoder layers give the eager layers' loss and adapter gradients on a packed padding-free row,
    and generation afterwards runs the plain forward (no compiled function left on any layer)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from train.packed_attention import SharedPrefixCollator, register
    from train.sft_trainer import answer_only_loss

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_model, attn_implementation=register())
    model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", task_type="CAUSAL_LM"))
    for name, param in model.named_parameters():
        if "lora_B" in name:  # non-zero, so the adapter's gradients depend on the layers' outputs
            torch.nn.init.normal_(param, std=0.02)
    prefix = [3, 4, 5]
    rows = [prefix + [6, 7, 8, 9], prefix + [10, 11, 12], prefix + [13, 14, 15, 16, 17]]
    batch = SharedPrefixCollator(3)([{"input_ids": r, "labels": [-100] * 4 + r[4:]} for r in rows])
    batch.pop("example_tokens")

    def loss_and_grads() -> tuple[float, dict[str, torch.Tensor]]:
        model.zero_grad(set_to_none=True)
        loss, _ = answer_only_loss(model, batch)
        loss.backward()
        return loss.item(), {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}

    eager_loss, eager_grads = loss_and_grads()
    layers = model.base_model.model.model.layers
    with compiled_layers(model, True):
        assert all("forward" in layer.__dict__ for layer in layers)
        compiled_loss, compiled_grads = loss_and_grads()
    assert compiled_loss == pytest.approx(eager_loss, rel=1e-4)
    for name, grad in eager_grads.items():
        torch.testing.assert_close(compiled_grads[name], grad, rtol=1e-3, atol=1e-5, msg=name)
    assert not any("forward" in layer.__dict__ for layer in layers)


def test_compiling_is_chosen_for_long_cpu_runs_only():
    config = FinetuneConfig()
    cpu = Hardware("cpu", "none", "bfloat16", 2, 1, 0, "")
    cuda = Hardware("cuda", "nf4", "bfloat16", 2, 1, 0, "")
    assert compile_choice(config, cpu, 1125)[0]
    assert not compile_choice(config, cpu, COMPILE_MIN_STEPS - 1)[0]
    assert not compile_choice(config, cuda, 1125)[0]
    assert compile_choice(FinetuneConfig(compile_layers="on"), cuda, 10)[0]
    assert not compile_choice(FinetuneConfig(compile_layers="off"), cpu, 1125)[0]
    assert planned_steps(config, cpu, 4500) == 1125
    assert planned_steps(FinetuneConfig(max_steps=7), cpu, 4500) == 7
