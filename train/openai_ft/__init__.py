"""Fine-tune an OpenAI model on the run's dataset: the edge server's remote fallback and the cloud comparison.

The modules, one job each: config (settings and model terms), validate (the data as OpenAI checks it), planning
(inputs and cost), client (the checked client, uploads), record (openai_ft.json), watch (and plot), job (start,
reattach, cancel) and cli (``python -m train openai-ft``, whose help says how to use it).
"""

from edgetune.artifacts import FineTuneRecord
from train.openai_ft.cli import main
from train.openai_ft.config import MODEL_TERMS, ModelTerms, OpenAIFineTuneConfig
from train.openai_ft.errors import JobFailed, OpenAIFineTuneError, WatchTimeout
from train.openai_ft.job import attach, cancel, fine_tune
from train.openai_ft.planning import Plan, plan
from train.openai_ft.record import save_record
from train.openai_ft.validate import DataValidationError, estimate_tokens, validate_chat_file

__all__ = [
    "DataValidationError", "FineTuneRecord", "JobFailed", "MODEL_TERMS", "ModelTerms", "OpenAIFineTuneConfig",
    "OpenAIFineTuneError", "Plan", "WatchTimeout", "attach", "cancel", "estimate_tokens", "fine_tune",
    "main", "plan", "save_record", "validate_chat_file",
]
