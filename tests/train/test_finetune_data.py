"""Tokenization for SFT on a tiny tokenizer made here: which tokens carry the loss, EOS, pad == EOS, packing."""

from __future__ import annotations

import logging

import pytest

from tests.train.tiny_llama import build_tiny_llama, chat
from train.sft_data import IGNORE_INDEX, DatasetError, encode, encode_all, ensure_chat_template

ANSWER = '["nav.dock()", "status.report_battery()"]'


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory, robot_task):
    return build_tiny_llama(tmp_path_factory.mktemp("tiny") / "model", robot_task)


@pytest.fixture()
def tokenizer(tiny_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_dir)


def test_labels_cover_exactly_the_answer_and_its_eos(tokenizer, robot_task):
    messages = chat(robot_task, "Go to the charging dock and then report your battery level.", ANSWER)["messages"]
    item = encode(tokenizer, messages)
    prompt_text = tokenizer.apply_chat_template(messages[:-1], tokenize=False, add_generation_prompt=True)
    prompt_len = len(tokenizer(prompt_text, add_special_tokens=False)["input_ids"])
    assert item.prompt_length == prompt_len
    assert all(label == IGNORE_INDEX for label in item.labels[:prompt_len])  # system, user, headers: masked
    trained = item.labels[prompt_len:]
    assert IGNORE_INDEX not in trained
    assert trained == item.input_ids[prompt_len:]
    assert tokenizer.decode(trained[:-1]) == ANSWER


def test_eos_is_the_last_label_and_the_last_token(tokenizer, robot_task):
    item = encode(tokenizer, chat(robot_task, "Sit down.", '["sport.Sit()"]')["messages"])
    assert item.labels[-1] == tokenizer.eos_token_id == item.input_ids[-1]
    assert tokenizer.eos_token_id == tokenizer.pad_token_id  # like SmolLM2: the case where EOS gets masked by mistake


def test_fallback_template_warns_and_still_ends_on_eos(tiny_dir, robot_task, caplog):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_dir)
    tokenizer.chat_template = None
    with caplog.at_level(logging.WARNING):
        assert ensure_chat_template(tokenizer) is True
    assert "no chat template" in caplog.text
    item = encode(tokenizer, chat(robot_task, "Sit down.", '["sport.Sit()"]')["messages"])
    assert item.labels[-1] == tokenizer.eos_token_id
    assert ensure_chat_template(tokenizer) is False  # a template now exists: nothing to do


def test_padded_batches_keep_eos_although_pad_equals_eos(tokenizer, robot_task):
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    short = encode(tokenizer, chat(robot_task, "Sit down.", '["sport.Sit()"]')["messages"])
    long = encode(tokenizer, chat(robot_task, "Go to the kitchen.", '["nav.go_to(place=\'kitchen\')"]')["messages"])
    collator = DataCollatorForLanguageModeling(pad_token_id=tokenizer.pad_token_id)
    batch = collator([{"input_ids": e.input_ids, "labels": e.labels} for e in (short, long)])
    row = batch["labels"][0].tolist()
    assert row[len(short.labels) - 1] == tokenizer.eos_token_id  # the real EOS is trained
    assert all(label == IGNORE_INDEX for label in row[len(short.labels):])  # the pads (same id) are not
    assert batch["attention_mask"][0].sum() == len(short.input_ids)


def test_examples_longer_than_max_length_are_dropped_not_truncated(tokenizer, robot_task, caplog):
    rows = [chat(robot_task, "Sit down.", '["sport.Sit()"]')["messages"],
            chat(robot_task, "Sit down. " * 40, '["sport.Sit()"]')["messages"]]
    limit = len(encode(tokenizer, rows[0]).input_ids)
    with caplog.at_level(logging.WARNING):
        kept, dropped = encode_all(tokenizer, rows, limit, "train")
    assert (len(kept), dropped) == (1, 1) and "dropped 1 of 2" in caplog.text
    with pytest.raises(DatasetError, match="max_length"):
        encode_all(tokenizer, rows[1:], limit, "train")


