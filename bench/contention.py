"""Decode speed of the embedded GGUF with and without a competing CPU-bound process, per thread setting, side by side.

    python -m bench.contention                          # ~3 min on 2 cores: every setting, quiet and contended
    python -m bench.contention --tokens 48 --hogs 1 --budget-s 15 --repeats 3

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

PROMPT = [{"role": "user", "content": "Count from one to two hundred in words, separated by commas."}]
HOG = "while True: pass"


def settings(cores: int) -> list[tuple[str, int, dict[str, str]]]:
    """(label, threads, environment) per measured setting; threads 0 is the server's default (serve.threads)."""
    return [
        ("threads 1", 1, {"OMP_WAIT_POLICY": ""}),
        (f"threads {cores} (cores), OpenMP defaults", cores, {"OMP_WAIT_POLICY": "", "GOMP_SPINCOUNT": ""}),
        (f"threads {cores}, OMP_WAIT_POLICY=PASSIVE", cores, {"OMP_WAIT_POLICY": "PASSIVE"}),
        (f"threads {cores}, GOMP_SPINCOUNT=10000", cores, {"OMP_WAIT_POLICY": "", "GOMP_SPINCOUNT": "10000"}),
        *([(f"threads {cores - 1} (cores - 1)", cores - 1, {"OMP_WAIT_POLICY": ""})] if cores > 2 else []),
        ("server default (threads 0)", 0, {"OMP_WAIT_POLICY": "", "GOMP_SPINCOUNT": ""}),
    ]


def decode(engine: Any, tokens: int, budget_s: float, repeats: int) -> dict[str, float]:
    """The median of ``repeats`` runs, each ``tokens`` greedy tokens (several answers if one ends early) in at most
    ``budget_s`` seconds."""
    runs = sorted((_decode_once(engine, tokens, budget_s) for _ in range(repeats)), key=lambda r: r["s_per_run"])
    return runs[len(runs) // 2]


def _decode_once(engine: Any, tokens: int, budget_s: float) -> dict[str, float]:
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


def child(threads: int, tokens: int, hogs: int, budget_s: float, repeats: int) -> dict[str, Any]:
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
        decode(engine, 8, budget_s, 1)  # warm-up
        quiet = decode(engine, tokens, budget_s, repeats)
        procs = [subprocess.Popen([sys.executable, "-c", HOG]) for _ in range(hogs)]
        try:
            time.sleep(0.5)
            busy = decode(engine, tokens, budget_s, repeats)
        finally:
            for proc in procs:
                proc.kill()
                proc.wait()
    finally:
        engine.close()
    return {"threads": engine.threads, "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", ""),
            "gomp_spincount": os.environ.get("GOMP_SPINCOUNT", ""), "quiet": quiet, "busy": busy}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.contention", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=48, help="tokens decoded per measurement")
    parser.add_argument("--hogs", type=int, default=1, help="competing busy processes")
    parser.add_argument("--budget-s", type=float, default=15.0, help="longest one measurement may take")
    parser.add_argument("--repeats", type=int, default=3, help="measurements per setting and load (the median)")
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        print(json.dumps(child(args.child, args.tokens, args.hogs, args.budget_s, args.repeats)))
        return 0
    cores = len(os.sched_getaffinity(0))
    rows = []
    for label, threads, env in settings(cores):
        environ = {k: v for k, v in os.environ.items() if k not in env}
        environ.update({k: v for k, v in env.items() if v})
        done = subprocess.run([sys.executable, "-m", "bench.contention", "--child", str(threads), "--tokens",
                               str(args.tokens), "--hogs", str(args.hogs), "--budget-s", str(args.budget_s),
                               "--repeats", str(args.repeats)],
                              env=environ, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            print(f"{label}: failed\n{done.stderr[-2000:]}", file=sys.stderr)
            return 1
        rows.append((label, json.loads(done.stdout.strip().splitlines()[-1])))
        print(f"  measured {label}", file=sys.stderr)
    best_quiet = min(r["quiet"]["s_per_run"] for _, r in rows)
    best_busy = min(r["busy"]["s_per_run"] for _, r in rows)
    print(f"\n{args.tokens} tokens, greedy, embedded GGUF; {cpu_model()}, {cores} cores, {args.hogs} competing "
          f"busy process(es); load average {os.getloadavg()[0]:.1f}")
    print("| setting | threads | quiet s | x best | contended s | x best |\n|---|---|---|---|---|---|")
    for label, r in rows:
        q, b = r["quiet"]["s_per_run"], r["busy"]["s_per_run"]
        cut = "" if r["busy"]["tokens"] >= args.tokens else f" (extrapolated from {r['busy']['tokens']} tokens)"
        print(f"| {label} | {r['threads']} | {q:.2f} | {q / best_quiet:.2f} | {b:.2f}{cut} | {b / best_busy:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
