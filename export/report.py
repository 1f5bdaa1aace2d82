"""The bundle's human-facing files: REPORT.md, the quality-vs-size plot and the Ollama Modelfile, all derived from
the bundle manifest (edgetune.artifacts.BundleManifest) and the tokenizer, so the stage (export.bundle) only
measures and chooses. REPORT.md also gets the link to `make compare`'s COMPARE.md, which runs after export.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from edgetune.artifacts import BundleManifest, QuantScore
from edgetune.rundir import RunDir, atomic_write
from edgetune.task import TaskSpec
from export import ExportError


def _split_on(text: str, marker: str) -> tuple[str, str]:
    if text.count(marker) != 1:
        raise ExportError("the chat template does not render a system and a user message the usual way; "
                          "cannot derive an Ollama template from it")
    before, after = text.split(marker)
    return before, after


def ollama_template(tokenizer: Any) -> str:
    """The chat template as an Ollama Go template for one turn (system + user -> answer), derived by rendering
    the HF template with marker strings, so it reproduces exactly the prompt the model was trained on."""
    from export.verify import chat_text

    system, user, answer = "\u2063SYSTEM\u2063", "\u2063PROMPT\u2063", "\u2063RESPONSE\u2063"
    head, rest = _split_on(chat_text(tokenizer, [{"role": "system", "content": system},
                                                 {"role": "user", "content": user}]), system)
    middle, tail = _split_on(rest, user)
    closed = chat_text(tokenizer, [{"role": "system", "content": system}, {"role": "user", "content": user},
                                   {"role": "assistant", "content": answer}], add_generation_prompt=False)
    end = _split_on(closed, answer)[1]
    if "{{" in head + middle + tail + end:
        raise ExportError("the chat template's literal text contains '{{', which an Ollama template cannot hold")
    return f"{head}{{{{ .System }}}}{middle}{{{{ .Prompt }}}}{tail}{{{{ .Response }}}}{end}"


def modelfile(gguf_name: str, tokenizer: Any, task: TaskSpec, stops: list[str], max_tokens: int, n_ctx: int) -> str:
    gen = task.generation
    if '"""' in task.system:
        raise ExportError(f"task {task.name}: the system message contains '\"\"\"', which a Modelfile cannot quote")
    lines = [
        f"# Ollama Modelfile written by edgetune export (task {task.name}); `ollama create NAME -f Modelfile`",
        f"FROM ./{gguf_name}",
        f'TEMPLATE """{ollama_template(tokenizer)}"""',
        f'SYSTEM """{task.system}"""',
        *[f"PARAMETER stop {json.dumps(stop)}" for stop in stops],
        f"PARAMETER temperature {gen.temperature:g}",
        f"PARAMETER top_p {gen.top_p:g}",
        f"PARAMETER top_k {gen.top_k}",
        f"PARAMETER repeat_penalty {gen.repeat_penalty:g}",
        f"PARAMETER num_predict {max_tokens}",
        f"PARAMETER num_ctx {n_ctx}",
    ]
    return "\n".join(lines) + "\n"


