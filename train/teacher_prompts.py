"""What the teacher is asked (new examples, paraphrases, a system message) and how its answers are read back.

Answers are parsed as JSON, never executed; anything malformed raises ValueError, which the teacher's loop counts as
a malformed response.
"""

from __future__ import annotations

import json
import re

from train.dataset import Example


def generation_prompt(task, n: int, shown: list[Example]) -> list[dict[str, str]]:
    """Messages asking for ``n`` new examples of ``task``, with earlier ones shown to avoid repeats."""
    rules = (f"Every assistant answer must satisfy this contract: a JSON list of call strings using only these "
             f"calls and argument values:\n{task.contract.describe()}\nBetween {task.contract.min_calls} and "
             f"{task.contract.max_calls // task.contract.longest_expansion()} list items (the grammar's bound)." if task.contract.kind == "call_list"
             else f"Every assistant answer is plain text of {task.contract.min_chars}-{task.contract.max_chars} "
                  "characters.")
    examples = "\n".join(json.dumps({"user": e["user"], "assistant": e["assistant"]}) for e in task.examples)
    seen = "\n".join(json.dumps({"user": e.user, "assistant": e.assistant}) for e in shown)
    user = (f"Task: {task.prompt}\n\n{rules}\n\nExamples of the format:\n{examples}\n\n"
            + (f"Examples already written (write different ones: new wording, new combinations):\n{seen}\n\n"
               if seen else "")
            + f"Write {n} new, diverse, realistic examples. Vary length, wording, politeness and complexity. "
              'Answer with one JSON object: {"examples": [{"user": "...", "assistant": "..."}, ...]} where '
              '"assistant" is a string.')
    return [{"role": "system", "content": "You write high-quality training data for fine-tuning a small model. "
                                          "You answer with JSON only."},
            {"role": "user", "content": user}]


def paraphrase_prompt(commands: list[Example]) -> list[dict[str, str]]:
    """Messages asking to rephrase commands without changing what they ask for."""
    listing = "\n".join(json.dumps({"id": i, "user": c.user}) for i, c in enumerate(commands))
    return [{"role": "system", "content": "You rephrase robot commands. You answer with JSON only."},
            {"role": "user", "content":
                "Rephrase each command the way a different person might say it. Keep the meaning exactly: the same "
                "steps in the same order, the same places, objects, surfaces, directions, speeds, durations and "
                "numbers, and any quoted text character for character.\n"
                f"{listing}\n"
                'Answer with one JSON object: {"paraphrases": [{"id": 0, "user": "..."}, ...]}'}]


def system_prompt_request(task) -> list[dict[str, str]]:
    return [{"role": "system", "content": "You write system prompts for fine-tuned models."},
            {"role": "user", "content": f"Task: {task.prompt}\nWrite the system message the fine-tuned model will "
                                        "be given at inference: one or two sentences, no examples. Answer with the "
                                        "system message only."}]


_FENCE = re.compile(r"^```[a-zA-Z]*\s*|\s*```$")


def parse_json_answer(content: str | None) -> object:
    """The JSON value in a teacher answer (code fences and chatter around one object tolerated)."""
    if not content:
        raise ValueError("empty answer")
    text = _FENCE.sub("", content.strip())
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        start, end = text.find("{"), text.rfind("}")
        if start < 0 or end <= start:
            raise ValueError("no JSON object in the answer") from None
        return json.loads(text[start:end + 1])


def _listed(content: str | None, key: str) -> list:
    """The JSON list under ``key`` in a teacher answer, or the answer itself when it is a bare list."""
    data = parse_json_answer(content)
    items = data.get(key) if isinstance(data, dict) else data
    if not isinstance(items, list):
        raise ValueError(f'expected {{"{key}": [...]}}')
    return items


def examples_from_answer(content: str | None, source: str = "teacher") -> list[Example]:
    """Examples in a generation answer; raises ValueError when the answer is malformed."""
    items = _listed(content, "examples")
    out = []
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("user"), str):
            continue
        answer = item.get("assistant")
        if isinstance(answer, list):  # the teacher gave the call list itself instead of its JSON text
            answer = json.dumps(answer)
        if isinstance(answer, str):
            out.append(Example(item["user"], answer, source))
    if items and not out:
        raise ValueError("no item has string 'user' and 'assistant' fields")
    return out


def paraphrases_from_answer(content: str | None, commands: list[Example]) -> list[Example]:
    """Paraphrases of ``commands`` (by id) in an answer, each keeping its command's answer; ValueError if none."""
    items = _listed(content, "paraphrases")
    out = []
    for item in items:
        if isinstance(item, dict) and isinstance(item.get("id"), int) and 0 <= item["id"] < len(commands) \
                and isinstance(item.get("user"), str) and item["user"].strip():
            out.append(Example(item["user"], commands[item["id"]].assistant, "teacher-paraphrase"))
    if not out:
        raise ValueError("no usable paraphrase in the answer")
    return out
