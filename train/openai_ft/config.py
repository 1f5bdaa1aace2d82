"""openai-ft's config: the base model, hyperparameters and limits, and what each base model costs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable


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