def test_padding_free_row_computes_what_separate_sequences_do(tiny_dir, tokenizer, robot_task):
    """Packed sequences must not attend to each other: per-token logits equal those of separate forwards.

    transformers derives the block-diagonal mask from position_ids only without a KV cache: training passes
    use_cache=False, and so does this test (with a cache the packed rows would attend across sequences)."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_dir, dtype=torch.float32).eval()
    items = [encode(tokenizer, chat(robot_task, u, a)["messages"]).input_ids
             for u, a in [("Sit down.", '["sport.Sit()"]'), ("Wave hello.", '["sport.Hello()"]')]]
    packed = torch.tensor([items[0] + items[1]])
    positions = torch.tensor([list(range(len(items[0]))) + list(range(len(items[1])))])
    with torch.no_grad():
        together = model(input_ids=packed, position_ids=positions, use_cache=False).logits[0]
        apart = torch.cat([model(input_ids=torch.tensor([ids])).logits[0] for ids in items])
    torch.testing.assert_close(together, apart, rtol=1e-4, atol=1e-4)


def test_shared_prefix_rows_give_the_same_loss_and_gradients(tiny_dir, tokenizer, robot_task):
    """The system prompt computed once per row must train exactly like every example computed on its own."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    from train.packed_attention import SharedPrefixCollator, register, shared_prefix_length
    from train.sft_trainer import answer_only_loss

    items = [encode(tokenizer, chat(robot_task, u, a)["messages"]) for u, a in
             [("Sit down.", '["sport.Sit()"]'), ("Wave hello.", '["sport.Hello()"]'),
              ("Go to the kitchen.", '["nav.go_to(place=\'kitchen\')", "nav.wait_for_arrival()"]')]]
    rows = [{"input_ids": e.input_ids, "labels": e.labels} for e in items]
    prefix = shared_prefix_length([e.input_ids for e in items], [e.prompt_length for e in items])
    system_tokens = len(tokenizer(robot_task.system, add_special_tokens=False)["input_ids"])
    assert system_tokens < prefix < min(e.prompt_length for e in items)

    def loss_and_grads(attention: str, batch: dict) -> tuple[torch.Tensor, list[torch.Tensor]]:
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_pretrained(tiny_dir, dtype=torch.float32, attn_implementation=attention)
        model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False))
        batch = dict(batch)
        batch.pop("example_tokens", None)
        loss, _ = answer_only_loss(model, batch)
        loss.backward()
        return loss.detach(), [p.grad for n, p in sorted(model.named_parameters()) if p.requires_grad]

    separate = [loss_and_grads("sdpa", DataCollatorForLanguageModeling(pad_token_id=0)([row])) for row in rows]
    answer_tokens = [sum(label != IGNORE_INDEX for label in e.labels[1:]) for e in items]
    total = sum(answer_tokens)
    expected_loss = sum(loss * n for (loss, _), n in zip(separate, answer_tokens)) / total
    expected_grads = [sum(g[i] * n for (_, g), n in zip(separate, answer_tokens)) / total
                      for i in range(len(separate[0][1]))]

    shared = SharedPrefixCollator(prefix)(rows)
    assert shared["input_ids"].shape[1] == sum(len(e.input_ids) for e in items) - 2 * prefix
    assert shared["example_tokens"] == sum(len(e.input_ids) for e in items)
    loss, grads = loss_and_grads(register(), shared)
    torch.testing.assert_close(loss, expected_loss, rtol=1e-5, atol=1e-5)
    for got, want in zip(grads, expected_grads):  # float32 sums in another order: 1e-3 of the tensor's scale
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-3 * want.abs().max().item())


def test_one_masked_call_attends_like_one_call_per_sequence():
    """The bfloat16 CPU path (one SDPA call over the shared-prefix row, block mask) gives the per-sequence calls'
    output, and no example sees another: changing example 2's keys and values leaves the prefix and example 1 as
    they were."""
    import types

    import torch

    from train.packed_attention import attend_per_sequence, packed_sdpa_attention

    torch.manual_seed(0)
    bounds = torch.tensor([0, 20, 33, 51, 58], dtype=torch.int32)  # prefix of 20, then examples of 13, 18 and 7
    length = int(bounds[-1])
    query, key, value = (torch.randn(1, heads, length, 16, dtype=torch.bfloat16) for heads in (6, 2, 2))
    gqa = types.SimpleNamespace(num_key_value_groups=3)

    masked, _ = packed_sdpa_attention(gqa, query, key, value, None, shared_prefix_bounds=bounds)
    per_sequence = attend_per_sequence(query, key, value, bounds, shared_prefix=True, grouped=True).transpose(1, 2)
    torch.testing.assert_close(masked, per_sequence, rtol=2e-2, atol=2e-2)

    key[:, :, 33:51] += 5.0
    value[:, :, 33:51] -= 5.0
    changed, _ = packed_sdpa_attention(gqa, query, key, value, None, shared_prefix_bounds=bounds)
    assert torch.equal(changed[:, :33], masked[:, :33]) and torch.equal(changed[:, 51:], masked[:, 51:])
    assert not torch.equal(changed[:, 33:51], masked[:, 33:51])
