"""Fine-tune an OpenAI model on the run's dataset: the edge server's remote fallback and the cloud comparison.

    python -m train openai-ft --run default --dry-run      validate the data and estimate the cost; no network
    python -m train openai-ft --run default                validate, estimate, confirm, upload, train, watch
    python -m train openai-ft --run default --yes          the same without the prompt (needed without a TTY / in CI)
    python -m train openai-ft --run default --watch        reattach to the job recorded in the run directory
    python -m train openai-ft --run default --watch JOB    reattach to (and adopt) any job
    python -m train openai-ft --run default --cancel       cancel the recorded job (or --cancel JOB)

The key comes from OPENAI_API_KEY or a git-ignored ./.env line ``OPENAI_API_KEY=...`` and is never printed or
recorded; the endpoint from --base-url, else OPENAI_BASE_URL, else https://api.openai.com/v1. The key is checked with
one cheap authenticated call before anything is uploaded. The job id is written to runs/RUN/openai_ft.json the moment
the job exists, so an interrupted run resumes: running the same command again watches that job instead of starting
another. On success runs/RUN/openai_ft.json and the manifest stage "openai_ft" hold the fine-tuned model id, which
the server uses as its remote backend.

The modules, one job each: config (settings and model terms), validate (the data as OpenAI checks it), planning
(inputs and cost), client (the checked client, uploads), record (openai_ft.json), watch (and plot), job (start,
reattach, cancel) and cli (``python -m train openai-ft``).
"""

from train.openai_ft.cli import main
from train.openai_ft.config import MODEL_TERMS, ModelTerms, OpenAIFineTuneConfig
from train.openai_ft.errors import JobFailed, OpenAIFineTuneError, WatchTimeout
from train.openai_ft.job import attach, cancel, fine_tune
from train.openai_ft.planning import Plan, plan
from train.openai_ft.record import RESULT_FILE, FineTuneRecord, load_record, save_record
from train.openai_ft.validate import DataValidationError, estimate_tokens, validate_chat_file

__all__ = [
    "DataValidationError", "FineTuneRecord", "JobFailed", "MODEL_TERMS", "ModelTerms", "OpenAIFineTuneConfig",
    "OpenAIFineTuneError", "Plan", "RESULT_FILE", "WatchTimeout", "attach", "cancel", "estimate_tokens", "fine_tune",
    "load_record", "main", "plan", "save_record", "validate_chat_file",
]
