"""Fine-tune an OpenAI model on the run's dataset: the edge server's remote fallback and the cloud comparison.

    python -m train openai-ft --run default --dry-run      validate the data and estimate the cost; no network
    python -m train openai-ft --run default                validate, estimate, confirm, upload, train, watch
    python -m train openai-ft --run default --yes          the same without the prompt (needed without a TTY / in CI)
    python -m train openai-ft --run default --watch        reattach to the job recorded in the run directory
    python -m train openai-ft --run default --watch JOB    reattach to (and adopt) any job
    python -m train openai-ft --run default --cancel       cancel the recorded job (or --cancel JOB)

The key comes from OPENAI_API_KEY or a git-ignored ./.env line ``OPENAI_API_KEY=...`` and is never printed or
recorded; the endpoint from --base-url, else OPENAI_BASE_URL, else https://api.openai.com/v1. The key is checked with
one cheap authenticated call before anything is uploaded. The job id is written to runs/RUN/openai_ft.json the moment
the job exists, so an interrupted run resumes: running the same command again watches that job instead of starting
another. On success runs/RUN/openai_ft.json and the manifest stage "openai_ft" hold the fine-tuned model id, which
the server uses as its remote backend.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping

from edgetune.artifacts import TERMINAL, FineTuneRecord, openai_ft_path, read_openai_ft, split_path, write_openai_ft
from edgetune.config import ConfigError, load
from edgetune.rundir import RUNS_DIR, RunDir, sha256_file

if TYPE_CHECKING:
    from openai import OpenAI

DEFAULT_BASE_URL = "https://api.openai.com/v1"
LOSS_PLOT = "openai_ft_loss.png"
MIN_TRAIN_EXAMPLES = 10  #: OpenAI rejects a training file with fewer examples


@dataclass(frozen=True)
class ModelTerms:
    """What fine-tuning one base model costs and how long one example may be."""

    usd_per_mtok: float | None  #: training price in USD per 1M trained tokens (tokens x epochs); None = unknown
    max_example_tokens: int  #: longest example the model trains on


#: OpenAI's published training prices and per-example context (2025); --price-per-mtok / --max-example-tokens override.
MODEL_TERMS: dict[str, ModelTerms] = {
    "gpt-4o-mini-2024-07-18": ModelTerms(3.00, 65_536),
    "gpt-4o-2024-08-06": ModelTerms(25.00, 65_536),
    "gpt-4.1-2025-04-14": ModelTerms(25.00, 65_536),
    "gpt-4.1-mini-2025-04-14": ModelTerms(5.00, 65_536),
    "gpt-4.1-nano-2025-04-14": ModelTerms(1.50, 65_536),
    "gpt-3.5-turbo-0125": ModelTerms(8.00, 16_385),
}


@dataclass
class OpenAIFineTuneConfig:
    """How to fine-tune; every field is also a --flag (or --set key=value, or a --config YAML)."""

    model: str = "gpt-4o-mini-2024-07-18"  #: base model (a snapshot name, or an ft: model to continue from)
    epochs: int | None = None  #: n_epochs; None lets OpenAI pick ("auto") from the dataset size
    batch_size: int | None = None  #: examples per step; None = "auto"
    lr_multiplier: float | None = None  #: learning_rate_multiplier; None = "auto"
    suffix: str = "edgetune"  #: up to 64 characters added to the fine-tuned model's name
    seed: int | None = None  #: makes a job reproducible; None lets OpenAI pick
    base_url: str | None = None  #: API endpoint; None = OPENAI_BASE_URL or https://api.openai.com/v1
    price_per_mtok: float | None = None  #: training USD per 1M tokens; None = MODEL_TERMS[model]
    max_example_tokens: int | None = None  #: per-example token limit; None = MODEL_TERMS[model] (else 65536)
    poll_seconds: float = 15.0  #: how often the watcher asks for the job's status, events and checkpoints
    watch_timeout: float | None = None  #: stop watching after this many seconds (the job keeps running)
    max_retries: int = 2  #: the client's retries on connection errors, 429 and 5xx

    def check(self) -> Iterable[tuple[str, str]]:
        if self.epochs is not None and not 1 <= self.epochs <= 50:
            yield "epochs", f"must be between 1 and 50 (OpenAI's range), got {self.epochs}"
        if self.batch_size is not None and not 1 <= self.batch_size <= 256:
            yield "batch_size", f"must be between 1 and 256, got {self.batch_size}"
        if self.lr_multiplier is not None and not 0 < self.lr_multiplier <= 10:
            yield "lr_multiplier", f"must be > 0 and <= 10, got {self.lr_multiplier}"
        if len(self.suffix) > 64:
            yield "suffix", f"must be at most 64 characters (OpenAI's limit), got {len(self.suffix)}"
        if self.poll_seconds <= 0:
            yield "poll_seconds", "must be > 0"
        if self.price_per_mtok is not None and self.price_per_mtok < 0:
            yield "price_per_mtok", "must be >= 0"

    def terms(self) -> ModelTerms:
        """Price and limit for the base model (an ``ft:`` model is priced as its base), overrides applied."""
        base = self.model.split(":")[1] if self.model.startswith("ft:") else self.model
        known = MODEL_TERMS.get(base, ModelTerms(None, 65_536))
        return ModelTerms(self.price_per_mtok if self.price_per_mtok is not None else known.usd_per_mtok,
                          self.max_example_tokens or known.max_example_tokens)

    def hyperparameters(self) -> dict[str, int | float | str]:
        return {
            "n_epochs": self.epochs or "auto",
            "batch_size": self.batch_size or "auto",
            "learning_rate_multiplier": self.lr_multiplier or "auto",
        }


# ---------------------------------------------------------------------------------------------------------------
# Validation, as OpenAI does it before training (rule names follow OpenAI's data-preparation cookbook)

ROLES = ("system", "developer", "user", "assistant", "tool", "function")
EXAMPLE_KEYS = ("messages", "tools", "functions", "parallel_tool_calls")
MESSAGE_KEYS = ("role", "content", "name", "weight", "function_call", "tool_calls", "tool_call_id")


@dataclass(frozen=True)
class DataProblem:
    """One reason OpenAI would reject a file: where (file, 1-based line) and which rule."""

    path: Path
    line: int | None  #: None for file-level problems such as too few examples
    rule: str
    detail: str

    def __str__(self) -> str:
        where = f"{self.path} line {self.line}" if self.line else str(self.path)
        return f"{where}: {self.rule}: {self.detail}"


class DataValidationError(ValueError):
    """The dataset would be rejected by OpenAI; lists every problem so one fix round is enough."""

    SHOWN = 20

    def __init__(self, problems: list[DataProblem]):
        self.problems = problems
        lines = [str(p) for p in problems[: self.SHOWN]]
        if len(problems) > self.SHOWN:
            lines.append(f"... and {len(problems) - self.SHOWN} more")
        super().__init__(f"{len(problems)} problem(s) OpenAI would reject:\n  " + "\n  ".join(lines))


def estimate_tokens(messages: list[dict[str, Any]]) -> int:
    """Tokens of one chat example: ~4 UTF-8 bytes a token plus OpenAI's 3 per message and 3 for the reply.

    An estimate (within ~25% on English and code); OpenAI's tokenizer is not available offline.
    """
    text_bytes = sum(len(_text(m.get("content")).encode("utf-8")) for m in messages)
    return math.ceil(text_bytes / 4) + 3 * len(messages) + 3


def _text(content: Any) -> str:
    """The text of a message's content: a string, or the text parts of a content-part list."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return ""


