"""The price table make compare reads: the shipped one is dated and complete; a broken one is refused by field."""

from __future__ import annotations

import pytest

from bench.prices import load_prices
from edgetune.config import ConfigError
from train.openai_ft import MODEL_TERMS


def test_shipped_table_is_dated_and_prices_every_fine_tunable_model():
    prices = load_prices()
    assert prices.date and prices.currency == "USD" and prices.local.per_second > 0
    for model, terms in MODEL_TERMS.items():
        if model in prices.openai.training_per_mtok:  # the table agrees with openai-ft's cost estimate
            assert prices.openai.training_per_mtok[model] == terms.usd_per_mtok
    assert set(prices.openai.inference_per_mtok) == set(prices.openai.training_per_mtok)
    assert prices.base_of("ft:gpt-4o-mini-2024-07-18:org::abc") == "gpt-4o-mini-2024-07-18"


def test_local_price_per_second_is_machine_plus_energy(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text('date: "2030-01-01"\nlocal: {machine_per_hour: 0.36, watts: 100, per_kwh: 0.36}\n')
    assert load_prices(path).local.per_second == pytest.approx((0.36 + 0.036) / 3600)


def test_bad_table_names_the_field(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text('date: "2030-01-01"\nopenai: {inference_per_mtok: {m: [1.0]}}\n')
    with pytest.raises(ConfigError, match="openai.inference_per_mtok.m"):
        load_prices(path)
    path.write_text("currency: USD\n")
    with pytest.raises(ConfigError, match="date"):
        load_prices(path)
