"""Prove a GGUF still is the trained model: (a) its tokenizer metadata and tokenization equal the HF tokenizer's,
(b) greedy outputs of the F16 GGUF equal the HF-merged model's, (c) every quant's task score on the test split,
free and grammar-constrained, and (d) every quant stops by itself. (a) and (b) raise on failure; (c) and (d) are
measured and the bundle stage decides.
"""

from __future__ import annotations

import contextlib
import ctypes
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from tqdm import tqdm

from edgetune.chat import ChatTokenizer
from edgetune.task import TaskSpec
from export import ExportError
from export.quantize import native_output_to

if TYPE_CHECKING:
    import llama_cpp

    from edgetune.engine import Outcome

Messages = list[dict[str, str]]
#: Strings whose token ids must be identical in HF and llama.cpp: spacing, digits, unicode, code, specials.
PROBE_STRINGS = (
    "Hello world", " leading space", "trailing space ", "two  spaces\tand a tab\nand\n\nnewlines",
    "1234567890 3.14159 -0.5 1e-3", "naïve café Ünïcödé – “quotes” … 日本語 🤖", "don't can't I'm we'll",
    "[\"nav.go_to(place='kitchen')\", \"sport.Move(vx=0.3, vy=0.0, vyaw=0.0)\"]",
    "def f(x):\n    return {'a': [1, 2]}\n", "<|im_start|>user\nhi<|im_end|>", "<s></s><|endoftext|>",
)


class TokenizerMismatch(ExportError):
    """The GGUF's tokenizer is not the one the model was trained with."""


class NativeCrash(ExportError):
    """llama.cpp died by a signal on a GGUF (in edgetune.llama's child process), so this step cannot verify it."""


def read_gguf(path: Path) -> Any:
    """A ``gguf.GGUFReader`` of ``path``, or an ExportError saying the file is not a valid GGUF."""
    from gguf import GGUFReader

    try:
        return GGUFReader(path)
    except (ValueError, OSError, IndexError, KeyError) as exc:
        raise ExportError(f"{path}: not a readable GGUF file ({type(exc).__name__}: {exc}); it is truncated or "
                          "corrupt. Delete it and export again") from exc


def load_llama(path: Path, step: str = "load", **kwargs: Any) -> "llama_cpp.Llama":
    """A quiet ``llama_cpp.Llama`` for ``path`` through edgetune.llama (a native crash is probed in a child
    process first), with a clear error naming ``step`` for a file llama.cpp cannot load or run."""
    from edgetune.llama import LlamaCrash, construct, safe_settings

    kwargs = {"verbose": False, **kwargs}
    try:
        extra = safe_settings(path, kwargs)  # outside the redirect below: its warnings must stay visible
    except LlamaCrash as exc:
        raise NativeCrash(f"{step}: {exc}") from exc
    try:
        with native_output_to(os.devnull):  # context-size notices llama.cpp prints even when not verbose
            return construct(path, **kwargs, **extra)
    except ValueError as exc:
        read_gguf(path)  # the clearer error when the file itself is broken
        raise ExportError(f"{path}: llama.cpp cannot load it ({exc}); the file is corrupt or of an architecture "
                          "this llama-cpp-python does not run") from exc


def chat_text(tokenizer: Any, messages: Messages, add_generation_prompt: bool = True) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)


def end_of_turn_id(tokenizer: Any) -> int:
    """The token the chat template closes an assistant turn with (ChatML: <|im_end|>); EOS if it uses none."""
    if tokenizer.chat_template is None:
        return _eos_id(tokenizer)
    marker = "\u2063MARKER\u2063"
    text = chat_text(tokenizer, [{"role": "user", "content": "hi"}, {"role": "assistant", "content": marker}], False)
    after = text[text.rindex(marker) + len(marker):]
    special = set(tokenizer.all_special_ids)
    for token in tokenizer.encode(after, add_special_tokens=False):
        if token in special:
            return int(token)
    return _eos_id(tokenizer)


def _eos_id(tokenizer: Any) -> int:
    if tokenizer.eos_token_id is None:
        raise TokenizerMismatch("the tokenizer has no EOS token and no chat template that ends turns with a special "
                                "token: the model could never stop")
    return int(tokenizer.eos_token_id)


def _gguf_chat_prompt(llm: "llama_cpp.Llama", messages: Messages) -> tuple[str, list[int]]:
    """The prompt text and ids llama-cpp-python's create_chat_completion feeds the model for ``messages``."""
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    model = llm._model
    eos, bos = model.token_eos(), model.token_bos()
    formatter = Jinja2ChatFormatter(
        template=llm.metadata["tokenizer.chat_template"],
        eos_token=model.token_get_text(eos) if eos != -1 else "",
        bos_token=model.token_get_text(bos) if bos != -1 else "",
    )
    result = formatter(messages=messages)
    return result.prompt, llm.tokenize(result.prompt.encode("utf-8"), add_bos=not result.added_special, special=True)


