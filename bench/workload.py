"""What is benched: the GGUF, the sampling settings and the prompts, read from the run directory.

The bundle (runs/RUN/bundle/manifest.json) decides the model, system prompt, sampling and grammar, exactly as the
server reads them, so every engine in the run gets the same settings. Without a bundle the embedded model and the
task spec stand in. Prompts are the user messages of runs/RUN/data/test.jsonl (the task's examples without one).
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from edgetune.config import ConfigError, from_dict
from edgetune.rundir import RunDir
from edgetune.task import GenerationSpec, TaskSpec, load_task

_QUANT_RE = re.compile(r"\.((?:I?Q\d[\w]*)|F16|BF16|F32)\.gguf$", re.IGNORECASE)


@dataclass
class Workload:
    """The model and requests of one bench run."""

    task: TaskSpec
    model_path: Path
    model_source: str  #: "bundle", "embedded" or "model" (given on the command line)
    quant: str
    system_prompt: str
    sampling: GenerationSpec  #: shared by every engine in the run (max_tokens: the latency levels' cap)
    grammar: str | None
    prompts: list[str]
    references: list[str | None]  #: expected answers (test split) for the quality columns; None when unknown
    prompts_source: str
    answer_max_tokens: int = 0  #: the bundle's own max_tokens: whole answers, for the quality table

    @property
    def model_bytes(self) -> int:
        return self.model_path.stat().st_size

    def messages(self, prompt: str) -> list[dict[str, str]]:
        return [{"role": "system", "content": self.system_prompt}, {"role": "user", "content": prompt}]

    def describe(self) -> dict[str, Any]:
        """The facts bench.json records about the model and settings."""
        return {
            "task": self.task.name,
            "path": str(self.model_path),
            "source": self.model_source,
            "quant": self.quant,
            "bytes": self.model_bytes,
            "system_prompt": self.system_prompt,
            "sampling": asdict(self.sampling),
            "grammar": bool(self.grammar),
            "prompts": len(self.prompts),
            "prompts_source": self.prompts_source,
            "answer_max_tokens": self.answer_max_tokens,
        }


def quant_of(path: Path) -> str:
    """The quantization named in a GGUF file name (``x.Q4_K_M.gguf`` -> ``Q4_K_M``), or ``unknown``."""
    match = _QUANT_RE.search(path.name)
    return match.group(1).upper() if match else "unknown"


def _read_jsonl_prompts(path: Path) -> tuple[list[str], list[str | None]]:
    prompts, references = [], []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            messages = json.loads(line)["messages"]
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise ConfigError(path, f"line {number}", f"not a {{'messages': [...]}} JSON object ({exc})") from exc
        user = next((m["content"] for m in messages if m.get("role") == "user"), None)
        if user is None:
            raise ConfigError(path, f"line {number}", "has no user message; regenerate the data with `make data`")
        prompts.append(user)
        references.append(next((m["content"] for m in messages if m.get("role") == "assistant"), None))
    return prompts, references


def load_workload(run_dir: RunDir, *, model: str = "", max_tokens: int = 0, use_grammar: bool = True,
                  task_name: str = "") -> Workload:
    """Read the model, settings and prompts of ``run_dir``; ``model``/``max_tokens`` override the bundle's."""
    bundle_manifest = run_dir.bundle / "manifest.json"
    bundle: dict[str, Any] = {}
    if bundle_manifest.is_file():
        bundle = json.loads(bundle_manifest.read_text(encoding="utf-8"))
    data_stage = run_dir.stage("data") or {}
    task = load_task(task_name or bundle.get("task") or data_stage.get("task") or "robot_sdk")

    if model:
        model_path, source = Path(model), "model"
    elif bundle:
        chosen = bundle.get("chosen") or {}
        if not chosen.get("file"):
            raise ConfigError(bundle_manifest, "chosen.file", "missing; re-run `make export` to pick a quant")
        model_path, source = run_dir.bundle / chosen["file"], "bundle"
    else:
        from edgetune.embedded import embedded_gguf

        model_path, source = embedded_gguf(), "embedded"
    if not model_path.is_file():
        raise ConfigError("model", str(model_path), "GGUF not found; run `make export` or pass --model PATH.gguf")
    quant = (bundle.get("chosen") or {}).get("quant") if source == "bundle" else None

    spec = {**asdict(task.generation), **(bundle.get("sampling") or {})}  # fields the bundle leaves out: the task's
    sampling = from_dict(GenerationSpec, spec, source=bundle_manifest, path="sampling")
    answer_max_tokens = sampling.max_tokens
    if max_tokens:
        sampling = replace(sampling, max_tokens=max_tokens)
    grammar = (bundle["grammar"] if "grammar" in bundle else task.contract.grammar()) if use_grammar else None

    test_split = run_dir.data / "test.jsonl"
    if test_split.is_file():
        prompts, references = _read_jsonl_prompts(test_split)
        prompts_source = str(test_split)
    else:
        prompts = [ex["user"] for ex in task.examples]
        references = [ex["assistant"] for ex in task.examples]
        prompts_source = f"task {task.name} examples (no {test_split})"
    if not prompts:
        raise ConfigError(prompts_source, "", "no prompts to send; regenerate the data with `make data`")
    return Workload(
        task=task,
        model_path=model_path,
        model_source=source,
        quant=quant or quant_of(model_path),
        system_prompt=bundle.get("system_prompt") or task.system,
        sampling=sampling,
        grammar=grammar or None,
        prompts=prompts,
        references=references,
        prompts_source=prompts_source,
        answer_max_tokens=answer_max_tokens,
    )
