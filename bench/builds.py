"""Tokens/s of one GGUF under several llama-cpp-python builds (each in its own venv), side by side in one run.

    python bench/builds.py --build native=/path/venv-a/bin/python --build portable=.venv/bin/python \\
        --model models/SmolLM2-135M-Instruct.Q4_1.gguf --extra-bufts both --rounds 5

Why: the Makefile builds llama.cpp for x86-64-v3 instead of -march=native (issue 14), and edgetune.llama may
load without extra buffer types; this measures what each costs. Every measurement is a fresh child process of
that build's Python (one thread, so that a busy shared machine disturbs it least), and the rounds alternate the
builds, so slow drift of the machine's load falls on all of them alike. Prompt tokens/s: one batch of
``--prompt-tokens`` tokens; decode tokens/s: ``--decode-tokens`` single-token steps after it. The median over the
rounds is reported with its range, per wall-clock second and per CPU-second of the process (the latter barely
moves when other work shares the cores), with the CPU (``lscpu``) and each build's llama.cpp feature list.

Run as a file (not ``-m bench.builds``): the child processes run this file with another venv's Python, which has
llama_cpp but not necessarily bench's dependencies; this checkout's edgetune goes on their PYTHONPATH.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def measure(model: str, prompt_tokens: int, decode_tokens: int, threads: int, extra_bufts: bool | None) -> dict:
    """In the child: load ``model`` with this Python's llama_cpp, time a prompt batch and single-token decoding."""
    import llama_cpp

    from edgetune.llama import construct

    llm = construct(model, n_ctx=prompt_tokens + decode_tokens + 8, n_batch=prompt_tokens, n_threads=threads,
                    n_threads_batch=threads, verbose=False, use_extra_bufts=extra_bufts)
    text = " ".join(["The robot walks to the kitchen, finds the red ball and brings it back to the table."] * 40)
    tokens = llm.tokenize(text.encode(), add_bos=True)[:prompt_tokens]
    assert len(tokens) == prompt_tokens, f"the prompt text has only {len(tokens)} tokens"
    llm.eval(tokens[:8])  # warm-up: first-touch page faults and thread start-up are not the build's speed
    llm.reset()
    started, cpu = time.perf_counter(), time.process_time()
    llm.eval(tokens)
    prompt_s, prompt_cpu_s = time.perf_counter() - started, time.process_time() - cpu
    started, cpu = time.perf_counter(), time.process_time()
    for token in tokens[:decode_tokens]:  # the same compute whatever the token: no sampling in the timing
        llm.eval([token])
    decode_s, decode_cpu_s = time.perf_counter() - started, time.process_time() - cpu
    result = {"prompt_tok_s": prompt_tokens / prompt_s, "decode_tok_s": decode_tokens / decode_s,
              "prompt_tok_cpu_s": prompt_tokens / prompt_cpu_s, "decode_tok_cpu_s": decode_tokens / decode_cpu_s,
              "use_extra_bufts": llm.model_params.use_extra_bufts,
              "system_info": llama_cpp.llama_print_system_info().decode().strip(" |")}
    llm.close()
    return result


def cpu_name() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown CPU"
    fields = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
    name = fields.get("Model name", "unknown CPU").strip()
    return f"{name}, {fields.get('CPU(s)', '?').strip()} CPUs"


def _child(python: str, args: argparse.Namespace, extra_bufts: bool | None) -> dict:
    spec = json.dumps({"model": str(args.model), "prompt_tokens": args.prompt_tokens,
                       "decode_tokens": args.decode_tokens, "threads": args.threads, "extra_bufts": extra_bufts})
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([python, __file__, "--child", spec], capture_output=True, text=True, env=env, check=False)
    if done.returncode:
        raise SystemExit(f"{python} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _spread(values: list[float]) -> str:
    """'median (min-max)': on a shared machine the range says how much of a difference is noise."""
    return f"{statistics.median(values):.1f} ({min(values):.0f}-{max(values):.0f})"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        spec = json.loads(argv[1])
        print(json.dumps(measure(spec["model"], spec["prompt_tokens"], spec["decode_tokens"], spec["threads"],
                                 spec["extra_bufts"])))
        return 0
    parser = argparse.ArgumentParser(prog="python bench/builds.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--build", action="append", default=[], metavar="NAME=PYTHON", required=True,
                        help="a build to measure: a name and the Python of the venv that holds it (repeatable)")
    parser.add_argument("--model", type=Path, required=True, help="the GGUF every build runs")
    parser.add_argument("--extra-bufts", choices=("default", "off", "both"), default="default",
                        help="llama.cpp's extra buffer types (CPU repack, AMX): as built, off, or each")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--prompt-tokens", type=int, default=128)
    parser.add_argument("--decode-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, help="also write every measurement here")
    args = parser.parse_args(argv)
    builds = dict(b.split("=", 1) for b in args.build)
    modes = {"default": [None], "off": [False], "both": [None, False]}[args.extra_bufts]
    variants = [(name, mode) for name in builds for mode in modes]
    runs: dict[tuple[str, bool | None], list[dict]] = {v: [] for v in variants}
    for _ in range(args.rounds):
        for name, mode in variants:
            runs[name, mode].append(_child(builds[name], args, mode))
    print(f"{args.model.name}, {cpu_name()}, {args.threads} thread(s), median of {args.rounds} alternating rounds "
          f"(prompt: {args.prompt_tokens} tokens in one batch; decode: {args.decode_tokens} single tokens)\n")
    print("| build | extra buffer types | prompt tok/s | decode tok/s | prompt tok/CPU-s | decode tok/CPU-s |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    for (name, mode), results in runs.items():
        cells = [_spread([r[key] for r in results]) for key in ("prompt_tok_s", "decode_tok_s", "prompt_tok_cpu_s",
                                                                  "decode_tok_cpu_s")]
        print(f"| {name} | {'off' if mode is False else 'on (default)'} | {' | '.join(cells)} |")
    print()
    for name in builds:
        features = runs[name, modes[0]][0]["system_info"].removeprefix("CPU : ").replace(" = 1", "")
        print(f"- {name}: {builds[name]}, llama.cpp CPU features: {features.replace(' | ', ', ')}")
    if args.json:
        args.json.write_text(json.dumps({"model": str(args.model), "cpu": cpu_name(), "threads": args.threads,
                                         "runs": [{"build": n, "extra_bufts": m, "results": r}
                                                  for (n, m), r in runs.items()]}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
