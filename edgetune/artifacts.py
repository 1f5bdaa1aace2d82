"""The hand-offs between stages, each a typed dataclass with one writer and one reader (issue 17).

=========================================== ===================================== =======================
artifact                                    writer                                reader
=========================================== ===================================== =======================
runs/RUN/data/{train,val,test}.jsonl        write_split (train data)              read_split
run manifest stages data/train/export       record_stage (each stage)             read_stage
runs/RUN/bundle/manifest.json               write_bundle_manifest (export)        read_bundle_manifest
runs/RUN/openai_ft.json + stage openai_ft   write_openai_ft (openai-ft)           read_openai_ft
=========================================== ===================================== =======================

Every file name lives here, so a stage never spells another stage's path. A reader checks each field's presence
and type and raises ``ConfigError`` naming the file and the field; the JSON keys and their order are those the
stages wrote before this module existed, so older run directories still load. Each artifact has a schema version;
today's files are version 1 and do not spell it (a ``schema_version`` key, when present, must be one this reader
knows). This module imports only the standard library and edgetune's config core: serve imports it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar, Iterable, TypeVar

from edgetune.config import ConfigError, from_dict, read_json_object, to_dict
from edgetune.contract import ContractSpec
from edgetune.rundir import RunDir, atomic_write, atomic_write_json
from edgetune.task import GenerationSpec

SCHEMA_VERSION = 1  #: the version of every artifact below; a reader rejects a newer one
SPLITS = ("train", "val", "test")
ROLES = ("system", "user", "assistant")
BUNDLE_MANIFEST = "manifest.json"
OPENAI_FT_FILE = "openai_ft.json"
T = TypeVar("T")


def _check_version(data: dict[str, Any], source: Path | str) -> dict[str, Any]:
    """``data`` without its ``schema_version`` (absent: version 1); a version this reader does not know is an error."""
    data = dict(data)
    version = data.pop("schema_version", 1)
    if version != SCHEMA_VERSION:
        raise ConfigError(source, "schema_version", f"version {version!r}; this edgetune reads version "
                          f"{SCHEMA_VERSION}: rebuild it with this edgetune or use the edgetune that wrote it")
    return data


def _read_object(path: Path, rebuild: str) -> dict[str, Any]:
    return _check_version(read_json_object(path, rebuild), path)


# ----------------------------------------------------------------------------------------------- split files
@dataclass(frozen=True)
class Conversation:
    """One line of a split file (OpenAI chat format): a system turn, the user's command, the reference answer."""

    messages: tuple[dict[str, str], ...]

    @property
    def turns(self) -> list[dict[str, str]]:
        """Every turn, answer included (a copy: callers may extend it)."""
        return [dict(m) for m in self.messages]

    @property
    def prompt(self) -> list[dict[str, str]]:
        """The chat a model sees before it answers (every turn but the answer)."""
        return [dict(m) for m in self.messages[:-1]]

    @property
    def user(self) -> str:
        return self.messages[-2]["content"]

    @property
    def answer(self) -> str:
        return self.messages[-1]["content"]

    def record(self) -> dict[str, Any]:
        return {"messages": self.turns}


def split_path(run_dir: RunDir, name: str) -> Path:
    if name not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {name!r}")
    return run_dir.data / f"{name}.jsonl"


def write_split(run_dir: RunDir, name: str, conversations: Iterable[Conversation]) -> Path:
    """Write one split file atomically, one JSON object per line (non-ASCII kept as is)."""
    lines = (json.dumps(c.record(), ensure_ascii=False) + "\n" for c in conversations)
    return atomic_write(split_path(run_dir, name), "".join(lines))


def _conversation(record: Any, where: str) -> Conversation:
    messages = record.get("messages") if isinstance(record, dict) else None
    if not isinstance(messages, list) or not messages:
        raise ConfigError(where, "", 'expected {"messages": [{"role": ..., "content": ...}, ...]}')
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ROLES or not isinstance(
                message.get("content"), str):
            raise ConfigError(where, "", f'messages[{i}] must be {{"role": one of {list(ROLES)}, "content": a string}}')
    if messages[-1]["role"] != "assistant" or not messages[-1]["content"].strip():
        raise ConfigError(where, "", "the last message must be a non-empty assistant answer (what the model learns)")
    if len(messages) < 2 or messages[-2]["role"] != "user":
        raise ConfigError(where, "", "the answer must follow the user's command (messages[-2] is a user turn)")
    return Conversation(tuple({"role": m["role"], "content": m["content"]} for m in messages))


