"""The two backends: llama.cpp on this device (one engine decoding several sequences) and an OpenAI-compatible
endpoint.

Local decoding runs on the engine's own thread (edgetune.engine); the asyncio server only waits. Every request
carries a :class:`StopFlag` that the engine checks before every decoding step, so a cancelled or expired request
stops within one step and its sequence goes back to the pool as soon as the engine has freed its cells.
"""

from __future__ import annotations

import asyncio
import collections
import heapq
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Literal, Sequence

from edgetune import endpoint
from edgetune.contract import ContractSpec
from edgetune.engine import Engine, EngineClosed, Finish, Outcome, Request
from edgetune.grammar_worker import CustomGrammar
from serve.config import ServeConfig

log = logging.getLogger("serve.backends")

Emit = Callable[[str], None]


class PoolFull(Exception):
    """Every sequence is busy and the wait queue is full."""


class QueueTimeout(Exception):
    """The deadline passed while the request waited for a free sequence."""


class RemoteUnavailable(Exception):
    """No remote backend is configured."""


class GrammarFailed(Exception):
    """The request's custom grammar did not compile or was too expensive (its worker was restarted): the client's
    error (INVALID_ARGUMENT); the message names constraint.value."""


@dataclass
class Job:
    """One validated request, ready for a backend. Times are ``time.monotonic()`` seconds."""

    request_id: str
    messages: list[dict[str, str]]  #: the chat the local model sees
    remote_messages: list[dict[str, str]]  #: the chat the remote model sees (no few-shot turns)
    max_tokens: int
    temperature: float
    top_p: float
    top_k: int
    repeat_penalty: float
    stop: list[str]
    seed: int | None = None
    grammar: str | None = None  #: trusted GBNF the local backend constrains decoding with (the contract's)
    custom_grammar: CustomGrammar | None = None  #: a client's grammar, run in a grammar worker
    prompt_tokens: list[int] = field(default_factory=list)  #: the local backend's tokenized prompt
    received: float = field(default_factory=time.monotonic)
    deadline: float | None = None


@dataclass
class Result:
    """One backend's answer with its timings (milliseconds since the server received the request)."""

    backend: Literal["local", "remote"]
    model: str
    text: str = ""
    finish: Finish = "stop"
    prompt_tokens: int = 0
    completion_tokens: int = 0
    queue_ms: float = 0.0
    ttft_ms: float = 0.0
    decode_ms: float = 0.0
    total_ms: float = 0.0
    tokens_per_second: float = 0.0
    error: str = ""
    forced_close: bool = False


class StopFlag:
    """Tells the engine to stop a sequence: set by a cancel, or by the clock passing ``deadline``."""

    def __init__(self, deadline: float | None):
        self.deadline = deadline
        self._reason: Finish | None = None
        self._event = threading.Event()

    def set(self, reason: Finish) -> None:
        if self._reason is None:
            self._reason = reason
        self._event.set()

    def reason(self) -> Finish | None:
        """Why decoding must stop now, or None to go on."""
        if not self._event.is_set() and self.deadline is not None and time.monotonic() >= self.deadline:
            self.set("deadline_exceeded")
        return self._reason


class _Timer:
    """Turns monotonic instants into the Result's millisecond fields."""

    def __init__(self, received: float):
        self.received = received
        self.started = self.first = self.last = None  # type: float | None

    def ms(self, t: float | None) -> float:
        return 0.0 if t is None else round((t - self.received) * 1000.0, 3)

    def fill(self, result: Result) -> Result:
        end = time.monotonic()
        result.queue_ms = self.ms(self.started)
        result.ttft_ms = self.ms(self.first)
        result.decode_ms = round((self.last - self.first) * 1000.0, 3) if self.first and self.last else 0.0
        result.total_ms = self.ms(end)
        busy = end - (self.started or self.received)
        result.tokens_per_second = round(result.completion_tokens / busy, 3) if busy > 0 else 0.0
        return result


