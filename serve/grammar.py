"""Grammar-constrained decoding that is fast enough for an edge device.

llama-cpp-python applies a GBNF grammar to the whole vocabulary at every step (49k tokens for SmolLM2): for the
robot contract that costs ~0.2 s per token on one CPU core, ten times the model itself. llama.cpp's own
``common_sampler`` avoids this by checking the likely tokens first; :class:`GrammarMask` does the same as a
logits processor: it asks the grammar about the ``top_k`` highest-scoring tokens only and falls back to the whole
vocabulary when none of them is allowed. Greedy decoding is therefore identical to full masking (the best allowed
token is the same); sampling draws from the allowed tokens among the top candidates, like llama.cpp.

A constrained answer must also *end*: a small base model can loop (``["sport.Sit()", "sport.Sit()", ...``) until
max_tokens cuts it into invalid JSON. Once only ``reserve`` tokens of the budget remain, the mask prefers closing
tokens (quotes and brackets, and EOS once the grammar is complete) whenever the grammar allows one, so the answer
closes validly inside the budget; ``forced_close`` reports that this happened.

A grammar that does not compile is reported as :class:`GrammarError` (llama.cpp would otherwise return a null
sampler that crashes the process when used).
"""

from __future__ import annotations

import ctypes
import json
import re

import numpy as np

import llama_cpp
from llama_cpp.llama_grammar import json_schema_to_gbnf

from edgetune.contract import ContractSpec, format_value

_TOKEN_DATA = np.dtype([("id", np.intc), ("logit", np.single), ("p", np.single)], align=True)
_CLOSERS = set("'\")]}")
_ROOT_RULE = re.compile(r"^\s*root\s*::=", re.MULTILINE)


class GrammarError(ValueError):
    """A GBNF grammar or JSON schema that cannot be used; the message says why."""


def gbnf_from_json_schema(schema: str) -> str:
    """GBNF for a JSON schema (llama.cpp's converter); GrammarError when the schema is not usable."""
    try:
        parsed = json.loads(schema)
    except json.JSONDecodeError as exc:
        raise GrammarError(f"not valid JSON: {exc.msg} at position {exc.pos}") from None
    if not isinstance(parsed, dict):
        raise GrammarError(f"a JSON schema is an object, got {type(parsed).__name__}")
    try:
        return json_schema_to_gbnf(schema)
    except (ValueError, KeyError, TypeError, NotImplementedError, RecursionError) as exc:
        raise GrammarError(f"cannot be turned into a grammar: {exc}") from None


def _init_sampler(vocab: llama_cpp.llama_vocab_p, gbnf: str):
    if not _ROOT_RULE.search(gbnf):
        raise GrammarError("has no 'root ::= ...' rule; the grammar starts at the rule named root")
    sampler = llama_cpp.llama_sampler_init_grammar(vocab, gbnf.encode("utf-8"), b"root")
    if not sampler:
        raise GrammarError(
            "does not compile (llama.cpp's GBNF parser rejected it: check rule syntax, undefined rule names "
            "and left recursion; see https://github.com/ggml-org/llama.cpp/blob/master/grammars/README.md)"
        )
    return sampler


def closing_tokens(vocab: llama_cpp.llama_vocab_p, detokenize) -> np.ndarray:
    """Ids of tokens that only close things (quotes, brackets) plus the end-of-generation tokens."""
    ids = []
    for token in range(llama_cpp.llama_vocab_n_tokens(vocab)):
        text = detokenize([token]).decode("utf-8", errors="replace").strip()
        if (text and set(text) <= _CLOSERS) or llama_cpp.llama_vocab_is_eog(vocab, token):
            ids.append(token)
    return np.asarray(ids, dtype=np.intc)


def longest_items(contract: ContractSpec) -> list[str]:
    """Per call an answer may hold (API and compact calls), its longest list item once closing is preferred (a
    free-text argument then closes after one character); the most tokens among them sizes the close reserve."""
    items = []
    for callee, spec in contract.vocabulary().items():
        args = []
        for name, arg in spec.args.items():
            if arg.type == "enum":
                values = [format_value(v) for v in arg.values]
            elif arg.type in ("int", "float"):
                values = [format_value(v) for v in arg.grid()]
            elif arg.type == "str":
                values = [format_value(next((c for c in "xa0" if c in arg.charset()), min(arg.charset())))]
            else:
                values = ["False"]
            args.append(f"{name}={max(values, key=len)}")
        items.append(f'"{callee}({", ".join(args)})", ')
    return items


def check_gbnf(vocab: llama_cpp.llama_vocab_p, gbnf: str) -> None:
    """Raise GrammarError unless llama.cpp compiles ``gbnf``."""
    llama_cpp.llama_sampler_free(_init_sampler(vocab, gbnf))


