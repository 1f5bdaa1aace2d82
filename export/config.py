"""The export stage's config: a dataclass read from YAML plus ``key=value`` overrides (edgetune.config.load)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator

#: Quantization types that need no importance matrix, in llama.cpp's names. F16/BF16/F32 come straight from the
#: converter; the rest are made from the F16 file by ``llama_model_quantize``.
KNOWN_QUANTS = (
    "F32", "BF16", "F16", "Q8_0", "Q6_K", "Q5_K_M", "Q5_K_S", "Q5_1", "Q5_0",
    "Q4_K_M", "Q4_K_S", "Q4_1", "Q4_0", "Q3_K_L", "Q3_K_M", "Q3_K_S", "Q2_K",
)
DEFAULT_QUANTS = ["F16", "Q8_0", "Q6_K", "Q4_K_M"]


@dataclass
class ExportConfig:
    """What `python -m export` does; every field can be set in --config YAML or as key=value."""

    run: str  #: run directory name under runs/ (reads adapter/, data/test.jsonl, manifest.json; writes bundle/)
    runs_dir: str = ""  #: folder holding the run directories ("" = runs/, or $EDGETUNE_RUNS)
    quants: list[str] = field(default_factory=lambda: list(DEFAULT_QUANTS))  #: GGUF types to make; F16 is the reference
    eval_samples: int = 50  #: test examples scored per quant and mode (0 = the whole test split)
    human_samples: int = 50  #: examples of the task's held-out human set scored per quant, grammar on (0 = all)
    greedy_prompts: int = 8  #: test prompts on which HF-merged and F16 GGUF greedy outputs are compared
    min_greedy_agreement: float = 0.75  #: fraction of those prompts whose greedy tokens must be identical
    tolerance: float = 2.0  #: points of exact match (0-100) a quant may lose against F16 and still be chosen
    max_truncated: float = 0.0  #: fraction of answers of a quant allowed to run into max_tokens (0 = all must stop)
    max_model_mb: float = 0.0  #: memory budget: the chosen GGUF file must not exceed it, in MiB (0 = no limit)
    max_tokens: int = 0  #: answer length limit in tokens (0 = the task's generation.max_tokens)
    n_ctx: int = 1024  #: llama.cpp context for verification
    threads: int = 0  #: CPU threads for llama.cpp and torch (0 = all cores)
    sequences: int = 4  #: answers the engine decodes at once while scoring quants (greedy answers are the same)
    seed: int = 0  #: picks the evaluated sample of the test split

    def check(self) -> Iterator[tuple[str, str]]:
        for i, quant in enumerate(self.quants):
            if quant.upper() not in KNOWN_QUANTS:
                yield f"quants[{i}]", f"unknown quant {quant!r}; choose from {', '.join(KNOWN_QUANTS)}"
        if "F16" not in [q.upper() for q in self.quants]:
            yield "quants", "must include F16: it is the reference every other quant is measured against"
        if len({q.upper() for q in self.quants}) != len(self.quants):
            yield "quants", "lists a quant twice"
        if self.sequences < 1:
            yield "sequences", "must be >= 1 (answers decoded at once)"
        for name in ("eval_samples", "human_samples", "greedy_prompts", "max_tokens", "threads"):
            if getattr(self, name) < 0:
                yield name, "must be >= 0"
        for name in ("min_greedy_agreement", "max_truncated"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                yield name, "is a fraction between 0 and 1"
        if not 0.0 <= self.tolerance <= 100.0:
            yield "tolerance", "is in points of exact match, between 0 and 100"
        if self.max_model_mb < 0:
            yield "max_model_mb", "must be >= 0 (0 = no limit)"
        if self.n_ctx < 64:
            yield "n_ctx", "must be at least 64"

    def __post_init__(self) -> None:
        self.quants = [q.upper() for q in self.quants]
