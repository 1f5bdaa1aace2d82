"""Chat data for supervised fine-tuning: render the split files' conversations (edgetune.artifacts.read_split) with
the base model's own chat template, and tokenize them so that the loss falls only on the assistant's answer *and its
end-of-turn token*.

Where users of SFT recipes get burned, and what this module does about it:

- wrong chat template: the tokenizer's own template is used; a model without one gets a ChatML-style fallback whose
  end-of-turn marker is the tokenizer's EOS, with a warning;
- loss on prompt tokens: labels are -100 everywhere except the assistant's answer;
- missing EOS (the model never stops): the end-of-turn token is the last label of every example, verified;
- pad == EOS (SmolLM2): labels are built here, never derived from ``input_ids != pad``, so EOS is never masked;
- truncation that cuts off the answer and its EOS: examples longer than ``max_length`` are dropped and counted.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger(__name__)

IGNORE_INDEX = -100

#: ChatML with the tokenizer's EOS as end of turn: used only for a base model that ships no chat template.
FALLBACK_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + eos_token + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


class DatasetError(ValueError):
    """A dataset that cannot be trained on; the message names the file, the line and the fix."""


@dataclass(frozen=True)
class Encoded:
    """One tokenized conversation: ``labels`` is -100 except on the answer and its end-of-turn token."""

    input_ids: list[int]
    labels: list[int]

    @property
    def prompt_length(self) -> int:
        return next(i for i, label in enumerate(self.labels) if label != IGNORE_INDEX)


def ensure_chat_template(tokenizer: Any) -> bool:
    """Give ``tokenizer`` a chat template if it has none; True when the fallback was installed (and warned about)."""
    if tokenizer.eos_token is None:
        raise DatasetError("the base model's tokenizer has no EOS token, so the model could not learn to stop")
    if getattr(tokenizer, "chat_template", None):
        return False
    logger.warning(
        "the base model ships no chat template; using a ChatML-style fallback that ends each turn with EOS %r. "
        "Serve the model with the same template (the export stage records it).",
        tokenizer.eos_token,
    )
    tokenizer.chat_template = FALLBACK_CHAT_TEMPLATE
    return True


def _token_ids(tokenizer: Any, text: str) -> list[int]:
    # the chat template writes every special token (BOS included) itself
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def render_prompt(tokenizer: Any, messages: list[dict[str, str]]) -> str:
    """The text a model sees before it answers: every message but the last, plus the assistant header."""
    return tokenizer.apply_chat_template(messages[:-1], tokenize=False, add_generation_prompt=True)


def encode(tokenizer: Any, messages: list[dict[str, str]]) -> Encoded:
    """Tokenize one conversation; the labels cover the answer up to and including the end-of-turn (EOS) token.

    The template may write text after the end-of-turn token (ChatML writes a newline); the model never generates
    it, so the sequence is cut right after EOS and EOS is the last label.
    """
    prompt_ids = _token_ids(tokenizer, render_prompt(tokenizer, messages))
    full_ids = _token_ids(tokenizer, tokenizer.apply_chat_template(messages, tokenize=False))
    if full_ids[: len(prompt_ids)] != prompt_ids:
        raise DatasetError(
            "the chat template renders the prompt differently with and without the answer, so prompt and answer "
            "tokens cannot be told apart; use a model whose template is prefix-stable (ChatML, Llama-3, Gemma, ...)"
        )
    answer_ids = full_ids[len(prompt_ids):]
    eos = tokenizer.eos_token_id
    if eos in answer_ids:
        answer_ids = answer_ids[: len(answer_ids) - answer_ids[::-1].index(eos)]
    else:
        answer_ids = answer_ids + [eos]  # templates that leave the end of turn to the tokenizer (e.g. plain text)
    if len(answer_ids) < 2:
        raise DatasetError(f"the answer {messages[-1]['content']!r} tokenizes to nothing")
    return Encoded(prompt_ids + answer_ids, [IGNORE_INDEX] * len(prompt_ids) + answer_ids)


def encode_all(
    tokenizer: Any, conversations: list[list[dict[str, str]]], max_length: int, split: str
) -> tuple[list[Encoded], int]:
    """Encode a split; examples longer than ``max_length`` are dropped (truncating would cut off the EOS).

    Returns the encoded examples and how many were dropped. Every example is checked to end on its EOS label.
    """
    kept, dropped = [], 0
    for messages in conversations:
        item = encode(tokenizer, messages)
        if len(item.input_ids) > max_length:
            dropped += 1
            continue
        assert item.labels[-1] == tokenizer.eos_token_id, "every example must end on its EOS label"
        kept.append(item)
    if dropped:
        logger.warning("%s: dropped %d of %d examples longer than max_length=%d tokens", split, dropped,
                       len(conversations), max_length)
    if not kept:
        raise DatasetError(
            f"{split}: every example is longer than max_length={max_length} tokens; raise max_length"
        )
    return kept, dropped