def _example_problems(example: Any) -> Iterable[tuple[str, str]]:
    """(rule, detail) for everything wrong with one parsed line."""
    if not isinstance(example, dict):
        yield "data_type", f"each line must be a JSON object, got {type(example).__name__}"
        return
    for key in example:
        if key not in EXAMPLE_KEYS:
            yield "unrecognized_key", f"unknown top-level key {key!r}; allowed: {', '.join(EXAMPLE_KEYS)}"
    messages = example.get("messages")
    if not isinstance(messages, list) or not messages:
        yield "missing_messages_list", "needs a non-empty 'messages' list"
        return
    for i, message in enumerate(messages):
        at = f"messages[{i}]"
        if not isinstance(message, dict):
            yield "data_type", f"{at} must be an object with 'role' and 'content'"
            continue
        for key in ("role", "content"):
            if key not in message:
                yield "message_missing_key", f"{at} has no {key!r}"
        for key in message:
            if key not in MESSAGE_KEYS:
                yield "message_unrecognized_key", f"{at} has unknown key {key!r}; allowed: {', '.join(MESSAGE_KEYS)}"
        role = message.get("role")
        if "role" in message and role not in ROLES:
            yield "unrecognized_role", f"{at} has role {role!r}; allowed: {', '.join(ROLES)}"
        content = message.get("content")
        calls = message.get("tool_calls") or message.get("function_call")
        if "content" in message and not (content is None and calls) and not isinstance(content, (str, list)):
            yield "missing_content", f"{at}.content must be a string, got {type(content).__name__}"
        elif isinstance(content, (str, list)) and not _text(content).strip() and not calls:
            yield "empty_content", f"{at} ({role}) has empty content"
        if "weight" in message and (role != "assistant" or message["weight"] not in (0, 1)):
            yield "invalid_weight", f"{at}.weight must be 0 or 1 and only on assistant messages"
    if not any(isinstance(m, dict) and m.get("role") == "assistant" for m in messages):
        yield "example_missing_assistant_message", "no message with role 'assistant' (the answer to learn)"


