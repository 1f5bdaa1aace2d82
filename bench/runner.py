"""Latency benchmarks of the edge server against its baselines, side by side in one run (the CLI: bench/__main__.py).

    python -m bench --run default                         # what `make bench` runs (~4 min on 2 CPU cores)
    python -m bench --run default --concurrency 1,4 --requests 16 --rate 2
    python -m bench --run default --target 10.0.0.7:50051  # bench a server that is already running
    python -m bench --compare runs/x86/bench/bench.json runs/orin/bench/bench.json

Writes runs/RUN/bench/: bench.json (every request's timings + a summary), bench.md, latency.png, throughput.png.
"""

from __future__ import annotations

import contextlib
import os
import random
import time
from pathlib import Path
from typing import Any, Callable, ContextManager, Sequence

from bench.config import BenchConfig
from bench.loadgen import Target, run_level
from bench.report import SCHEMA
from bench.stats import Sample, level_wall_s, ratio, summarize_level
from edgetune.config import to_dict
from edgetune.rundir import RunDir, atomic_write_json

WARMUP_MAX_TOKENS = 8


def _request_plan(n_prompts: int, levels: Sequence[int], requests: int, warmup: int,
                  seed: int) -> tuple[list[int], dict[int, list[int]]]:
    """Prompt indices for warm-up and for each level: shuffled once, the same for every target (fair)."""
    order = list(range(n_prompts))
    random.Random(seed).shuffle(order)

    def cycle(start: int, n: int) -> list[int]:
        return [order[(start + k) % n_prompts] for k in range(n)]

    warm = cycle(n_prompts - warmup, warmup) if warmup else []
    return warm, {c: cycle(0, max(requests, c)) for c in levels}


def _quality(target: Target, workload, config: BenchConfig, indices: Sequence[int]) -> dict[str, Any] | None:
    """Contract score of a target's whole answers (the bundle's max_tokens, not the latency cap) to the same
    prompts as every other target, against the test split's references; as many at once as it decodes."""
    if not indices:
        return None
    limit = workload.answer_max_tokens or workload.deployed.sampling.max_tokens
    level = run_level(target, [(i, workload.prompts[i]) for i in indices], getattr(target, "slots", 1),
                      deadline_s=config.request_timeout_s, max_tokens=limit)
    answered = [s for s in level if s.ok]
    if not answered:
        return None
    score = workload.deployed.contract.score([s.text for s in answered],
                                         [workload.references[s.prompt_index] for s in answered]).to_dict()
    cut = sum(s.tokens >= limit for s in answered)
    return {**score, "failed": len(level) - len(answered), "hit_max_tokens": cut,
            "note": f"whole answers: max_tokens={limit} (the bundle's); {cut} of {len(answered)} reached it"}


def _level(targets: dict[str, Any], name: str, concurrency: int) -> dict[str, Any] | None:
    for level in (targets.get(name) or {}).get("levels", []):
        if level["concurrency"] == concurrency:
            return level
    return None


def _get(level: dict[str, Any] | None, metric: str, stat: str | None = None) -> float | None:
    if level is None:
        return None
    value = level.get(metric)
    return value.get(stat) if stat and value else value


def _minus(a: float | None, b: float | None) -> float | None:
    return a - b if a is not None and b is not None else None


def summarize(targets: dict[str, Any], levels: Sequence[int], model_bytes: int, gb_per_s: float) -> dict[str, Any]:
    """The headline numbers: server overhead vs in-process, vs llama_cpp.server per level, roofline."""
    from bench.machine import roofline_pct

    edge1, inproc1 = _level(targets, "edgetune", 1), _level(targets, "inprocess", 1)
    ttft_edge, ttft_inproc = _get(edge1, "ttft_ms", "p50"), _get(inproc1, "ttft_ms", "p50")
    def over(peer: str) -> dict[str, dict[str, float | None]]:
        ratios = {}
        for c in levels:
            edge, other = _level(targets, "edgetune", c), _level(targets, peer, c)
            ratios[str(c)] = {
                "tokens_per_s": ratio(_get(edge, "aggregate_tokens_per_s"), _get(other, "aggregate_tokens_per_s")),
                "ttft_p50": ratio(_get(edge, "ttft_ms", "p50"), _get(other, "ttft_ms", "p50")),
                "e2e_p50": ratio(_get(edge, "e2e_ms", "p50"), _get(other, "e2e_ms", "p50")),
                "e2e_p95": ratio(_get(edge, "e2e_ms", "p95"), _get(other, "e2e_ms", "p95")),
            }
        return ratios

    remote1 = _level(targets, "remote", 1)
    return {
        "server_over_inprocess_tokens_per_s": ratio(_get(edge1, "aggregate_tokens_per_s"),
                                                    _get(inproc1, "aggregate_tokens_per_s")),
        "added_ttft_ms": _minus(ttft_edge, ttft_inproc),
        "added_ttft_split_ms": {
            "engine": _minus(_get(edge1, "engine_ttft_ms", "p50"), _get(inproc1, "engine_ttft_ms", "p50")),
            "wire": _minus(_get(edge1, "wire_ttft_ms", "p50"), _get(inproc1, "wire_ttft_ms", "p50")),
        },
        "over_llama_cpp_server": over("llama_cpp_server"),
        "over_llama_server": over("llama_server"),
        "roofline_pct": roofline_pct(_get(edge1, "decode_tokens_per_s", "mean"), model_bytes, gb_per_s),
        "roofline_pct_inprocess": roofline_pct(_get(inproc1, "decode_tokens_per_s", "mean"), model_bytes, gb_per_s),
        "remote_over_edgetune_e2e_p50": ratio(_get(remote1, "e2e_ms", "p50"), _get(edge1, "e2e_ms", "p50")),
        "notes": {
            "server_over_inprocess_tokens_per_s": "aggregate output tokens/s at concurrency 1; goal >= 0.97",
            "added_ttft_ms": "p50 TTFT of the edgetune server minus in-process llama-cpp-python; goal <= 5",
            "added_ttft_split_ms": "engine: the server's own TTFT clock vs the same engine in process; wire: "
                                   "client TTFT minus the engine's (gRPC, serialisation, scheduling)",
            "over_llama_cpp_server": "edgetune / llama_cpp.server per concurrency; tokens/s > 1 and latency < 1 "
                                     "favour edgetune",
            "over_llama_server": "edgetune / llama.cpp's C++ llama-server (-np = the top concurrency, continuous "
                                 "batching) per concurrency; same reading",
            "roofline_pct": "edgetune batch-1 mean decode tokens/s x model bytes / measured read bandwidth",
        },
    }


