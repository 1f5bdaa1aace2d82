"""How one sequence picks its next token: llama.cpp's sampler chain, the grammar checked after sampling, the close
reserve (edgetune.engine decodes; this module chooses).

* **Sampling in llama.cpp's sampler chain** (penalties, top-k, top-p, temperature, dist, or greedy), per sequence.
  A grammar is applied as llama.cpp's ``common_sampler`` does: sample without it, check the chosen token against
  the grammar, and only when it is rejected sample again with the grammar applied to the likely candidates (the
  ``grammar_candidates`` best by logit) or, when none of those is allowed, to the whole vocabulary. Greedy output
  is therefore identical to unconstrained decoding wherever the grammar admits it, and otherwise the best allowed
  token.
* **Close reserve.** A constrained answer must also end: a small model can loop (``["sport.Sit()",
  "sport.Sit()", ...``) until max_tokens cuts it into invalid JSON. Once only ``close_reserve`` tokens of the
  budget remain, closing tokens (quotes, brackets, and end-of-generation once the grammar is complete) are
  preferred whenever the grammar allows one, so the answer closes validly inside the budget (``forced_close``).
  Greedy decoding spells a call in about as many tokens as the tokenizer does; a sampled answer may spell it a
  character per token (``"s", "p", "o", ...``: at temperature 1, 4 of 24 answers at max_tokens 33 were cut
  off), so sampling reserves the longest call's characters instead (:meth:`Engine.reserve`), and a budget of
  that many tokens always closes.

llama_cpp is imported lazily, as in edgetune.engine.
"""

from __future__ import annotations

import ctypes
import re
from typing import TYPE_CHECKING, Any, Callable

from edgetune.contract import ContractSpec, format_value

if TYPE_CHECKING:
    import numpy as np

    from edgetune.engine import Engine, Request

_ROOT_RULE = re.compile(r"^\s*root\s*::=", re.MULTILINE)
PENALTY_LAST_N = 64  #: tokens the repeat penalty looks back over (llama-cpp-python's and llama.cpp's default)
DEFAULT_CLOSE_RESERVE = 16


class GrammarError(ValueError):
    """A GBNF grammar that llama.cpp cannot use; the message says why."""


def init_grammar(vocab: Any, gbnf: str) -> Any:
    """A llama.cpp grammar sampler for ``gbnf``; GrammarError when it does not compile (llama.cpp returns a null
    sampler then, which would crash the process when used)."""
    import llama_cpp

    if not _ROOT_RULE.search(gbnf):
        raise GrammarError("has no 'root ::= ...' rule; the grammar starts at the rule named root")
    sampler = llama_cpp.llama_sampler_init_grammar(vocab, gbnf.encode("utf-8"), b"root")
    if not sampler:
        raise GrammarError(
            "does not compile (llama.cpp's GBNF parser rejected it: check rule syntax, undefined rule names "
            "and left recursion; see https://github.com/ggml-org/llama.cpp/blob/master/grammars/README.md)"
        )
    return sampler


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


def close_reserve(contract: ContractSpec | None, tokenize: Callable[[str], list[int]]) -> int:
    """The automatic close reserve: room for one more whole call plus the closing brackets."""
    items = longest_items(contract) if contract is not None and contract.kind == "call_list" else []
    return max([DEFAULT_CLOSE_RESERVE, *(len(tokenize(item)) + 4 for item in items)])


def grammar_allows(grammar: Any, ids: "np.ndarray", scratch: "np.ndarray") -> "np.ndarray":
    """The ``ids`` a llama.cpp grammar sampler allows in its current state; ``scratch`` is a token-data buffer at
    least as long (the grammar sets a rejected token's logit to -inf and reads nothing else)."""
    import llama_cpp
    import numpy as np

    view = scratch[: len(ids)]
    view["id"] = ids
    view["logit"] = 0.0
    array = llama_cpp.llama_token_data_array(
        data=scratch.ctypes.data_as(llama_cpp.llama_token_data_p), size=len(ids), selected=-1, sorted=False)
    llama_cpp.llama_sampler_apply(grammar, ctypes.byref(array))
    return ids[np.isfinite(view["logit"])]


class LocalGrammar:
    """A trusted grammar (the bundle's contract) as a llama.cpp sampler in this process."""

    def __init__(self, engine: "Engine", gbnf: str):
        self.sampler = init_grammar(engine.vocab, gbnf)
        self.scratch = engine.scratch

    def allowed(self, ids: "np.ndarray") -> "np.ndarray":
        return grammar_allows(self.sampler, ids, self.scratch)

    def accept(self, token: int) -> None:
        import llama_cpp

        llama_cpp.llama_sampler_accept(self.sampler, token)

    def free(self) -> None:
        import llama_cpp

        llama_cpp.llama_sampler_free(self.sampler)