class SequencePool:
    """The engine's N sequence ids and a bounded FIFO of requests waiting for one. Lives on the event loop thread.
    The lowest free id goes first, so the busy ids stay consecutive: llama.cpp decodes consecutive sequences in
    one ubatch (edgetune.engine's _step)."""

    def __init__(self, sequences: list[int], queue: int):
        self._free = sorted(sequences)  # a heap
        self._waiters: collections.deque[asyncio.Future] = collections.deque()
        self.size = len(sequences)
        self.queue = queue

    @property
    def waiting(self) -> int:
        return sum(not w.done() for w in self._waiters)

    @property
    def busy(self) -> int:
        return self.size - len(self._free)

    async def acquire(self, timeout: float | None) -> int:
        """A free sequence id; PoolFull at once when the queue is full, QueueTimeout when ``timeout`` passes."""
        if self._free and not self.waiting:
            return heapq.heappop(self._free)
        if self.waiting >= self.queue:
            raise PoolFull(f"all {self.size} sequences busy and {self.queue} requests already waiting")
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            return await asyncio.wait_for(asyncio.shield(waiter), timeout)
        except (asyncio.CancelledError, asyncio.TimeoutError) as exc:
            if waiter.done() and not waiter.cancelled():
                self.release(waiter.result())  # handed over just as we gave up: pass it on
            else:
                waiter.cancel()
            if isinstance(exc, asyncio.TimeoutError):
                raise QueueTimeout("the deadline passed while waiting for a free sequence") from None
            raise
        finally:
            if waiter in self._waiters:
                self._waiters.remove(waiter)

    def release(self, seq_id: int) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(seq_id)
                return
        heapq.heappush(self._free, seq_id)


class LocalBackend:
    """llama.cpp on this device: one :class:`~edgetune.engine.Engine` (one model, one context) decoding up to
    ``contexts`` requests at once, and a pool of its sequence ids with a bounded wait queue in front."""

    def __init__(self, model_path: Path, *, contexts: int, queue: int, n_ctx: int, n_batch: int = 512,
                 threads: int = 0, n_gpu_layers: int = -1, grammar_candidates: int = 64, close_reserve: int = 0,
                 contract: ContractSpec | None = None, prefix_chats: Sequence[list[dict[str, str]]] = (),
                 custom_grammars: bool = False, grammar_timeout_ms: int = 1000):
        self.engine = Engine(model_path, sequences=contexts, n_ctx=n_ctx, n_batch=n_batch, threads=threads,
                             n_gpu_layers=n_gpu_layers, grammar_candidates=grammar_candidates,
                             close_reserve=close_reserve, contract=contract, custom_grammars=custom_grammars,
                             grammar_timeout_s=grammar_timeout_ms / 1000.0)
        self.model_path = Path(model_path)
        self.n_ctx = n_ctx
        self.queue = queue
        self.prefix_chats = list(prefix_chats)
        self.pool: SequencePool | None = None

    @classmethod
    def from_config(cls, model_path: Path, config: ServeConfig, contract: ContractSpec | None,
                    prefix_chats: Sequence[list[dict[str, str]]] = ()) -> "LocalBackend":
        """The engine as the server builds it: a baseline built elsewhere (the bench) decodes exactly the same way.
        ``prefix_chats``: chats that differ only in the user's message; their common prefix is decoded once."""
        return cls(model_path, contexts=config.contexts, queue=config.queue, n_ctx=config.n_ctx,
                   n_batch=config.n_batch, threads=config.threads, n_gpu_layers=config.n_gpu_layers,
                   grammar_candidates=config.grammar_candidates, close_reserve=config.close_reserve,
                   contract=contract, prefix_chats=prefix_chats, custom_grammars=config.custom_grammars,
                   grammar_timeout_ms=config.grammar_timeout_ms)

    @property
    def name(self) -> str:
        return self.model_path.name

    def load(self) -> None:
        """Load the model, the context and the shared prefix (slow; the server runs it in a thread while
        NOT_SERVING)."""
        self.engine.load(self.prefix_chats)
        self.pool = SequencePool(list(range(self.engine.sequences)), self.queue)

    # ------------------------------------------------------------------------------------ request preparation
    def tokenize_chat(self, messages: list[dict[str, str]]) -> list[int]:
        return self.engine.tokenize_chat(messages)

    def tokenize_text(self, text: str) -> list[int]:
        return self.engine.tokenize_text(text)

    def reserve(self, temperature: float) -> int:
        """The fewest max_tokens with which a contract-constrained answer at ``temperature`` always closes."""
        return self.engine.reserve(temperature)

    # ----------------------------------------------------------------------------------------------- decoding
    async def generate(self, job: Job, emit: Emit | None = None, deadline: float | None = None) -> Result:
        """Decode ``job`` in a free sequence. ``deadline`` (monotonic) defaults to the job's."""
        assert self.pool is not None, "load() first"
        deadline = job.deadline if deadline is None else deadline
        timer = _Timer(job.received)
        wait = None if deadline is None else max(0.0, deadline - time.monotonic())
        seq_id = await self.pool.acquire(wait)
        timer.started = time.monotonic()
        loop = asyncio.get_running_loop()
        stop = StopFlag(deadline)
        finished: asyncio.Future[Outcome] = loop.create_future()

        def on_text(text: str) -> None:
            if emit is not None:
                loop.call_soon_threadsafe(emit, text)

        def done(outcome: Outcome) -> None:
            # The sequence returns to the pool when the engine has freed its cells, not when this coroutine ends.
            loop.call_soon_threadsafe(self._done, seq_id, finished, outcome)

        request = Request(prompt=job.prompt_tokens, max_tokens=job.max_tokens, temperature=job.temperature,
                          top_p=job.top_p, top_k=job.top_k, repeat_penalty=job.repeat_penalty, seed=job.seed,
                          stop=job.stop, grammar=job.grammar, custom_grammar=job.custom_grammar,
                          should_stop=stop.reason, on_text=on_text)
        try:
            self.engine.submit(seq_id, request, done)
        except EngineClosed:
            self.pool.release(seq_id)
            raise
        try:
            outcome = await asyncio.shield(finished)
        except asyncio.CancelledError:
            stop.set("deadline_exceeded" if deadline is not None and time.monotonic() >= deadline else "cancelled")
            raise
        result = Result("local", self.name, prompt_tokens=len(job.prompt_tokens), text=outcome.text,
                        finish=outcome.finish, completion_tokens=len(outcome.tokens), error=outcome.error,
                        forced_close=outcome.forced_close)
        if outcome.grammar_error and job.custom_grammar is not None:
            raise GrammarFailed(f"constraint.value: the {job.custom_grammar.what} {outcome.grammar_error}")
        if outcome.finish == "error":
            log.error("local decoding failed: %s", outcome.error, extra={"request_id": job.request_id})
        timer.first, timer.last = outcome.first, outcome.last
        return timer.fill(result)

    def _done(self, seq_id: int, finished: "asyncio.Future[Outcome]", outcome: Outcome) -> None:
        assert self.pool is not None
        self.pool.release(seq_id)
        if not finished.done():
            finished.set_result(outcome)

    def close(self) -> None:
        self.engine.close()


