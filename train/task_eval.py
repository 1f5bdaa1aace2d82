"""The task metric by generation: batched greedy decoding (left padding, KV cache, stop at end of turn) of the test
prompts, scored by the task's contract scorer (exact match after normalisation, valid rate, per-call P/R/F1).

Batches are formed from prompts of similar length (sorted), so little compute goes to padding; a batch stops as soon
as every row has produced its end-of-turn token.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

from edgetune.contract import Score
from edgetune.task import TaskSpec
from train.sft_data import render_prompt


@dataclass
class TaskEval(Score):
    """What one model scored on a set of test conversations, with what it cost."""

    seconds: float = 0.0
    generated_tokens: int = 0
    max_new_tokens: int = 0
    mistakes: list[dict[str, str]] = field(default_factory=list)  #: the first few wrong answers, for a quick look


def stop_token_ids(tokenizer: Any) -> list[int]:
    """Tokens that end an answer: EOS plus ChatML's end of turn where the vocabulary has it."""
    ids = [tokenizer.eos_token_id]
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    if isinstance(im_end, int) and im_end != tokenizer.unk_token_id and im_end not in ids:
        ids.append(im_end)
    return ids


def answer_budget(tokenizer: Any, references: list[str], margin: int) -> int:
    """max_new_tokens from the data: the longest reference answer plus a margin (and its end-of-turn token)."""
    return max(len(tokenizer(ref, add_special_tokens=False)["input_ids"]) for ref in references) + 1 + margin


def generate_answers(
    model: Any,
    tokenizer: Any,
    prompts: list[str],
    max_new_tokens: int,
    batch_size: int,
    desc: str = "generate",
) -> tuple[list[str], int]:
    """Greedy answers to ``prompts`` (rendered chat prompts), in order; also the number of tokens generated."""
    import torch
    from tqdm.auto import tqdm

    stops = stop_token_ids(tokenizer)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    encoded = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    order = sorted(range(len(prompts)), key=lambda i: len(encoded[i]), reverse=True)
    answers: list[str] = [""] * len(prompts)
    generated = 0
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    with torch.inference_mode(), tqdm(total=len(prompts), desc=desc, unit="ex", leave=False) as bar:
        for start in range(0, len(order), batch_size):
            rows = order[start:start + batch_size]
            width = max(len(encoded[i]) for i in rows)
            input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
            attention = torch.zeros((len(rows), width), dtype=torch.long)
            for r, i in enumerate(rows):  # left padding: every row's last prompt token sits in the last column
                input_ids[r, width - len(encoded[i]):] = torch.tensor(encoded[i])
                attention[r, width - len(encoded[i]):] = 1
            out = model.generate(
                input_ids=input_ids.to(device),
                attention_mask=attention.to(device),
                max_new_tokens=max_new_tokens,
                do_sample=False,
                temperature=None,
                top_p=None,
                top_k=None,
                eos_token_id=stops,
                pad_token_id=pad_id,
                use_cache=True,
            )
            for r, i in enumerate(rows):
                new = out[r, width:].tolist()
                cut = next((k for k, t in enumerate(new) if t in stops), len(new))
                generated += cut + (cut < len(new))
                answers[i] = tokenizer.decode(new[:cut], skip_special_tokens=True).strip()
            bar.update(len(rows))
    model.train(was_training)
    return answers, generated


def evaluate(
    model: Any,
    tokenizer: Any,
    task: TaskSpec,
    conversations: list[list[dict[str, str]]],
    max_new_tokens: int,
    batch_size: int,
    desc: str,
    keep_mistakes: int = 5,
) -> TaskEval:
    """Generate an answer for every conversation's prompt and score it against the conversation's answer."""
    started = time.perf_counter()
    prompts = [render_prompt(tokenizer, messages) for messages in conversations]
    references = [messages[-1]["content"] for messages in conversations]
    predictions, generated = generate_answers(model, tokenizer, prompts, max_new_tokens, batch_size, desc)
    score = task.contract.score(predictions, references)
    mistakes = [
        {"user": conv[-2]["content"], "expected": ref, "got": pred}
        for conv, ref, pred in zip(conversations, references, predictions)
        if task.contract.score([pred], [ref]).exact_match < 1.0
    ][:keep_mistakes]
    return TaskEval(**asdict(score), seconds=round(time.perf_counter() - started, 2), generated_tokens=generated,
                    max_new_tokens=max_new_tokens, mistakes=mistakes)
