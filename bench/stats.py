"""Per-request samples and their summaries. Pure Python on purpose: tests and --compare need no engine."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

PERCENTILES = (50, 90, 95, 99)


@dataclass
class Sample:
    """One measured request, timed on the client: what the robot feels."""

    target: str
    concurrency: int
    prompt_index: int
    start_s: float  #: send time relative to the start of its concurrency level
    e2e_ms: float  #: send -> last byte
    ttft_ms: float | None = None  #: send -> first non-empty text (None when no text came back)
    # one per streamed piece, for every target alike: a piece is one token unless text was held back (the possible
    # start of a stop string, a split UTF-8 character)
    tokens: int = 0  #: output tokens
    itl_ms: list[float] = field(default_factory=list)  #: gaps between consecutive streamed deltas
    status: str = "ok"  #: "ok", or the error (type: message) that ended the request
    text: str = ""
    engine: dict[str, float] | None = None  #: the engine's own timings (ms since it got the request), if it says

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def tokens_per_s(self) -> float | None:
        """Output tokens over end-to-end time: the request's whole-answer rate."""
        return self.tokens / (self.e2e_ms / 1e3) if self.ok and self.e2e_ms > 0 and self.tokens else None

    @property
    def decode_tokens_per_s(self) -> float | None:
        """Tokens after the first over the time they took: the decode rate, prompt processing excluded."""
        spent = sum(self.itl_ms)
        return (self.tokens - 1) / (spent / 1e3) if self.ok and self.tokens > 1 and spent > 0 else None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["itl_ms"] = [round(x, 3) for x in self.itl_ms]
        return out


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (numpy's default method); monotone in ``q`` by construction."""
    if not values:
        raise ValueError("Expected at least one value, got none")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def distribution(values: Sequence[float]) -> dict[str, float] | None:
    """p50/p90/p95/p99, mean, min, max and count of ``values``; None when there are none."""
    values = [v for v in values if v is not None]
    if not values:
        return None
    out = {f"p{q}": percentile(values, q) for q in PERCENTILES}
    out.update(mean=sum(values) / len(values), min=min(values), max=max(values), n=len(values))
    return out


def level_wall_s(samples: Sequence[Sample]) -> float:
    """From the first send to the last answer's end of samples sent together (one run_level)."""
    return max((s.start_s + s.e2e_ms / 1e3 for s in samples), default=0.0) - min(
        (s.start_s for s in samples), default=0.0
    )


def summarize_level(samples: Sequence[Sample], concurrency: int, wall_s: float | None = None) -> dict[str, Any]:
    """What one concurrency level of one target measured; ``wall_s``: the level's time when it was sent in rounds
    (the sum of each round's wall time), else the samples' own span."""
    ok = [s for s in samples if s.ok]
    wall_s = level_wall_s(samples) if wall_s is None else wall_s
    total_tokens = sum(s.tokens for s in ok)
    return {
        "concurrency": concurrency,
        "requests": len(samples),
        "ok": len(ok),
        "errors": sorted({s.status for s in samples if not s.ok}),
        "wall_s": wall_s,
        "output_tokens": total_tokens,
        "aggregate_tokens_per_s": total_tokens / wall_s if wall_s > 0 else None,
        "requests_per_s": len(ok) / wall_s if wall_s > 0 else None,
        "tokens_per_request": distribution([s.tokens for s in ok]),
        "ttft_ms": distribution([s.ttft_ms for s in ok]),
        "itl_ms": distribution([gap for s in ok for gap in s.itl_ms]),
        "e2e_ms": distribution([s.e2e_ms for s in ok]),
        "tokens_per_s": distribution([s.tokens_per_s for s in ok]),
        "decode_tokens_per_s": distribution([s.decode_tokens_per_s for s in ok]),
        "engine_ttft_ms": distribution([s.engine["ttft_ms"] for s in ok if s.engine]),
        "engine_queue_ms": distribution([s.engine["queue_ms"] for s in ok if s.engine]),
        "wire_ttft_ms": distribution([s.ttft_ms - s.engine["ttft_ms"] for s in ok if s.engine]),
    }


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """``numerator / denominator``, or None when either is missing or the denominator is zero."""
    if numerator is None or not denominator:
        return None
    return numerator / denominator