def _first_difference(a: Sequence[Any], b: Sequence[Any]) -> int:
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))


def _compare_tokenization(llm: "llama_cpp.Llama", tokenizer: Any, template: str | None, texts: Sequence[str],
                          chats: Sequence[Messages], problems: list[str]) -> None:
    import llama_cpp

    vocab = llm._model.vocab
    turn_end = end_of_turn_id(tokenizer)
    for what, token in (("end-of-turn token of the chat template", turn_end), ("EOS", tokenizer.eos_token_id)):
        if token is not None and not llama_cpp.llama_vocab_is_eog(vocab, token):
            problems.append(f"{what} {tokenizer.convert_ids_to_tokens(token)!r} ({token}) does not end generation "
                            "in llama.cpp: the model would never stop")
    for text in [*PROBE_STRINGS, *texts]:
        for add_special in (False, True):
            want = tokenizer.encode(text, add_special_tokens=add_special)
            got = llm.tokenize(text.encode("utf-8"), add_bos=add_special, special=True)
            if got != want:
                at = _first_difference(got, want)
                problems.append(f"token ids of {text[:60]!r} (special tokens {'added' if add_special else 'not added'})"
                                f" differ at position {at}: GGUF {got[at:at + 5]} vs HF {want[at:at + 5]}")
    if template is not None and tokenizer.chat_template is not None:
        served = ChatTokenizer(llm, template)
        for messages in chats:
            prompt, got = _gguf_chat_prompt(llm, messages)
            want_text = chat_text(tokenizer, messages)
            want = tokenizer.encode(want_text, add_special_tokens=False)
            if prompt != want_text or got != want:
                at = _first_difference(prompt, want_text)
                problems.append(f"chat prompt rendered by llama-cpp-python differs from HF's at char {at}: "
                                f"{prompt[at:at + 40]!r} vs {want_text[at:at + 40]!r}")
            elif (tokens := served(messages)) != want:  # the engine's: contents never yield special tokens
                at = _first_difference(tokens, want)
                problems.append(f"the served chat tokens (template text with special tokens, contents as plain text) "
                                f"differ from HF's at position {at}: {tokens[at:at + 5]} vs {want[at:at + 5]}")


def check_tokenizer(gguf_path: Path, tokenizer: Any, texts: Sequence[str] = (),
                    chats: Sequence[Messages] = ()) -> dict[str, Any]:
    """(a) The GGUF's chat template, BOS/EOS/UNK/PAD ids, special tokens and the token ids of ``texts``,
    ``PROBE_STRINGS`` and the rendered ``chats`` (both whole and as the engine tokenizes them, contents as plain
    text) equal the HF tokenizer's, as llama.cpp itself reads the file.
    Raises TokenizerMismatch listing every difference; returns a summary of what was compared."""
    import llama_cpp

    problems: list[str] = []
    with contextlib.closing(load_llama(gguf_path, "tokenizer check", vocab_only=True)) as llm:
        metadata, vocab = llm.metadata, llm._model.vocab
        template = metadata.get("tokenizer.chat_template")
        if template != tokenizer.chat_template:
            if template is None or tokenizer.chat_template is None:
                which = "the GGUF" if template is None else "the HF tokenizer"
                problems.append(f"chat template: {which} has none (llama-cpp-python would fall back to llama-2 format)")
            else:
                at = _first_difference(template, tokenizer.chat_template)
                problems.append(f"chat template differs from char {at}: GGUF {template[at:at + 40]!r} vs "
                                f"HF {tokenizer.chat_template[at:at + 40]!r}")
        ids = {}
        for name, key in (("bos", "bos_token_id"), ("eos", "eos_token_id"), ("unk", "unknown_token_id"),
                          ("pad", "padding_token_id")):
            hf_id, gguf_id = getattr(tokenizer, f"{name}_token_id"), metadata.get(f"tokenizer.ggml.{key}")
            ids[name] = hf_id
            if hf_id is not None and gguf_id != str(hf_id):
                problems.append(f"{name.upper()} token id: GGUF {gguf_id} vs HF {hf_id} "
                                f"({getattr(tokenizer, name + '_token')!r})")
        specials = {i: t.content for i, t in tokenizer.added_tokens_decoder.items() if t.special}
        special_attrs = llama_cpp.LLAMA_TOKEN_ATTR_CONTROL | llama_cpp.LLAMA_TOKEN_ATTR_USER_DEFINED
        for token_id, content in specials.items():
            text = llm._model.token_get_text(token_id) if token_id < llm.n_vocab() else "<missing>"
            if text != content:
                problems.append(f"special token {token_id}: GGUF {text!r} vs HF {content!r}")
            elif not llama_cpp.llama_vocab_get_attr(vocab, token_id) & special_attrs:
                problems.append(f"special token {content!r} ({token_id}) is a normal token in the GGUF")
        _compare_tokenization(llm, tokenizer, template, texts, chats, problems)
    if problems:
        raise TokenizerMismatch(f"{gguf_path.name}: the GGUF tokenizer does not match the trained tokenizer:\n  - "
                                + "\n  - ".join(dict.fromkeys(problems)))
    turn_end = end_of_turn_id(tokenizer)
    return {"chat_template": "identical", "bos_id": ids["bos"], "eos_id": ids["eos"], "end_of_turn_id": turn_end,
            "end_of_turn": tokenizer.convert_ids_to_tokens(turn_end), "special_tokens": len(specials),
            "strings": len(PROBE_STRINGS) + len(texts), "chat_prompts": len(chats)}