def validate_chat_file(path: Path, *, min_examples: int, max_example_tokens: int) -> list[int]:
    """Check a chat JSONL file as OpenAI will; return each example's estimated tokens or raise DataValidationError."""
    problems: list[DataProblem] = []
    tokens: list[int] = []
    examples = 0
    with open(path, encoding="utf-8") as fh:
        for number, raw in enumerate(fh, start=1):
            if not raw.strip():
                problems.append(DataProblem(path, number, "blank_line", "empty line; OpenAI expects one example per line"))
                continue
            examples += 1
            try:
                example = json.loads(raw)
            except json.JSONDecodeError as exc:
                problems.append(DataProblem(path, number, "invalid_json", f"not valid JSON: {exc.msg} at column {exc.colno}"))
                continue
            found = [DataProblem(path, number, rule, detail) for rule, detail in _example_problems(example)]
            problems.extend(found)
            if found:
                continue
            count = estimate_tokens(example["messages"])
            if count > max_example_tokens:
                problems.append(DataProblem(path, number, "too_many_tokens",
                                            f"~{count} tokens, over the model's {max_example_tokens} per example"))
            tokens.append(count)
    if examples < min_examples:
        problems.append(DataProblem(path, None, "too_few_examples",
                                    f"{examples} example(s); OpenAI needs at least {min_examples}"))
    if problems:
        raise DataValidationError(problems)
    return tokens


# ---------------------------------------------------------------------------------------------------------------
# Plan: what would be trained and what it costs (no network)


