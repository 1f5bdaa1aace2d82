"""trl's SFTTrainer, tuned for small models on small machines; imported only when training (torch, trl).

- ``AnswerOnlyTrainer`` projects through the LM head only the positions that predict a label (the answer and its
  EOS): with a 49k vocabulary the head is ~20% of a 135M model's compute, and half of every sequence is prompt.
  It also counts the tokens it trains on, for tokens/s.
- ``TokenProgress`` is a tqdm bar over optimizer steps that shows loss, tokens/s and the ETA.
"""

from __future__ import annotations

import time
from typing import Any

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm
from transformers import TrainerCallback
from trl import SFTTrainer

from train.sft_data import IGNORE_INDEX


class AnswerOnlyTrainer(SFTTrainer):
    """SFTTrainer whose loss computes logits only where there is a label; counts the training tokens it sees."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.train_tokens = 0  #: tokens of the examples trained on (prompt + answer, no padding), this process

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        example_tokens = inputs.pop("example_tokens", None)  # SharedPrefixCollator: tokens before sharing
        if model.training:
            mask = inputs.get("attention_mask")
            if example_tokens is not None:
                self.train_tokens += int(example_tokens)
            else:
                self.train_tokens += int(mask.sum()) if mask is not None else int(inputs["input_ids"].numel())
        loss, outputs = answer_only_loss(model, inputs, num_items_in_batch)
        # like Trainer.compute_loss: num_items_in_batch counts every rank's tokens and DDP averages the gradients
        if self.args.average_tokens_across_devices and num_items_in_batch is not None:
            loss = loss * self.accelerator.num_processes
        return (loss, outputs) if return_outputs else loss


def answer_only_loss(model: Any, inputs: dict[str, Any], num_items_in_batch: Any = None) -> tuple[Any, Any]:
    """Mean cross-entropy over the labelled tokens, projecting through the LM head only the positions that need it.

    ``inputs`` holds ``labels`` (-100 = no loss) and the model inputs (padded with attention_mask, or padding-free
    with position_ids); the KV cache is off, which also lets transformers mask packed sequences from each other.
    """
    inputs = dict(inputs)
    targets = inputs.pop("labels")[:, 1:]  # position t predicts token t + 1
    keep = (targets != IGNORE_INDEX).any(dim=0).nonzero().squeeze(-1)
    outputs = model(**inputs, use_cache=False, logits_to_keep=keep)
    kept = targets[:, keep]
    loss = F.cross_entropy(
        outputs.logits.float().reshape(-1, outputs.logits.size(-1)),
        kept.reshape(-1),
        ignore_index=IGNORE_INDEX,
        reduction="sum",
    )
    count = num_items_in_batch if num_items_in_batch is not None else (kept != IGNORE_INDEX).sum()
    return loss / torch.as_tensor(count, device=loss.device).clamp(min=1), outputs


class TokenProgress(TrainerCallback):
    """Progress over optimizer steps with loss, tokens/s and ETA (main process only)."""

    def __init__(self, trainer: AnswerOnlyTrainer) -> None:
        self.trainer = trainer
        self.bar: tqdm | None = None
        self.started = 0.0
        self.loss: float | None = None

    def on_train_begin(self, args, state, control, **kwargs):
        self.started = time.perf_counter()
        self.bar = tqdm(
            total=state.max_steps, initial=state.global_step, desc="train", unit="step",
            disable=not state.is_world_process_zero, dynamic_ncols=True,
        )

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs:
            self.loss = logs["loss"]
        if self.bar is not None and logs and "eval_loss" in logs:
            self.bar.write(f"step {state.global_step}: val loss {logs['eval_loss']:.4f}")

    def on_step_end(self, args, state, control, **kwargs):
        if self.bar is None:
            return
        elapsed = max(time.perf_counter() - self.started, 1e-9)
        tokens_per_second = self.trainer.train_tokens * args.world_size / elapsed
        postfix = {"tok/s": f"{tokens_per_second:.0f}"}
        if self.loss is not None:
            postfix["loss"] = f"{self.loss:.3f}"
        self.bar.set_postfix(postfix, refresh=False)
        self.bar.update(state.global_step - self.bar.n)

    def on_train_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.close()