class RemoteBackend:
    """An OpenAI-compatible chat endpoint through the official ``openai`` client (streaming)."""

    def __init__(self, model: str, base_url: str = "", timeout_s: float = 30.0):
        from openai import AsyncOpenAI

        api = endpoint.resolve(base_url, require_key=False, timeout_s=timeout_s)
        if not api.api_key and api.base_url == endpoint.DEFAULT_BASE_URL:
            raise RemoteUnavailable(f"the remote backend needs {endpoint.KEY_VARIABLES[0]} (environment or .env), "
                                    "or --remote-base-url for a local server")
        self.model = model
        self.base_url = api.base_url
        self.timeout_s = timeout_s
        self._client = AsyncOpenAI(api_key=api.api_key or "unused", base_url=api.base_url, max_retries=0,
                                   timeout=timeout_s)

    async def generate(self, job: Job, emit: Emit | None = None, deadline: float | None = None) -> Result:
        import openai

        deadline = job.deadline if deadline is None else deadline
        timer = _Timer(job.received)
        timer.started = time.monotonic()
        result = Result("remote", self.model)
        remaining = self.timeout_s if deadline is None else min(self.timeout_s, deadline - time.monotonic())
        pieces: list[str] = []
        finish = None
        try:
            async with asyncio.timeout(max(0.0, remaining)):
                stream = await self._client.chat.completions.create(
                    model=self.model, messages=job.remote_messages, max_tokens=job.max_tokens, temperature=job.temperature,
                    top_p=job.top_p, stop=job.stop or None, seed=job.seed, stream=True,
                    stream_options={"include_usage": True},
                )
                async with stream:
                    async for chunk in stream:
                        if chunk.usage is not None:
                            result.prompt_tokens = chunk.usage.prompt_tokens
                            result.completion_tokens = chunk.usage.completion_tokens
                        if not chunk.choices:
                            continue
                        choice = chunk.choices[0]
                        text = choice.delta.content if choice.delta else None
                        if text:
                            now = time.monotonic()
                            timer.first = timer.first or now
                            timer.last = now
                            pieces.append(text)
                            if emit is not None:
                                emit(text)
                        finish = choice.finish_reason or finish
            result.finish = "length" if finish == "length" else "stop"
        except TimeoutError:
            result.finish = "deadline_exceeded"
        except openai.OpenAIError as exc:
            result.finish, result.error = "error", f"{type(exc).__name__}: {exc}"
        result.text = "".join(pieces)
        if not result.completion_tokens:
            result.completion_tokens = len(pieces)
        return timer.fill(result)

    async def close(self) -> None:
        await self._client.close()