class SequenceSampler:
    """A request's llama.cpp sampler chain and grammar, and the common_sampler rejection logic over them."""

    def __init__(self, engine: "Engine", request: Request, seq_id: int):
        import llama_cpp

        self.engine = engine
        self.grammar: Any = None
        if request.custom_grammar is not None:
            if not engine.workers:
                raise GrammarError("is a client grammar, and this engine runs none (custom_grammars is off)")
            engine.workers[seq_id].compile(request.custom_grammar)
            self.grammar = engine.workers[seq_id]
        elif request.grammar:
            self.grammar = LocalGrammar(engine, request.grammar)
        self.chain = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())
        steps = []
        if request.repeat_penalty != 1.0:
            steps.append(llama_cpp.llama_sampler_init_penalties(engine.n_vocab, PENALTY_LAST_N,
                                                                request.repeat_penalty, 0.0, 0.0))
        if request.temperature <= 0:
            steps.append(llama_cpp.llama_sampler_init_greedy())
        else:
            seed = request.seed if request.seed is not None else llama_cpp.LLAMA_DEFAULT_SEED
            steps += [*([llama_cpp.llama_sampler_init_top_k(request.top_k)] if request.top_k > 0 else []),
                      llama_cpp.llama_sampler_init_top_p(request.top_p, 1),
                      llama_cpp.llama_sampler_init_temp(request.temperature),
                      llama_cpp.llama_sampler_init_dist(seed & 0xFFFFFFFF)]
        #: the chain is llama.cpp's greedy pick alone: ``_choose`` takes the first maximum itself (the same token)
        #: instead of filling a token array over the 49k vocabulary each step for the chain to scan
        self.greedy = request.temperature <= 0 and request.repeat_penalty == 1.0
        for step in steps:  # the chain owns (and frees) them
            llama_cpp.llama_sampler_chain_add(self.chain, step)
        for token in request.prompt[-PENALTY_LAST_N:]:  # the penalty sees the prompt too, as in llama-server
            llama_cpp.llama_sampler_accept(self.chain, token)
        # checking the likely candidates first is exact for greedy decoding; with sampling it is used when top-k
        # keeps no more than them (llama.cpp's sampler makes the same trade); otherwise the whole vocabulary
        exact = request.temperature <= 0 or 0 < request.top_k <= engine.grammar_candidates
        self.candidates = engine.grammar_candidates if exact else 0
        self.close_after = (request.max_tokens - engine.reserve(request.temperature)
                            if self.grammar is not None and len(engine.closing) else None)
        self.forced_close = False
        self.full_scans = 0

    def sample(self, logits: "np.ndarray", generated: int) -> int | None:
        """The next token for these logits; None when the grammar allows no token at all."""
        import numpy as np

        e = self.engine
        if self.close_after is not None and generated >= self.close_after:
            closing = self.grammar.allowed(e.closing)
            if len(closing):
                self.forced_close = True
                return self._choose(closing, logits)
        token = self._choose(None, logits)
        if self.grammar is None or len(self.grammar.allowed(np.asarray([token], dtype=np.intc))):
            return token
        if self.candidates:
            top = np.argpartition(-logits, self.candidates)[: self.candidates].astype(np.intc)
            allowed = self.grammar.allowed(top)
            if len(allowed):
                return self._choose(allowed, logits)
        self.full_scans += 1
        allowed = self.grammar.allowed(e.every)
        return self._choose(allowed, logits) if len(allowed) else None

    def _array(self, ids: "np.ndarray | None", logits: "np.ndarray"):
        """A llama_token_data_array over ``ids`` (None: the whole vocabulary) in the engine's scratch buffer."""
        import llama_cpp

        data = self.engine.scratch
        n = len(logits) if ids is None else len(ids)
        view = data[:n]
        view["id"] = self.engine.every if ids is None else ids
        view["logit"] = logits if ids is None else logits[ids]
        view["p"] = 0.0
        array = llama_cpp.llama_token_data_array(
            data=data.ctypes.data_as(llama_cpp.llama_token_data_p), size=n, selected=-1, sorted=False)
        return view, array

    def _choose(self, ids: "np.ndarray | None", logits: "np.ndarray") -> int:
        """The chain's pick among ``ids`` (None: the whole vocabulary)."""
        import llama_cpp
        import numpy as np

        if self.greedy:  # llama_sampler_init_greedy: the first of the highest logits, in ``ids`` order
            return int(np.argmax(logits)) if ids is None else int(ids[np.argmax(logits[ids])])

        view, array = self._array(ids, logits)
        llama_cpp.llama_sampler_apply(self.chain, ctypes.byref(array))
        return int(self.engine.scratch[array.selected]["id"])

    def accept(self, token: int) -> None:
        import llama_cpp

        llama_cpp.llama_sampler_accept(self.chain, token)
        if self.grammar is not None:
            self.grammar.accept(token)

    def free(self) -> None:
        import llama_cpp

        llama_cpp.llama_sampler_free(self.chain)
        if self.grammar is not None:
            self.grammar.free()
