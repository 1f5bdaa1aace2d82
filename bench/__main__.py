"""``python -m bench``: the bench stage's command line (edgetune.cli over BenchConfig; the stage is bench.runner).

    python -m bench --run default                         # what `make bench` runs (~4 min on 2 CPU cores)
    python -m bench --run default --concurrency 1,4 --requests 16 --rate 2
    python -m bench --run default --target 10.0.0.7:50051  # bench a server that is already running
    python -m bench --compare runs/x86/bench/bench.json runs/orin/bench/bench.json

Writes runs/RUN/bench/: bench.json (every request's timings + a summary), bench.md, latency.png, throughput.png.
Exit 1 when the edgetune server itself could not be benched (a baseline that cannot run is a note, not a failure).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from bench.config import BenchConfig
from edgetune.cli import EXIT_FAILED, Stage
from edgetune.config import ConfigError
from edgetune.embedded import ModelFetchError
from edgetune.rundir import RunDir, atomic_write


def _flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--compare", nargs=2, type=Path, metavar=("A.json", "B.json"),
                        help="merge two bench.json files into one Markdown table and exit")
    parser.add_argument("--out", type=Path, help="with --compare: also write the table to this file")


def _run(config: BenchConfig, run_dir: RunDir, args: argparse.Namespace) -> int | None:
    from bench.report import compare_markdown, headline, load_bench

    if args.compare:
        try:
            table = compare_markdown(*args.compare)
        except (OSError, ValueError) as exc:
            raise ConfigError("command line", "--compare", str(exc)) from None
        print(table, end="")
        if args.out:
            atomic_write(args.out, table)
        return None
    from bench.runner import run

    bench_json = run(config)
    print(headline(bench_json))
    print(f"wrote {bench_json.parent}/")
    edgetune = load_bench(bench_json)["targets"]["edgetune"]
    if edgetune["status"] != "ok":
        print(f"error: the edgetune server was not benched: {edgetune['note']}", file=sys.stderr)
        return EXIT_FAILED
    return None


STAGE = Stage(prog="python -m bench", config=BenchConfig, run=_run, doc=__doc__, extra=_flags,
              failed=(ModelFetchError,))


def main(argv: Sequence[str] | None = None) -> int:
    return STAGE.main(argv)


if __name__ == "__main__":
    sys.exit(main())
