"""compare.json -> COMPARE.md (the table and which method wins for what) and compare.png (quality vs latency,
marker area = the cost of the first 1,000 commands: one-time plus per-1,000)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgetune.rundir import RunDir, atomic_path, atomic_write


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _usd(value: float | None) -> str:
    if value is None:
        return "-"
    return f"${value:.2f}" if value >= 0.1 else f"${value:.4f}"


def _ok(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {m: r for m, r in result["methods"].items() if r["status"] == "ok"}


def first_1k(row: dict[str, Any]) -> float:
    cost = row["cost"]
    return cost["one_time"] + (cost["per_1k"] or 0.0)


def verdict(result: dict[str, Any]) -> str:
    """One paragraph: which method wins on quality, on latency, on cost, and what that means for the robot."""
    ok = _ok(result)
    if not ok:
        return "No method ran; see the skipped rows."
    label = lambda m: f"**{result['methods'][m]['label']}**"  # noqa: E731
    best = max(ok, key=lambda m: (ok[m]["exact_match"], ok[m]["valid_rate"], ok[m]["f1"]))
    fastest = min(ok, key=lambda m: ok[m]["p50_ms"])
    cheapest_run = min(ok, key=lambda m: ok[m]["cost"]["per_1k"] if ok[m]["cost"]["per_1k"] is not None else 1e9)
    cheapest_setup = min(ok, key=lambda m: ok[m]["cost"]["one_time"])
    parts = [f"On quality {label(best)} wins ({_pct(ok[best]['exact_match'])} exact match, "
             f"{_pct(ok[best]['valid_rate'])} valid, F1 {ok[best]['f1']:.2f} on {ok[best]['n']} test commands)."]
    parts.append(f"On latency {label(fastest)} is fastest (p50 {ok[fastest]['p50_ms']:.0f} ms).")
    parts.append(f"Per command {label(cheapest_run)} is cheapest ({_usd(ok[cheapest_run]['cost']['per_1k'])} per "
                 f"1,000), and {label(cheapest_setup)} costs least to set up "
                 f"({_usd(ok[cheapest_setup]['cost']['one_time'])}).")
    if "base_dspy" in ok and "base_zero_shot" in ok:
        gain = ok["base_dspy"]["exact_match"] - ok["base_zero_shot"]["exact_match"]
        slower = ok["base_dspy"]["p50_ms"] / max(ok["base_zero_shot"]["p50_ms"], 1e-9)
        demos = ok["base_dspy"].get("few_shot_examples", 0)
        why = "lengthen every prompt" if slower >= 1 else "lengthen every prompt but shorten the answers"
        parts.append(f"The DSPy prompt moves the untuned base model by {100 * gain:+.1f} points of exact match at "
                     f"{slower:.2f}x its zero-shot p50 latency (its {demos} demos {why}) and needs no training.")
    if "lora_grammar" in ok and "base_dspy" in ok:
        gap = ok["lora_grammar"]["exact_match"] - ok["base_dspy"]["exact_match"]
        parts.append(f"Local LoRA is {100 * gap:+.1f} points of exact match from the optimized prompt for "
                     f"{_usd(ok['lora_grammar']['cost']['one_time'])} of one-time cost "
                     f"({ok['lora_grammar']['cost']['one_time_basis']}); on the robot it also keeps prompts short "
                     "and needs no network.")
    skipped = [m for m, r in result["methods"].items() if r["status"] != "ok"]
    if skipped:
        parts.append("Not measured: " + "; ".join(f"{result['methods'][m]['label']} ({result['methods'][m]['note']})"
                                                  for m in skipped) + ".")
    return " ".join(parts)


def markdown(result: dict[str, Any]) -> str:
    prices = result["prices"]
    lines = [
        f"# Compare: run `{result['run']}`, task `{result['task']}`",
        "",
        f"The same {result['prompts']['n']} held-out test commands (seed {result['prompts']['seed']}, from "
        f"`{result['prompts']['source']}`) through every method; local methods through the edge server (one "
        f"context, sequential requests) on {result['environment']['cpu']} ({result['environment']['logical_cpus']} "
        f"logical CPUs). Latency: the whole call as the client saw it. tok/s: completion tokens per second of "
        f"engine time. Prices: the table dated {prices['date']} ({prices['currency']}; local time at "
        f"${prices['local']['machine_per_hour']}/h + {prices['local']['watts']:g} W at "
        f"${prices['local']['per_kwh']}/kWh). "
        f"Whole run: {result['seconds']:.0f} s.",
        "",
        "| method | exact | valid | F1 | p50 ms | p95 ms | tok/s | model MiB | one-time | per 1,000 | note |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for row in result["methods"].values():
        if row["status"] != "ok":
            lines.append(f"| {row['label']} | - | - | - | - | - | - | - | - | - | skipped: {row['note']} |")
            continue
        size = row["model"].get("bytes")
        note = f"{row['cost']['one_time_basis']}; per 1,000: {row['cost']['per_1k_basis']}"
        if "optimizer" in row:
            opt = row["optimizer"]
            note = (f"{opt['optimizer']}: {opt['demos']} demos ({opt['bootstrapped_demos']} bootstrapped) from "
                    f"{opt['train_examples']} train examples, val F1 {opt['val']['f1']:.2f} on {opt['val_examples']}; "
                    + note)
        if row.get("quant"):
            note = f"{row['quant']}; " + note
        lines.append(
            f"| {row['label']} | {_pct(row['exact_match'])} | {_pct(row['valid_rate'])} | {row['f1']:.2f} "
            f"| {row['p50_ms']:.0f} | {row['p95_ms']:.0f} | {row['tokens_per_s']:.1f} "
            f"| {'-' if size is None else f'{size / 2**20:.0f}'} | {_usd(row['cost']['one_time'])} "
            f"| {_usd(row['cost']['per_1k'])} | {note} |")
    lines += ["", verdict(result), "", "![quality vs latency](compare.png)", ""]
    return "\n".join(lines)


def write_markdown(result: dict[str, Any], path: Path) -> Path:
    return atomic_write(path, markdown(result))


def write_plot(result: dict[str, Any], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = _ok(result)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    top = max((first_1k(r) for r in ok.values()), default=1.0) or 1.0
    for method, row in ok.items():
        area = 60 + 1500 * first_1k(row) / top
        ax.scatter(row["p50_ms"], 100 * row["exact_match"], s=area, alpha=0.6)
        ax.annotate(f"{method}\n{_usd(first_1k(row))}", (row["p50_ms"], 100 * row["exact_match"]),
                    textcoords="offset points", xytext=(8, 4), fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("p50 latency per command, ms (log)")
    ax.set_ylabel("exact match, %")
    ax.set_ylim(-5, 105)
    ax.set_title(f"{result['run']}: quality vs latency (marker area: cost of the first 1,000 commands)", fontsize=9)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return path


def link_from_bundle_report(run_dir: RunDir) -> bool:
    """Export owns REPORT.md; it adds the link (export.report imports no torch)."""
    from export.report import link_compare

    return link_compare(run_dir)
