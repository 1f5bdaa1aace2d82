"""What to serve: the export bundle of a run when there is one, the embedded model with the task spec otherwise.

The bundle describes itself (``runs/RUN/bundle/manifest.json``: chosen GGUF, system prompt, sampling, grammar,
contract, task), so the server re-types nothing. The remote backend's model comes from the OpenAI fine-tuning
stage (``runs/RUN/openai_ft.json`` or the run manifest's ``openai_ft`` entry) unless flags or the environment say
otherwise.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from edgetune.config import ConfigError, from_dict
from edgetune.contract import ContractSpec
from edgetune.demos import DEMOS_FILE, read_demos
from edgetune.rundir import RunDir
from edgetune.task import GenerationSpec, TaskSpec, load_task
from serve.config import ServeConfig

DEFAULT_TASK = "robot_sdk"


@dataclass
class Served:
    """Everything the backends need to answer a request."""

    model_path: Path
    source: str  #: "bundle", "embedded" or "flag"
    task: TaskSpec
    contract: ContractSpec
    system_prompt: str
    sampling: GenerationSpec  #: used when a request leaves a field unset
    grammar: str | None  #: the contract's GBNF (None for text tasks)
    quant: str = ""
    sha256: str = ""
    few_shot: list[dict[str, str]] = field(default_factory=list)  #: chat turns put before the user's
    remote_model: str = ""
    remote_base_url: str = ""

    def chat(self, user: str, few_shot: bool = True) -> list[dict[str, str]]:
        """The chat for one task command (few-shot turns only help a model that was not fine-tuned on the task)."""
        shots = self.few_shot if few_shot else []
        return [{"role": "system", "content": self.system_prompt}, *shots, {"role": "user", "content": user}]


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ConfigError(path, "", f"not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(path, "", "must hold a JSON object")
    return data


def _from_bundle(bundle: Path) -> dict[str, Any]:
    manifest_path = bundle / "manifest.json"
    manifest = _read_json(manifest_path)
    chosen = manifest.get("chosen")
    if not isinstance(chosen, dict) or not chosen.get("file"):
        raise ConfigError(manifest_path, "chosen.file", "missing; re-run `make export` to rebuild the bundle")
    model_path = bundle / chosen["file"]
    if not model_path.is_file():
        raise ConfigError(manifest_path, "chosen.file", f"{model_path} does not exist; re-run `make export`")
    task = load_task(manifest.get("task") or DEFAULT_TASK)
    contract = task.contract
    if isinstance(manifest.get("contract"), dict):
        contract = from_dict(ContractSpec, manifest["contract"], source=manifest_path, path="contract")
    sampling = dict(manifest.get("sampling") or {})
    return {
        "model_path": model_path,
        "source": "bundle",
        "task": task,
        "contract": contract,
        "system_prompt": manifest.get("system_prompt") or task.system,
        "sampling": from_dict(GenerationSpec, sampling, source=manifest_path, path="sampling"),
        "grammar": manifest["grammar"] if "grammar" in manifest else contract.grammar(),
        "quant": str(chosen.get("quant", "")),
        "sha256": str(chosen.get("sha256", "")),
    }


def _from_task(task_name: str) -> dict[str, Any]:
    from edgetune.embedded import embedded_gguf

    task = load_task(task_name or DEFAULT_TASK)
    return {
        "model_path": embedded_gguf(fetch=False),
        "source": "embedded",
        "task": task,
        "contract": task.contract,
        "system_prompt": task.system,
        "sampling": replace(task.generation, stop=list(task.generation.stop)),
        "grammar": task.contract.grammar(),
        "quant": "Q4_1",
    }


def _remote(config: ServeConfig, run: RunDir) -> tuple[str, str]:
    """(model, base_url) of the remote backend: flags, then the run's OpenAI fine-tune, then the environment
    ($EDGETUNE_REMOTE_MODEL; an empty base_url is resolved by edgetune.endpoint)."""
    recorded: dict[str, Any] = {}
    ft_file = run.root / "openai_ft.json"
    if ft_file.is_file():
        recorded = _read_json(ft_file)
    elif run.manifest_path.is_file():
        recorded = run.stage("openai_ft") or {}
    model = config.remote_model or str(recorded.get("model") or "") or os.environ.get("EDGETUNE_REMOTE_MODEL", "")
    base_url = config.remote_base_url or str(recorded.get("base_url") or "")
    return model, base_url


def resolve(config: ServeConfig) -> Served:
    """What ``config`` serves; errors name the file or flag and the fix."""
    run = RunDir.named(config.run, config.runs_dir or None)
    if run.bundle.joinpath("manifest.json").is_file():
        facts = _from_bundle(run.bundle)
        if config.task and config.task != facts["task"].name:
            raise ConfigError("command line", "--task", f"{run.bundle} serves task {facts['task'].name!r}; drop --task")
    else:
        facts = _from_task(config.task)
    if config.model:
        model_path = Path(config.model)
        if not model_path.is_file():
            raise ConfigError("command line", "--model", f"{model_path} does not exist; pass a GGUF file")
        facts.update(model_path=model_path, source="flag", quant="", sha256="")
    few_shot = config.few_shot == "on" or (config.few_shot == "auto" and facts["source"] == "embedded")
    if config.few_shot == "dspy":
        demos = read_demos(run.prompt_opt / DEMOS_FILE)
        if demos.task != facts["task"].name:
            raise ConfigError(run.prompt_opt / DEMOS_FILE, "task", f"demos are for {demos.task!r}, the server serves "
                              f"{facts['task'].name!r}; re-run `python -m train prompt-opt --run {config.run}`")
        facts["few_shot"] = demos.turns()
    elif few_shot:
        task = facts["task"]
        facts["few_shot"] = [
            {"role": role, "content": example[key]}
            for example in task.examples
            for role, key in (("user", "user"), ("assistant", "assistant"))
        ]
    facts["remote_model"], facts["remote_base_url"] = _remote(config, run)
    return Served(**facts)
