"""The edge engine: one loaded GGUF, one llama.cpp context holding up to ``sequences`` sequences, decoded together.

The server, the bench's in-process baseline and export's verification all decode through :class:`Engine`, so a
quant is scored by the decoder that serves it.

* **Continuous batching.** One thread owns the context. Each step it puts the next token of every sequence that
  is generating, then as many waiting prompt tokens as fit in ``n_batch``, into one ``llama_decode``; a request
  submitted meanwhile joins at the next step. A step's rows go in sequence-id order and callers take the lowest
  free id, so the sequences decoding together have consecutive ids: llama.cpp decodes only such sequences in one
  ubatch (4 sequences in any other order cost 4 single-token passes). A sequence's stop condition (cancel,
  deadline, its own callback) is checked every step, and a stopped sequence's KV cells are freed at once.
* **Shared prefix.** The prompt prefix every request starts with (system prompt, few-shot turns) is decoded once
  into a sequence of its own; a new sequence gets its cells by ``llama_memory_seq_cp`` (a copy of that KV
  stream, far cheaper than decoding it again) and decodes only the rest of its prompt.
* **Independent sequences.** Each sequence has a KV stream of its own (``kv_unified`` off), so it attends to its
  own cells in the same layout whatever else is decoding: a greedy answer is the same alone or in a full batch.
* **Sampling** per sequence in llama.cpp's sampler chain, the grammar checked after sampling and the close reserve
  (edgetune.sampling).
* **Client grammars** (custom GBNF, JSON schemas) run in a worker process per sequence
  (edgetune.grammar_worker), bounded in time and memory; the trusted contract grammar runs here.

llama_cpp is imported lazily: importing this module costs nothing (and never torch).
"""

from __future__ import annotations

import ctypes
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Literal, Sequence

from edgetune.answer_text import AnswerText
from edgetune.chat import ChatTokenizer
from edgetune.contract import ContractSpec
from edgetune.llama import backend_name, resolve_gpu_layers
from edgetune.sampling import GrammarError, SequenceSampler, close_reserve

if TYPE_CHECKING:
    import numpy as np

    from edgetune.grammar_worker import CustomGrammar, GrammarWorker

log = logging.getLogger("edgetune.engine")

Finish = Literal["stop", "length", "cancelled", "deadline_exceeded", "error"]
_CLOSERS = set("'\")]}")


class EngineClosed(RuntimeError):
    """The engine was closed (or never loaded) while a request was submitted or decoding."""