def read_split(path: Path) -> list[Conversation]:
    """The conversations of one split file (``split_path``); every problem names ``path:line``."""
    if not path.is_file():
        raise ConfigError(path, "", "missing; run `make data` first (python -m train data)")
    conversations = []
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ConfigError(f"{path}:{number}", "", f"not valid JSON ({exc.msg}); each line holds one JSON "
                                  "object") from None
            conversations.append(_conversation(record, f"{path}:{number}"))
    if not conversations:
        raise ConfigError(path, "", "the split is empty; regenerate the dataset with `make data`")
    return conversations


# ------------------------------------------------------------------------------------- run manifest stages
@dataclass(frozen=True)
class BaseModelFacts:
    """The base model a run was trained from (edgetune.base_model.BaseModelRef, as recorded)."""

    source: str
    kind: str
    path: str
    sha256: str | None = None
    hf_dir: str = ""


@dataclass(frozen=True)
class DataStage:
    """The run manifest's ``data`` entry: the task and the hashes of the split files."""

    NAME: ClassVar[str] = "data"
    task: str
    counts: dict[str, int] = field(default_factory=dict)
    sha256: dict[str, str] = field(default_factory=dict)  #: split name -> sha256 of its file
    config: dict[str, Any] = field(default_factory=dict)
    inputs: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, str] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    report: str = ""


@dataclass(frozen=True)
class TrainStage:
    """The run manifest's ``train`` entry: what the adapter was trained from, and what it scored."""

    NAME: ClassVar[str] = "train"
    task: str
    base_model: BaseModelFacts
    config: dict[str, Any] = field(default_factory=dict)
    inputs: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)  #: wall_seconds, train_seconds
    metrics: dict[str, Any] = field(default_factory=dict)
    fingerprint: str = ""


@dataclass(frozen=True)
class ExportStage:
    """The run manifest's ``export`` entry: the bundle's inputs and files."""

    NAME: ClassVar[str] = "export"
    config: dict[str, Any] = field(default_factory=dict)
    inputs: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)  #: per step, and total


TERMINAL = ("succeeded", "failed", "cancelled")  #: OpenAI fine-tuning job states that do not change any more


@dataclass
class FineTuneRecord:
    """runs/RUN/openai_ft.json and the manifest stage "openai_ft": the job, and on success the model to serve."""

    job_id: str | None
    base_url: str
    status: str  #: uploaded, validating_files, queued, running, succeeded, failed or cancelled
    model: str | None = None  #: the fine-tuned model id (ft:...), set only when status is "succeeded"
    base_model: str | None = None
    fingerprint: str | None = None
    training_file: str | None = None
    validation_file: str | None = None
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    suffix: str | None = None
    seed: int | None = None
    trained_tokens: int | None = None
    estimated_cost_usd: float | None = None
    error: dict[str, Any] | None = None
    checkpoints: list[dict[str, Any]] = field(default_factory=list)
    metrics: list[dict[str, Any]] = field(default_factory=list)  #: per-step metrics from the job's events
    job_created_at: int | None = None  #: unix time (the manifest's own finished_at is when this was recorded)
    job_finished_at: int | None = None

    @property
    def active(self) -> bool:
        return self.job_id is not None and self.status not in TERMINAL


@dataclass
class OpenAIFineTuneStage(FineTuneRecord):
    """The run manifest's ``openai_ft`` entry: the record plus the split files it uploaded."""

    NAME: ClassVar[str] = "openai_ft"
    inputs: dict[str, Any] | None = None  #: train/val: {path, sha256}
    outputs: dict[str, str] = field(default_factory=dict)


_RECORDED = ("finished_at", "versions")  #: what RunDir.record adds to every entry


def record_stage(run_dir: RunDir, entry: DataStage | TrainStage | ExportStage | OpenAIFineTuneStage) -> None:
    """Write ``entry`` as its stage's manifest entry (RunDir.record adds finished_at and versions)."""
    run_dir.record(entry.NAME, **to_dict(entry))


def read_stage(run_dir: RunDir, kind: type[T]) -> T | None:
    """The manifest entry of stage ``kind`` (DataStage, TrainStage, ...), or None when that stage has not run."""
    if not run_dir.manifest_path.is_file():
        return None
    manifest = _read_object(run_dir.manifest_path, "it is rewritten by the next stage that runs")
    stages = manifest.get("stages")
    if not isinstance(stages, dict):
        raise ConfigError(run_dir.manifest_path, "stages", "missing or not a mapping")
    raw = stages.get(kind.NAME)  # type: ignore[attr-defined]
    if raw is None:
        return None
    path = f"stages.{kind.NAME}"  # type: ignore[attr-defined]
    if not isinstance(raw, dict):
        raise ConfigError(run_dir.manifest_path, path, "must be a mapping")
    facts = {k: v for k, v in raw.items() if k not in _RECORDED}
    return from_dict(kind, facts, source=run_dir.manifest_path, path=path)


