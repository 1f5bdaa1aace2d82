"""bench.json -> a Markdown report, latency/throughput plots, and a side-by-side table of two runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable

from edgetune.rundir import atomic_path, atomic_write

SCHEMA = "edgetune.bench/1"  #: the format of bench.json, written by bench.runner and read here

TARGET_LABELS = {
    "edgetune": "edgetune gRPC",
    "inprocess": "edgetune engine in process",
    "llama_cpp_server": "llama_cpp.server (HTTP)",
    "llama_server": "llama.cpp llama-server (C++)",
    "remote": "OpenAI fine-tuned (remote)",
}


def load_bench(path: str | Path) -> dict[str, Any]:
    """Read a bench.json, rejecting files that are not one with a message naming the file."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not JSON ({exc})") from exc
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise ValueError(f"{path}: not a bench.json (expected schema {SCHEMA!r}); make one with `make bench`")
    return data


def _fmt(value: float | None, unit: str = "", digits: int = 1) -> str:
    return "–" if value is None else f"{value:,.{digits}f}{unit}"


def _stat(level: dict[str, Any], metric: str, stat: str) -> float | None:
    return (level.get(metric) or {}).get(stat)


def _table(header: list[str], rows: Iterable[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def _arrivals(rate: float) -> str:
    return f"Poisson arrivals at {rate:g} req/s" if rate else "closed loop"


def _machine_line(env: dict[str, Any]) -> str:
    parts = [env.get("cpu_model") or "?", f"{env.get('usable_cpus')} CPUs", f"{env.get('memory_total_gib')} GiB"]
    parts += env.get("gpus") or []
    jetson = env.get("jetson")
    if jetson:
        parts.append(f"{jetson.get('model')}, power mode: {(jetson.get('nvpmodel') or 'unknown').splitlines()[0]}")
    return ", ".join(parts)


def headline_rows(result: dict[str, Any]) -> list[list[str]]:
    s = result["summary"]
    rows = [
        ["server / in-process tokens/s (c=1)", _fmt(s["server_over_inprocess_tokens_per_s"], digits=3), ">= 0.97"],
        ["added TTFT, p50 (c=1)", _fmt(s["added_ttft_ms"], " ms", 2), "<= 5 ms"],
        ["  of which in the engine / on the wire", f"{_fmt(s['added_ttft_split_ms']['engine'], ' ms', 2)} / "
                                                  f"{_fmt(s['added_ttft_split_ms']['wire'], ' ms', 2)}", ""],
    ]
    for c, r in s["over_llama_cpp_server"].items():
        rows.append([f"edgetune / llama_cpp.server tokens/s (c={c})", _fmt(r["tokens_per_s"], digits=3), "> 1"])
        rows.append([f"edgetune / llama_cpp.server e2e p50 (c={c})", _fmt(r["e2e_p50"], digits=3), "< 1"])
    for c, r in (s.get("over_llama_server") or {}).items():
        rows.append([f"edgetune / llama-server tokens/s (c={c})", _fmt(r["tokens_per_s"], digits=3),
                     ">= 0.95" if c == "1" else ">= 1"])
        rows.append([f"edgetune / llama-server TTFT p50 (c={c})", _fmt(r["ttft_p50"], digits=3), ""])
    rows.append(["decode vs memory-bandwidth roofline (edgetune, c=1)", _fmt(s["roofline_pct"], " %"), ""])
    rows.append(["decode vs roofline (in process, c=1)", _fmt(s["roofline_pct_inprocess"], " %"), ""])
    if s.get("remote_over_edgetune_e2e_p50") is not None:
        rows.append(["remote / edgetune e2e p50 (c=1)", _fmt(s["remote_over_edgetune_e2e_p50"], digits=2), ""])
    return rows


def markdown(result: dict[str, Any]) -> str:
    """The human report of one bench run."""
    model, env, cfg, bw = result["model"], result["environment"], result["config"], result["bandwidth"]
    s = model["sampling"]
    lines = [
        f"# Benchmark: run `{result['run']}` ({result['created_at']})",
        "",
        f"- **Model**: `{Path(model['path']).name}` ({model['source']}), {model['quant']}, "
        f"{model['bytes'] / 2**20:.1f} MiB, task `{model['task']}`",
        f"- **Settings** (every engine): n_ctx {cfg['n_ctx']}, {cfg['n_threads_used']} decode threads, "
        f"temperature {s['temperature']}, max_tokens {s['max_tokens']}, grammar {'on' if model['grammar'] else 'off'}",
        f"- **Load**: concurrency {cfg['concurrency']}, {cfg['requests']} requests per level, "
        f"{_arrivals(cfg['rate'])}, {cfg['warmup']} warm-up; "
        f"prompts: {model['prompts']} from {model['prompts_source']}",
        f"- **Machine**: {_machine_line(env)}; load average {env['load_average'][0]:.2f} before, "
        f"{env.get('load_average_after', [float('nan')])[0]:.2f} after",
        f"- **Memory read bandwidth**: {bw['gb_per_s']:.1f} GB/s ({bw['method']}, {bw['array_mib']} MiB)",
        "",
        "## Headline",
        "",
        *_table(["metric", "value", "goal"], headline_rows(result)),
        "",
        "## Latency and throughput (client-side, ms)",
        "",
    ]
    header = ["target", "conc", "ok/req", "tokens/req", "TTFT p50", "TTFT p95", "TTFT p99", "ITL p50", "ITL p95",
              "E2E p50", "E2E p90", "E2E p95", "E2E p99", "tok/s total", "tok/s per req p50"]
    rows = []
    for name, entry in result["targets"].items():
        for lv in entry.get("levels", []):
            rows.append([
                TARGET_LABELS.get(name, name), str(lv["concurrency"]), f"{lv['ok']}/{lv['requests']}",
                _fmt(_stat(lv, "tokens_per_request", "mean")),
                *[_fmt(_stat(lv, "ttft_ms", p)) for p in ("p50", "p95", "p99")],
                *[_fmt(_stat(lv, "itl_ms", p), digits=2) for p in ("p50", "p95")],
                *[_fmt(_stat(lv, "e2e_ms", p)) for p in ("p50", "p90", "p95", "p99")],
                _fmt(lv["aggregate_tokens_per_s"]), _fmt(_stat(lv, "tokens_per_s", "p50")),
            ])
    lines += _table(header, rows)
    quality = [[TARGET_LABELS.get(n, n), str(e["quality"]["n"]), _fmt(100 * e["quality"]["valid_rate"], " %"),
                _fmt(100 * e["quality"]["exact_match"], " %"), _fmt(e["quality"]["f1"], digits=3),
                str(e["quality"].get("hit_max_tokens", "-"))]
               for n, e in result["targets"].items() if e.get("quality")]
    if quality:
        limit = model.get("answer_max_tokens") or s["max_tokens"]
        lines += ["", f"## Answer quality on the same prompts (whole answers: max_tokens {limit}, the bundle's)", ""]
        lines += _table(["target", "answers", "valid", "exact match", "call F1", "reached max_tokens"], quality)
    notes = [f"- {TARGET_LABELS.get(n, n)}: {e['note']}" for n, e in result["targets"].items() if e.get("note")]
    errors = [f"- {TARGET_LABELS.get(n, n)} c={lv['concurrency']}: {'; '.join(lv['errors'])}"
              for n, e in result["targets"].items() for lv in e.get("levels", []) if lv["errors"]]
    if notes or errors:
        lines += ["", "## Notes", "", *notes, *errors]
    lines += ["", "TTFT: send -> first text; ITL: gap between streamed pieces; E2E: send -> last byte; "
              "tok/s total: all output tokens of a level / its wall time. Raw samples: bench.json."]
    return "\n".join(lines) + "\n"


def plot(result: dict[str, Any], out_dir: Path) -> list[Path]:
    """latency.png (TTFT and end-to-end percentiles vs concurrency) and throughput.png (tokens/s vs concurrency)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    measured = {n: e["levels"] for n, e in result["targets"].items() if e.get("levels")}
    colors = dict(zip(TARGET_LABELS, plt.rcParams["axes.prop_cycle"].by_key()["color"]))
    styles = {"p50": "-", "p95": "--", "p99": ":"}

    from matplotlib.lines import Line2D
    from matplotlib.ticker import NullLocator

    concurrency = sorted({lv["concurrency"] for levels in measured.values() for lv in levels})

    def concurrency_axis(ax) -> None:
        ax.set_xscale("log", base=2)
        ax.set_xticks(concurrency, [str(c) for c in concurrency])
        ax.xaxis.set_minor_locator(NullLocator())

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for ax, metric, title in ((axes[0], "ttft_ms", "time to first token"), (axes[1], "e2e_ms", "end-to-end")):
        for name, levels in measured.items():
            xs = [lv["concurrency"] for lv in levels]
            for stat, style in styles.items():
                ax.plot(xs, [_stat(lv, metric, stat) for lv in levels], style, marker="o", color=colors.get(name))
        ax.set(title=title, xlabel="concurrent requests", ylabel="ms (log)", yscale="log")
        concurrency_axis(ax)
        ax.grid(True, which="both", alpha=0.3)
    handles = [Line2D([], [], color=colors.get(n), marker="o", label=TARGET_LABELS.get(n, n)) for n in measured]
    handles += [Line2D([], [], color="gray", linestyle=style, label=stat) for stat, style in styles.items()]
    axes[1].legend(handles=handles, fontsize=8, loc="upper left")
    fig.suptitle(f"latency percentiles vs concurrency — {result['model']['quant']}, {result['run']}")
    paths = [_save(fig, out_dir / "latency.png")]

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for ax, key, title in ((axes[0], "aggregate", "all requests together"), (axes[1], "p50", "per request (p50)")):
        for name, levels in measured.items():
            xs = [lv["concurrency"] for lv in levels]
            ys = [lv["aggregate_tokens_per_s"] if key == "aggregate" else _stat(lv, "tokens_per_s", "p50")
                  for lv in levels]
            ax.plot(xs, ys, "-", marker="o", color=colors.get(name), label=TARGET_LABELS.get(name, name))
        ax.set(title=title, xlabel="concurrent requests", ylabel="output tokens/s")
        concurrency_axis(ax)
        ax.set_ylim(bottom=0)
        ax.grid(True, alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"tokens/s vs concurrency — {result['model']['quant']}, {result['run']}")
    paths.append(_save(fig, out_dir / "throughput.png"))
    return paths


def _save(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return path


def write_all(result: dict[str, Any], out_dir: Path) -> list[Path]:
    """bench.md and the plots beside bench.json."""
    return [atomic_write(out_dir / "bench.md", markdown(result)), *plot(result, out_dir)]


def headline(bench_json: str | Path) -> str:
    """The headline table of a bench.json, for the terminal."""
    return "\n".join(_table(["metric", "value", "goal"], headline_rows(load_bench(bench_json))))


def compare_markdown(a_path: str | Path, b_path: str | Path) -> str:
    """Two bench runs (e.g. an x86 laptop and a Jetson Orin) side by side, with B/A ratios."""
    a, b = load_bench(a_path), load_bench(b_path)
    label_a = f"A: {a['run']} @ {a['environment'].get('hostname')}"
    label_b = f"B: {b['run']} @ {b['environment'].get('hostname')}"
    text_rows = [
        ["machine", _machine_line(a["environment"]), _machine_line(b["environment"])],
        ["model", f"{Path(a['model']['path']).name} ({a['model']['quant']})",
         f"{Path(b['model']['path']).name} ({b['model']['quant']})"],
        ["llama-cpp-python", a["environment"]["versions"].get("llama-cpp-python", "?"),
         b["environment"]["versions"].get("llama-cpp-python", "?")],
    ]
    numbers: list[tuple[str, float | None, float | None]] = [
        ("model MiB", a["model"]["bytes"] / 2**20, b["model"]["bytes"] / 2**20),
        ("memory read bandwidth GB/s", a["bandwidth"]["gb_per_s"], b["bandwidth"]["gb_per_s"]),
        ("roofline % (edgetune, c=1)", a["summary"]["roofline_pct"], b["summary"]["roofline_pct"]),
        ("server / in-process tokens/s", a["summary"]["server_over_inprocess_tokens_per_s"],
         b["summary"]["server_over_inprocess_tokens_per_s"]),
        ("added TTFT ms", a["summary"]["added_ttft_ms"], b["summary"]["added_ttft_ms"]),
    ]
    for name in [n for n in a["targets"] if n in b["targets"]]:
        levels_b = {lv["concurrency"]: lv for lv in b["targets"][name].get("levels", [])}
        for lv_a in a["targets"][name].get("levels", []):
            lv_b = levels_b.get(lv_a["concurrency"])
            if lv_b is None:
                continue
            tag = f"{TARGET_LABELS.get(name, name)} c={lv_a['concurrency']}"
            numbers += [
                (f"{tag}: TTFT p50 ms", _stat(lv_a, "ttft_ms", "p50"), _stat(lv_b, "ttft_ms", "p50")),
                (f"{tag}: E2E p50 ms", _stat(lv_a, "e2e_ms", "p50"), _stat(lv_b, "e2e_ms", "p50")),
                (f"{tag}: E2E p95 ms", _stat(lv_a, "e2e_ms", "p95"), _stat(lv_b, "e2e_ms", "p95")),
                (f"{tag}: tokens/s total", lv_a["aggregate_tokens_per_s"], lv_b["aggregate_tokens_per_s"]),
            ]
    rows = [[m, x, y, ""] for m, x, y in text_rows]
    rows += [[m, _fmt(x, digits=2), _fmt(y, digits=2), _fmt(y / x if x and y is not None else None, "x", 2)]
             for m, x, y in numbers]
    return "\n".join([f"# {label_a} vs {label_b}", "", *_table(["metric", label_a, label_b, "B / A"], rows)]) + "\n"
