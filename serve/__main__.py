"""The gRPC edge server.

    python -m serve --run default --port 50051                 # serves runs/default/bundle (embedded model if none)
    python -m serve --contexts 4 --queue 16 --threads 2        # 4 requests decode at once, 16 may wait
    python -m serve --remote-model ft:gpt-4o-mini:acme::x      # OpenAI fine-tuned fallback (OPENAI_API_KEY)
    python -m serve --remote-base-url http://127.0.0.1:8000/v1 --remote-model smol   # any OpenAI-compatible server
    python -m serve --token-file token.txt --tls-cert srv.pem --tls-key srv.key [--tls-client-ca ca.pem]
    python -m serve --config serve.yaml --set queue=4          # the same fields from YAML + key=value overrides
    python -m serve --custom-grammars                          # accept GBNF / JSON-schema constraints (workers)

Health (grpc.health.v1) is NOT_SERVING until the model is loaded; SIGTERM drains in-flight requests, then stops.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence

from edgetune.cli import Stage, given
from edgetune.embedded import ModelFetchError
from edgetune.rundir import RunDir
from serve.config import ServeConfig
from serve.threads import prefer_passive_waits


def _run(config: ServeConfig, run_dir: RunDir, args: argparse.Namespace) -> int:
    if given(args, "token"):
        print("warning: --token is visible to every user in ps; use --token-file or $EDGETUNE_TOKEN", file=sys.stderr)
    elif not config.token and not config.token_file and os.environ.get("EDGETUNE_TOKEN"):
        config.token = os.environ["EDGETUNE_TOKEN"]
    prefer_passive_waits()  # before serve.server loads llama.cpp (libgomp reads its environment once)
    from serve.server import serve

    return serve(config)


STAGE = Stage(prog="python -m serve", config=ServeConfig, run=_run, doc=__doc__,
              bad_input=(FileNotFoundError,), failed=(ModelFetchError,))


def main(argv: Sequence[str] | None = None) -> int:
    return STAGE.main(argv)


if __name__ == "__main__":
    sys.exit(main())
