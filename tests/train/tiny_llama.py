"""A tiny random Llama (hidden 64, 2 layers) with a byte-level BPE tokenizer trained here, ChatML chat template and
pad == EOS like SmolLM2, plus a run directory holding a small robot_sdk dataset. Built in seconds, no downloads."""

from __future__ import annotations

import json
from pathlib import Path

from edgetune.rundir import RunDir, sha256_file
from edgetune.task import TaskSpec

CHATML = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + "
    "'\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]

#: commands -> answers valid under robot_sdk's contract (the task's own examples are added to these)
EXTRA_EXAMPLES = [
    ("Go to the kitchen.", '["nav.go_to(place=\'kitchen\')", "nav.wait_for_arrival()"]'),
    ("Sit down.", '["sport.Sit()"]'),
    ("Wave hello.", '["sport.Hello()"]'),
    ("Report your position.", '["status.report_position()"]'),
    ("Take a photo.", '["camera.take_photo()"]'),
    ("Stop moving.", '["sport.StopMove()"]'),
    ("Go to the garage and report your battery.", '["nav.go_to(place=\'garage\')", "nav.wait_for_arrival()", '
     '"status.report_battery()"]'),
    ("Scan the area.", '["perception.scan_area()"]'),
]


def examples(task: TaskSpec) -> list[tuple[str, str]]:
    return [(e["user"], e["assistant"]) for e in task.examples] + EXTRA_EXAMPLES


def build_tiny_llama(directory: Path, task: TaskSpec, chat_template: str | None = CHATML) -> Path:
    """Save a tiny random LlamaForCausalLM + tokenizer as a Hugging Face model directory."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    corpus = [task.system] + [text for pair in examples(task) for text in pair]
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=SPECIAL,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    bpe.train_from_iterator(corpus, trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token="<|im_start|>", eos_token="<|im_end|>",
                                        pad_token="<|im_end|>", unk_token="<|endoftext|>")
    if chat_template:
        tokenizer.chat_template = chat_template
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=512, tie_word_embeddings=True, initializer_range=0.3,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    model = LlamaForCausalLM(config)
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def chat(task: TaskSpec, user: str, answer: str) -> dict:
    return {"messages": [{"role": "system", "content": task.system}, {"role": "user", "content": user},
                         {"role": "assistant", "content": answer}]}


def build_run(runs_dir: Path, task: TaskSpec, name: str = "tiny", repeat: int = 2) -> RunDir:
    """runs_dir/name/data/{train,val,test}.jsonl and a manifest "data" stage, as `make data` leaves them."""
    run_dir = RunDir.named(name, runs_dir)
    pairs = examples(task)
    splits = {"train": pairs * repeat, "val": pairs[:4], "test": pairs[:6]}
    run_dir.data.mkdir(parents=True, exist_ok=True)
    for split, rows in splits.items():
        lines = "".join(json.dumps(chat(task, u, a)) + "\n" for u, a in rows)
        (run_dir.data / f"{split}.jsonl").write_text(lines, encoding="utf-8")
    run_dir.record("data", task=task.name, counts={k: len(v) for k, v in splits.items()},
                   sha256={k: sha256_file(run_dir.data / f"{k}.jsonl") for k in splits})
    return run_dir
