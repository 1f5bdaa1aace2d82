"""The task spec: one YAML per task holding the one task prompt, the system message, generation settings and
the output contract. Every stage reads the task from here (and later from the run directory), never from flags.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from edgetune.config import ConfigError, from_dict, read_yaml
from edgetune.contract import ContractSpec

TASKS_DIR = Path(__file__).resolve().parent / "tasks"


@dataclass
class GenerationSpec:
    """Sampling settings: the task's defaults (evaluation, export checks), and the one shape the server and the
    bench read from a bundle manifest's ``sampling`` entry."""

    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 40
    max_tokens: int = 160
    repeat_penalty: float = 1.0
    #: strings that end an answer. Task YAMLs usually leave it empty (the chat template's end-of-turn token ends
    #: it); export writes the tokenizer's end tokens here in the bundle so serve and bench stop where export's
    #: checks did.
    stop: list[str] = field(default_factory=list)


@dataclass
class DataSizes:
    """How many examples each split gets by default."""

    train: int = 1000
    val: int = 100
    test: int = 200
    seed: int = 0


@dataclass
class TaskSpec:
    """One task: what the model is for, how it is asked, and what a valid answer is."""

    name: str  #: short identifier, also the file name in tasks/
    prompt: str  #: the one task prompt a teacher model turns into a dataset
    system: str  #: system message used in training, evaluation and serving
    contract: ContractSpec  #: what a valid answer is
    description: str = ""
    generation: GenerationSpec = field(default_factory=GenerationSpec)
    data: DataSizes = field(default_factory=DataSizes)
    examples: list[dict[str, str]] = field(default_factory=list)  #: a few {user, assistant} pairs for teachers
    #: a hand-written held-out set (JSONL next to the task YAML) that is scored, never trained or tuned on
    holdout: str = ""
    path: Path | None = field(default=None, init=False, repr=False, compare=False)  #: the YAML it was loaded from

    def check(self):
        if not self.prompt.strip():
            yield "prompt", "the task prompt must not be empty"
        if not self.system.strip():
            yield "system", "the system message must not be empty"
        for i, example in enumerate(self.examples):
            if set(example) != {"user", "assistant"}:
                yield f"examples[{i}]", "each example has exactly the keys 'user' and 'assistant'"
            elif not self.contract.validate(example["assistant"]).valid:
                problems = "; ".join(map(str, self.contract.validate(example["assistant"]).violations))
                yield f"examples[{i}].assistant", f"does not satisfy the contract: {problems}"

    def messages(self, user: str) -> list[dict[str, str]]:
        """The chat a model sees for one request (the command read through the contract's spelling)."""
        return [{"role": "system", "content": self.system},
                {"role": "user", "content": self.contract.read_command(user)}]

    def holdout_path(self) -> Path | None:
        """Where the held-out set lives: ``holdout`` next to the task YAML (in tasks/ for a task built in code)."""
        if not self.holdout:
            return None
        return (self.path.parent if self.path else TASKS_DIR) / self.holdout


@dataclass(frozen=True)
class HoldoutExample:
    """One command of a held-out set, with the answer the contract must judge right and what the command tests."""

    id: str
    user: str
    assistant: str
    kind: str = ""  #: robot_sdk: expressible, open_object, unsupported, unknown_place, injection, unsafe, unclear


_HOLDOUT_KEYS = ("id", "user", "assistant", "kind")


def read_holdout(task: TaskSpec) -> list[HoldoutExample]:
    """The task's held-out set, every line checked (keys, unique ids, a contract-valid answer); [] if it has none.

    Errors name the file, the line and the field, so a broken measurement set never scores silently.
    """
    path = task.holdout_path()
    if path is None:
        return []
    if not path.is_file():
        raise ConfigError(task.path, "holdout", f"{path} not found; the held-out set lives next to the task YAML")
    examples: list[HoldoutExample] = []
    first_line: dict[str, int] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path} line {number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ConfigError(where, "", f"not a JSON object: {exc.msg}") from None
        if not isinstance(record, dict):
            raise ConfigError(where, "", f"must be a JSON object with {', '.join(_HOLDOUT_KEYS)}")
        for key in record:
            if key not in _HOLDOUT_KEYS:
                raise ConfigError(where, key, f"unknown field; known fields: {', '.join(_HOLDOUT_KEYS)}")
        for key in _HOLDOUT_KEYS:
            value = record.get(key, "" if key == "kind" else None)
            if not isinstance(value, str) or (key != "kind" and not value.strip()):
                raise ConfigError(where, key, "must be a non-empty string")
        if record["id"] in first_line:
            raise ConfigError(where, "id", f"{record['id']!r} is already used on line {first_line[record['id']]}")
        first_line[record["id"]] = number
        verdict = task.contract.validate(record["assistant"])
        if not verdict.valid:
            problems = "; ".join(map(str, verdict.violations))
            raise ConfigError(where, "assistant", f"does not satisfy the {task.name} contract: {problems}")
        examples.append(HoldoutExample(**record))
    if not examples:
        raise ConfigError(path, "", "the held-out set is empty")
    return examples


def load_holdout(task: TaskSpec) -> list[list[dict[str, str]]]:
    """The held-out set as conversations shaped like the split files' (system, user, assistant), for scoring."""
    return [[*task.messages(e.user), {"role": "assistant", "content": e.assistant}] for e in read_holdout(task)]


def available_tasks() -> list[str]:
    return sorted(p.stem for p in TASKS_DIR.glob("*.yaml"))


def load_task(name_or_path: str | Path) -> TaskSpec:
    """Load a task by name (``robot_sdk``) or by YAML path; errors name the file and the field."""
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        path = TASKS_DIR / f"{name_or_path}.yaml"
        if not path.is_file():
            raise ConfigError(
                "TASK", str(name_or_path), f"no such task; available: {', '.join(available_tasks())} (or a YAML path)"
            )
    task = from_dict(TaskSpec, read_yaml(path), source=path)
    task.path = path
    holdout = task.holdout_path()
    if holdout is not None and not holdout.is_file():
        raise ConfigError(path, "holdout", f"{holdout} not found; put the held-out JSONL next to the task YAML")
    return task
