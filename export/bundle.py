"""The export stage: adapter -> merged HF -> GGUF (llama.cpp's converter) -> quants -> verified -> bundle.

    python -m export --run default                          # what `make export` runs
    python -m export --run default quants='[F16,Q8_0]' eval_samples=100 --max-model-mb 120
    python -m export --run default --config export.yaml

Reads runs/RUN/adapter/, runs/RUN/data/test.jsonl and the run manifest (base model and task of the train stage);
writes runs/RUN/bundle/ (GGUFs, manifest.json, REPORT.md, quality_vs_size.png, Modelfile). Everything is built in a
staging folder inside the run and moved into place at the end: a failed or interrupted export leaves the previous
bundle untouched and no half-written file.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
import time
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import Any, Sequence

from tqdm import tqdm

from edgetune.base_model import BaseModelRef
from edgetune.config import to_dict
from edgetune.rundir import RunDir, atomic_write, atomic_write_json, package_versions, sha256_file
from edgetune.task import TaskSpec, load_holdout, load_task
from export import ExportError
from export.config import ExportConfig

Example = tuple[list[dict[str, str]], str]  # (chat up to the user turn, reference answer)
TOKENIZER_CHECK_CHATS = 20  #: test chats rendered and tokenized by both sides in the tokenizer check


# ------------------------------------------------------------------------------------------------------ inputs
def _base_model_of(run: RunDir) -> BaseModelRef:
    train = run.stage("train")
    if not train or not isinstance(train.get("base_model"), dict):
        raise ExportError(f"{run.manifest_path}: no 'train' stage with a 'base_model'; run `make train RUN={run.root.name}` first")
    ref = train["base_model"]
    try:
        return BaseModelRef(str(ref["source"]), str(ref["kind"]), Path(ref["path"]), ref.get("sha256"))
    except KeyError as exc:
        raise ExportError(f"{run.manifest_path}: stages.train.base_model lacks {exc}; retrain with this edgetune") from None


def _task_of(run: RunDir) -> TaskSpec:
    for stage in ("train", "data"):
        name = (run.stage(stage) or {}).get("task")
        if name:
            return load_task(name)
    raise ExportError(f"{run.manifest_path}: neither the 'train' nor the 'data' stage records a 'task'")


def load_examples(path: Path) -> list[Example]:
    """The test split as (chat without the answer, reference answer); errors name the file and line."""
    if not path.is_file():
        raise ExportError(f"{path}: the test split is missing; run `make data RUN={path.parent.parent.name}`")
    examples = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            messages = json.loads(line)["messages"]
            roles = [m["role"] for m in messages]
            contents = [m["content"] for m in messages]
        except (ValueError, KeyError, TypeError) as exc:
            raise ExportError(f"{path}:{number}: expected {{\"messages\": [{{\"role\", \"content\"}}, ...]}} ({exc})") from None
        if len(roles) < 2 or roles[-1] != "assistant" or roles[-2] != "user" or not all(isinstance(c, str) for c in contents):
            raise ExportError(f"{path}:{number}: the messages must end with a user turn and the assistant's answer")
        examples.append(([dict(m) for m in messages[:-1]], messages[-1]["content"]))
    if not examples:
        raise ExportError(f"{path}: the test split is empty")
    return examples


def _data_hashes(run: RunDir) -> dict[str, str]:
    recorded = (run.stage("data") or {}).get("sha256")
    if isinstance(recorded, dict) and recorded:
        return recorded
    return {p.stem: sha256_file(p) for p in sorted(run.data.glob("*.jsonl"))}


def _tokenizer_probes(task: TaskSpec, tokenizer: Any, sample: Sequence[Example]) -> tuple[list[str], list[Any]]:
    """Strings and chats both tokenizers must agree on: the task's own text and rendered test conversations."""
    from export.verify import chat_text

    texts = [task.system, *(e[k] for e in task.examples for k in ("user", "assistant"))]
    for messages, reference in sample:
        texts += [m["content"] for m in messages] + [reference]
        texts.append(chat_text(tokenizer, [*messages, {"role": "assistant", "content": reference}], False))
    return texts, [messages for messages, _ in sample]


