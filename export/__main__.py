"""``python -m export``: the export stage's command line (edgetune.cli over ExportConfig; see export.bundle).

    python -m export --run default                          # what `make export` runs
    python -m export --run default quants='[F16,Q8_0]' eval_samples=100 --max-model-mb 120
    python -m export --run default --config export.yaml

Merges the run's LoRA adapter into the full-precision base, converts it to GGUF with llama.cpp's own converter,
quantizes it, verifies every file (tokenizer, greedy agreement with the merged model, task score free and
grammar-constrained, stopping) and bundles the smallest quant within the tolerance of F16 into runs/RUN/bundle/.
Exit 1 when the export ran and failed (ExportError: e.g. no quant qualifies), 2 on bad input.
"""

from __future__ import annotations

import signal
import sys
from typing import Sequence

from edgetune.artifacts import read_bundle_manifest
from edgetune.cli import Stage
from edgetune.rundir import RunDir
from export import ExportError
from export.config import ExportConfig


def _run(config: ExportConfig, run_dir: RunDir, args) -> None:
    from export.bundle import run

    # SIGTERM (docker stop, CI timeouts) unwinds like Ctrl-C, so the staging folder is removed
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    try:
        bundle = run(config)
    finally:
        signal.signal(signal.SIGTERM, previous)
    chosen = read_bundle_manifest(bundle).chosen
    print(f"export: {bundle} -- chosen {chosen.quant} ({chosen.file}); see REPORT.md")


STAGE = Stage(prog="python -m export", config=ExportConfig, run=_run, doc=__doc__, reads_run=True,
              failed=(ExportError,), interrupted="export: interrupted; the previous bundle is untouched")


def main(argv: Sequence[str] | None = None) -> int:
    return STAGE.main(argv)


if __name__ == "__main__":
    sys.exit(main())
