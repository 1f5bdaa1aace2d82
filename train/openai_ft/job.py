"""The stage: start a fine-tune (or reattach to the recorded one), watch any job, cancel one."""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from edgetune.endpoint import Endpoint
from edgetune.rundir import RunDir
from train.openai_ft.client import check_endpoint, connect, upload
from train.openai_ft.config import OpenAIFineTuneConfig
from train.openai_ft.errors import OpenAIFineTuneError
from train.openai_ft.planning import Plan, plan
from edgetune.artifacts import FineTuneRecord, openai_ft_path, read_openai_ft
from train.openai_ft.record import save_record
from train.openai_ft.watch import watch

if TYPE_CHECKING:
    from openai import OpenAI


def fine_tune(run_dir: RunDir, config: OpenAIFineTuneConfig, credentials: Endpoint,
              confirm: Callable[[Plan], bool]) -> FineTuneRecord:
    """Validate, estimate, check the key, confirm, upload, create the job and watch it to the end.

    A job recorded for the same data and settings is reattached (or, if it succeeded, returned) instead of
    started again. ``confirm`` sees the plan (with its cost) before anything is uploaded; False aborts.
    Raises DataValidationError, OpenAIFineTuneError (JobFailed when the job fails), WatchTimeout.
    """
    plan_ = plan(run_dir, config)
    previous = read_openai_ft(run_dir)
    if previous and previous.job_id and previous.fingerprint == plan_.fingerprint:
        if previous.status == "succeeded":
            print(f"already fine-tuned for this data and settings: {previous.model} (job {previous.job_id})")
            return previous
        if previous.active:
            check_endpoint(previous, credentials)
            print(f"reattaching to job {previous.job_id} ({previous.status}) recorded in {openai_ft_path(run_dir)}")
            return watch(run_dir, config, connect(credentials, config), previous)
    elif previous and previous.active:
        raise OpenAIFineTuneError(
            f"job {previous.job_id} ({previous.status}) is still running for other data or settings: watch it "
            f"with --watch or cancel it with --cancel before starting another")
    print(plan_.describe(config.model))
    client = connect(credentials, config)
    if not confirm(plan_):
        raise OpenAIFineTuneError("not confirmed; nothing was uploaded")
    reusable = previous if previous and previous.fingerprint == plan_.fingerprint else None
    record = FineTuneRecord(
        job_id=None, base_url=credentials.base_url, status="uploaded", base_model=config.model,
        fingerprint=plan_.fingerprint, hyperparameters=config.hyperparameters(), suffix=config.suffix,
        seed=config.seed, estimated_cost_usd=None if plan_.cost_usd is None else round(plan_.cost_usd, 6),
        training_file=upload(client, plan_.train_path, reusable and reusable.training_file),
        validation_file=plan_.val_path and upload(client, plan_.val_path, reusable and reusable.validation_file),
    )
    save_record(run_dir, record, plan_)
    optional = {"validation_file": record.validation_file, "suffix": config.suffix or None, "seed": config.seed}
    job = client.fine_tuning.jobs.create(
        model=config.model, training_file=record.training_file,
        method={"type": "supervised", "supervised": {"hyperparameters": config.hyperparameters()}},
        **{key: value for key, value in optional.items() if value is not None},
    )
    record.job_id, record.status, record.job_created_at = job.id, job.status, job.created_at
    save_record(run_dir, record, plan_)
    print(f"created job {job.id}; recorded in {openai_ft_path(run_dir)} (rerun or --watch to reattach)")
    return watch(run_dir, config, client, record)


def attach(run_dir: RunDir, config: OpenAIFineTuneConfig, credentials: Endpoint,
           job_id: str | None = None) -> FineTuneRecord:
    """Watch ``job_id`` (default: the recorded job) to its end; a job not recorded here is adopted by this run."""
    client, record = _job(run_dir, config, credentials, job_id)
    if record.status == "succeeded" and record.model:
        print(f"job {record.job_id} already succeeded: {record.model}")
        return record
    return watch(run_dir, config, client, record)


def cancel(run_dir: RunDir, config: OpenAIFineTuneConfig, credentials: Endpoint,
           job_id: str | None = None) -> FineTuneRecord:
    """Cancel ``job_id`` (default: the recorded job) and record it as cancelled."""
    client, record = _job(run_dir, config, credentials, job_id)
    job = client.fine_tuning.jobs.cancel(record.job_id)
    record.status = job.status
    save_record(run_dir, record)
    print(f"job {job.id}: {job.status}")
    return record


def _job(run_dir: RunDir, config: OpenAIFineTuneConfig, credentials: Endpoint,
         job_id: str | None) -> tuple["OpenAI", FineTuneRecord]:
    """A client and the job to act on: the recorded one, or ``job_id`` adopted by this run."""
    recorded = _recorded(run_dir, credentials, job_id)
    client = connect(credentials, config)
    return client, recorded or _adopt(client, credentials, job_id)


def _recorded(run_dir: RunDir, credentials: Endpoint, job_id: str | None) -> FineTuneRecord | None:
    """The recorded job when ``job_id`` is None or names it; None when ``job_id`` is another job (to adopt)."""
    recorded = read_openai_ft(run_dir)
    if recorded and recorded.job_id and job_id in (None, recorded.job_id):
        check_endpoint(recorded, credentials)
        return recorded
    if job_id is None:
        raise OpenAIFineTuneError(f"no job recorded in {openai_ft_path(run_dir)}: pass the job id")
    return None


def _adopt(client: "OpenAI", credentials: Endpoint, job_id: str | None) -> FineTuneRecord:
    """A record for a job this run did not create (e.g. started from OpenAI's dashboard)."""
    assert job_id is not None
    job = client.fine_tuning.jobs.retrieve(job_id)
    return FineTuneRecord(job_id=job.id, base_url=credentials.base_url, status=job.status, base_model=job.model,
                          training_file=job.training_file, validation_file=job.validation_file,
                          hyperparameters=job.hyperparameters.model_dump(exclude_none=True),
                          seed=job.seed, job_created_at=job.created_at)