def _usable_cores() -> int:
    """The cores this process may run on (a container's cpuset, taskset), not every core of the machine."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))


@dataclass
class Request:
    """One generation. Callbacks run on the engine thread: keep them short (hand work to another thread)."""

    prompt: list[int]
    max_tokens: int
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 40
    repeat_penalty: float = 1.0
    seed: int | None = None
    stop: list[str] = field(default_factory=list)  #: strings that end the answer (not part of it)
    grammar: str | None = None  #: trusted GBNF that constrains the answer (the bundle's contract), run in process
    custom_grammar: "CustomGrammar | None" = None  #: a client's grammar: run in the sequence's grammar worker
    should_stop: Callable[[], Finish | None] = lambda: None  #: checked every step: a reason ends decoding now
    on_text: Callable[[str], None] = lambda text: None  #: streamed text, in order


@dataclass
class Outcome:
    """How a generation ended. Instants are ``time.monotonic()``; ``first`` and ``last`` are of emitted text."""

    text: str = ""
    tokens: list[int] = field(default_factory=list)  #: completion tokens, the end-of-generation token excluded
    finish: Finish = "stop"
    stop_token: int | None = None  #: the end-of-generation token it stopped on
    started: float = 0.0  #: when the engine took the request up
    first: float | None = None
    last: float | None = None
    error: str = ""
    forced_close: bool = False
    full_scans: int = 0  #: steps where the grammar was checked against the whole vocabulary
    grammar_error: str = ""  #: the request's grammar failed (does not compile, too expensive): the client's error


class _Sequence:
    def __init__(self, seq_id: int, request: Request, sampler: SequenceSampler, text: AnswerText, outcome: Outcome,
                 done: Callable[[Outcome], None], pending: list[int], n_past: int):
        self.id, self.request, self.sampler, self.text, self.outcome = seq_id, request, sampler, text, outcome
        self.done = done
        self.pending = pending  #: prompt tokens not decoded yet
        self.n_past = n_past  #: positions in the KV cache
        self.next: int | None = None  #: the sampled token to decode next step
        self.out: int | None = None  #: its row in the current batch's logits


class Engine:
    """One GGUF, one llama.cpp context, ``sequences`` requests decoding at once. ``load()`` first."""

    def __init__(self, model_path: Path | str, *, sequences: int = 1, n_ctx: int = 2048, n_batch: int = 512,
                 threads: int = 0, n_gpu_layers: int = -1, grammar_candidates: int = 64, close_reserve: int = 0,
                 contract: ContractSpec | None = None, custom_grammars: bool = False,
                 grammar_timeout_s: float = 1.0):
        if sequences < 1:
            raise ValueError("sequences: need at least 1")
        self.model_path = Path(model_path)
        self.sequences = sequences
        self.n_ctx = n_ctx  #: context window of each sequence, prompt plus answer
        self.n_batch = n_batch
        self.threads = threads if threads > 0 else _usable_cores()
        self.n_gpu_layers = n_gpu_layers
        self.grammar_candidates = grammar_candidates
        self.close_reserve = close_reserve
        self.sampled_reserve = 0  #: the close reserve of sampled (temperature > 0) answers, set by load()
        self.contract = contract
        self.custom_grammars = custom_grammars  #: start a grammar worker per sequence for Request.custom_grammar
        self.grammar_timeout_s = grammar_timeout_s  #: longest one grammar-worker call may take
        self.workers: list[GrammarWorker] = []
        self.offloaded_layers = 0
        self.n_layers = 0
        self.backend = "CPU"
        self.prefix: list[int] = []  #: tokens of the shared prefix (sequence id ``sequences``)
        self.llm: Any = None
        self._cond = threading.Condition()
        self._incoming: list[tuple[int, Request, Callable[[Outcome], None]]] = []
        self._active: dict[int, _Sequence] = {}
        self._closed = False
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------------------------------- loading
    def load(self, prefix_chats: Sequence[list[dict[str, str]]] = ()) -> None:
        """Load the model and the context; decode the prefix the ``prefix_chats`` share (two or more chats that
        differ only in their last message) once. Slow: the server runs it in a thread while NOT_SERVING."""
        import llama_cpp
        import numpy as np

        if self.custom_grammars:  # they start while the model loads
            from edgetune.grammar_worker import GrammarWorker

            self.workers = [GrammarWorker(self.model_path, self.grammar_timeout_s) for _ in range(self.sequences)]
        layers = resolve_gpu_layers(self.n_gpu_layers)
        self.llm = _load_model(self.model_path, n_ctx=self.n_ctx, n_batch=self.n_batch, n_threads=self.threads,
                               n_threads_batch=self.threads, n_gpu_layers=layers, use_mmap=True, verbose=False)
        llm = self.llm
        model = llm._model.model
        self.n_layers = llama_cpp.llama_model_n_layer(model)
        self.offloaded_layers = min(layers, self.n_layers + 1) if llama_cpp.llama_supports_gpu_offload() else 0
        self.backend = backend_name(self.offloaded_layers)
        llm._ctx.close()  # Llama's own single-sequence context: replaced by one for every sequence
        params = llama_cpp.llama_context_default_params()
        # One KV stream per sequence (+ one for the shared prefix): a sequence attends to its own cells only, laid
        # out the same whatever else decodes, so its answer does not depend on its neighbours.
        params.n_seq_max = self.sequences + 1
        params.n_ctx = self.n_ctx * params.n_seq_max
        params.kv_unified = False
        params.n_batch = params.n_ubatch = self.n_batch
        params.n_threads = params.n_threads_batch = self.threads
        params.no_perf = True
        self.ctx = llama_cpp.llama_init_from_model(model, params)
        if not self.ctx:
            raise RuntimeError(f"llama.cpp could not create a context of {params.n_ctx} tokens for "
                               f"{self.sequences} sequences on {self.model_path}; lower n_ctx or contexts")
        self.memory = llama_cpp.llama_get_memory(self.ctx)
        self.batch = llama_cpp.llama_batch_init(self.n_batch, 0, 1)
        self.vocab = llm._model.vocab
        self.n_vocab = llama_cpp.llama_vocab_n_tokens(self.vocab)
        self.every = np.arange(self.n_vocab, dtype=np.intc)
        self.scratch = np.zeros(self.n_vocab, dtype=np.dtype(
            [("id", np.intc), ("logit", np.single), ("p", np.single)], align=True))
        self._piece = ctypes.create_string_buffer(256)
        self._chat = ChatTokenizer(llm, _CHATML)
        self.closing = self._closing_tokens()
        if self.close_reserve <= 0:
            self.close_reserve = close_reserve(self.contract, self.tokenize_text)
        # a character per token: the most tokens any spelling of the longest call can take
        self.sampled_reserve = max(self.close_reserve, close_reserve(self.contract, list))
        for worker in self.workers:
            worker.wait_ready()
        if len(prefix_chats) >= 2:
            prompts = [self.tokenize_chat(chat) for chat in prefix_chats]
            self._decode_prefix(prompts[0][: min(common_prefix(prompts[0], p) for p in prompts[1:])])
        self._thread = threading.Thread(target=self._run, name="llama-engine", daemon=True)
        self._thread.start()
        log.info("loaded %s: %d sequences x n_ctx %d in one context, %d threads, %d/%d layers on %s, prefix %d "
                 "tokens", self.model_path, self.sequences, self.n_ctx, self.threads, self.offloaded_layers,
                 self.n_layers, self.backend, len(self.prefix))

    def _closing_tokens(self) -> "np.ndarray":
        """Ids of tokens that only close things (quotes, brackets) plus the end-of-generation tokens."""
        import llama_cpp
        import numpy as np

        ids = []
        for token in range(self.n_vocab):
            text = self._token_bytes(token).decode("utf-8", errors="replace").strip()
            if (text and set(text) <= _CLOSERS) or llama_cpp.llama_vocab_is_eog(self.vocab, token):
                ids.append(token)
        return np.asarray(ids, dtype=np.intc)

    def _decode_prefix(self, tokens: list[int]) -> None:
        seq = self.sequences
        for start in range(0, len(tokens), self.n_batch):
            chunk = tokens[start:start + self.n_batch]
            self._fill([(token, start + i, seq, False) for i, token in enumerate(chunk)])
            self._decode_batch()
        self.prefix = tokens

    # --------------------------------------------------------------------------------------- tokenization
    def tokenize_chat(self, messages: list[dict[str, str]]) -> list[int]:
        """The model's prompt tokens for a chat (its own chat template, generation prompt added): special tokens
        only from the template, message contents as plain text (edgetune/chat.py)."""
        return self._chat(messages)

    def tokenize_text(self, text: str) -> list[int]:
        return self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=False)

    def reserve(self, temperature: float) -> int:
        """Tokens a constrained answer at ``temperature`` keeps for closing: the smallest max_tokens with which the
        contract grammar's answer always closes."""
        return self.close_reserve if temperature <= 0 else self.sampled_reserve

    def _token_bytes(self, token: int) -> bytes:
        """A token's bytes (engine thread, or load before it starts: one shared buffer)."""
        import llama_cpp

        n = llama_cpp.llama_token_to_piece(self.vocab, token, self._piece, len(self._piece), 0, False)
        if n < 0:
            self._piece = ctypes.create_string_buffer(-n)
            n = llama_cpp.llama_token_to_piece(self.vocab, token, self._piece, len(self._piece), 0, False)
        return self._piece.raw[:n]

    # ------------------------------------------------------------------------------------------ requests
    def submit(self, seq_id: int, request: Request, done: Callable[[Outcome], None]) -> None:
        """Decode ``request`` in sequence ``seq_id`` (0 <= id < sequences, not in use); ``done(outcome)`` runs on
        the engine thread once the sequence's cells are free again. Raises GrammarError for a bad grammar."""
        if not 0 <= seq_id < self.sequences:
            raise ValueError(f"seq_id {seq_id} outside 0..{self.sequences - 1}")
        with self._cond:
            if self._closed or self._thread is None:
                raise EngineClosed("the engine is not running")
            self._incoming.append((seq_id, request, done))
            self._cond.notify()

    def run(self, requests: Sequence[Request], on_done: Callable[[Outcome], None] | None = None) -> list[Outcome]:
        """Decode ``requests`` to the end, up to ``sequences`` at once (export's and tests' synchronous use);
        ``on_done`` sees each outcome as it finishes."""
        outcomes: list[Outcome | None] = [None] * len(requests)
        free = list(range(self.sequences))
        todo = list(enumerate(requests))
        finished = threading.Condition()

        def done_for(index: int, seq_id: int) -> Callable[[Outcome], None]:
            def done(outcome: Outcome) -> None:
                if on_done is not None:
                    on_done(outcome)
                with finished:
                    outcomes[index] = outcome
                    free.append(seq_id)
                    finished.notify()
            return done

        with finished:
            while todo or len(free) < self.sequences:
                while todo and free:
                    index, request = todo.pop(0)
                    seq_id = min(free)  # the lowest free id keeps the busy ids consecutive (see _step)
                    free.remove(seq_id)
                    self.submit(seq_id, request, done_for(index, seq_id))
                if todo or len(free) < self.sequences:
                    finished.wait()
        return [o for o in outcomes if o is not None]

    def close(self) -> None:
        """Stop the engine thread (sequences in flight end as errors) and free the context and the model."""
        import llama_cpp

        with self._cond:
            self._closed = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self.llm is not None:
            llama_cpp.llama_batch_free(self.batch)
            llama_cpp.llama_free(self.ctx)
            self.llm.close()
            self.llm = None
        for worker in self.workers:
            worker.close()
        self.workers = []

    # ---------------------------------------------------------------------------------------- the thread
    def _run(self) -> None:
        while True:
            with self._cond:
                while not (self._incoming or self._active or self._closed):
                    self._cond.wait()
                incoming, self._incoming = self._incoming, []
                closed = self._closed
            for seq_id, request, done in incoming:
                self._start(seq_id, request, done)
            if closed:
                for seq in list(self._active.values()):
                    self._finish(seq, "error", "the engine was closed")
                return
            try:
                self._step()
            except Exception as exc:  # noqa: BLE001 - a failed step ends its sequences, never the engine
                log.exception("decoding step failed")
                for seq in list(self._active.values()):
                    self._finish(seq, "error", f"{type(exc).__name__}: {exc}")

    def _start(self, seq_id: int, request: Request, done: Callable[[Outcome], None]) -> None:
        import llama_cpp

        outcome = Outcome(started=time.monotonic())
        if seq_id in self._active:
            outcome.finish, outcome.error = "error", f"sequence {seq_id} is already decoding"
            done(outcome)
            return
        try:
            sampler = SequenceSampler(self, request, seq_id)
        except GrammarError as exc:
            outcome.finish, outcome.error = "error", f"GrammarError: the grammar {exc}"
            outcome.grammar_error = str(exc)
            done(outcome)
            return
        if not request.prompt:
            outcome.finish, outcome.error = "error", "the prompt is empty"
            sampler.free()
            done(outcome)
            return
        shared = min(common_prefix(request.prompt, self.prefix), len(request.prompt) - 1)
        if shared > 0:  # the prefix stream's cells into this sequence's stream (a buffer copy), trimmed
            llama_cpp.llama_memory_seq_cp(self.memory, self.sequences, seq_id, -1, -1)
            llama_cpp.llama_memory_seq_rm(self.memory, seq_id, shared, -1)
        shared = max(shared, 0)
        text = AnswerText(request.stop, request.on_text)
        self._active[seq_id] = _Sequence(seq_id, request, sampler, text, outcome, done,
                                         list(request.prompt[shared:]), shared)

    def _finish(self, seq: _Sequence, finish: Finish, error: str = "", grammar_error: str = "") -> None:
        import llama_cpp

        llama_cpp.llama_memory_seq_rm(self.memory, seq.id, -1, -1)
        del self._active[seq.id]
        o, sent = seq.outcome, seq.text.sent
        seq.text.add(b"", final=True)  # text held back as a possible stop string's start
        if seq.text.sent > sent:
            o.last = time.monotonic()
            o.first = o.first or o.last
        o.text, o.finish, o.error = seq.text.text, finish, error
        o.forced_close, o.full_scans = seq.sampler.forced_close, seq.sampler.full_scans
        o.grammar_error = grammar_error
        seq.sampler.free()
        seq.done(o)

    def _fill(self, rows: list[tuple[int, int, int, bool]]) -> None:
        """Put (token, position, sequence, wants logits) rows into the batch."""
        b = self.batch
        for i, (token, pos, seq_id, logits) in enumerate(rows):
            b.token[i], b.pos[i], b.n_seq_id[i], b.logits[i] = token, pos, 1, logits
            b.seq_id[i][0] = seq_id
        b.n_tokens = len(rows)

    def _decode_batch(self) -> None:
        import llama_cpp

        code = llama_cpp.llama_decode(self.ctx, self.batch)
        if code != 0:
            raise RuntimeError(f"llama_decode returned {code} (1: no room in the KV cache, 2: aborted, <0: error)")

    def _step(self) -> None:
        """One llama_decode over every live sequence, then one sampled token for each that asked for logits."""
        import llama_cpp
        import numpy as np

        for seq in list(self._active.values()):
            reason = seq.request.should_stop()
            if reason is not None:
                self._finish(seq, reason)
        if not self._active:
            return
        own: dict[int, list[tuple[int, int, int, bool]]] = {}  # each sequence's rows this step
        for seq in self._active.values():
            seq.out = None
            if seq.next is not None:
                own[seq.id] = [(seq.next, seq.n_past, seq.id, True)]
                seq.n_past += 1
                seq.next = None
        room = self.n_batch - len(own)
        for seq in self._active.values():  # then prompts, in arrival order, as far as the batch reaches
            if not seq.pending or room <= 0:
                continue
            chunk, seq.pending = seq.pending[:room], seq.pending[room:]
            own[seq.id] = [(token, seq.n_past + i, seq.id, not seq.pending and i == len(chunk) - 1)
                           for i, token in enumerate(chunk)]
            seq.n_past += len(chunk)
            room -= len(chunk)
        # Rows in sequence-id order: with a KV stream per sequence llama.cpp puts only sequences with consecutive
        # ids, in batch order, into one ubatch (llama_batch_allocr::split_equal), so any other order decodes one
        # sequence at a time (4 sequences cost 4 single-token steps instead of one step of 4 tokens).
        rows: list[tuple[int, int, int, bool]] = []
        for seq_id in sorted(own):
            rows.extend(own[seq_id])
            if rows[-1][3]:
                self._active[seq_id].out = len(rows) - 1
        self._fill(rows)
        self._decode_batch()
        for seq in list(self._active.values()):
            if seq.out is None:
                continue
            logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(self.ctx, seq.out), shape=(self.n_vocab,))
            self._advance(seq, logits)

    def _advance(self, seq: _Sequence, logits: "np.ndarray") -> None:
        import llama_cpp

        o, request = seq.outcome, seq.request
        try:
            token = seq.sampler.sample(logits, len(o.tokens))
            if token is not None:
                seq.sampler.accept(token)
        except GrammarError as exc:  # a client grammar's worker ran out of time or memory: only this request ends
            self._finish(seq, "error", f"GrammarRejected: the grammar {exc}", grammar_error=str(exc))
            return
        if token is None:  # the grammar cannot go on (a dead end such as "\x00"): the answer ends here
            self._finish(seq, "stop")
            return
        if llama_cpp.llama_vocab_is_eog(self.vocab, token):
            o.stop_token = token
            self._finish(seq, "stop")
            return
        o.tokens.append(token)
        sent = seq.text.sent
        stopped = seq.text.add(self._token_bytes(token))
        if seq.text.sent > sent:
            o.last = time.monotonic()
            o.first = o.first or o.last
        if stopped:
            self._finish(seq, "stop")
        elif len(o.tokens) >= request.max_tokens:
            self._finish(seq, "length")
        else:
            seq.next = token


def _load_model(path: Path, **kwargs: Any) -> Any:
    """The GGUF as a ``llama_cpp.Llama`` (model, vocabulary, metadata) through edgetune.llama's loader: a file
    llama.cpp dies on is probed in a child process first and raises LlamaCrash instead of killing this one."""
    from edgetune.llama import load_llama

    return load_llama(path, **kwargs)


_CHATML = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + "
    "'\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
