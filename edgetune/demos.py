"""The few-shot demos artifact, ``runs/RUN/prompt_opt/demos.json``: the command/answer pairs a prompt optimizer
(DSPy, ``python -m train prompt-opt``) chose for the untuned base model.

One writer (train.prompt_opt) and one reader (serve, bench.compare) share this module, so the server takes the
optimized prompt as plain JSON without importing dspy: ``python -m serve --few-shot dspy`` puts the pairs before
the user's command as chat turns, exactly the chat the optimizer scored.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgetune.config import ConfigError, read_json_object
from edgetune.rundir import atomic_write_json

DEMOS_FILE = "demos.json"
SCHEMA = "edgetune.demos/v1"


@dataclass
class Demos:
    """Few-shot pairs for one task, with what produced them."""

    task: str
    pairs: list[dict[str, str]]  #: {"user": command, "assistant": answer}, in prompt order
    facts: dict[str, Any] = field(default_factory=dict)  #: optimizer, budget, scores (informational)

    def turns(self) -> list[dict[str, str]]:
        """The pairs as chat turns (user, assistant, user, ...)."""
        return [{"role": role, "content": pair[role]} for pair in self.pairs for role in ("user", "assistant")]


def write_demos(path: Path, demos: Demos) -> Path:
    return atomic_write_json(path, {"schema": SCHEMA, "task": demos.task, "pairs": demos.pairs, "facts": demos.facts})


def read_demos(path: Path) -> Demos:
    """Read and check ``path``; errors name the file, the field and the fix."""
    fix = "re-run `python -m train prompt-opt --run RUN` (or `make compare`)"
    data = read_json_object(path, fix)
    if data.get("schema") != SCHEMA:
        raise ConfigError(path, "schema", f"expected {SCHEMA!r}; {fix}")
    pairs = data.get("pairs")
    if not isinstance(pairs, list):
        raise ConfigError(path, "pairs", f"must be a list of {{user, assistant}} objects; {fix}")
    for i, pair in enumerate(pairs):
        if not (isinstance(pair, dict) and set(pair) == {"user", "assistant"}
                and all(isinstance(v, str) and v.strip() for v in pair.values())):
            raise ConfigError(path, f"pairs[{i}]", f"must be {{'user': str, 'assistant': str}}, both non-empty; {fix}")
    return Demos(task=str(data.get("task") or ""), pairs=pairs, facts=dict(data.get("facts") or {}))
