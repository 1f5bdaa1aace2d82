"""Benchmark: teacher throughput at the default concurrency vs one request at a time, measured in one run.

Both runs use the real openai client against the loopback teacher server with the same injected latency per
request (what a remote API's latency looks like from here) and the same number of requests.

    python -m bench.teacher                          default: 24 requests, 0.5 s latency
    python -m bench.teacher --requests 40 --latency 1.0 --concurrency 8
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path


def measure(concurrency: int, requests: int, latency: float, per_response: int) -> dict:
    """Generate ``requests`` teacher requests at ``concurrency``; return wall time and throughput."""
    from edgetune.task import load_task
    from bench.loopback_teacher import Faults, LoopbackTeacher
    from train.teacher import TeacherConfig, generate

    task = load_task("robot_sdk")
    with LoopbackTeacher(Faults(latency=latency, per_response=per_response)) as server, \
            tempfile.TemporaryDirectory() as tmp:
        config = TeacherConfig(base_url=server.base_url, model=server.model, concurrency=concurrency,
                               examples_per_request=per_response, max_requests=requests, env_file="")
        started = time.perf_counter()
        result = generate(task, config, Path(tmp), target=10**9, seed=0)
        seconds = time.perf_counter() - started
    return {"concurrency": concurrency, "requests": result.usage["requests"], "seconds": seconds,
            "examples": len(result.examples), "examples_per_s": len(result.examples) / seconds,
            "requests_per_s": result.usage["requests"] / seconds}


def main(argv: list[str] | None = None) -> int:
    from train.teacher import TeacherConfig

    parser = argparse.ArgumentParser(prog="python -m bench.teacher", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=24, help="requests per measurement")
    parser.add_argument("--latency", type=float, default=0.5, help="seconds the server takes per request")
    parser.add_argument("--concurrency", type=int, default=TeacherConfig().concurrency,
                        help="concurrency to compare with 1 (default: the teacher's default)")
    parser.add_argument("--per-response", type=int, default=8, help="examples per answer")
    args = parser.parse_args(argv)
    os.environ.setdefault("TEACHER_API_KEY", "loopback")  # the loopback server takes any key
    measure(1, 1, 0.0, 1)  # warm-up: imports and the first connection are not part of either measurement
    rows = [measure(c, args.requests, args.latency, args.per_response) for c in (1, args.concurrency)]
    print(f"teacher throughput, loopback server, {args.latency:g} s latency/request, {args.requests} requests, "
          f"{args.per_response} examples/request")
    print(f"{'concurrency':>11} {'seconds':>8} {'req/s':>7} {'examples/s':>11}")
    for row in rows:
        print(f"{row['concurrency']:>11} {row['seconds']:>8.2f} {row['requests_per_s']:>7.2f} "
              f"{row['examples_per_s']:>11.1f}")
    print(f"speed-up at concurrency {args.concurrency} vs 1: {rows[1]['examples_per_s'] / rows[0]['examples_per_s']:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
