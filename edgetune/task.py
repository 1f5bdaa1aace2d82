"""The task spec: one YAML per task holding the one task prompt, the system message, generation settings and
the output contract. Every stage reads the task from here (and later from the run directory), never from flags.
"""

from __future__ import annotations

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
        """The chat a model sees for one request."""
        return [{"role": "system", "content": self.system}, {"role": "user", "content": user}]


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
    return from_dict(TaskSpec, read_yaml(path), source=path)
