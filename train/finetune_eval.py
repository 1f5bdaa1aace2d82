"""After training: the base model (adapter disabled; cached across runs) and the tuned model scored on the test split
and the task's held-out human set, and the loss plot. train/finetune.py writes both into the adapter's report."""

from __future__ import annotations

import hashlib
import json
import random
import sys
from pathlib import Path
from typing import Any

from edgetune.rundir import atomic_write_json
from train.dataset import write_jsonl
from train.finetune_config import FinetuneConfig


def sample(items: list, count: int, seed: int) -> list:
    """A seeded sample of ``count`` items in their original order (all of them when count is 0 or larger)."""
    if count == 0 or count >= len(items):
        return list(items)
    chosen = sorted(random.Random(seed).sample(range(len(items)), count))
    return [items[i] for i in chosen]


def base_eval_key(base_model: dict[str, Any], data_sha256: dict[str, str], config: FinetuneConfig,
                   holdout: list) -> str:
    facts = [base_model.get("path"), base_model.get("sha256"), data_sha256["test"], config.eval.base_examples,
             config.eval.margin_tokens, config.seed, config.dtype, config.quant, config.device,
             hashlib.sha256(json.dumps(holdout).encode()).hexdigest()]
    return hashlib.sha256(json.dumps(facts).encode()).hexdigest()[:16]


def evaluate_base_and_tuned(config: FinetuneConfig, task: Any, model: Any, tokenizer: Any, sets: dict[str, list],
              adapter_dir: Path, staging: Path, key_base: str,
              vocabulary_gguf: Path | None) -> dict[str, dict[str, Any]]:
    """Base (adapter disabled; cached across runs) and tuned (adapter merged for speed) task metrics per set.

    ``sets`` maps a name (``test``, and ``human`` when the task has a held-out set) to conversations; the result maps
    ``base``/``tuned`` to ``{set name: TaskEval dict}``; every wrong tuned answer goes to ``staging/mistakes.jsonl``
    (the report keeps the first few). With ``vocabulary_gguf`` (a GGUF base model: the tuned
    model shares its vocabulary) the tuned answers are also scored grammar-constrained, as the robot gets them.
    """
    from train.task_eval import Vocabulary, answer_budget, evaluate

    tokenizer.padding_side = "left"
    budgets = {name: answer_budget(tokenizer, [c[-1]["content"] for c in convs], config.eval.margin_tokens)
               for name, convs in sets.items()}
    batch = config.eval.batch_size
    cache = adapter_dir / "base_eval.json"
    base = None
    if cache.is_file():
        cached = json.loads(cache.read_text(encoding="utf-8"))
        base = cached.get("result") if cached.get("key") == key_base else None
    vocabulary = Vocabulary(vocabulary_gguf) if vocabulary_gguf and task.contract.grammar() else None
    if base is None:
        with model.disable_adapter():
            base = {name: evaluate(model, tokenizer, task, sample(convs, config.eval.base_examples, config.seed),
                                   budgets[name], batch, f"eval base {name}", vocabulary=vocabulary,
                                   give_up=True).to_dict()
                    for name, convs in sets.items()}
    atomic_write_json(staging / "base_eval.json", {"key": key_base, "result": base})
    quantized = getattr(model, "is_loaded_in_4bit", False) or getattr(model.base_model, "is_loaded_in_4bit", False)
    tuned_model = model if quantized else model.merge_and_unload()  # merged: no adapter matmuls while decoding
    tuned, wrong = {}, []
    for name, convs in sets.items():
        subset = sample(convs, config.eval.test_examples, config.seed) if name == "test" else convs
        result = evaluate(tuned_model, tokenizer, task, subset, budgets[name], batch, f"eval tuned {name}",
                          vocabulary=vocabulary)
        tuned[name] = result.to_dict()
        wrong += [{"set": name, **mistake} for mistake in result.wrong]
    write_jsonl(staging / "mistakes.jsonl", wrong)
    if vocabulary is not None:
        vocabulary.close()
    for name in sets:
        t = tuned[name]
        robot = t.get("constrained") or t  # what the robot gets: grammar on where it can be measured
        grammar = f", grammar on {robot['exact_match']:.3f} valid {robot['valid_rate']:.3f}" if robot is not t else ""
        grammar += f"; acted on {robot['acted_on_refusal']:.0%} of {robot['refusals']} refusals" \
            if robot["refusals"] else ""
        print(f"{name:5s} set: exact match base {base[name]['exact_match']:.3f} (n={base[name]['n']}) -> tuned "
              f"{t['exact_match']:.3f} (n={t['n']}, valid {t['valid_rate']:.3f}{grammar}, {t['seconds']:.0f}s)",
              file=sys.stderr)
    return {"base": base, "tuned": tuned}


def plot_loss(history: list[dict[str, Any]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = [(h["step"], h["loss"]) for h in history if "loss" in h]
    val = [(h["step"], h["eval_loss"]) for h in history if "eval_loss" in h]
    fig, ax = plt.subplots(figsize=(7, 4))
    if train:
        ax.plot(*zip(*train), label="train loss", linewidth=1)
    if val:
        ax.plot(*zip(*val), "o-", label="val loss")
    ax.set(xlabel="optimizer step", ylabel="loss (answer tokens)", title=title, yscale="log")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    from edgetune.rundir import atomic_path

    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