def stop_token_ids(tokenizer: Any) -> list[int]:
    return sorted({end_of_turn_id(tokenizer), *([tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else [])})


def greedy_agreement(model: Any, tokenizer: Any, gguf_path: Path, chats: Sequence[Messages], max_tokens: int,
                     n_ctx: int = 1024, threads: int = 0) -> dict[str, Any]:
    """(b) Greedy answers of the HF model and of ``gguf_path`` to ``chats``, compared token by token."""
    import llama_cpp
    import torch

    stops = stop_token_ids(tokenizer)
    results = []
    llm = load_llama(gguf_path, "F16: greedy agreement with the merged model", n_ctx=n_ctx,
                     n_threads=threads or os.cpu_count())
    vocab = llm._model.vocab
    for messages in tqdm(chats, desc="verify: greedy HF vs F16", unit="prompt", leave=False):
        prompt = tokenizer.encode(chat_text(tokenizer, messages), add_special_tokens=False)
        with torch.inference_mode():
            out = model.generate(torch.tensor([prompt]), attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
                                 max_new_tokens=max_tokens, do_sample=False, eos_token_id=stops,
                                 pad_token_id=stops[0])
        hf = [int(t) for t in out[0][len(prompt):] if int(t) not in stops][:max_tokens]
        gg: list[int] = []
        for token in llm.generate(prompt, temp=0.0, top_k=1, repeat_penalty=1.0, reset=True):
            if llama_cpp.llama_vocab_is_eog(vocab, token) or len(gg) >= max_tokens:
                break
            gg.append(int(token))
        same = hf == gg
        results.append({"identical": same, "first_difference": None if same else _first_difference(hf, gg),
                        "hf_tokens": len(hf), "gguf_tokens": len(gg),
                        "hf": tokenizer.decode(hf), "gguf": tokenizer.decode(gg)})
    llm.close()
    identical = sum(r["identical"] for r in results)
    return {"prompts": len(results), "identical": identical,
            "agreement": identical / len(results) if results else 1.0, "results": results}


@dataclass
class ModeResult:
    """Answers of one quant in one mode (free or grammar-constrained) and what they scored."""

    exact_match: float
    valid_rate: float
    f1: float
    truncated: int  #: answers that ran into max_tokens instead of stopping
    stopped_invalid: int  #: answers that stopped by themselves but break the contract
    tokens_per_second: float  #: completion tokens per second of wall time (batched, prompt processing included)
    reused: int = 0  #: constrained answers proven identical to the free answer without generating again
    answers: list[str] = field(default_factory=list)


@dataclass
class QuantResult:
    quant: str
    n: int
    free: ModeResult
    constrained: ModeResult | None  #: None for tasks without a grammar
    human: ModeResult | None = None  #: the task's held-out human-phrased set, grammar on (what the robot gets)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _grammar_accepts(vocab: Any, grammar: str, answer: "Outcome", close_after: int) -> bool:
    """Whether the grammar admits every token of ``answer`` and its stop token, all sampled before the close
    reserve starts (``close_after`` tokens). Then greedy decoding with the grammar picks exactly the same tokens
    (each free pick is allowed, so the engine keeps it), which spares generating the constrained answer a second
    time. This is the rejection test the engine itself does."""
    import llama_cpp

    from edgetune.sampling import GrammarError, init_grammar

    if answer.stop_token is None or len(answer.tokens) >= close_after:
        return False
    try:
        sampler = init_grammar(vocab, grammar)
    except GrammarError as exc:
        raise ExportError(f"llama.cpp rejected the task's grammar: it {exc}") from None
    try:
        for token in [*answer.tokens, answer.stop_token]:
            candidate = (llama_cpp.llama_token_data * 1)(llama_cpp.llama_token_data(token, 0.0, 0.0))
            candidates = llama_cpp.llama_token_data_array(candidate, 1, -1, False)
            llama_cpp.llama_sampler_apply(sampler, ctypes.byref(candidates))
            if math.isinf(candidate[0].logit):
                return False
            if token != answer.stop_token:
                llama_cpp.llama_sampler_accept(sampler, token)
        return True
    finally:
        llama_cpp.llama_sampler_free(sampler)


def _rate(answers: Sequence["Outcome"], seconds: float) -> float:
    return sum(len(a.tokens) for a in answers) / seconds if seconds else 0.0


def _mode_result(task: TaskSpec, answers: Sequence["Outcome"], references: Sequence[str], tokens_per_second: float,
                 reused: int = 0) -> ModeResult:
    texts = [a.text for a in answers]
    score = task.contract.score(texts, references)
    truncated = sum(a.finish == "length" for a in answers)
    stopped_invalid = sum(a.finish == "stop" and not task.contract.validate(t).valid for a, t in zip(answers, texts))
    return ModeResult(score.exact_match, score.valid_rate, score.f1, truncated, stopped_invalid, tokens_per_second,
                      reused, texts)


def evaluate_quant(gguf_path: Path, quant: str, task: TaskSpec, examples: Sequence[tuple[Messages, str]],
                   max_tokens: int, n_ctx: int = 1024, threads: int = 0, seed: int = 0, stop: Sequence[str] = (),
                   sequences: int = 4, holdout: Sequence[tuple[Messages, str]] = ()) -> QuantResult:
    """(c)+(d) Answer every example with the task's sampling settings, free and with the contract's grammar, with
    the server's engine (edgetune.engine) as the server runs it: the same chat-template prompt, the same shared
    system-prompt prefix, the same stop strings and end-of-generation tokens, the same grammar path and close
    reserve; ``sequences`` answers decode at once, which changes no greedy answer.

    With greedy decoding a constrained answer is only generated when the free one is not admitted by the grammar
    (token by token, before the close reserve, see _grammar_accepts); otherwise it is the same answer. That halves
    the cost for a model that mostly answers validly, and changes no result.

    ``holdout`` (the task's human-phrased set) is answered once, grammar on, as the server answers it."""
    from edgetune.engine import Engine, Request
    from edgetune.llama import LlamaCrash

    engine = Engine(gguf_path, sequences=sequences, n_ctx=n_ctx, threads=threads, contract=task.contract)
    try:
        with native_output_to(os.devnull):  # context-size notices llama.cpp prints even when not verbose
            engine.load([task.messages("a"), task.messages("b")])
    except LlamaCrash as exc:
        raise NativeCrash(f"{quant}: task score: {exc}") from exc
    except ValueError as exc:
        read_gguf(gguf_path)  # the clearer error when the file itself is broken
        raise ExportError(f"{gguf_path}: llama.cpp cannot load it ({exc}); the file is corrupt or of an "
                          "architecture this llama-cpp-python does not run") from exc
    try:
        gen = task.generation
        references = [reference for _, reference in examples]
        prompts = [engine.tokenize_chat(messages) for messages, _ in [*examples, *holdout]]

        def answer(indices: Sequence[int], grammar: str | None, desc: str) -> tuple[list[Any], float]:
            bar = tqdm(total=len(indices), desc=f"verify: {quant} {desc}", unit="prompt", leave=False)
            requests = [Request(prompt=prompts[i], max_tokens=max_tokens, temperature=gen.temperature,
                                top_p=gen.top_p, top_k=gen.top_k, repeat_penalty=gen.repeat_penalty, seed=seed,
                                stop=list(stop), grammar=grammar) for i in indices]
            started = time.perf_counter()
            outcomes = engine.run(requests, on_done=lambda _: bar.update())
            bar.close()
            return outcomes, time.perf_counter() - started

        free, free_s = answer(range(len(examples)), None, "free")
        constrained_result = None
        grammar_text = task.contract.grammar()
        if grammar_text:
            close_after = max_tokens - engine.close_reserve
            keep = [gen.temperature == 0 and _grammar_accepts(engine.vocab, grammar_text, a, close_after)
                    for a in free]
            again, seconds = answer([i for i, k in enumerate(keep) if not k], grammar_text, "grammar")
            regenerated = iter(again)
            constrained = [a if k else next(regenerated) for a, k in zip(free, keep)]
            rate = _rate(again, seconds) if again else _rate(free, free_s)
            constrained_result = _mode_result(task, constrained, references, rate, sum(keep))
        free_result = _mode_result(task, free, references, _rate(free, free_s))
        human_result = None
        if holdout:
            human, seconds = answer(range(len(examples), len(prompts)), grammar_text, "human")
            human_result = _mode_result(task, human, [reference for _, reference in holdout], _rate(human, seconds))
    finally:
        engine.close()
    return QuantResult(quant, len(examples), free_result, constrained_result, human_result)
