"""The task metric by generation: batched greedy decoding (left padding, KV cache, stop at end of turn) of the test
prompts, scored by the task's contract scorer (exact match after normalisation, valid rate, per-call P/R/F1).

Batches are formed from rows whose reference answers have similar lengths (sorted): a batch stops as soon as every
row has produced its end-of-turn token, so rows that finish early waste little compute while the others decode.

**Constrained too** (what the robot gets): the server decodes with the contract's grammar, checking the greedy token
first and choosing the best allowed token only when the grammar rejects it. So a free answer the grammar admits
token by token *is* the constrained answer, and only the rejected ones are decoded again, with llama.cpp's grammar
(over the base GGUF's vocabulary, which the tuned model shares) choosing each token. That costs a few seconds where
a second full pass would cost minutes. The server's close reserve is not applied here: a constrained answer that
runs out of tokens counts as invalid, so this score is a lower bound of the export's.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

from edgetune.contract_scorer import Score
from edgetune.task import TaskSpec
from train.sft_data import render_prompt


@dataclass
class TaskEval(Score):
    """What one model scored on a set of test conversations, with what it cost."""

    seconds: float = 0.0
    generated_tokens: int = 0
    max_new_tokens: int = 0
    mistakes: list[dict[str, str]] = field(default_factory=list)  #: the first few wrong answers, for a quick look
    #: the same prompts decoded under the contract's grammar: Score fields + ``redecoded`` (answers the grammar
    #: rejected, decoded again constrained); None without a grammar or a GGUF vocabulary to run it on
    constrained: dict[str, Any] | None = None
    #: every wrong answer (grammar on where it was measured, as the robot gets it), for mistakes.jsonl; not reported
    wrong: list[dict[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict:
        out = super().to_dict()
        out.pop("wrong")
        return out


class GrammarCheck:
    """llama.cpp's grammar sampler for one answer: which tokens it allows next, over a GGUF's vocabulary."""

    def __init__(self, vocab: "Vocabulary", gbnf: str):
        from edgetune.sampling import init_grammar

        self.vocab = vocab
        self.sampler = init_grammar(vocab.handle, gbnf)

    def allowed(self, ids: Sequence[int]) -> list[int]:
        import ctypes

        import llama_cpp

        data = (llama_cpp.llama_token_data * len(ids))(*[llama_cpp.llama_token_data(t, 0.0, 0.0) for t in ids])
        array = llama_cpp.llama_token_data_array(data=data, size=len(ids), selected=-1, sorted=False)
        llama_cpp.llama_sampler_apply(self.sampler, ctypes.byref(array))
        return [ids[i] for i in range(len(ids)) if data[i].logit != float("-inf")]

    def accept(self, token: int) -> None:
        import llama_cpp

        llama_cpp.llama_sampler_accept(self.sampler, token)

    def admits(self, tokens: Sequence[int], end: int) -> bool:
        """Whether the grammar allows ``tokens`` one by one and then ``end`` (the end-of-turn token)."""
        for token in [*tokens, end]:
            if not self.allowed([token]):
                return False
            self.accept(token)
        return True

    def close(self) -> None:
        import llama_cpp

        llama_cpp.llama_sampler_free(self.sampler)


class Vocabulary:
    """A GGUF's vocabulary only (llama.cpp loads no weights for it): what GrammarCheck runs over."""

    def __init__(self, gguf: Path):
        from edgetune.llama import load_llama

        self.llm = load_llama(gguf, vocab_only=True, verbose=False)
        self.handle = self.llm._model.vocab
        self.size = self.llm.n_vocab()

    def close(self) -> None:
        self.llm.close()


def stop_token_ids(tokenizer: Any) -> list[int]:
    """Tokens that end an answer: EOS plus ChatML's end of turn where the vocabulary has it."""
    ids = [tokenizer.eos_token_id]
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    if isinstance(im_end, int) and im_end != tokenizer.unk_token_id and im_end not in ids:
        ids.append(im_end)
    return ids


def answer_budget(tokenizer: Any, references: list[str], margin: int) -> int:
    """max_new_tokens from the data: the longest reference answer plus a margin (and its end-of-turn token)."""
    return max(len(tokenizer(ref, add_special_tokens=False)["input_ids"]) for ref in references) + 1 + margin


