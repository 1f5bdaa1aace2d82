"""The plan of a fine-tune: the validated inputs, the epochs and the estimated cost (no network)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from edgetune.artifacts import split_path
from edgetune.rundir import RunDir, sha256_file
from train.openai_ft.config import OpenAIFineTuneConfig
from train.openai_ft.validate import DataProblem, DataValidationError, validate_chat_file

MIN_TRAIN_EXAMPLES = 10  #: OpenAI rejects a training file with fewer examples


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