# ---------------------------------------------------------------------------------------- openai_ft.json
def openai_ft_path(run_dir: RunDir) -> Path:
    return run_dir.root / OPENAI_FT_FILE


def write_openai_ft(run_dir: RunDir, record: FineTuneRecord, inputs: dict[str, Any] | None = None) -> None:
    """openai_ft.json and the manifest stage; ``inputs`` None keeps the inputs the stage recorded before."""
    path = openai_ft_path(run_dir)
    atomic_write_json(path, to_dict(record))
    if inputs is None:
        previous = read_stage(run_dir, OpenAIFineTuneStage)
        inputs = previous.inputs if previous else None
    facts = {f.name: getattr(record, f.name) for f in fields(FineTuneRecord)}
    record_stage(run_dir, OpenAIFineTuneStage(**facts, inputs=inputs, outputs={"result": str(path)}))


def read_openai_ft(run_dir: RunDir) -> FineTuneRecord | None:
    """The OpenAI fine-tune of the run: openai_ft.json, else the manifest's ``openai_ft`` entry; None without one."""
    path = openai_ft_path(run_dir)
    if path.is_file():
        return from_dict(FineTuneRecord, _read_object(path, "re-run `make openai-ft`"), source=path)
    stage = read_stage(run_dir, OpenAIFineTuneStage)
    if stage is None:
        return None
    return FineTuneRecord(**{f.name: getattr(stage, f.name) for f in fields(FineTuneRecord)})


# ------------------------------------------------------------------------------------- bundle manifest
@dataclass(frozen=True)
class ChosenQuant:
    """The GGUF the bundle deploys."""

    quant: str
    file: str  #: name inside the bundle folder
    sha256: str
    size_bytes: int


@dataclass(frozen=True)
class QuantScore:
    """One quant's measurements (export.verify) and the selection's verdict on it."""

    quant: str
    file: str
    sha256: str
    size_bytes: int
    n: int  #: test examples scored
    exact_match: float
    valid_rate: float
    f1: float
    constrained_exact_match: float | None  #: None for a task without a grammar
    constrained_valid_rate: float | None
    constrained_invalid_stopped: int
    constrained_reused: int | None
    truncated: int  #: answers (free + grammar) that ran into max_tokens
    human_n: int
    human_exact_match: float | None  #: the task's held-out human-phrased set; None when the task has none
    human_valid_rate: float | None
    tokens_per_second: float
    tensor_types: dict[str, int]
    eligible: bool
    rejected_because: list[str]


@dataclass(frozen=True)
class BundleEval:
    """What the quants were scored on."""

    samples: int
    test_examples: int
    seed: int
    human_samples: int
    greedy_prompts: int
    greedy_agreement: float


@dataclass(frozen=True)
class BundleSelection:
    """The rule that chose the quant (export.config.ExportConfig's fields)."""

    tolerance_points: float
    max_model_mb: float
    max_truncated: float
    min_greedy_agreement: float


@dataclass(frozen=True)
class BundleManifest:
    """runs/RUN/bundle/manifest.json: what the bundle deploys and how to prompt it; serve and bench re-type nothing."""

    run: str
    chosen: ChosenQuant
    quants: list[QuantScore]
    task: str
    system_prompt: str
    sampling: GenerationSpec  #: stop holds the tokenizer's end tokens, so serve stops where export's checks did
    grammar: str | None  #: the contract's GBNF (None for a text contract)
    contract: ContractSpec
    chat_template: str
    n_ctx: int
    base_model: BaseModelFacts | None
    adapter_sha256: str
    data_sha256: dict[str, str]
    eval: BundleEval
    selection: BundleSelection
    versions: dict[str, str]
    created_at: str

    def model_path(self, bundle: Path) -> Path:
        return bundle / self.chosen.file


def bundle_manifest_path(bundle: Path) -> Path:
    """The manifest of the bundle folder ``bundle`` (runs/RUN/bundle or a staging copy of it)."""
    return bundle / BUNDLE_MANIFEST


def write_bundle_manifest(bundle: Path, manifest: BundleManifest) -> Path:
    return atomic_write_json(bundle_manifest_path(bundle), to_dict(manifest))


def read_bundle_manifest(bundle: Path) -> BundleManifest:
    """The bundle's manifest; a missing file, field or chosen GGUF is a ConfigError naming it."""
    path = bundle_manifest_path(bundle)
    manifest = from_dict(BundleManifest, _read_object(path, "re-run `make export` to rebuild the bundle"), source=path)
    if not manifest.model_path(bundle).is_file():
        raise ConfigError(path, "chosen.file", f"{manifest.model_path(bundle)} does not exist; re-run `make export`")
    return manifest
