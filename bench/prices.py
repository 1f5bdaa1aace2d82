"""The price table `make compare` reads (bench/prices.yaml by default): dated, edited by hand, never fetched."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from edgetune.config import from_dict, read_yaml

DEFAULT_TABLE = Path(__file__).resolve().parent / "prices.yaml"


@dataclass
class OpenAIPrices:
    training_per_mtok: dict[str, float] = field(default_factory=dict)  #: USD per 1M trained tokens, per base model
    inference_per_mtok: dict[str, list[float]] = field(default_factory=dict)  #: [input, output] USD per 1M tokens

    def check(self):
        for model, pair in self.inference_per_mtok.items():
            if len(pair) != 2 or min(pair) < 0:
                yield f"openai.inference_per_mtok.{model}", "must be [input, output] USD per 1M tokens, both >= 0"


@dataclass
class LocalPrices:
    machine_per_hour: float = 0.0  #: rent or amortized hardware of this machine, per hour
    watts: float = 0.0  #: its power draw under load
    per_kwh: float = 0.0  #: electricity price

    @property
    def per_second(self) -> float:
        return (self.machine_per_hour + self.watts / 1000 * self.per_kwh) / 3600


@dataclass
class Prices:
    date: str  #: when the table was last checked
    currency: str = "USD"
    openai: OpenAIPrices = field(default_factory=OpenAIPrices)
    local: LocalPrices = field(default_factory=LocalPrices)

    def base_of(self, model: str) -> str:
        """The base snapshot of a fine-tuned id (``ft:gpt-4o-mini-2024-07-18:org::id`` -> its base)."""
        return model.split(":")[1] if model.startswith("ft:") else model


def load_prices(path: str | Path = "") -> Prices:
    path = Path(path or DEFAULT_TABLE)
    return from_dict(Prices, read_yaml(path), source=path)