def _openers(config: BenchConfig, workload, run_dir: RunDir, n_threads: int) -> dict[str, Callable[[], ContextManager]]:
    """How to open each target of the run. All stay open together, but only one is sent requests at a time (no
    CPU contention between them)."""
    from bench import targets as t

    log_dir = run_dir.bench / "logs"
    openers: dict[str, Callable[[], ContextManager]] = {}
    if "inprocess" in config.baselines:
        openers["inprocess"] = lambda: t.InProcessTarget(workload, config.n_ctx, n_threads)
    openers["edgetune"] = lambda: t.edgetune_target(config, workload, run_dir, n_threads)
    if "llama_cpp_server" in config.baselines:
        openers["llama_cpp_server"] = lambda: t.llama_cpp_server(
            workload, n_ctx=config.n_ctx, n_threads=n_threads, log_dir=log_dir,
            startup_timeout_s=config.startup_timeout_s, request_timeout_s=config.request_timeout_s)
    if "llama_server" in config.baselines:
        openers["llama_server"] = lambda: t.llama_server(
            workload, n_ctx=config.n_ctx, n_threads=n_threads, parallel=max(config.levels()), log_dir=log_dir,
            startup_timeout_s=config.startup_timeout_s, request_timeout_s=config.request_timeout_s)
    if "remote" in config.baselines:
        openers["remote"] = lambda: t.remote_target(run_dir.root, workload, config.request_timeout_s)
    return openers


def run(config: BenchConfig) -> Path:
    """Bench the edgetune server and the baselines on runs/RUN's model; returns the path of bench.json."""
    from tqdm import tqdm

    from bench import machine, report
    from bench.targets import TargetUnavailable, default_threads
    from bench.workload import load_workload

    started = time.perf_counter()
    run_dir = RunDir.named(config.run, config.runs_dir or None)
    workload = load_workload(run_dir, model=config.model, max_tokens=config.max_tokens, use_grammar=config.grammar)
    n_threads = config.n_threads or default_threads()
    levels = config.levels()
    environment = machine.capture_environment()
    bandwidth = machine.memory_bandwidth(config.bandwidth_mib)

    warm, plan = _request_plan(len(workload.prompts), levels, config.requests, config.warmup, config.seed)
    shuffled = list(range(len(workload.prompts)))
    random.Random(config.seed).shuffle(shuffled)
    quality = [i for i in shuffled if workload.references[i] is not None][:config.quality_prompts]
    openers = _openers(config, workload, run_dir, n_threads)
    per_target = {name: sum(len(plan[c]) for c in levels if c == 1 or name != "inprocess") for name in openers}
    targets: dict[str, dict[str, Any]] = {}
    samples: list[Sample] = []
    timings: dict[str, float] = {}
    with contextlib.ExitStack() as stack, tqdm(total=sum(per_target.values()), unit="req", desc="bench",
                                               dynamic_ncols=True) as bar:
        opened: dict[str, Target] = {}
        for name, opener in openers.items():
            bar.set_postfix_str(f"{name}: starting")
            t0 = time.perf_counter()
            try:
                opened[name] = stack.enter_context(opener())
            except TargetUnavailable as exc:
                targets[name] = {"status": "skipped", "note": str(exc), "levels": []}
                bar.total -= per_target[name]
                bar.refresh()
                tqdm.write(f"bench: {name} skipped: {exc}")
            else:
                _warm_up(opened[name], workload, warm, config, bar)
            timings[name] = time.perf_counter() - t0
        measured = _sweep(opened, workload, config, levels, plan, bar, timings)
        for name, target in opened.items():
            t0 = time.perf_counter()
            bar.set_postfix_str(f"{name}: quality")
            targets[name] = _entry(target, measured[name], levels, _quality(target, workload, config, quality))
            samples.extend(s for chunk in measured[name].values() for s in chunk["samples"])
            timings[name] += time.perf_counter() - t0
    targets = {name: targets[name] for name in openers}  # the report's order, whatever was skipped

    summary = summarize(targets, levels, workload.deployed.model_bytes, bandwidth["gb_per_s"])
    environment["load_average_after"] = list(os.getloadavg())
    result = {
        "schema": SCHEMA,
        "run": config.run,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "config": {**to_dict(config), "n_threads_used": n_threads},
        "model": workload.describe(),
        "environment": environment,
        "bandwidth": bandwidth,
        "summary": summary,
        "targets": targets,
        "samples": [s.to_dict() for s in samples],
        "duration_s": time.perf_counter() - started,
    }
    out = run_dir.bench
    bench_json = atomic_write_json(out / "bench.json", result)
    outputs = report.write_all(result, out)
    run_dir.record("bench", config=to_dict(config), inputs={"model": str(workload.deployed.model_path)},
                   outputs=[str(bench_json), *map(str, outputs)], timings={**timings, "total_s": result["duration_s"]},
                   summary={k: v for k, v in summary.items() if k != "notes"})
    return bench_json


