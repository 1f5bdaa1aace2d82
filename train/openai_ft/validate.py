"""Validation of a chat JSONL file as OpenAI does it before training (rule names follow OpenAI's data-preparation
cookbook), and the token estimate of one example."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

ROLES = ("system", "developer", "user", "assistant", "tool", "function")
EXAMPLE_KEYS = ("messages", "tools", "functions", "parallel_tool_calls")
MESSAGE_KEYS = ("role", "content", "name", "weight", "function_call", "tool_calls", "tool_call_id")


@dataclass(frozen=True)
class DataProblem:
    """One reason OpenAI would reject a file: where (file, 1-based line) and which rule."""

    path: Path
    line: int | None  #: None for file-level problems such as too few examples
    rule: str
    detail: str

    def __str__(self) -> str:
        where = f"{self.path} line {self.line}" if self.line else str(self.path)
        return f"{where}: {self.rule}: {self.detail}"


class DataValidationError(ValueError):
    """The dataset would be rejected by OpenAI; lists every problem so one fix round is enough."""

    SHOWN = 20

    def __init__(self, problems: list[DataProblem]):
        self.problems = problems
        lines = [str(p) for p in problems[: self.SHOWN]]
        if len(problems) > self.SHOWN:
            lines.append(f"... and {len(problems) - self.SHOWN} more")
        super().__init__(f"{len(problems)} problem(s) OpenAI would reject:\n  " + "\n  ".join(lines))


def estimate_tokens(messages: list[dict[str, Any]]) -> int:
    """Tokens of one chat example: ~4 UTF-8 bytes a token plus OpenAI's 3 per message and 3 for the reply.

    An estimate (within ~25% on English and code); OpenAI's tokenizer is not available offline.
    """
    text_bytes = sum(len(_text(m.get("content")).encode("utf-8")) for m in messages)
    return math.ceil(text_bytes / 4) + 3 * len(messages) + 3


def _text(content: Any) -> str:
    """The text of a message's content: a string, or the text parts of a content-part list."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return ""


def _example_problems(example: Any) -> Iterable[tuple[str, str]]:
    """(rule, detail) for everything wrong with one parsed line."""
    if not isinstance(example, dict):
        yield "data_type", f"each line must be a JSON object, got {type(example).__name__}"
        return
    for key in example:
        if key not in EXAMPLE_KEYS:
            yield "unrecognized_key", f"unknown top-level key {key!r}; allowed: {', '.join(EXAMPLE_KEYS)}"
    messages = example.get("messages")
    if not isinstance(messages, list) or not messages:
        yield "missing_messages_list", "needs a non-empty 'messages' list"
        return
    for i, message in enumerate(messages):
        at = f"messages[{i}]"
        if not isinstance(message, dict):
            yield "data_type", f"{at} must be an object with 'role' and 'content'"
            continue
        for key in ("role", "content"):
            if key not in message:
                yield "message_missing_key", f"{at} has no {key!r}"
        for key in message:
            if key not in MESSAGE_KEYS:
                yield "message_unrecognized_key", f"{at} has unknown key {key!r}; allowed: {', '.join(MESSAGE_KEYS)}"
        role = message.get("role")
        if "role" in message and role not in ROLES:
            yield "unrecognized_role", f"{at} has role {role!r}; allowed: {', '.join(ROLES)}"
        content = message.get("content")
        calls = message.get("tool_calls") or message.get("function_call")
        if "content" in message and not (content is None and calls) and not isinstance(content, (str, list)):
            yield "missing_content", f"{at}.content must be a string, got {type(content).__name__}"
        elif isinstance(content, (str, list)) and not _text(content).strip() and not calls:
            yield "empty_content", f"{at} ({role}) has empty content"
        if "weight" in message and (role != "assistant" or message["weight"] not in (0, 1)):
            yield "invalid_weight", f"{at}.weight must be 0 or 1 and only on assistant messages"
    if not any(isinstance(m, dict) and m.get("role") == "assistant" for m in messages):
        yield "example_missing_assistant_message", "no message with role 'assistant' (the answer to learn)"


def validate_chat_file(path: Path, *, min_examples: int, max_example_tokens: int) -> list[int]:
    """Check a chat JSONL file as OpenAI will; return each example's estimated tokens or raise DataValidationError."""
    problems: list[DataProblem] = []
    tokens: list[int] = []
    examples = 0
    with open(path, encoding="utf-8") as fh:
        for number, raw in enumerate(fh, start=1):
            if not raw.strip():
                problems.append(DataProblem(path, number, "blank_line", "empty line; OpenAI expects one example per line"))
                continue
            examples += 1
            try:
                example = json.loads(raw)
            except json.JSONDecodeError as exc:
                problems.append(DataProblem(path, number, "invalid_json", f"not valid JSON: {exc.msg} at column {exc.colno}"))
                continue
            found = [DataProblem(path, number, rule, detail) for rule, detail in _example_problems(example)]
            problems.extend(found)
            if found:
                continue
            count = estimate_tokens(example["messages"])
            if count > max_example_tokens:
                problems.append(DataProblem(path, number, "too_many_tokens",
                                            f"~{count} tokens, over the model's {max_example_tokens} per example"))
            tokens.append(count)
    if examples < min_examples:
        problems.append(DataProblem(path, None, "too_few_examples",
                                    f"{examples} example(s); OpenAI needs at least {min_examples}"))
    if problems:
        raise DataValidationError(problems)
    return tokens

