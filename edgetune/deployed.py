"""What a run deploys: the one answer serve, bench, compare and prompt optimization share.

The bundle (``runs/RUN/bundle/manifest.json``) decides the GGUF, the system prompt, the sampling, the grammar and the
contract; without a bundle the embedded model answers with the task spec's settings (the task the data stage
recorded, else ``robot_sdk``). A GGUF given on the command line replaces the model and keeps the rest. Before this
module, serve filled a bundle's gaps from GenerationSpec's defaults and bench from the task's settings, so the two
could send different requests for one bundle; the typed manifest has no gaps to fill.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path

from edgetune.artifacts import DataStage, bundle_manifest_path, read_bundle_manifest, read_stage
from edgetune.config import ConfigError
from edgetune.contract import ContractSpec
from edgetune.rundir import RunDir
from edgetune.task import GenerationSpec, TaskSpec, load_task

DEFAULT_TASK = "robot_sdk"
_QUANT_RE = re.compile(r"\.((?:I?Q\d[\w]*)|F16|BF16|F32)\.gguf$", re.IGNORECASE)


@dataclass(frozen=True)
class Deployed:
    """The model a run answers with and how it is prompted."""

    task: TaskSpec
    contract: ContractSpec  #: the bundle's recorded contract (the task's without a bundle)
    model_path: Path
    source: str  #: "bundle", "embedded" or "flag" (a GGUF given on the command line)
    quant: str
    sha256: str  #: the bundle's recorded sha256 of the chosen GGUF ("" for any other model)
    system_prompt: str
    sampling: GenerationSpec  #: used where a request leaves a field unset
    grammar: str | None  #: the contract's GBNF (None for text tasks, or when a caller turned it off)
    few_shot: list[dict[str, str]] = field(default_factory=list)  #: chat turns put before the user's
    remote_model: str = ""  #: the remote fallback's model id (serve: flags, the OpenAI fine-tune, the environment)
    remote_base_url: str = ""

    @property
    def model_bytes(self) -> int:
        return self.model_path.stat().st_size

    def chat(self, user: str, few_shot: bool = True) -> list[dict[str, str]]:
        """The chat for one task command (few-shot turns only help a model that was not fine-tuned on the task), the
        command read through the recorded contract's spelling, as in training."""
        shots = self.few_shot if few_shot else []
        return [{"role": "system", "content": self.system_prompt}, *shots,
                {"role": "user", "content": self.contract.read_command(user)}]


def quant_of(path: Path) -> str:
    """The quantization named in a GGUF file name (``x.Q4_K_M.gguf`` -> ``Q4_K_M``), or ``unknown``."""
    match = _QUANT_RE.search(path.name)
    return match.group(1).upper() if match else "unknown"


def resolve_deployed(run_dir: RunDir, *, model: str = "", task: str = "", fetch: bool = False) -> Deployed:
    """What ``run_dir`` deploys; ``model`` (a GGUF path) replaces the model, ``task`` must match a bundle's task and
    picks the task without one; ``fetch`` lets the embedded model be downloaded when it is missing."""
    if bundle_manifest_path(run_dir.bundle).is_file():
        manifest = read_bundle_manifest(run_dir.bundle)
        if task and task != manifest.task:
            raise ConfigError("command line", "--task", f"{run_dir.bundle} serves task {manifest.task!r}; drop --task")
        spec = load_task(manifest.task)
        deployed = Deployed(
            task=spec, contract=manifest.contract, model_path=manifest.model_path(run_dir.bundle), source="bundle",
            quant=manifest.chosen.quant, sha256=manifest.chosen.sha256, system_prompt=manifest.system_prompt,
            sampling=replace(manifest.sampling, stop=list(manifest.sampling.stop)), grammar=manifest.grammar)
    else:
        from edgetune.embedded import embedded_gguf

        data = read_stage(run_dir, DataStage)
        spec = load_task(task or (data.task if data else "") or DEFAULT_TASK)
        path = embedded_gguf(fetch=fetch)
        deployed = Deployed(
            task=spec, contract=spec.contract, model_path=path, source="embedded", quant=quant_of(path), sha256="",
            system_prompt=spec.system, sampling=replace(spec.generation, stop=list(spec.generation.stop)),
            grammar=spec.contract.grammar())
    if model:
        path = Path(model)
        if not path.is_file():
            raise ConfigError("command line", "--model", f"{path} does not exist; pass a GGUF file")
        deployed = replace(deployed, model_path=path, source="flag", quant=quant_of(path), sha256="")
    return deployed
