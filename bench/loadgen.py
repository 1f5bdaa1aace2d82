"""The client-side load generator: N workers stream requests from one target and time every delta.

Closed loop by default (each worker sends its next request as soon as the last one ends); with a rate, requests
arrive as a seeded Poisson process and at most ``concurrency`` are in flight, like vLLM's benchmark_serving with
--request-rate and --max-concurrency. Timestamps are taken on the client with perf_counter, so they include the
transport, the server's queueing and its scheduling -- what the robot feels.
"""

from __future__ import annotations

import queue
import random
import threading
import time
from typing import Callable, Iterator, NamedTuple, Protocol, Sequence

from bench.stats import Sample


class Delta(NamedTuple):
    """One streamed piece of an answer; ``tokens`` is how many tokens it carries when the engine says so.
    An engine that measures itself ends with a textless Delta whose ``engine`` holds its own timings (ms)."""

    text: str
    tokens: int = 1
    engine: dict[str, float] | None = None


class Target(Protocol):
    """Anything that streams an answer to a user message."""

    name: str

    def stream(self, prompt: str, max_tokens: int | None = None) -> Iterator[Delta]: ...


def measure(target: Target, prompt: str, prompt_index: int, concurrency: int, level_start: float,
            deadline_s: float, max_tokens: int | None = None) -> Sample:
    """Send one request and time it; a failed request becomes a Sample with its error as the status."""
    start = time.perf_counter()
    stamps: list[float] = []
    parts: list[str] = []
    tokens = 0
    status = "ok"
    engine = None
    try:
        for delta in target.stream(prompt, max_tokens):
            now = time.perf_counter()
            engine = delta.engine or engine
            if delta.text:
                stamps.append(now)
                parts.append(delta.text)
                tokens += delta.tokens
            if now - start > deadline_s:
                status = f"timeout: no end after {deadline_s:g} s"
                break
    # A load generator records every failure as data (the status) and keeps going; the summary counts them.
    except Exception as exc:  # noqa: BLE001
        status = f"{type(exc).__name__}: {exc}"[:300]
    end = time.perf_counter()
    return Sample(
        target=target.name,
        concurrency=concurrency,
        prompt_index=prompt_index,
        start_s=start - level_start,
        e2e_ms=(end - start) * 1e3,
        ttft_ms=(stamps[0] - start) * 1e3 if stamps else None,
        tokens=tokens,
        itl_ms=[(b - a) * 1e3 for a, b in zip(stamps, stamps[1:])],
        status=status if status != "ok" or stamps else "empty: the answer had no text",
        text="".join(parts),
        engine=engine,
    )


def arrival_offsets(n: int, rate: float, rng: random.Random) -> list[float]:
    """Send times (s from the level's start) of ``n`` requests: all 0 for closed loop, Poisson for a rate."""
    if rate <= 0:
        return [0.0] * n
    offsets, t = [], 0.0
    for _ in range(n):
        offsets.append(t)
        t += rng.expovariate(rate)
    return offsets


def run_level(target: Target, prompts: Sequence[tuple[int, str]], concurrency: int, *, rate: float = 0.0,
              seed: int = 0, deadline_s: float = 120.0, max_tokens: int | None = None,
              on_done: Callable[[Sample], None] | None = None) -> list[Sample]:
    """Send every (index, prompt) in ``prompts`` with at most ``concurrency`` in flight; samples in send order."""
    offsets = arrival_offsets(len(prompts), rate, random.Random(seed))
    jobs: queue.Queue[int] = queue.Queue()
    for i in range(len(prompts)):
        jobs.put(i)
    results: list[Sample | None] = [None] * len(prompts)
    level_start = time.perf_counter()

    def worker() -> None:
        while True:
            try:
                i = jobs.get_nowait()
            except queue.Empty:
                return
            delay = level_start + offsets[i] - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            index, prompt = prompts[i]
            results[i] = sample = measure(target, prompt, index, concurrency, level_start, deadline_s, max_tokens)
            if on_done:
                on_done(sample)

    workers = [threading.Thread(target=worker, name=f"bench-{target.name}-{n}", daemon=True)
               for n in range(min(concurrency, len(prompts)))]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    return [s for s in results if s is not None]
