"""What to serve: the run's deployment (edgetune.deployed: the export bundle, or the embedded model with the task
spec), plus what only the server adds: the few-shot turns and the remote backend's model.

The remote backend's model comes from the OpenAI fine-tuning stage (edgetune.artifacts.read_openai_ft) unless flags
or the environment say otherwise.
"""

from __future__ import annotations

import os
from dataclasses import replace

from edgetune.artifacts import read_openai_ft
from edgetune.config import ConfigError
from edgetune.demos import DEMOS_FILE, read_demos
from edgetune.deployed import Deployed, resolve_deployed
from edgetune.rundir import RunDir
from serve.config import ServeConfig


def _remote(config: ServeConfig, run: RunDir) -> tuple[str, str]:
    """(model, base_url) of the remote backend: flags, then the run's OpenAI fine-tune, then the environment
    ($EDGETUNE_REMOTE_MODEL; an empty base_url is resolved by edgetune.endpoint)."""
    recorded = read_openai_ft(run)
    model = (config.remote_model or (recorded.model if recorded else None)
             or os.environ.get("EDGETUNE_REMOTE_MODEL", ""))
    base_url = config.remote_base_url or (recorded.base_url if recorded else None) or ""
    return model, base_url


def resolve(config: ServeConfig) -> Deployed:
    """What ``config`` serves; errors name the file or flag and the fix."""
    run = RunDir.named(config.run, config.runs_dir or None)
    deployed = resolve_deployed(run, model=config.model, task=config.task)
    few_shot = config.few_shot == "on" or (config.few_shot == "auto" and deployed.source == "embedded")
    turns: list[dict[str, str]] = []
    if config.few_shot == "dspy":
        demos = read_demos(run.prompt_opt / DEMOS_FILE)
        if demos.task != deployed.task.name:
            raise ConfigError(run.prompt_opt / DEMOS_FILE, "task", f"demos are for {demos.task!r}, the server serves "
                              f"{deployed.task.name!r}; re-run `python -m train prompt-opt --run {config.run}`")
        turns = demos.turns()
    elif few_shot:
        turns = [
            {"role": role, "content": example[key]}
            for example in deployed.task.examples
            for role, key in (("user", "user"), ("assistant", "assistant"))
        ]
    model, base_url = _remote(config, run)
    return replace(deployed, few_shot=turns, remote_model=model, remote_base_url=base_url)