def plot_quality_vs_size(quants: list[QuantScore], chosen: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    quants = sorted(quants, key=lambda q: q.size_bytes)
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    sizes = [q.size_bytes / 2**20 for q in quants]
    ax.plot(sizes, [100 * q.exact_match for q in quants], "o-", label="exact match, free")
    if quants[0].constrained_exact_match is not None:
        ax.plot(sizes, [100 * q.constrained_exact_match for q in quants], "s--", label="exact match, grammar")
    for i, (q, size) in enumerate(zip(quants, sizes)):
        label = f"{q.quant} (chosen)" if q.quant == chosen else q.quant
        ax.annotate(label, (size, 100 * q.exact_match), textcoords="offset points",
                    xytext=(4, 6 if i % 2 else -14), fontsize=8)  # alternate sides: close sizes stay readable
    ax.set_xlabel("GGUF size (MiB)")
    ax.set_ylabel("exact match on the test sample (%)")
    ax.set_title("quality vs size per quant")
    ax.set_ylim(-2, 102)
    ax.grid(alpha=0.3)
    ax.legend(loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


COMPARE_HEADING = "## Compared with prompt optimization and OpenAI fine-tuning"


def compare_section(run_dir: RunDir) -> list[str]:
    """REPORT.md's link to runs/RUN/compare/COMPARE.md (`make compare`), when that exists."""
    if not (run_dir.compare / "COMPARE.md").is_file():
        return []
    return ["", COMPARE_HEADING, "", "DSPy prompt optimization vs this LoRA vs OpenAI fine-tuning on the same test "
            "commands (quality, latency, cost): [../compare/COMPARE.md](../compare/COMPARE.md)", ""]


def link_compare(run_dir: RunDir) -> bool:
    """Add the compare link to an existing bundle/REPORT.md (compare runs after export); True when it was added."""
    path = run_dir.bundle / "REPORT.md"
    section = compare_section(run_dir)
    if not path.is_file() or not section:
        return False
    text = path.read_text(encoding="utf-8")
    if COMPARE_HEADING in text:
        return False
    atomic_write(path, text.rstrip("\n") + "\n" + "\n".join(section))
    return True


def report(manifest: BundleManifest, verification: dict[str, Any], run_dir: RunDir | None = None) -> str:
    """REPORT.md: the quant table, what was verified and sample answers."""
    chosen = manifest.chosen
    greedy = verification["greedy"]
    tok = verification["tokenizer"]
    lines = [
        f"# Export report: run `{manifest.run}`, task `{manifest.task}`",
        "",
        f"**Chosen: {chosen.quant}** (`{chosen.file}`, {chosen.size_bytes / 2**20:.1f} MiB): the smallest "
        f"quant within {manifest.selection.tolerance_points:g} points of F16's exact match (test sample and human "
        f"set) that stops by "
        f"itself" + (f" and fits {manifest.selection.max_model_mb:g} MiB" if manifest.selection.max_model_mb else "") + ".",
        "",
        f"Scored on {manifest.eval.samples} of {manifest.eval.test_examples} test examples (seed "
        f"{manifest.eval.seed}), max_tokens {manifest.sampling.max_tokens}, temperature "
        f"{manifest.sampling.temperature:g}. *free*: unconstrained; *grammar*: constrained by the contract's GBNF (greedy answers the grammar admits token by token are "
        "not generated twice: *reused* counts them). *tok/s*: completion tokens per second of the free run, prompt "
        "processing included, on this machine. *human*: the task's held-out human-phrased set "
        f"({manifest.eval.human_samples} commands people wrote, never trained on), grammar on.",
        "",
        "| quant | size MiB | exact free | exact grammar | exact human | valid free | valid grammar | valid human | F1 free "
        "| truncated | reused | tok/s | verdict |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for q in manifest.quants:
        verdict = "**chosen**" if q.quant == chosen.quant else ("eligible" if q.eligible else "; ".join(q.rejected_because))
        lines.append(
            f"| {q.quant} | {q.size_bytes / 2**20:.1f} | {_pct(q.exact_match)} | {_pct(q.constrained_exact_match)} "
            f"| {_pct(q.human_exact_match)} | {_pct(q.valid_rate)} | {_pct(q.constrained_valid_rate)} "
            f"| {_pct(q.human_valid_rate)} | {_pct(q.f1)} | {q.truncated} "
            f"| {'-' if q.constrained_reused is None else q.constrained_reused} | {q.tokens_per_second:.1f} | {verdict} |"
        )
    lines += [
        "",
        "![quality vs size](quality_vs_size.png)",
        "",
        "## Verification",
        "",
        f"- **Tokenizer** (every GGUF vs the trained HF tokenizer): chat template identical; BOS {tok['bos_id']}, "
        f"EOS {tok['eos_id']}, end of turn `{tok['end_of_turn']}` ({tok['end_of_turn_id']}) ends generation; "
        f"{tok['special_tokens']} special tokens, {tok['strings']} strings and {tok['chat_prompts']} rendered chat "
        "prompts tokenize to identical ids.",
        f"- **Greedy agreement** HF-merged (float32) vs F16 GGUF: {greedy['identical']}/{greedy['prompts']} test "
        f"prompts give identical tokens (required: {100 * manifest.selection.min_greedy_agreement:.0f}%).",
        "- **Stops by itself**: the *truncated* column counts answers (free + grammar) that hit max_tokens.",
        "- **Tensor types** per file:",
        "",
    ]
    for q in manifest.quants:
        lines.append(f"  - {q.quant}: " + ", ".join(f"{k} x{v}" for k, v in q.tensor_types.items()))
    lines += ["", "## Sample answers (first test examples, free mode)", ""]
    for i, sample in enumerate(verification["samples"]):
        lines.append(f"{i + 1}. **user**: {sample['user']}")
        lines.append(f"   - reference: `{sample['reference']}`")
        for quant, answer in sample["answers"].items():
            lines.append(f"   - {quant}: `{answer.strip()[:300]}`")
    lines += ["", "Versions: " + ", ".join(f"{k} {v}" for k, v in manifest.versions.items()), ""]
    lines += compare_section(run_dir) if run_dir else []
    return "\n".join(lines)