class GrammarMask:
    """A llama-cpp-python logits processor that masks tokens the grammar forbids, checking likely tokens first.

    One instance serves one generation: it follows the tokens the model picked through ``input_ids`` (every
    call sees one more token than the last) and must be ``close()``-d afterwards to free the llama.cpp sampler.
    ``candidates=0`` checks the whole vocabulary every step (exact for any sampling settings).
    """

    def __init__(
        self,
        vocab: llama_cpp.llama_vocab_p,
        gbnf: str,
        candidates: int = 64,
        max_tokens: int = 0,
        reserve: int = 0,
        closing: np.ndarray | None = None,
    ):
        self._sampler = _init_sampler(vocab, gbnf)
        self._n_vocab = llama_cpp.llama_vocab_n_tokens(vocab)
        self._candidates = candidates if 0 < candidates < self._n_vocab else 0
        self._close_after = max_tokens - reserve if max_tokens and closing is not None and len(closing) else None
        self._closing = closing
        self._first: int | None = None
        self._seen: int | None = None
        self.full_scans = 0  #: steps where no likely token was allowed and the whole vocabulary was checked
        self.forced_close = False  #: closing tokens were preferred because the budget ran low

    def _allowed(self, ids: np.ndarray, scores: np.ndarray) -> np.ndarray:
        """Mask of ``ids`` the grammar allows in its current state."""
        data = np.empty(len(ids), dtype=_TOKEN_DATA)
        data["id"] = ids
        data["logit"] = scores[ids]
        data["p"] = 0.0
        array = llama_cpp.llama_token_data_array(
            data=data.ctypes.data_as(llama_cpp.llama_token_data_p), size=len(ids), selected=-1, sorted=False
        )
        llama_cpp.llama_sampler_apply(self._sampler, ctypes.byref(array))
        return np.isfinite(data["logit"])

    def __call__(self, input_ids: np.ndarray, scores: np.ndarray) -> np.ndarray:
        if self._sampler is None:
            raise RuntimeError("GrammarMask used after close()")
        n = len(input_ids)
        if self._seen is not None:
            for token in input_ids[self._seen : n]:
                llama_cpp.llama_sampler_accept(self._sampler, int(token))
        if self._first is None:
            self._first = n
        self._seen = n
        ids = None
        if self._close_after is not None and n - self._first >= self._close_after:
            assert self._closing is not None
            ok = self._allowed(self._closing, scores)
            if ok.any():
                ids = self._closing[ok]
                self.forced_close = True
        if ids is None and self._candidates:
            top = np.argpartition(-scores, self._candidates)[: self._candidates].astype(np.intc)
            ok = self._allowed(top, scores)
            ids = top[ok] if ok.any() else None
        if ids is None:
            self.full_scans += 1
            every = np.arange(self._n_vocab, dtype=np.intc)
            ids = every[self._allowed(every, scores)]
        out = np.full_like(scores, -np.inf)
        out[ids] = scores[ids]
        return out

    def close(self) -> None:
        if self._sampler is not None:
            llama_cpp.llama_sampler_free(self._sampler)
            self._sampler = None

    def __enter__(self) -> "GrammarMask":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def main(argv: list[str] | None = None) -> int:
    """``python -m serve.grammar``: CPU time per token of this mask vs llama.cpp's whole-vocabulary grammar, side by
    side on the same prompts (greedy, so both must produce the same text)."""
    import argparse
    import time

    from llama_cpp import LlamaGrammar, LogitsProcessorList

    from edgetune.embedded import embedded_gguf
    from edgetune.llama import load_llama
    from edgetune.task import load_task

    parser = argparse.ArgumentParser(prog="python -m serve.grammar", description=main.__doc__)
    parser.add_argument("--model", default="", help="GGUF (default: the embedded model)")
    parser.add_argument("--task", default="robot_sdk")
    parser.add_argument("--max-tokens", type=int, default=48)
    args = parser.parse_args(argv)
    task = load_task(args.task)
    gbnf = task.contract.grammar()
    if gbnf is None:
        parser.error(f"task {task.name} has no grammar")
    llm = load_llama(args.model or embedded_gguf(fetch=False), n_ctx=1024, n_threads=1, verbose=False)
    commands = [example["user"] for example in task.examples] or [task.prompt]
    totals = {"llama.cpp grammar": [0.0, 0], "GrammarMask": [0.0, 0]}
    for command in commands:
        text = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in task.messages(command))
        tokens = llm.tokenize((text + "<|im_start|>assistant\n").encode(), add_bos=False, special=True)
        llm.create_completion(tokens, max_tokens=1)  # prompt into the cache: time decoding only
        outputs = []
        for name in totals:
            mask = GrammarMask(llm._model.vocab, gbnf) if name == "GrammarMask" else None
            started = time.process_time()
            out = llm.create_completion(
                tokens, max_tokens=args.max_tokens, temperature=0,
                grammar=None if mask else LlamaGrammar.from_string(gbnf),
                logits_processor=LogitsProcessorList([mask]) if mask else None,
            )
            totals[name][0] += time.process_time() - started
            totals[name][1] += out["usage"]["completion_tokens"]
            outputs.append(out["choices"][0]["text"])
            if mask:
                mask.close()
        print(f"{command[:50]!r}: same text: {outputs[0] == outputs[1]}")
    per_token = {name: 1000 * cpu / max(1, n) for name, (cpu, n) in totals.items()}
    for name, ms in per_token.items():
        print(f"{name:18s} {ms:6.1f} ms CPU/token over {totals[name][1]} tokens")
    print(f"speed-up: {per_token['llama.cpp grammar'] / per_token['GrammarMask']:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
