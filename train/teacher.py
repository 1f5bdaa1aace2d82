"""Teacher-model data generation against any OpenAI-compatible endpoint (work in progress)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class TeacherConfig:
    """Teacher settings; empty strings fall back to the environment."""

    base_url: str = ""  #: OpenAI-compatible endpoint (default: $TEACHER_BASE_URL, else api.openai.com)
    model: str = ""  #: teacher model (default: $TEACHER_MODEL, else gpt-4o-mini)
    concurrency: int = 4  #: requests in flight at once
    max_requests: int | None = None  #: hard limit on requests (None: unlimited)
    max_cost: float | None = None  #: hard limit on spend in USD (None: unlimited)
    paraphrase: bool = False  #: rephrase synthesized commands (keeping their answers) instead of inventing new ones


def generate(task, config: TeacherConfig, workdir, n: int, seed: int):
    raise NotImplementedError("teacher mode lands in the next commit")
