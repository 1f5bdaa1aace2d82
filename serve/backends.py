"""The two backends: llama.cpp on this device (a pool of contexts) and an OpenAI-compatible endpoint.

Local decoding runs in worker threads, one per llama.cpp context; the asyncio server only waits. Every request
carries a :class:`StopFlag` that the decoding thread checks after every token, so a cancelled or expired request
stops within one token (or one prompt batch) and its context goes back to the pool when the thread has let go.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal

from edgetune.contract import ContractSpec
from serve.config import ServeConfig
from serve.grammar import GrammarError, GrammarMask, check_gbnf, closing_tokens, longest_items

log = logging.getLogger("serve.backends")

Finish = Literal["stop", "length", "cancelled", "deadline_exceeded", "error"]
Emit = Callable[[str], None]


class PoolFull(Exception):
    """Every context is busy and the wait queue is full."""


class QueueTimeout(Exception):
    """The deadline passed while the request waited for a context."""


class RemoteUnavailable(Exception):
    """No remote backend is configured."""


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
    grammar: str | None = None  #: GBNF the local backend constrains decoding with
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
    """Tells a decoding thread to stop: set by a cancel, or by the clock passing ``deadline``."""

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


class ContextPool:
    """N llama.cpp contexts and a bounded FIFO of requests waiting for one. Lives on the event loop thread."""

    def __init__(self, contexts: list[Any], queue: int):
        self._free = collections.deque(contexts)
        self._waiters: collections.deque[asyncio.Future] = collections.deque()
        self.size = len(contexts)
        self.queue = queue

    @property
    def waiting(self) -> int:
        return sum(not w.done() for w in self._waiters)

    @property
    def busy(self) -> int:
        return self.size - len(self._free)

    async def acquire(self, timeout: float | None) -> Any:
        """A free context; PoolFull at once when the queue is full, QueueTimeout when ``timeout`` passes."""
        if self._free and not self.waiting:
            return self._free.popleft()
        if self.waiting >= self.queue:
            raise PoolFull(f"all {self.size} contexts busy and {self.queue} requests already waiting")
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
                raise QueueTimeout("the deadline passed while waiting for a free context") from None
            raise
        finally:
            if waiter in self._waiters:
                self._waiters.remove(waiter)

    def release(self, context: Any) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(context)
                return
        self._free.appendleft(context)  # LIFO: the most recently used context has the warmest prompt cache


def _threads(requested: int, contexts: int) -> int:
    return requested if requested > 0 else max(1, (os.cpu_count() or 1) // contexts)


class LocalBackend:
    """llama-cpp-python on one GGUF: ``contexts`` Llama instances over the same memory-mapped model file."""

    def __init__(self, model_path: Path, *, contexts: int, queue: int, n_ctx: int, n_batch: int = 512,
                 threads: int = 0, n_gpu_layers: int = 0, grammar_candidates: int = 64, close_reserve: int = 0,
                 contract: ContractSpec | None = None):
        self.model_path = Path(model_path)
        self.n_ctx = n_ctx
        self._settings = dict(contexts=contexts, queue=queue, n_batch=n_batch, threads=_threads(threads, contexts),
                              n_gpu_layers=n_gpu_layers)
        self.grammar_candidates = grammar_candidates
        self.close_reserve = close_reserve
        self._contract = contract
        self.pool: ContextPool | None = None
        self._executor = concurrent.futures.ThreadPoolExecutor(contexts, thread_name_prefix="llama-ctx")

    @classmethod
    def from_config(cls, model_path: Path, config: ServeConfig, contract: ContractSpec | None) -> "LocalBackend":
        """The engine as the server builds it: a baseline built elsewhere (the bench) decodes exactly the same way."""
        return cls(model_path, contexts=config.contexts, queue=config.queue, n_ctx=config.n_ctx,
                   n_batch=config.n_batch, threads=config.threads, n_gpu_layers=config.n_gpu_layers,
                   grammar_candidates=config.grammar_candidates, close_reserve=config.close_reserve,
                   contract=contract)

    @property
    def name(self) -> str:
        return self.model_path.name

    def load(self) -> None:
        """Load the vocabulary and every context (slow; the server runs it in a thread while NOT_SERVING)."""
        from llama_cpp import Llama, llama_chat_format, llama_cpp

        from edgetune.llama import load_llama

        class CountingLlama(Llama):
            """Counts the tokens generate() hands out: the exact completion length, whatever ended decoding."""

            generated = 0

            def generate(self, *args, **kwargs):
                for token in super().generate(*args, **kwargs):
                    self.generated += not llama_cpp.llama_vocab_is_eog(self._model.vocab, token)
                    yield token

        s = self._settings
        # load_llama probes the file in a child process first (once): a GGUF llama.cpp crashes on raises
        # LlamaCrash here, so the server never reports SERVING, instead of dying on the first request
        contexts = [
            load_llama(self.model_path, cls=CountingLlama, verbose=False, use_mmap=True, n_ctx=self.n_ctx,
                       n_batch=s["n_batch"], n_threads=s["threads"], n_threads_batch=s["threads"],
                       n_gpu_layers=s["n_gpu_layers"])
            for _ in range(s["contexts"])
        ]
        first = contexts[0]
        # Tokenizing reads only the model's vocabulary (never a context), so the event loop may use the first
        # instance for it while a worker thread decodes on that instance's context.
        self._tokenizer = first
        self.vocab = first._model.vocab
        template = first.metadata.get("tokenizer.chat_template") or _CHATML
        eos = first.token_eos()
        self._formatter = llama_chat_format.Jinja2ChatFormatter(
            template=template,
            eos_token=first._model.token_get_text(eos) if eos != -1 else "",
            bos_token=first._model.token_get_text(first.token_bos()) if first.token_bos() != -1 else "",
        )
        self._closing = closing_tokens(self.vocab, first.detokenize)
        if self.close_reserve <= 0:  # auto: room for one more whole call plus the closing brackets
            items = longest_items(self._contract) if self._contract and self._contract.kind == "call_list" else []
            self.close_reserve = max([16, *(len(self.tokenize_text(item)) + 4 for item in items)])
        self.pool = ContextPool(contexts, s["queue"])
        log.info("loaded %s: %d contexts x %d threads, n_ctx %d", self.model_path, s["contexts"], s["threads"],
                 self.n_ctx)

    # ------------------------------------------------------------------------------------ request preparation
    def tokenize_chat(self, messages: list[dict[str, str]]) -> list[int]:
        """The model's prompt tokens for a chat (its own chat template, generation prompt added)."""
        prompt = self._formatter(messages=messages).prompt
        return self._tokenizer.tokenize(prompt.encode("utf-8"), add_bos=False, special=True)

    def tokenize_text(self, text: str) -> list[int]:
        return self._tokenizer.tokenize(text.encode("utf-8"), add_bos=False, special=False)

    def check_grammar(self, gbnf: str) -> None:
        check_gbnf(self.vocab, gbnf)

    # ----------------------------------------------------------------------------------------------- decoding
    async def generate(self, job: Job, emit: Emit | None = None, deadline: float | None = None) -> Result:
        """Decode ``job`` on a free context. ``deadline`` (monotonic) defaults to the job's."""
        assert self.pool is not None, "load() first"
        deadline = job.deadline if deadline is None else deadline
        timer = _Timer(job.received)
        wait = None if deadline is None else max(0.0, deadline - time.monotonic())
        context = await self.pool.acquire(wait)
        timer.started = time.monotonic()
        loop = asyncio.get_running_loop()
        stop = StopFlag(deadline)

        def emit_threadsafe(text: str) -> None:
            if emit is not None:
                loop.call_soon_threadsafe(emit, text)

        work = self._executor.submit(self._decode, context, job, stop, timer, emit_threadsafe)
        # The context returns to the pool when the thread lets go of it, not when this coroutine ends.
        work.add_done_callback(lambda _: loop.call_soon_threadsafe(self.pool.release, context))
        try:
            return await asyncio.wrap_future(work)
        except asyncio.CancelledError:
            stop.set("deadline_exceeded" if deadline is not None and time.monotonic() >= deadline else "cancelled")
            raise

    def _decode(self, llm: Any, job: Job, stop: StopFlag, timer: _Timer, emit: Emit) -> Result:
        from llama_cpp import LogitsProcessorList, StoppingCriteriaList

        result = Result("local", self.name, prompt_tokens=len(job.prompt_tokens))
        llm.generated = 0

        def should_stop(_input_ids, _logits) -> bool:
            return stop.reason() is not None

        mask = None
        if job.grammar:
            mask = GrammarMask(self.vocab, job.grammar, candidates=self.grammar_candidates if job.top_k > 0 or
                               job.temperature == 0 else 0, max_tokens=job.max_tokens, reserve=self.close_reserve,
                               closing=self._closing)
        pieces: list[str] = []
        finish: str | None = None
        try:
            if stop.reason() is None:
                chunks = llm.create_completion(
                    job.prompt_tokens, max_tokens=job.max_tokens, temperature=job.temperature, top_p=job.top_p,
                    top_k=job.top_k, repeat_penalty=job.repeat_penalty, stop=job.stop or [], seed=job.seed,
                    stream=True, stopping_criteria=StoppingCriteriaList([should_stop]),
                    logits_processor=LogitsProcessorList([mask]) if mask else None,
                )
                for chunk in chunks:
                    choice = chunk["choices"][0]
                    if choice["text"]:
                        now = time.monotonic()
                        timer.first = timer.first or now
                        timer.last = now
                        pieces.append(choice["text"])
                        emit(choice["text"])
                    finish = choice.get("finish_reason") or finish
        except (GrammarError, ValueError, RuntimeError) as exc:
            log.exception("local decoding failed", extra={"request_id": job.request_id})
            result.finish, result.error = "error", f"{type(exc).__name__}: {exc}"
        finally:
            if mask is not None:
                result.forced_close = mask.forced_close
                mask.close()
        result.text = "".join(pieces)
        result.completion_tokens = llm.generated
        if result.finish != "error":
            result.finish = stop.reason() or ("length" if finish == "length" else "stop")
        return timer.fill(result)

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)


_CHATML = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + "
    "'\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


class RemoteBackend:
    """An OpenAI-compatible chat endpoint through the official ``openai`` client (streaming)."""

    def __init__(self, model: str, base_url: str = "", timeout_s: float = 30.0, api_key: str = ""):
        from openai import AsyncOpenAI

        self.model = model
        self.base_url = base_url
        self.timeout_s = timeout_s
        key = api_key or os.environ.get("OPENAI_API_KEY", "")
        if not key and not base_url:
            raise RemoteUnavailable("the remote backend needs OPENAI_API_KEY (or --remote-base-url for a local server)")
        self._client = AsyncOpenAI(api_key=key or "unused", base_url=base_url or None, max_retries=0,
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