def _quant_entry(quant: str, path: Path, result: Any, tensor_types: dict[str, int]) -> dict[str, Any]:
    """One quant's line in the bundle manifest (``result``: export.verify.QuantResult)."""
    free, constrained = result.free, result.constrained
    return {
        "quant": quant, "file": path.name, "sha256": sha256_file(path), "size_bytes": path.stat().st_size,
        "n": result.n, "exact_match": free.exact_match, "valid_rate": free.valid_rate, "f1": free.f1,
        "constrained_exact_match": constrained.exact_match if constrained else None,
        "constrained_valid_rate": constrained.valid_rate if constrained else None,
        "constrained_invalid_stopped": constrained.stopped_invalid if constrained else 0,
        "constrained_reused": constrained.reused if constrained else None,
        "truncated": free.truncated + (constrained.truncated if constrained else 0),
        "human_n": len(result.human.answers) if result.human else 0,
        "human_exact_match": result.human.exact_match if result.human else None,
        "human_valid_rate": result.human.valid_rate if result.human else None,
        "tokens_per_second": round(free.tokens_per_second, 2),
        "tensor_types": tensor_types,
    }


# ---------------------------------------------------------------------------------------------------- choosing
def choose(quants: list[dict[str, Any]], config: ExportConfig) -> dict[str, Any]:
    """The smallest quant within ``tolerance`` points of F16's exact match (on the test sample and, where the task
    has one, the human set) that stops by itself and fits the budget; sets each quant's ``eligible``/``rejected_because``. Raises when none qualifies."""
    reference = next(q for q in quants if q["quant"] == "F16")
    budget = config.max_model_mb * 2**20
    for q in quants:
        reasons = []
        lost = 100 * (reference["exact_match"] - q["exact_match"])
        if lost > config.tolerance + 1e-9:
            reasons.append(f"exact match {100 * q['exact_match']:.1f} is {lost:.1f} points below F16 "
                           f"(tolerance {config.tolerance:g})")
        if q.get("human_exact_match") is not None and reference.get("human_exact_match") is not None:
            lost_human = 100 * (reference["human_exact_match"] - q["human_exact_match"])
            if lost_human > config.tolerance + 1e-9:
                reasons.append(f"human-set exact match {100 * q['human_exact_match']:.1f} is {lost_human:.1f} points "
                               f"below F16 (tolerance {config.tolerance:g})")
        answers = q["n"] * (2 if q["constrained_valid_rate"] is not None else 1)
        if q["truncated"] > config.max_truncated * answers:
            reasons.append(f"{q['truncated']} of {answers} answers ran into max_tokens instead of stopping")
        if q["constrained_valid_rate"] is not None and q["constrained_invalid_stopped"]:
            reasons.append(f"{q['constrained_invalid_stopped']} grammar-constrained answers stopped but are invalid")
        if budget and q["size_bytes"] > budget:
            reasons.append(f"{q['size_bytes'] / 2**20:.1f} MiB exceeds max_model_mb={config.max_model_mb:g}")
        q["eligible"], q["rejected_because"] = not reasons, reasons
    eligible = [q for q in quants if q["eligible"]]
    if not eligible:
        lines = "\n".join(f"  - {q['quant']}: {'; '.join(q['rejected_because'])}" for q in quants)
        raise ExportError(f"no quant qualifies:\n{lines}\nRaise max_model_mb or tolerance, or improve the model "
                          "(a model that does not stop needs more training or a correct EOS)")
    return min(eligible, key=lambda q: q["size_bytes"])


# ----------------------------------------------------------------------------------------------------- writing
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


