"""Watching a job to its end: events and checkpoint metrics as a progress bar, every status change recorded."""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Any

from edgetune.rundir import RunDir
from train.openai_ft.config import OpenAIFineTuneConfig
from train.openai_ft.errors import JobFailed, WatchTimeout
from train.openai_ft.plot import LOSS_PLOT, plot_losses
from edgetune.artifacts import TERMINAL, FineTuneRecord, openai_ft_path
from train.openai_ft.record import save_record

if TYPE_CHECKING:
    from openai import OpenAI


class _Progress:
    """Turns a job's events and checkpoints into a tqdm bar (steps, losses) and timestamped status lines."""

    def __init__(self) -> None:
        self.seen_events: set[str] = set()
        self.seen_checkpoints: set[str] = set()
        self.metrics: list[dict[str, Any]] = []
        self.checkpoints: list[dict[str, Any]] = []
        self.bar: Any = None

    def say(self, text: str) -> None:
        from tqdm import tqdm

        tqdm.write(text, file=sys.stderr)

    def events(self, client: "OpenAI", job_id: str) -> None:
        fresh = []
        for event in client.fine_tuning.jobs.list_events(job_id, limit=50):  # newest first, pages through older
            if event.id in self.seen_events:
                break
            fresh.append(event)
        for event in reversed(fresh):
            self.seen_events.add(event.id)
            if event.type == "metrics" and isinstance(event.data, dict):
                self._metrics(event.data)
            else:
                stamp = time.strftime("%H:%M:%S", time.localtime(event.created_at))
                self.say(f"[{stamp}] {event.level:5s} {event.message}")

    def _metrics(self, data: dict[str, Any]) -> None:
        from tqdm import tqdm

        self.metrics.append(data)
        if self.bar is None:
            self.bar = tqdm(total=data.get("total_steps"), desc="fine-tuning", unit="step", file=sys.stderr)
        self.bar.n = int(data.get("step", self.bar.n))
        self.bar.set_postfix({k: round(data[k], 4) for k in ("train_loss", "valid_loss") if data.get(k) is not None})

    def checkpoints_of(self, client: "OpenAI", job_id: str) -> None:
        for checkpoint in sorted(client.fine_tuning.jobs.checkpoints.list(job_id), key=lambda c: c.step_number):
            if checkpoint.id in self.seen_checkpoints:
                continue
            self.seen_checkpoints.add(checkpoint.id)
            metrics = checkpoint.metrics.model_dump(exclude_none=True)
            self.checkpoints.append({"id": checkpoint.id, "step": checkpoint.step_number,
                                     "model": checkpoint.fine_tuned_model_checkpoint, "metrics": metrics})
            shown = ", ".join(f"{k}={v:.4f}" for k, v in metrics.items() if k != "step")
            self.say(f"checkpoint step {checkpoint.step_number}: {checkpoint.fine_tuned_model_checkpoint} ({shown})")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def watch(run_dir: RunDir, config: OpenAIFineTuneConfig, client: "OpenAI", record: FineTuneRecord) -> FineTuneRecord:
    """Poll the job until it ends, showing events and checkpoint metrics; record every status change.

    Returns the succeeded record (its ``model`` is the fine-tuned id); raises JobFailed when the job fails or is
    cancelled, WatchTimeout after ``config.watch_timeout`` seconds (the job keeps running).
    """
    assert record.job_id, "watch needs a created job"
    progress = _Progress()
    deadline = None if config.watch_timeout is None else time.monotonic() + config.watch_timeout
    try:
        while True:
            job = client.fine_tuning.jobs.retrieve(record.job_id)
            progress.events(client, job.id)
            if job.status in ("running", *TERMINAL):
                progress.checkpoints_of(client, job.id)
            if job.status != record.status:
                progress.say(f"job {job.id}: {record.status} -> {job.status}")
                record.status = job.status
                save_record(run_dir, record)
            if job.status in TERMINAL:
                break
            if deadline is not None and time.monotonic() > deadline:
                raise WatchTimeout(f"stopped watching job {job.id} ({job.status}) after {config.watch_timeout:g} s; "
                                   "it keeps running: rerun, or --watch to reattach")
            time.sleep(config.poll_seconds)
    finally:
        progress.close()
    record.model = job.fine_tuned_model if job.status == "succeeded" else None
    record.trained_tokens, record.job_finished_at = job.trained_tokens, job.finished_at
    record.hyperparameters = job.hyperparameters.model_dump(exclude_none=True) or record.hyperparameters
    record.error = job.error.model_dump() if job.error else None
    record.metrics, record.checkpoints = progress.metrics, progress.checkpoints
    record.base_model = record.base_model or job.model
    save_record(run_dir, record)
    if job.status != "succeeded":
        why = f": {job.error.code}: {job.error.message}" if job.error else ""
        param = f" (param {job.error.param})" if job.error and job.error.param else ""
        raise JobFailed(f"job {job.id} {job.status}{why}{param}", record)
    plot_losses(run_dir.root / LOSS_PLOT, record.metrics)
    print(f"fine-tuned model: {record.model} ({record.trained_tokens} trained tokens); "
          f"recorded in {openai_ft_path(run_dir)}")
    return record