def _allowed(target: Target, levels: Sequence[int]) -> list[int]:
    return [c for c in levels if c <= (getattr(target, "max_concurrency", None) or c)]


def _warm_up(target: Target, workload, warm: Sequence[int], config: BenchConfig, bar) -> None:
    """Short answers, as many at once as the target has llama.cpp sequences: each gets its KV pages and the
    prompt prefix warm (a cold one would skew the first level that uses it)."""
    if not warm:
        return
    bar.set_postfix_str(f"{target.name}: warm-up")
    slots = getattr(target, "slots", 1)
    requests = [(i, workload.prompts[i]) for i in (warm * slots)[:max(len(warm), slots)]]
    run_level(target, requests, slots, deadline_s=config.request_timeout_s, max_tokens=WARMUP_MAX_TOKENS)


def _rounds(requests: int, concurrency: int, rounds: int) -> int:
    """Rounds a level is split into: each round's share keeps every one of ``concurrency`` workers busy."""
    return max(1, min(rounds, requests // concurrency))


def _sweep(opened: dict[str, Target], workload, config: BenchConfig, levels: Sequence[int],
           plan: dict[int, list[int]], bar, timings: dict[str, float]) -> dict[str, dict[int, dict[str, Any]]]:
    """Every level of every target, in ``config.rounds`` rounds: within a round the targets take turns (the order
    rotates each round), so a machine that gets busier or quieter during the run weighs on every target alike.
    Per target and level: its samples and the summed wall time of its rounds."""
    measured = {name: {c: {"samples": [], "wall_s": 0.0} for c in _allowed(t, levels)} for name, t in opened.items()}
    names = list(opened)
    for r in range(config.rounds):
        order = names[r % len(names):] + names[:r % len(names)] if names else []
        for c in levels:
            n = _rounds(len(plan[c]), c, config.rounds)
            if r >= n:
                continue
            share = plan[c][r * len(plan[c]) // n:(r + 1) * len(plan[c]) // n]
            for name in order:
                if c not in measured[name]:
                    continue
                bar.set_postfix_str(f"{name}: concurrency {c}, round {r + 1}/{n}")
                t0 = time.perf_counter()
                chunk = run_level(opened[name], [(i, workload.prompts[i]) for i in share], c, rate=config.rate,
                                  seed=config.seed + c + 1000 * r, deadline_s=config.request_timeout_s,
                                  on_done=lambda _: bar.update())
                spent = time.perf_counter() - t0
                measured[name][c]["samples"].extend(chunk)
                measured[name][c]["wall_s"] += level_wall_s(chunk)
                timings[name] += spent
    return measured


def _entry(target: Target, measured: dict[int, dict[str, Any]], levels: Sequence[int],
           quality: dict[str, Any] | None) -> dict[str, Any]:
    """A target's summary entry: its levels, the quality table's row, what the server said about itself."""
    entry = {"status": "ok", "endpoint": getattr(target, "endpoint", ""),
             "levels": [summarize_level(m["samples"], c, m["wall_s"]) for c, m in measured.items()],
             "quality": quality}
    if getattr(target, "info", None):
        entry["server_info"] = target.info
    notes = [getattr(target, "note", "")]
    if len(measured) < len(levels):
        notes.append(f"one request at a time (one sequence); measured at concurrency {list(measured)}")
    if any(notes):
        entry["note"] = "; ".join(n for n in notes if n)
    return entry
