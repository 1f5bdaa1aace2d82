"""Saving the job's record: edgetune.artifacts owns openai_ft.json and the manifest stage "openai_ft" (the job, and
on success the model to serve); this writes them on every status change, so restarts find the job."""

from __future__ import annotations

from edgetune.artifacts import FineTuneRecord, write_openai_ft
from edgetune.rundir import RunDir
from train.openai_ft.planning import Plan


def save_record(run_dir: RunDir, record: FineTuneRecord, plan_: Plan | None = None) -> None:
    """Write openai_ft.json and the manifest stage atomically, with the split files the job was made from."""
    inputs = {"train": {"path": str(plan_.train_path), "sha256": plan_.train_sha256},
              "val": {"path": str(plan_.val_path), "sha256": plan_.val_sha256}} if plan_ else None
    write_openai_ft(run_dir, record, inputs)