def default_epochs(n_examples: int) -> int:
    """The epochs OpenAI picks for n_epochs="auto": ~3, raised for tiny and lowered for huge datasets."""
    if n_examples * 3 < 100:
        return min(25, 100 // n_examples)
    if n_examples * 3 > 25_000:
        return max(1, 25_000 // n_examples)
    return 3


@dataclass(frozen=True)
class Plan:
    """The validated inputs of a fine-tune and its estimated cost."""

    train_path: Path
    val_path: Path | None
    train_sha256: str
    val_sha256: str | None
    train_examples: int
    val_examples: int
    tokens_per_epoch: int  #: billed tokens in one pass over the training file (each example capped at the limit)
    epochs: int
    epochs_auto: bool
    usd_per_mtok: float | None
    fingerprint: str  #: hash of data + settings; a recorded job with the same fingerprint is reattached, not redone

    @property
    def billed_tokens(self) -> int:
        return self.tokens_per_epoch * self.epochs

    @property
    def cost_usd(self) -> float | None:
        return None if self.usd_per_mtok is None else self.billed_tokens / 1e6 * self.usd_per_mtok

    def describe(self, model: str) -> str:
        epochs = f"{self.epochs} ({'auto, as OpenAI would pick' if self.epochs_auto else 'set'})"
        price = ("unknown: pass --price-per-mtok" if self.cost_usd is None
                 else f"~{_usd(self.cost_usd)} at ${self.usd_per_mtok:.2f}/1M tokens")
        return "\n".join([
            f"OpenAI fine-tune of {model}",
            f"  train      {self.train_path} ({self.train_examples} examples, ~{self.tokens_per_epoch:,} tokens/epoch)",
            f"  validation {self.val_path or 'none'} ({self.val_examples} examples, not billed)",
            f"  epochs     {epochs}",
            f"  billed     ~{self.billed_tokens:,} tokens (estimate, +-25%)",
            f"  cost       {price}",
        ])


def _usd(amount: float) -> str:
    """Dollars with cents, or with 4 decimals below a cent so a tiny job does not read as free."""
    return f"${amount:.2f}" if amount >= 0.01 or amount == 0 else f"${amount:.4f}"


def plan(run_dir: RunDir, config: OpenAIFineTuneConfig) -> Plan:
    """Validate runs/RUN/data/{train,val}.jsonl as OpenAI will and estimate tokens and cost; raise on any problem."""
    train_path, val_path = split_path(run_dir, "train"), split_path(run_dir, "val")
    if not train_path.is_file():
        raise FileNotFoundError(f"{train_path} not found: build the dataset first (make data RUN={run_dir.root.name})")
    terms = config.terms()
    limit = terms.max_example_tokens
    problems: list[DataProblem] = []
    token_counts: dict[Path, list[int]] = {}
    for path, minimum in ((train_path, MIN_TRAIN_EXAMPLES), (val_path, 1)):
        if path.is_file():
            try:
                token_counts[path] = validate_chat_file(path, min_examples=minimum, max_example_tokens=limit)
            except DataValidationError as exc:
                problems.extend(exc.problems)
    if problems:
        raise DataValidationError(problems)
    has_val = val_path in token_counts
    train_tokens = token_counts[train_path]
    epochs = config.epochs or default_epochs(len(train_tokens))
    train_sha, val_sha = sha256_file(train_path), sha256_file(val_path) if has_val else None
    settings = {"train": train_sha, "val": val_sha, "model": config.model, "suffix": config.suffix,
                "seed": config.seed, **config.hyperparameters()}
    return Plan(
        train_path=train_path, val_path=val_path if has_val else None, train_sha256=train_sha, val_sha256=val_sha,
        train_examples=len(train_tokens), val_examples=len(token_counts.get(val_path, [])),
        tokens_per_epoch=sum(min(t, limit) for t in train_tokens), epochs=epochs, epochs_auto=config.epochs is None,
        usd_per_mtok=terms.usd_per_mtok,
        fingerprint=hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16],
    )


# ---------------------------------------------------------------------------------------------------------------
# Credentials and the client


class OpenAIFineTuneError(RuntimeError):
    """A fine-tune that cannot go on; the message says why and what to do."""


class JobFailed(OpenAIFineTuneError):
    """The job ended failed or cancelled; ``record`` holds what the run directory recorded."""

    def __init__(self, message: str, record: "FineTuneRecord"):
        super().__init__(message)
        self.record = record


class WatchTimeout(OpenAIFineTuneError):
    """Stopped watching (watch_timeout); the job keeps running and can be reattached."""


@dataclass(frozen=True)
class Credentials:
    """Where to send requests and the key to send; ``repr`` never shows the key."""

    base_url: str
    api_key: str | None = field(default=None, repr=False)

    @classmethod
    def resolve(cls, base_url: str | None = None, environ: Mapping[str, str] | None = None,
                dotenv: Path | None = Path(".env")) -> "Credentials":
        """--base-url, then OPENAI_BASE_URL; the key from OPENAI_API_KEY; the environment wins over ``dotenv``."""
        values = _read_dotenv(dotenv) if dotenv else {}
        values.update({k: v for k, v in (os.environ if environ is None else environ).items() if v})
        return cls(base_url=(base_url or values.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL).rstrip("/"),
                   api_key=values.get("OPENAI_API_KEY") or None)


def _read_dotenv(path: Path) -> dict[str, str]:
    """``KEY=value`` lines of a .env file (comments, ``export`` and quotes allowed); {} when there is none."""
    if not path.is_file():
        return {}
    values = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip().removeprefix("export ").strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            values[key.strip()] = value.strip().strip("'\"")
    return values


def connect(credentials: Credentials, config: OpenAIFineTuneConfig) -> "OpenAI":
    """An authenticated client, proven by one cheap call (models.list) so a bad key fails before any upload."""
    import openai

    if not credentials.api_key:
        raise OpenAIFineTuneError(
            "no OpenAI API key: set OPENAI_API_KEY in the environment or put OPENAI_API_KEY=... in ./.env "
            "(git-ignored); nothing was uploaded")
    client = openai.OpenAI(api_key=credentials.api_key, base_url=credentials.base_url,
                           max_retries=config.max_retries, timeout=60.0)
    try:
        models = {m.id for m in client.models.list()}
    except openai.AuthenticationError as exc:
        raise OpenAIFineTuneError(
            f"{credentials.base_url} rejected the API key ({exc.status_code}): check OPENAI_API_KEY; "
            "nothing was uploaded") from None
    except openai.APIConnectionError as exc:
        raise OpenAIFineTuneError(f"cannot reach {credentials.base_url} ({exc}): check --base-url / "
                                  "OPENAI_BASE_URL and the network; nothing was uploaded") from None
    if models and config.model not in models:
        import difflib

        close = difflib.get_close_matches(config.model, sorted(models), n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise OpenAIFineTuneError(f"model {config.model!r} is not available to this key at "
                                  f"{credentials.base_url}{hint}; nothing was uploaded")
    return client


# ---------------------------------------------------------------------------------------------------------------
# The record in the run directory


def save_record(run_dir: RunDir, record: FineTuneRecord, plan_: Plan | None = None) -> None:
    """Write openai_ft.json and the manifest stage atomically (on every status change, so restarts find the job)."""
    inputs = {"train": {"path": str(plan_.train_path), "sha256": plan_.train_sha256},
              "val": {"path": str(plan_.val_path), "sha256": plan_.val_sha256}} if plan_ else None
    write_openai_ft(run_dir, record, inputs)


# ---------------------------------------------------------------------------------------------------------------
# The stage


def fine_tune(run_dir: RunDir, config: OpenAIFineTuneConfig, credentials: Credentials,
              confirm: Callable[[Plan], bool]) -> FineTuneRecord:
    """Validate, estimate, check the key, confirm, upload, create the job and watch it to the end.

    A job recorded for the same data and settings is reattached (or, if it succeeded, returned) instead of
    started again. ``confirm`` sees the plan (with its cost) before anything is uploaded; False aborts.
    Raises DataValidationError, OpenAIFineTuneError (JobFailed when the job fails), WatchTimeout.
    """
    plan_ = plan(run_dir, config)
    previous = read_openai_ft(run_dir)
    if previous and previous.job_id and previous.fingerprint == plan_.fingerprint:
        if previous.status == "succeeded":
            print(f"already fine-tuned for this data and settings: {previous.model} (job {previous.job_id})")
            return previous
        if previous.active:
            _check_endpoint(previous, credentials)
            print(f"reattaching to job {previous.job_id} ({previous.status}) recorded in {openai_ft_path(run_dir)}")
            return watch(run_dir, config, connect(credentials, config), previous)
    elif previous and previous.active:
        raise OpenAIFineTuneError(
            f"job {previous.job_id} ({previous.status}) is still running for other data or settings: watch it "
            f"with --watch or cancel it with --cancel before starting another")
    print(plan_.describe(config.model))
    client = connect(credentials, config)
    if not confirm(plan_):
        raise OpenAIFineTuneError("not confirmed; nothing was uploaded")
    reusable = previous if previous and previous.fingerprint == plan_.fingerprint else None
    record = FineTuneRecord(
        job_id=None, base_url=credentials.base_url, status="uploaded", base_model=config.model,
        fingerprint=plan_.fingerprint, hyperparameters=config.hyperparameters(), suffix=config.suffix,
        seed=config.seed, estimated_cost_usd=None if plan_.cost_usd is None else round(plan_.cost_usd, 6),
        training_file=_upload(client, plan_.train_path, reusable and reusable.training_file),
        validation_file=plan_.val_path and _upload(client, plan_.val_path, reusable and reusable.validation_file),
    )
    save_record(run_dir, record, plan_)
    optional = {"validation_file": record.validation_file, "suffix": config.suffix or None, "seed": config.seed}
    job = client.fine_tuning.jobs.create(
        model=config.model, training_file=record.training_file,
        method={"type": "supervised", "supervised": {"hyperparameters": config.hyperparameters()}},
        **{key: value for key, value in optional.items() if value is not None},
    )
    record.job_id, record.status, record.job_created_at = job.id, job.status, job.created_at
    save_record(run_dir, record, plan_)
    print(f"created job {job.id}; recorded in {openai_ft_path(run_dir)} (rerun or --watch to reattach)")
    return watch(run_dir, config, client, record)


def _check_endpoint(record: FineTuneRecord, credentials: Credentials) -> None:
    """A job lives on the endpoint that created it; watching it elsewhere would only give a confusing 404."""
    if record.base_url != credentials.base_url:
        raise OpenAIFineTuneError(f"job {record.job_id} was created at {record.base_url}, not {credentials.base_url}: "
                                  f"pass --base-url {record.base_url}")


def _upload(client: "OpenAI", path: Path, previous_id: str | None) -> str:
    """Upload ``path`` for fine-tuning, or reuse ``previous_id`` if the server still holds that exact file."""
    import openai

    size = path.stat().st_size
    if previous_id:
        try:
            if client.files.retrieve(previous_id).bytes == size:
                print(f"reusing uploaded {path.name} ({previous_id})")
                return previous_id
        except openai.NotFoundError:
            pass  # deleted server-side: upload again
    with open(path, "rb") as fh:
        uploaded = client.files.create(file=(path.name, fh), purpose="fine-tune")
    stored = client.files.retrieve(uploaded.id)
    if stored.bytes != size or stored.status == "error":
        raise OpenAIFineTuneError(f"upload of {path} is broken on the server ({stored.bytes} of {size} bytes, "
                                  f"status {stored.status}: {stored.status_details})")
    print(f"uploaded {path.name} -> {uploaded.id} ({size:,} bytes)")
    return uploaded.id


class _Progress:
    """Turns a job's events and checkpoints into a tqdm bar (steps, losses) and timestamped status lines."""

    def __init__(self) -> None:
        self.seen_events: set[str] = set()
        self.seen_checkpoints: set[str] = set()
        self.metrics: list[dict[str, Any]] = []
        self.checkpoints: list[dict[str, Any]] = []
        self.bar: Any = None

    def say(self, text: str) -> None:
        from tqdm import tqdm

        tqdm.write(text, file=sys.stderr)

    def events(self, client: "OpenAI", job_id: str) -> None:
        fresh = []
        for event in client.fine_tuning.jobs.list_events(job_id, limit=50):  # newest first, pages through older
            if event.id in self.seen_events:
                break
            fresh.append(event)
        for event in reversed(fresh):
            self.seen_events.add(event.id)
            if event.type == "metrics" and isinstance(event.data, dict):
                self._metrics(event.data)
            else:
                stamp = time.strftime("%H:%M:%S", time.localtime(event.created_at))
                self.say(f"[{stamp}] {event.level:5s} {event.message}")

    def _metrics(self, data: dict[str, Any]) -> None:
        from tqdm import tqdm

        self.metrics.append(data)
        if self.bar is None:
            self.bar = tqdm(total=data.get("total_steps"), desc="fine-tuning", unit="step", file=sys.stderr)
        self.bar.n = int(data.get("step", self.bar.n))
        self.bar.set_postfix({k: round(data[k], 4) for k in ("train_loss", "valid_loss") if data.get(k) is not None})

    def checkpoints_of(self, client: "OpenAI", job_id: str) -> None:
        for checkpoint in sorted(client.fine_tuning.jobs.checkpoints.list(job_id), key=lambda c: c.step_number):
            if checkpoint.id in self.seen_checkpoints:
                continue
            self.seen_checkpoints.add(checkpoint.id)
            metrics = checkpoint.metrics.model_dump(exclude_none=True)
            self.checkpoints.append({"id": checkpoint.id, "step": checkpoint.step_number,
                                     "model": checkpoint.fine_tuned_model_checkpoint, "metrics": metrics})
            shown = ", ".join(f"{k}={v:.4f}" for k, v in metrics.items() if k != "step")
            self.say(f"checkpoint step {checkpoint.step_number}: {checkpoint.fine_tuned_model_checkpoint} ({shown})")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def watch(run_dir: RunDir, config: OpenAIFineTuneConfig, client: "OpenAI", record: FineTuneRecord) -> FineTuneRecord:
    """Poll the job until it ends, showing events and checkpoint metrics; record every status change.

    Returns the succeeded record (its ``model`` is the fine-tuned id); raises JobFailed when the job fails or is
    cancelled, WatchTimeout after ``config.watch_timeout`` seconds (the job keeps running).
    """
    assert record.job_id, "watch needs a created job"
    progress = _Progress()
    deadline = None if config.watch_timeout is None else time.monotonic() + config.watch_timeout
    try:
        while True:
            job = client.fine_tuning.jobs.retrieve(record.job_id)
            progress.events(client, job.id)
            if job.status in ("running", *TERMINAL):
                progress.checkpoints_of(client, job.id)
            if job.status != record.status:
                progress.say(f"job {job.id}: {record.status} -> {job.status}")
                record.status = job.status
                save_record(run_dir, record)
            if job.status in TERMINAL:
                break
            if deadline is not None and time.monotonic() > deadline:
                raise WatchTimeout(f"stopped watching job {job.id} ({job.status}) after {config.watch_timeout:g} s; "
                                   "it keeps running: rerun, or --watch to reattach")
            time.sleep(config.poll_seconds)
    finally:
        progress.close()
    record.model = job.fine_tuned_model if job.status == "succeeded" else None
    record.trained_tokens, record.job_finished_at = job.trained_tokens, job.finished_at
    record.hyperparameters = job.hyperparameters.model_dump(exclude_none=True) or record.hyperparameters
    record.error = job.error.model_dump() if job.error else None
    record.metrics, record.checkpoints = progress.metrics, progress.checkpoints
    record.base_model = record.base_model or job.model
    save_record(run_dir, record)
    if job.status != "succeeded":
        why = f": {job.error.code}: {job.error.message}" if job.error else ""
        param = f" (param {job.error.param})" if job.error and job.error.param else ""
        raise JobFailed(f"job {job.id} {job.status}{why}{param}", record)
    _plot_losses(run_dir.root / LOSS_PLOT, record.metrics)
    print(f"fine-tuned model: {record.model} ({record.trained_tokens} trained tokens); "
          f"recorded in {openai_ft_path(run_dir)}")
    return record


def _plot_losses(path: Path, metrics: list[dict[str, Any]]) -> None:
    """Training/validation loss per step (matplotlib Agg), when there are metrics and matplotlib is installed."""
    try:
        import matplotlib
    except ImportError:
        return
    if not metrics:
        return
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from edgetune.rundir import atomic_path

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for key in ("train_loss", "valid_loss", "full_valid_loss"):
        points = [(m["step"], m[key]) for m in metrics if m.get(key) is not None]
        if points:
            ax.plot(*zip(*points), label=key, marker="." if key != "train_loss" else None)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title("OpenAI fine-tune")
    ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def attach(run_dir: RunDir, config: OpenAIFineTuneConfig, credentials: Credentials,
           job_id: str | None = None) -> FineTuneRecord:
    """Watch ``job_id`` (default: the recorded job) to its end; a job not recorded here is adopted by this run."""
    recorded = _recorded(run_dir, credentials, job_id)
    client = connect(credentials, config)
    record = recorded or _adopt(client, credentials, job_id)
    if record.status == "succeeded" and record.model:
        print(f"job {record.job_id} already succeeded: {record.model}")
        return record
    return watch(run_dir, config, client, record)


def cancel(run_dir: RunDir, config: OpenAIFineTuneConfig, credentials: Credentials,
           job_id: str | None = None) -> FineTuneRecord:
    """Cancel ``job_id`` (default: the recorded job) and record it as cancelled."""
    recorded = _recorded(run_dir, credentials, job_id)
    client = connect(credentials, config)
    record = recorded or _adopt(client, credentials, job_id)
    job = client.fine_tuning.jobs.cancel(record.job_id)
    record.status = job.status
    save_record(run_dir, record)
    print(f"job {job.id}: {job.status}")
    return record


def _recorded(run_dir: RunDir, credentials: Credentials, job_id: str | None) -> FineTuneRecord | None:
    """The recorded job when ``job_id`` is None or names it; None when ``job_id`` is another job (to adopt)."""
    recorded = read_openai_ft(run_dir)
    if recorded and recorded.job_id and job_id in (None, recorded.job_id):
        _check_endpoint(recorded, credentials)
        return recorded
    if job_id is None:
        raise OpenAIFineTuneError(f"no job recorded in {openai_ft_path(run_dir)}: pass the job id")
    return None


def _adopt(client: "OpenAI", credentials: Credentials, job_id: str | None) -> FineTuneRecord:
    """A record for a job this run did not create (e.g. started from OpenAI's dashboard)."""
    assert job_id is not None
    job = client.fine_tuning.jobs.retrieve(job_id)
    return FineTuneRecord(job_id=job.id, base_url=credentials.base_url, status=job.status, base_model=job.model,
                          training_file=job.training_file, validation_file=job.validation_file,
                          hyperparameters=job.hyperparameters.model_dump(exclude_none=True),
                          seed=job.seed, job_created_at=job.created_at)


# ---------------------------------------------------------------------------------------------------------------
# CLI


def _confirm_interactively(plan_: Plan) -> bool:
    """Ask on a terminal; refuse to guess without one (CI, pipes): spending money needs --yes there."""
    if not sys.stdin.isatty() or os.environ.get("CI"):
        raise OpenAIFineTuneError("this starts a paid OpenAI fine-tuning job and there is no terminal to confirm on "
                                  "(or CI is set): pass --yes to go ahead; nothing was uploaded")
    cost = "an unknown amount" if plan_.cost_usd is None else f"~{_usd(plan_.cost_usd)}"
    return input(f"Upload and start the job for {cost}? [y/N] ").strip().lower() in ("y", "yes")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train openai-ft", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", default="default", help="run directory name under runs/ (default: default)")
    parser.add_argument("--runs-dir", default=str(RUNS_DIR), help="folder holding run directories (default: runs)")
    parser.add_argument("--yes", "-y", action="store_true", help="start the paid job without asking")
    parser.add_argument("--dry-run", action="store_true", help="validate and estimate only; no network, no key")
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--watch", nargs="?", const="", metavar="JOB", help="reattach to JOB (default: recorded)")
    action.add_argument("--cancel", nargs="?", const="", metavar="JOB", help="cancel JOB (default: recorded)")
    parser.add_argument("--config", help="YAML file with OpenAIFineTuneConfig fields")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config field")
    flags = {  # flag -> (config field, type, metavar, help)
        "--model": ("model", str, "NAME", "base model (default gpt-4o-mini-2024-07-18)"),
        "--epochs": ("epochs", int, "N", "n_epochs (default: auto, as OpenAI picks from the dataset size)"),
        "--batch-size": ("batch_size", int, "N", "batch size (default auto)"),
        "--lr-multiplier": ("lr_multiplier", float, "X", "learning-rate multiplier (default auto)"),
        "--suffix": ("suffix", str, "S", "fine-tuned model name suffix, <= 64 chars (default edgetune)"),
        "--seed": ("seed", int, "N", "job seed, for a reproducible job"),
        "--base-url": ("base_url", str, "URL", "API endpoint (default OPENAI_BASE_URL or api.openai.com/v1)"),
        "--price-per-mtok": ("price_per_mtok", float, "USD", "training price per 1M tokens (default: the table)"),
        "--max-example-tokens": ("max_example_tokens", int, "N", "per-example token limit (default: the table)"),
        "--poll-interval": ("poll_seconds", float, "S", "seconds between status polls (default 15)"),
        "--watch-timeout": ("watch_timeout", float, "S", "stop watching after S seconds; the job keeps running"),
    }
    for flag, (dest, kind, metavar, help_text) in flags.items():
        parser.add_argument(flag, dest=dest, type=kind, metavar=metavar, help=help_text)
    args = parser.parse_args(argv)
    overrides = list(args.set) + [f"{dest}={getattr(args, dest)}" for dest, *_ in flags.values()
                                  if getattr(args, dest) is not None]

    import openai

    try:
        config = load(OpenAIFineTuneConfig, args.config, overrides)
        run_dir = RunDir.named(args.run, args.runs_dir)
        if args.dry_run:
            print(plan(run_dir, config).describe(config.model))
            return 0
        credentials = Credentials.resolve(config.base_url)
        if args.cancel is not None:
            cancel(run_dir, config, credentials, args.cancel or None)
        elif args.watch is not None:
            attach(run_dir, config, credentials, args.watch or None)
        else:
            fine_tune(run_dir, config, credentials, lambda p: True if args.yes else _confirm_interactively(p))
    except KeyboardInterrupt:
        print("\ndetached; the job keeps running: rerun the same command (or --watch) to reattach, --cancel to stop",
              file=sys.stderr)
        return 130
    except (ConfigError, DataValidationError, FileNotFoundError, OpenAIFineTuneError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except openai.APIStatusError as exc:
        print(f"error: the API answered {exc.status_code}: {exc.message}", file=sys.stderr)
        return 1
    except openai.APIConnectionError as exc:
        print(f"error: lost the connection to the API ({exc}); rerun to reattach", file=sys.stderr)
        return 1
    return 0


__all__ = [
    "Credentials", "DataValidationError", "FineTuneRecord", "JobFailed", "OpenAIFineTuneConfig",
    "OpenAIFineTuneError", "Plan", "WatchTimeout", "attach", "cancel", "fine_tune", "main", "plan",
    "validate_chat_file",
]
