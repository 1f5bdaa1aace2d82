"""runs/RUN/openai_ft.json and the manifest stage "openai_ft": the job, and on success the model to serve."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from edgetune.config import from_dict, to_dict
from edgetune.rundir import RunDir, atomic_write_json
from train.openai_ft.planning import Plan

TERMINAL = ("succeeded", "failed", "cancelled")
RESULT_FILE = "openai_ft.json"


@dataclass
class FineTuneRecord:
    """runs/RUN/openai_ft.json and the manifest stage "openai_ft": the job, and on success the model to serve."""

    job_id: str | None
    base_url: str
    status: str  #: uploaded, validating_files, queued, running, succeeded, failed or cancelled
    model: str | None = None  #: the fine-tuned model id (ft:...), set only when status is "succeeded"
    base_model: str | None = None
    fingerprint: str | None = None
    training_file: str | None = None
    validation_file: str | None = None
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    suffix: str | None = None
    seed: int | None = None
    trained_tokens: int | None = None
    estimated_cost_usd: float | None = None
    error: dict[str, Any] | None = None
    checkpoints: list[dict[str, Any]] = field(default_factory=list)
    metrics: list[dict[str, Any]] = field(default_factory=list)  #: per-step metrics from the job's events
    job_created_at: int | None = None  #: unix time (the manifest's own finished_at is when this was recorded)
    job_finished_at: int | None = None

    @property
    def active(self) -> bool:
        return self.job_id is not None and self.status not in TERMINAL


def load_record(run_dir: RunDir) -> FineTuneRecord | None:
    path = run_dir.root / RESULT_FILE
    if not path.is_file():
        return None
    return from_dict(FineTuneRecord, json.loads(path.read_text(encoding="utf-8")), source=path)


def save_record(run_dir: RunDir, record: FineTuneRecord, plan_: Plan | None = None) -> None:
    """Write openai_ft.json and the manifest stage atomically (on every status change, so restarts find the job)."""
    facts = to_dict(record)
    atomic_write_json(run_dir.root / RESULT_FILE, facts)
    inputs = {"train": {"path": str(plan_.train_path), "sha256": plan_.train_sha256},
              "val": {"path": str(plan_.val_path), "sha256": plan_.val_sha256}} if plan_ else None
    previous = run_dir.stage("openai_ft") or {}
    run_dir.record("openai_ft", **facts, inputs=inputs or previous.get("inputs"),
                   outputs={"result": str(run_dir.root / RESULT_FILE)})

