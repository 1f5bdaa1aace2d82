"""What stops a fine-tune; the CLI exits 1 on these (the job failed), 2 on bad input."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from edgetune.artifacts import FineTuneRecord


class OpenAIFineTuneError(RuntimeError):
    """A fine-tune that cannot go on; the message says why and what to do."""


class JobFailed(OpenAIFineTuneError):
    """The job ended failed or cancelled; ``record`` holds what the run directory recorded."""

    def __init__(self, message: str, record: "FineTuneRecord"):
        super().__init__(message)
        self.record = record


class WatchTimeout(OpenAIFineTuneError):
    """Stopped watching (watch_timeout); the job keeps running and can be reattached."""