def plot_quality_vs_size(quants: list[dict[str, Any]], chosen: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    quants = sorted(quants, key=lambda q: q["size_bytes"])
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    sizes = [q["size_bytes"] / 2**20 for q in quants]
    ax.plot(sizes, [100 * q["exact_match"] for q in quants], "o-", label="exact match, free")
    if quants[0]["constrained_exact_match"] is not None:
        ax.plot(sizes, [100 * q["constrained_exact_match"] for q in quants], "s--", label="exact match, grammar")
    for i, (q, size) in enumerate(zip(quants, sizes)):
        label = f"{q['quant']} (chosen)" if q["quant"] == chosen else q["quant"]
        ax.annotate(label, (size, 100 * q["exact_match"]), textcoords="offset points",
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


def report(manifest: dict[str, Any], verification: dict[str, Any], run_dir: RunDir | None = None) -> str:
    chosen = manifest["chosen"]
    greedy = verification["greedy"]
    tok = verification["tokenizer"]
    lines = [
        f"# Export report: run `{manifest['run']}`, task `{manifest['task']}`",
        "",
        f"**Chosen: {chosen['quant']}** (`{chosen['file']}`, {chosen['size_bytes'] / 2**20:.1f} MiB): the smallest "
        f"quant within {manifest['selection']['tolerance_points']:g} points of F16's exact match (test sample and human "
        f"set) that stops by "
        f"itself" + (f" and fits {manifest['selection']['max_model_mb']:g} MiB" if manifest['selection']['max_model_mb'] else "") + ".",
        "",
        f"Scored on {manifest['eval']['samples']} of {manifest['eval']['test_examples']} test examples (seed "
        f"{manifest['eval']['seed']}), max_tokens {manifest['sampling']['max_tokens']}, temperature "
        f"{manifest['sampling']['temperature']:g}. *free*: unconstrained; *grammar*: constrained by the contract's GBNF (greedy answers the grammar admits token by token are "
        "not generated twice: *reused* counts them). *tok/s*: completion tokens per second of the free run, prompt "
        "processing included, on this machine. *human*: the task's held-out human-phrased set "
        f"({manifest['eval'].get('human_samples', 0)} commands people wrote, never trained on), grammar on.",
        "",
        "| quant | size MiB | exact free | exact grammar | exact human | valid free | valid grammar | valid human | F1 free "
        "| truncated | reused | tok/s | verdict |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for q in manifest["quants"]:
        verdict = "**chosen**" if q["quant"] == chosen["quant"] else ("eligible" if q["eligible"] else "; ".join(q["rejected_because"]))
        lines.append(
            f"| {q['quant']} | {q['size_bytes'] / 2**20:.1f} | {_pct(q['exact_match'])} | {_pct(q['constrained_exact_match'])} "
            f"| {_pct(q.get('human_exact_match'))} | {_pct(q['valid_rate'])} | {_pct(q['constrained_valid_rate'])} "
            f"| {_pct(q.get('human_valid_rate'))} | {_pct(q['f1'])} | {q['truncated']} "
            f"| {'-' if q['constrained_reused'] is None else q['constrained_reused']} | {q['tokens_per_second']:.1f} | {verdict} |"
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
        f"prompts give identical tokens (required: {100 * manifest['selection']['min_greedy_agreement']:.0f}%).",
        "- **Stops by itself**: the *truncated* column counts answers (free + grammar) that hit max_tokens.",
        "- **Tensor types** per file:",
        "",
    ]
    for q in manifest["quants"]:
        lines.append(f"  - {q['quant']}: " + ", ".join(f"{k} x{v}" for k, v in q["tensor_types"].items()))
    lines += ["", "## Sample answers (first test examples, free mode)", ""]
    for i, sample in enumerate(verification["samples"]):
        lines.append(f"{i + 1}. **user**: {sample['user']}")
        lines.append(f"   - reference: `{sample['reference']}`")
        for quant, answer in sample["answers"].items():
            lines.append(f"   - {quant}: `{answer.strip()[:300]}`")
    lines += ["", f"Versions: " + ", ".join(f"{k} {v}" for k, v in manifest["versions"].items()), ""]
    lines += compare_section(run_dir) if run_dir else []
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------------- stage
def _remove_stale_staging(run_dir: RunDir) -> None:
    """Staging folders of exports that were killed outright (SIGKILL, power loss) and could not clean up."""
    for stale in run_dir.root.glob(".export-*"):
        pid = stale.name.split("-")[1]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            shutil.rmtree(stale, ignore_errors=True)


def _install(staged: Path, target: Path) -> None:
    """Replace ``target`` by the complete ``staged`` folder with two renames (same filesystem)."""
    old = target.with_name(f".{target.name}.old-{os.getpid()}")
    if target.exists():
        target.rename(old)
    staged.rename(target)
    shutil.rmtree(old, ignore_errors=True)


def run(config: ExportConfig) -> Path:
    """Export runs/RUN: merge, convert, quantize, verify, choose, bundle. Returns the bundle directory.

    Raises ExportError with the cause and the fix when an input is missing or broken or a check fails."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from export import convert, merge, quantize, verify

    started = time.time()
    timings: dict[str, float] = {}
    run_dir = RunDir.named(config.run, config.runs_dir or None)
    if not run_dir.root.is_dir():
        raise ExportError(f"{run_dir.root}: no such run; train one first (`make train RUN={config.run}`)")
    merge.check_adapter(run_dir.adapter)
    base = _base_model_of(run_dir)
    task = _task_of(run_dir)
    examples = load_examples(run_dir.data / "test.jsonl")
    max_tokens = config.max_tokens or task.generation.max_tokens
    threads = config.threads or os.cpu_count() or 1
    torch.set_num_threads(threads)
    order = sorted(random.Random(config.seed).sample(range(len(examples)), min(len(examples), config.eval_samples or len(examples))))
    sample = [examples[i] for i in order]
    holdout = [(conv[:-1], conv[-1]["content"]) for conv in load_holdout(task)]
    if config.human_samples:
        holdout = [holdout[i] for i in sorted(random.Random(config.seed).sample(range(len(holdout)),
                                                                                 min(len(holdout), config.human_samples)))]
    quant_names = sorted(config.quants, key=lambda q: q != "F16")  # F16 first: every other quant is made from it
    name = config.run

    steps = tqdm(total=3 + len(quant_names), desc="export", unit="step")

    def step(label: str) -> None:
        steps.set_postfix_str(label)
        timings[label] = time.time()

    def done(label: str) -> None:
        timings[label] = round(time.time() - timings[label], 2)
        steps.update()

    _remove_stale_staging(run_dir)
    work = Path(tempfile.mkdtemp(prefix=f".export-{os.getpid()}-", dir=run_dir.root))
    logs = run_dir.root / "export-logs"
    logs.mkdir(exist_ok=True)
    try:
        staged = work / "bundle"
        staged.mkdir()
        step("merge")
        merged_dir = merge.merge_adapter(run_dir.adapter, base, work / "merged", threads)
        done("merge")

        step("convert")
        files = {q: staged / f"{name}-{q}.gguf" for q in quant_names}
        for quant in [q for q in quant_names if q in convert.FLOAT_OUTTYPES]:
            convert.convert_to_gguf(merged_dir, files[quant], quant)
            shutil.move(files[quant].with_suffix(".convert.log"), logs / f"convert-{quant}.log")
        done("convert")

        step("verify F16")
        tokenizer = AutoTokenizer.from_pretrained(merged_dir)
        if tokenizer.chat_template is None:
            raise ExportError(f"{run_dir.adapter}: the tokenizer saved with the adapter has no chat template, so "
                              "the GGUF could not be prompted the way the model was trained; save it with the adapter")
        texts, chats = _tokenizer_probes(task, tokenizer, sample[:TOKENIZER_CHECK_CHATS])
        tokenizer_summary = verify.check_tokenizer(files["F16"], tokenizer, texts, chats)
        model = AutoModelForCausalLM.from_pretrained(merged_dir, dtype=torch.float32)
        greedy = verify.greedy_agreement(model, tokenizer, files["F16"], [m for m, _ in sample[:config.greedy_prompts]],
                                         max_tokens, config.n_ctx, threads)
        del model
        if greedy["agreement"] < config.min_greedy_agreement:
            worst = next(r for r in greedy["results"] if not r["identical"])
            raise ExportError(
                f"the F16 GGUF does not reproduce the merged model: greedy answers identical on only "
                f"{greedy['identical']}/{greedy['prompts']} test prompts (min_greedy_agreement="
                f"{config.min_greedy_agreement:g}). First difference: HF {worst['hf'][:120]!r} vs GGUF "
                f"{worst['gguf'][:120]!r}")
        shutil.rmtree(merged_dir)  # the HF copy is not part of the bundle; free the disk before quantizing
        done("verify F16")

        stops = sorted({tokenizer.convert_ids_to_tokens(i) for i in verify.stop_token_ids(tokenizer)})
        results = []
        for quant in quant_names:
            step(f"{quant}")
            if quant not in convert.FLOAT_OUTTYPES:
                quantize.quantize(files["F16"], files[quant], quant, threads)
                shutil.move(files[quant].with_suffix(".quantize.log"), logs / f"quantize-{quant}.log")
            reader = verify.read_gguf(files[quant])
            tensor_types = dict(Counter(t.tensor_type.name for t in reader.tensors).most_common())
            del reader
            verify.check_tokenizer(files[quant], tokenizer, texts, chats)
            result = verify.evaluate_quant(files[quant], quant, task, sample, max_tokens, config.n_ctx, threads,
                                           config.seed, stops, config.sequences, holdout)
            results.append((quant, result, tensor_types))
            done(quant)
        steps.close()

        quants = [_quant_entry(quant, files[quant], result, types) for quant, result, types in results]
        try:
            chosen = choose(quants, config)
        except ExportError as exc:
            raise ExportError(f"{exc}\nMeasurements of every quant: {logs / 'quants.json'}") from None
        finally:
            atomic_write_json(logs / "quants.json", quants)  # the measurements survive a failed choice
        gen = task.generation
        train_stage = run_dir.stage("train") or {}
        manifest = {
            "run": name,
            "chosen": {k: chosen[k] for k in ("quant", "file", "sha256", "size_bytes")},
            "quants": quants,
            "task": task.name,
            "system_prompt": task.system,
            "sampling": {"temperature": gen.temperature, "top_p": gen.top_p, "top_k": gen.top_k,
                         "max_tokens": max_tokens, "repeat_penalty": gen.repeat_penalty, "stop": stops},
            "grammar": task.contract.grammar(),
            "contract": to_dict(task.contract),
            "chat_template": tokenizer.chat_template,
            "n_ctx": config.n_ctx,
            "base_model": train_stage.get("base_model"),
            "adapter_sha256": sha256_file(run_dir.adapter / "adapter_model.safetensors"),
            "data_sha256": _data_hashes(run_dir),
            "eval": {"samples": len(sample), "test_examples": len(examples), "seed": config.seed,
                     "human_samples": len(holdout),
                     "greedy_prompts": greedy["prompts"], "greedy_agreement": greedy["agreement"]},
            "selection": {"tolerance_points": config.tolerance, "max_model_mb": config.max_model_mb,
                          "max_truncated": config.max_truncated, "min_greedy_agreement": config.min_greedy_agreement},
            "versions": package_versions(),
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        verification = {
            "tokenizer": tokenizer_summary, "greedy": greedy,
            "answers": {quant: asdict(result) for quant, result, _ in results},
            "samples": [{"user": messages[-1]["content"], "reference": reference,
                         "answers": {quant: result.free.answers[i] for quant, result, _ in results}}
                        for i, (messages, reference) in enumerate(sample[:3])],
        }
        atomic_write_json(staged / "manifest.json", manifest)
        atomic_write_json(staged / "verification.json", verification)
        atomic_write(staged / "REPORT.md", report(manifest, verification, run_dir))
        plot_quality_vs_size(quants, chosen["quant"], staged / "quality_vs_size.png")
        atomic_write(staged / "Modelfile", modelfile(chosen["file"], tokenizer, task, stops, max_tokens, config.n_ctx))
        _install(staged, run_dir.bundle)
    finally:
        steps.close()
        shutil.rmtree(work, ignore_errors=True)

    timings["total"] = round(time.time() - started, 2)
    run_dir.record(
        "export",
        config=to_dict(config),
        inputs={"adapter_sha256": manifest["adapter_sha256"], "base_model": manifest["base_model"],
                "data_sha256": manifest["data_sha256"], "converter": f"llama-cpp-python=={convert.llama_cpp_version()}"},
        outputs={"bundle": str(run_dir.bundle), "chosen": manifest["chosen"],
                 "files": {q["file"]: q["sha256"] for q in quants}},
        timings=timings,
    )
    return run_dir.bundle
