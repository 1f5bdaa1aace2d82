"""Statistics and the load generator, on a small in-test target (no engine needed)."""

from __future__ import annotations

import random
import threading
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bench.loadgen import Delta, arrival_offsets, run_level
from bench.stats import PERCENTILES, Sample, distribution, percentile, ratio, summarize_level


def test_percentile_matches_linear_interpolation():
    values = [10.0, 20.0, 30.0, 40.0]
    assert percentile(values, 50) == pytest.approx(25.0)
    assert percentile(values, 0) == 10.0
    assert percentile(values, 100) == 40.0
    assert percentile(values, 90) == pytest.approx(37.0)
    assert percentile([7.0], 99) == 7.0
    with pytest.raises(ValueError, match="at least one"):
        percentile([], 50)


@given(st.lists(st.floats(min_value=0, max_value=1e6, allow_nan=False), min_size=1, max_size=50))
def test_distribution_is_ordered(values):
    d = distribution(values)
    chain = [d["min"], *(d[f"p{q}"] for q in PERCENTILES), d["max"]]
    assert all(a <= b + 1e-9 for a, b in zip(chain, chain[1:]))
    assert d["n"] == len(values)


def test_sample_rates_and_level_summary():
    fast = Sample("t", 2, 0, start_s=0.0, e2e_ms=1000.0, ttft_ms=100.0, tokens=10, itl_ms=[100.0] * 9)
    slow = Sample("t", 2, 1, start_s=0.5, e2e_ms=2000.0, ttft_ms=300.0, tokens=20, itl_ms=[50.0] * 19)
    failed = Sample("t", 2, 2, start_s=0.0, e2e_ms=5.0, status="RpcError: unavailable")
    assert fast.tokens_per_s == pytest.approx(10.0)
    assert fast.decode_tokens_per_s == pytest.approx(10.0)
    assert slow.decode_tokens_per_s == pytest.approx(20.0)
    assert failed.tokens_per_s is None
    level = summarize_level([fast, slow, failed], 2)
    assert (level["requests"], level["ok"], level["errors"]) == (3, 2, ["RpcError: unavailable"])
    assert level["wall_s"] == pytest.approx(2.5)  # first send at 0, last end at 0.5 + 2.0
    assert level["aggregate_tokens_per_s"] == pytest.approx(30 / 2.5)
    assert level["ttft_ms"]["p50"] == pytest.approx(200.0)
    assert ratio(3.0, 2.0) == 1.5 and ratio(None, 2.0) is None and ratio(1.0, 0.0) is None


def test_arrivals_are_poisson_at_the_rate():
    assert arrival_offsets(3, 0.0, random.Random(0)) == [0.0, 0.0, 0.0]
    offsets = arrival_offsets(2000, 4.0, random.Random(0))
    assert offsets == sorted(offsets) and offsets[0] == 0.0
    assert offsets[-1] / len(offsets) == pytest.approx(0.25, rel=0.1)


class _Echo:
    """Streams a prompt word by word with a fixed delay; counts requests in flight."""

    name = "echo"

    def __init__(self, delay_s: float = 0.01, fail_on: str = ""):
        self.delay_s, self.fail_on = delay_s, fail_on
        self.in_flight = self.peak = 0
        self.lock = threading.Lock()

    def stream(self, prompt, max_tokens=None):
        with self.lock:
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)
        try:
            if prompt == self.fail_on:
                raise ConnectionError("refused")
            for word in prompt.split()[:max_tokens]:
                time.sleep(self.delay_s)
                yield Delta(word + " ")
        finally:
            with self.lock:
                self.in_flight -= 1


def test_run_level_caps_concurrency_and_times_every_delta():
    target = _Echo(delay_s=0.02)
    prompts = [(i, "a b c d") for i in range(6)]
    samples = run_level(target, prompts, 3)
    assert target.peak == 3
    assert [s.prompt_index for s in samples] == list(range(6))
    for s in samples:
        assert s.ok and s.tokens == 4 and s.text == "a b c d "
        assert len(s.itl_ms) == 3 and all(gap >= 15 for gap in s.itl_ms)
        assert 15 <= s.ttft_ms < s.e2e_ms


def test_run_level_records_failures_and_empty_answers():
    target = _Echo(fail_on="boom")
    samples = run_level(target, [(0, "boom"), (1, ""), (2, "ok")], 1)
    assert samples[0].status == "ConnectionError: refused"
    assert samples[1].status.startswith("empty")
    assert samples[2].ok


def test_rate_spaces_out_sends():
    samples = run_level(_Echo(delay_s=0.001), [(i, "x") for i in range(5)], 5, rate=20.0, seed=1)
    starts = [s.start_s for s in samples]
    expected = arrival_offsets(5, 20.0, random.Random(1))
    assert all(abs(a - b) < 0.05 for a, b in zip(starts, expected))
