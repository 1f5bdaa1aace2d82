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
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence

from edgetune import endpoint
from edgetune.cli import Stage
from edgetune.rundir import RunDir
from train.openai_ft.config import OpenAIFineTuneConfig
from train.openai_ft.errors import OpenAIFineTuneError
from train.openai_ft.job import attach, cancel, fine_tune
from train.openai_ft.planning import Plan, _usd, plan
from train.openai_ft.validate import DataValidationError


def _confirm_interactively(plan_: Plan) -> bool:
    """Ask on a terminal; refuse to guess without one (CI, pipes): spending money needs --yes there."""
    if not sys.stdin.isatty() or os.environ.get("CI"):
        raise OpenAIFineTuneError("this starts a paid OpenAI fine-tuning job and there is no terminal to confirm on "
                                  "(or CI is set): pass --yes to go ahead; nothing was uploaded")
    cost = "an unknown amount" if plan_.cost_usd is None else f"~{_usd(plan_.cost_usd)}"
    return input(f"Upload and start the job for {cost}? [y/N] ").strip().lower() in ("y", "yes")


def _flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--yes", "-y", action="store_true", help="start the paid job without asking")
    parser.add_argument("--dry-run", action="store_true", help="validate and estimate only; no network, no key")
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--watch", nargs="?", const="", metavar="JOB", help="reattach to JOB (default: recorded)")
    action.add_argument("--cancel", nargs="?", const="", metavar="JOB", help="cancel JOB (default: recorded)")


def _run(config: OpenAIFineTuneConfig, run_dir: RunDir, args: argparse.Namespace) -> None:
    if args.dry_run:
        print(plan(run_dir, config).describe(config.model))
        return
    import openai

    credentials = endpoint.resolve(config.base_url, require_key=False)
    try:
        if args.cancel is not None:
            cancel(run_dir, config, credentials, args.cancel or None)
        elif args.watch is not None:
            attach(run_dir, config, credentials, args.watch or None)
        else:
            fine_tune(run_dir, config, credentials, lambda p: True if args.yes else _confirm_interactively(p))
    except openai.APIStatusError as exc:
        raise OpenAIFineTuneError(f"the API answered {exc.status_code}: {exc.message}") from exc
    except openai.APIConnectionError as exc:
        raise OpenAIFineTuneError(f"lost the connection to the API ({exc}); rerun to reattach") from exc


STAGE = Stage(
    prog="python -m train openai-ft", config=OpenAIFineTuneConfig, run=_run,
    doc=__doc__,
    flags={"--poll-interval": "poll_seconds"}, reads_run=True, extra=_flags,
    bad_input=(DataValidationError, FileNotFoundError), failed=(OpenAIFineTuneError,),
    interrupted="detached; the job keeps running: rerun the same command (or --watch) to reattach, --cancel to stop",
)


def main(argv: Sequence[str] | None = None) -> int:
    return STAGE.main(argv)