def generate_answers(
    model: Any,
    tokenizer: Any,
    prompts: list[str],
    max_new_tokens: int,
    batch_size: int,
    desc: str = "generate",
    grammars: list["GrammarCheck"] | None = None,
    give_up: list["GrammarCheck"] | None = None,
    expected_lengths: list[int] | None = None,
) -> tuple[list[str], list[list[int]]]:
    """Greedy answers to ``prompts`` (rendered chat prompts), in order, with their tokens (end of turn excluded).

    ``expected_lengths`` (one per prompt, e.g. the reference answers' tokens) only orders the work: a batch decodes
    until its longest answer ends, every row computed meanwhile, so batching answers of similar length together
    (instead of prompts of similar length) halved the decode steps of the robot_sdk test split.

    ``grammars`` (one per prompt): decode each answer under its grammar, the server's way (the greedy token when
    the grammar allows it, else the best allowed one; the answer ends where the grammar allows no token).
    ``give_up`` (one per prompt): decode freely, but end an answer at the first token its grammar rejects."""
    import torch
    from tqdm.auto import tqdm

    stops = stop_token_ids(tokenizer)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    encoded = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    length = expected_lengths or [len(e) for e in encoded]
    order = sorted(range(len(prompts)), key=lambda i: (length[i], len(encoded[i])), reverse=True)
    answers: list[str] = [""] * len(prompts)
    tokens: list[list[int]] = [[] for _ in prompts]
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    with torch.inference_mode(), _contiguous_head_input(model), \
            tqdm(total=len(prompts), desc=desc, unit="ex", leave=False) as bar:
        for start in range(0, len(order), batch_size):
            rows = order[start:start + batch_size]
            width = max(len(encoded[i]) for i in rows)
            input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
            attention = torch.zeros((len(rows), width), dtype=torch.long)
            for r, i in enumerate(rows):  # left padding: every row's last prompt token sits in the last column
                input_ids[r, width - len(encoded[i]):] = torch.tensor(encoded[i])
                attention[r, width - len(encoded[i]):] = 1
            processors = [_GrammarChoice([grammars[i] for i in rows], stops)] if grammars else None
            stopping = [_OffGrammar([give_up[i] for i in rows])] if give_up else None
            out = model.generate(
                input_ids=input_ids.to(device),
                attention_mask=attention.to(device),
                max_new_tokens=max_new_tokens,
                do_sample=False,
                temperature=None,
                top_p=None,
                top_k=None,
                eos_token_id=stops,
                pad_token_id=pad_id,
                use_cache=True,
                **({"logits_processor": processors} if processors else {}),
                **({"stopping_criteria": stopping} if stopping else {}),
            )
            for r, i in enumerate(rows):
                new = out[r, width:].tolist()
                tokens[i] = new[:next((k for k, t in enumerate(new) if t in stops), len(new))]
                answers[i] = tokenizer.decode(tokens[i], skip_special_tokens=True).strip()
            bar.update(len(rows))
    model.train(was_training)
    return answers, tokens


@contextmanager
def _contiguous_head_input(model: Any) -> Iterator[None]:
    """Hand the LM head a contiguous copy of its input while generating.

    The prompt pass projects only each row's last position, a strided slice of the hidden states. ``torch.matmul``
    does not fold a strided 3-D input into one matrix product when the weight is frozen (as in a merged or
    adapter-wrapped model): it runs a batched product over the weight expanded per row, copying the 28M-parameter
    tied embedding once per prompt. That was ~4 s of every batch of 48 prompts, 40% of the evaluation (robot_sdk,
    Intel Xeon). Copying the slice costs a few kilobytes; the numbers are the same."""
    handle = model.get_output_embeddings().register_forward_pre_hook(
        lambda module, args: (args[0].contiguous(), *args[1:]))
    try:
        yield
    finally:
        handle.remove()


class _GrammarChoice:
    """A transformers logits processor that leaves each row only the token the server's constrained decoder would
    choose: the greedy one when its grammar allows it, else the best of the likely candidates it allows, else the
    best of the whole vocabulary; end of turn when it allows nothing."""

    CANDIDATES = 64  #: as the server's grammar_candidates default

    def __init__(self, grammars: list[GrammarCheck], stops: list[int]):
        self.grammars = grammars
        self.stops = stops
        self.done = [False] * len(grammars)

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        for r, grammar in enumerate(self.grammars):
            if self.done[r]:
                continue
            row = scores[r, : grammar.vocab.size]
            ranked = torch.topk(row, min(self.CANDIDATES, len(row))).indices.tolist()
            allowed = grammar.allowed(ranked[:1]) or grammar.allowed(ranked)
            if not allowed:
                everything = grammar.allowed(range(grammar.vocab.size))
                allowed = [max(everything, key=lambda t: row[t].item())] if everything else [self.stops[0]]
            choice = allowed[0]  # in ranked order: the best allowed
            scores[r] = float("-inf")
            scores[r, choice] = 0.0
            grammar.accept(choice)
            self.done[r] = choice in self.stops
        return scores


