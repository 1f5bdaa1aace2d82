"""Decode speed of the embedded GGUF with and without a competing CPU-bound process, per thread setting, side by side.

    python -m bench.contention                          # ~3 min on 2 cores: every setting, quiet and contended
    python -m bench.contention --tokens 48 --hogs 1 --budget-s 15 --rounds 3

A robot shares its CPU with other nodes. llama.cpp here is built with OpenMP (libgomp): at each of the hundreds
of barriers per token a thread that arrives first spins (GOMP_SPINCOUNT, 300,000 pauses by default) waiting for
one the kernel has descheduled in favour of the other process, so the spinning itself holds the core the late
thread needs. Each setting runs in a child process of its own, because libgomp reads its environment once, when
llama.cpp is loaded. A contended run stops at ``--budget-s`` and its speed is extrapolated from the tokens it got.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from typing import Any

from bench.machine import cpu_model
from edgetune.embedded import DEFAULT

PROMPT = [{"role": "user", "content": "Count from one to two hundred in words, separated by commas."}]
HOG = "while True: pass"


def settings(cores: int) -> list[tuple[str, int, dict[str, str]]]:
    """(label, threads, environment) per measured setting; threads 0 is the server's default (serve.threads)."""
    unset = {"OMP_WAIT_POLICY": "", "GOMP_SPINCOUNT": ""}
    return [
        ("threads 1", 1, unset),
        *([(f"threads {cores - 1} (cores - 1)", cores - 1, unset)] if cores > 2 else []),
        (f"threads {cores} (cores), OpenMP defaults: the old default", cores, unset),
        (f"threads {cores}, GOMP_SPINCOUNT=10000", cores, {**unset, "GOMP_SPINCOUNT": "10000"}),
        ("server default: threads 0 (every usable core), OMP_WAIT_POLICY=PASSIVE", 0, unset),
    ]


def _median(runs: list[dict[str, float]]) -> dict[str, float]:
    return sorted(runs, key=lambda r: r["s_per_run"])[len(runs) // 2]


def decode(engine: Any, tokens: int, budget_s: float) -> dict[str, float]:
    """Greedy-decode ``tokens`` tokens (several answers if one ends early) in at most ``budget_s`` seconds."""
    from edgetune.engine import Request

    prompt = engine.tokenize_chat(PROMPT)
    started = time.monotonic()
    deadline = started + budget_s
    got = 0
    while got < tokens and time.monotonic() < deadline:
        request = Request(prompt=prompt, max_tokens=tokens - got,
                          should_stop=lambda: "deadline_exceeded" if time.monotonic() > deadline else None)
        got += len(engine.run([request])[0].tokens)
    elapsed = time.monotonic() - started
    return {"tokens": got, "s": elapsed, "s_per_run": elapsed * tokens / max(got, 1)}


def child(threads: int, tokens: int, hogs: int, budget_s: float) -> dict[str, Any]:
    """One setting, in this process: quiet, then with ``hogs`` busy processes on the same cores. Threads 0 is the
    server's default: what ``python -m serve`` sets up before llama.cpp loads, then the engine's thread count."""
    if threads == 0:
        from serve.threads import prefer_passive_waits

        prefer_passive_waits()
    from edgetune.embedded import embedded_gguf
    from edgetune.engine import Engine

    engine = Engine(embedded_gguf(fetch=False), sequences=1, n_ctx=512, threads=threads)
    engine.load()
    try:
        decode(engine, 8, budget_s)  # warm-up
        quiet = decode(engine, tokens, budget_s)
        procs = [subprocess.Popen([sys.executable, "-c", HOG]) for _ in range(hogs)]
        try:
            time.sleep(0.5)
            busy = decode(engine, tokens, budget_s)
        finally:
            for proc in procs:
                proc.kill()
                proc.wait()
    finally:
        engine.close()
    return {"threads": engine.threads, "quiet": quiet, "busy": busy}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.contention", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=48, help="tokens decoded per measurement")
    parser.add_argument("--hogs", type=int, default=1, help="competing busy processes")
    parser.add_argument("--budget-s", type=float, default=15.0, help="longest one measurement may take")
    parser.add_argument("--rounds", type=int, default=3, help="rounds over every setting (the median is shown)")
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        print(json.dumps(child(args.child, args.tokens, args.hogs, args.budget_s)))
        return 0
    cores = len(os.sched_getaffinity(0))
    plan = settings(cores)
    runs: dict[str, list[dict[str, Any]]] = {label: [] for label, _, _ in plan}
    load_before = os.getloadavg()[0]
    # rounds over all settings, not all rounds of one setting then the next: load from elsewhere on the machine
    # then falls on every setting alike
    for round_ in range(args.rounds):
        for label, threads, env in plan:
            environ = {k: v for k, v in os.environ.items() if k not in env}
            environ.update({k: v for k, v in env.items() if v})
            done = subprocess.run([sys.executable, "-m", "bench.contention", "--child", str(threads), "--tokens",
                                   str(args.tokens), "--hogs", str(args.hogs), "--budget-s", str(args.budget_s)],
                                  env=environ, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                print(f"{label}: failed\n{done.stderr[-2000:]}", file=sys.stderr)
                return 1
            runs[label].append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(f"  round {round_ + 1}/{args.rounds} done", file=sys.stderr)
    rows = [(label, runs[label][0]["threads"], _median([r["quiet"] for r in runs[label]]),
             _median([r["busy"] for r in runs[label]])) for label, _, _ in plan]
    best_quiet = min(q["s_per_run"] for _, _, q, _ in rows)
    best_busy = min(b["s_per_run"] for _, _, _, b in rows)
    print(f"\n{args.tokens} tokens, greedy, embedded GGUF ({DEFAULT.filename}), median of {args.rounds} "
          f"rounds; {cpu_model()}, {cores} cores, {args.hogs} competing busy process(es); load average "
          f"{load_before:.1f} before, {os.getloadavg()[0]:.1f} after")
    print("| setting | threads | quiet s | x best | contended s | x best |\n|---|---|---|---|---|---|")
    for label, threads, q, b in rows:
        cut = "" if b["tokens"] >= args.tokens else f" (extrapolated from {b['tokens']} tokens)"
        print(f"| {label} | {threads} | {q['s_per_run']:.2f} | {q['s_per_run'] / best_quiet:.2f} | "
              f"{b['s_per_run']:.2f}{cut} | {b['s_per_run'] / best_busy:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
