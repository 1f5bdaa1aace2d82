"""The bench stage's config: what to load, how hard, and against what."""

from __future__ import annotations

from dataclasses import dataclass, field

BASELINES = ("inprocess", "llama_cpp_server", "llama_server", "remote")


@dataclass
class BenchConfig:
    """Settings of one benchmark run (``python -m bench --help`` explains each flag)."""

    run: str = "default"  #: run directory under runs/; results go to runs/RUN/bench/
    runs_dir: str = ""  #: folder holding the run directories (default: $EDGETUNE_RUNS, else runs/)
    concurrency: list[int] = field(default_factory=lambda: [1, 2, 4, 8])  #: in-flight request counts to sweep
    requests: int = 24  #: requests per concurrency level (at least the concurrency itself); 24 keeps make bench ~3 min
    rate: float = 0.0  #: request arrivals per second (Poisson); 0 = closed loop, each worker sends back to back
    rounds: int = 2  #: each level is sent in this many rounds, the targets taking turns (fair on a busy machine)
    warmup: int = 2  #: unmeasured requests per target before the sweep (load pages, fill caches)
    max_tokens: int = 0  #: output cap per latency request; 0 = the bundle's max_tokens (whole answers: equal work)
    quality_prompts: int = 24  #: prompts answered whole (the bundle's max_tokens) per target for the quality table
    target: str = ""  #: host:port of an already-running edgetune server; empty = start one on a free port
    token: str = ""  #: bearer token for --target servers that require one
    model: str = ""  #: GGUF to bench; empty = the bundle's chosen quant, or the embedded model without a bundle
    baselines: list[str] = field(default_factory=lambda: list(BASELINES))  #: which baselines to measure
    n_threads: int = 0  #: llama.cpp decode threads for every engine; 0 = llama.cpp's default (cores // 2)
    n_ctx: int = 2048  #: context size for every engine
    grammar: bool = True  #: constrain with the bundle's GBNF grammar (as the server does) where the engine can
    seed: int = 0  #: seeds prompt order and arrival times
    bandwidth_mib: int = 512  #: array size for the memory-bandwidth probe (well above any last-level cache)
    request_timeout_s: float = 120.0  #: a request slower than this is recorded as a timeout
    startup_timeout_s: float = 120.0  #: how long a server subprocess may take to load its model

    def check(self):
        if not self.concurrency:
            yield "concurrency", "give at least one level, e.g. 1,2,4,8"
        if any(c < 1 for c in self.concurrency):
            yield "concurrency", f"levels are positive integers, got {self.concurrency}"
        if self.requests < 1:
            yield "requests", f"must be >= 1, got {self.requests}"
        if self.rate < 0:
            yield "rate", f"must be >= 0 requests/s (0 = closed loop), got {self.rate}"
        if self.rounds < 1:
            yield "rounds", f"must be >= 1, got {self.rounds}"
        if self.warmup < 0:
            yield "warmup", f"must be >= 0, got {self.warmup}"
        if self.quality_prompts < 0:
            yield "quality_prompts", f"must be >= 0 (0 = no quality table), got {self.quality_prompts}"
        if self.max_tokens < 0:
            yield "max_tokens", f"must be >= 0 (0 = the bundle's), got {self.max_tokens}"
        if self.target and (":" not in self.target or not self.target.rsplit(":", 1)[1].isdigit()):
            yield "target", f"use host:port, e.g. 127.0.0.1:50051, got {self.target!r}"
        unknown = sorted(set(self.baselines) - set(BASELINES))
        if unknown:
            yield "baselines", f"unknown {unknown}; choose from {list(BASELINES)}"
        if self.n_threads < 0:
            yield "n_threads", f"must be >= 0 (0 = llama.cpp default), got {self.n_threads}"
        if self.n_ctx < 256:
            yield "n_ctx", f"must be >= 256, got {self.n_ctx}"
        if self.bandwidth_mib < 64:
            yield "bandwidth_mib", f"must be >= 64 MiB to defeat caches, got {self.bandwidth_mib}"

    def levels(self) -> list[int]:
        """Sorted unique concurrency levels."""
        return sorted(set(self.concurrency))