class _OffGrammar:
    """A transformers stopping criterion that ends a row at the first token its grammar rejects: no valid answer
    can follow that prefix, so decoding on could not change the row's exact match or validity (only the per-call
    F1 of an invalid answer, which counts the calls written up to there). The base model leaves the contract's
    grammar within a few tokens, so its evaluation takes seconds instead of running every row to the budget."""

    def __init__(self, grammars: list[GrammarCheck]):
        self.grammars = grammars
        self.off = [False] * len(grammars)

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        for r, grammar in enumerate(self.grammars):
            if not self.off[r]:
                token = int(input_ids[r, -1])
                if grammar.allowed([token]):
                    grammar.accept(token)
                else:
                    self.off[r] = True
        return torch.tensor(self.off, dtype=torch.bool, device=input_ids.device)


def evaluate(
    model: Any,
    tokenizer: Any,
    task: TaskSpec,
    conversations: list[list[dict[str, str]]],
    max_new_tokens: int,
    batch_size: int,
    desc: str,
    keep_mistakes: int = 5,
    vocabulary: Vocabulary | None = None,
    give_up: bool = False,
) -> TaskEval:
    """Generate an answer for every conversation's prompt and score it against the conversation's answer; with a
    ``vocabulary`` (the base GGUF's) and a task grammar, score the grammar-constrained answers as well, or with
    ``give_up`` instead, end each free answer where it leaves the grammar (for a model that rarely keeps to it)."""
    started = time.perf_counter()
    prompts = [render_prompt(tokenizer, messages) for messages in conversations]
    references = [messages[-1]["content"] for messages in conversations]
    gbnf = task.contract.grammar()
    checks = [GrammarCheck(vocabulary, gbnf) for _ in prompts] if give_up and vocabulary and gbnf else None
    lengths = [len(tokenizer(ref, add_special_tokens=False)["input_ids"]) for ref in references]
    predictions, tokens = generate_answers(model, tokenizer, prompts, max_new_tokens, batch_size, desc,
                                           give_up=checks, expected_lengths=lengths)
    for check in checks or ():
        check.close()
    generated = sum(len(t) + (len(t) < max_new_tokens) for t in tokens)  # + the end of turn where it came
    score = task.contract.score(predictions, references)
    mistakes = [
        {"user": conv[-2]["content"], "expected": ref, "got": pred}
        for conv, ref, pred in zip(conversations, references, predictions)
        if task.contract.score([pred], [ref]).exact_match < 1.0
    ]
    constrained = None
    if vocabulary is not None and gbnf and not give_up:
        constrained, answers = _constrained(model, tokenizer, task, prompts, references, predictions, tokens,
                                            vocabulary, gbnf, max_new_tokens, batch_size, desc)
        wrong = [{"user": conv[-2]["content"], "expected": ref, "got": answer, "free": pred}
                 for conv, ref, pred, answer in zip(conversations, references, predictions, answers)
                 if task.contract.score([answer], [ref]).exact_match < 1.0]
    else:
        wrong = mistakes
    return TaskEval(**asdict(score), seconds=round(time.perf_counter() - started, 2), generated_tokens=generated,
                    max_new_tokens=max_new_tokens, mistakes=mistakes[:keep_mistakes], constrained=constrained,
                    wrong=wrong)


def _constrained(model: Any, tokenizer: Any, task: TaskSpec, prompts: list[str], references: list[str],
                 predictions: list[str], tokens: list[list[int]], vocabulary: Vocabulary, gbnf: str,
                 max_new_tokens: int, batch_size: int, desc: str) -> tuple[dict[str, Any], list[str]]:
    """The constrained score and answers: free answers the grammar admits are kept, the others decoded again under
    it."""
    end = stop_token_ids(tokenizer)[-1]
    rejected = []
    for i, answer in enumerate(tokens):
        check = GrammarCheck(vocabulary, gbnf)
        if len(answer) >= max_new_tokens or not check.admits(answer, end):
            rejected.append(i)
        check.close()
    answers = list(predictions)
    if rejected:
        grammars = [GrammarCheck(vocabulary, gbnf) for _ in rejected]
        redone, _ = generate_answers(model, tokenizer, [prompts[i] for i in rejected], max_new_tokens, batch_size,
                                     f"{desc} (grammar)", grammars)
        for grammar in grammars:
            grammar.close()
        for i, answer in zip(rejected, redone):
            answers[i] = answer
    return {**task.contract.score(answers, references).to_dict(), "redecoded": len(rejected)}, answers
