"""What is benched: the run's deployment (edgetune.deployed, exactly what the server reads) and the prompts.

Every engine in the run gets the deployment's model, system prompt, sampling and grammar. Prompts are the user
commands of the test split (the task's examples without one).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

from edgetune.artifacts import read_split, split_path
from edgetune.config import ConfigError
from edgetune.deployed import Deployed, resolve_deployed
from edgetune.rundir import RunDir


@dataclass(frozen=True)
class Workload:
    """The requests of one bench run against what is deployed."""

    deployed: Deployed  #: sampling.max_tokens: the latency levels' cap; grammar None when the bench turns it off
    prompts: list[str]
    references: list[str | None]  #: expected answers (test split) for the quality columns; None when unknown
    prompts_source: str
    answer_max_tokens: int = 0  #: the deployment's own max_tokens: whole answers, for the quality table

    def describe(self) -> dict[str, Any]:
        """The facts bench.json records about the model and settings."""
        d = self.deployed
        return {
            "task": d.task.name,
            "path": str(d.model_path),
            "source": d.source,
            "quant": d.quant,
            "bytes": d.model_bytes,
            "system_prompt": d.system_prompt,
            "sampling": asdict(d.sampling),
            "grammar": bool(d.grammar),
            "prompts": len(self.prompts),
            "prompts_source": self.prompts_source,
            "answer_max_tokens": self.answer_max_tokens,
        }


def load_workload(run_dir: RunDir, *, model: str = "", max_tokens: int = 0, use_grammar: bool = True) -> Workload:
    """Read the deployment and prompts of ``run_dir``; ``model``/``max_tokens`` override the deployment's."""
    deployed = resolve_deployed(run_dir, model=model, fetch=True)
    answer_max_tokens = deployed.sampling.max_tokens
    if max_tokens:
        deployed = replace(deployed, sampling=replace(deployed.sampling, max_tokens=max_tokens))
    if not use_grammar:
        deployed = replace(deployed, grammar=None)

    test_split = split_path(run_dir, "test")
    if test_split.is_file():
        conversations = read_split(test_split)
        prompts, references = [c.user for c in conversations], [c.answer for c in conversations]
        prompts_source = str(test_split)
    else:
        task = deployed.task
        prompts = [ex["user"] for ex in task.examples]
        references = [ex["assistant"] for ex in task.examples]
        prompts_source = f"task {task.name} examples (no {test_split})"
    if not prompts:
        raise ConfigError(prompts_source, "", "no prompts to send; regenerate the data with `make data`")
    return Workload(deployed, prompts, list(references), prompts_source, answer_max_tokens)
