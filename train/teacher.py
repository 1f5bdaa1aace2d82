"""Teacher-model data generation against any OpenAI-compatible endpoint (OpenAI, vLLM, llama-server, Ollama...).

    TEACHER_BASE_URL=http://127.0.0.1:8080/v1 TEACHER_MODEL=qwen TEACHER_API_KEY=... \\
        python -m train data --run r1 --teacher openai --max-cost 2 --concurrency 8

The task prompt becomes a request for a batch of examples; a sample of examples already received is fed back so
later batches differ from earlier ones (as gpt-llm-trainer does). Unlike one-call-at-a-time scripts, requests run
concurrently (bounded), failures are retried with exponential backoff and jitter honouring Retry-After, every
token is counted and priced, hard limits stop the run, and every answer is appended to a JSONL pool and flushed as
it arrives: a rerun continues where the last one stopped, and a crash loses at most the requests in flight.

Files under runs/RUN/data/teacher/: pool.jsonl (every example received, valid or not), requests.jsonl (one line per
request: status, tokens, cost) and system.txt (the auto-generated system message, when asked for).
"""

from __future__ import annotations

import json
import os
import random
import sys
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from edgetune import endpoint
from edgetune.config import ConfigError
from train.dataset import Example, normalize_text
from train.teacher_prompts import (examples_from_answer, generation_prompt, paraphrase_prompt,
                                   paraphrases_from_answer, system_prompt_request)

KEY_VARIABLES = ("TEACHER_API_KEY", "OPENAI_API_KEY")
DEFAULT_MODEL = "gpt-4o-mini"
#: USD per 1M tokens (input, output); override or extend with openai.prices.MODEL=[in,out]
PRICES: dict[str, tuple[float, float]] = {
    "gpt-4o-mini": (0.15, 0.60), "gpt-4o": (2.50, 10.00), "gpt-4.1": (2.00, 8.00), "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1-nano": (0.10, 0.40), "gpt-4-turbo": (10.00, 30.00), "gpt-3.5-turbo": (0.50, 1.50),
    "o4-mini": (1.10, 4.40), "o3-mini": (1.10, 4.40), "gpt-5": (1.25, 10.00), "gpt-5-mini": (0.25, 2.00),
    "gpt-5-nano": (0.05, 0.40),
}


@dataclass
class TeacherConfig:
    """Teacher settings; empty base_url/model fall back to $TEACHER_BASE_URL/$TEACHER_MODEL."""

    base_url: str = ""  #: OpenAI-compatible endpoint (default: $TEACHER_BASE_URL, else api.openai.com)
    model: str = ""  #: teacher model (default: $TEACHER_MODEL, else gpt-4o-mini)
    concurrency: int = 4  #: requests in flight at once
    examples_per_request: int = 8  #: examples asked for in one request
    feedback: int = 6  #: earlier examples shown in each request so the teacher writes different ones
    temperature: float = 1.0  #: teacher sampling temperature (high: diverse examples)
    max_tokens: int = 2048  #: completion budget of one request
    json_mode: bool = True  #: send response_format=json_object (OpenAI, vLLM, llama.cpp and Ollama support it)
    timeout: float = 120.0  #: seconds before one attempt times out
    max_retries: int = 5  #: retries of one request on 429/5xx/timeouts/connection errors
    backoff: float = 1.0  #: first retry delay in seconds (doubles each retry, with jitter)
    backoff_max: float = 60.0  #: longest delay between retries, Retry-After included
    max_requests: int | None = None  #: stop after this many requests in this run's pool (None: no limit)
    max_cost: float | None = None  #: stop before this run's pool costs more than this many USD (None: no limit)
    max_barren: int = 20  #: give up after this many requests in a row yield no usable example
    prices: dict[str, list[float]] = field(default_factory=dict)  #: USD per 1M tokens [input, output] per model
    paraphrase: bool = False  #: rephrase synthesized commands (answers kept) instead of inventing examples
    auto_system: bool = False  #: let the teacher write the system message (else the task's is used)
    env_file: str = ".env"  #: git-ignored file that may hold the API key and TEACHER_* settings

    def check(self):
        for name in ("concurrency", "examples_per_request", "max_tokens", "max_barren"):
            if getattr(self, name) < 1:
                yield name, "must be at least 1"
        if self.max_retries < 0:
            yield "max_retries", "must be 0 or more"
        for model, price in self.prices.items():
            if len(price) != 2 or min(price) < 0:
                yield f"prices.{model}", "must be [input, output] USD per 1M tokens, both >= 0"


class TeacherError(RuntimeError):
    """The teacher cannot be used (no key, unreachable, refuses); the message says what to fix."""


@dataclass
class Usage:
    """Tokens, cost and requests of the whole pool (earlier runs included)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    requests: int = 0
    retries: int = 0
    malformed: int = 0

    def as_dict(self) -> dict:
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
                "total_tokens": self.prompt_tokens + self.completion_tokens, "cost_usd": self.cost_usd,
                "requests": self.requests, "retries": self.retries, "malformed_responses": self.malformed}


# ----------------------------------------------------------------------------------------------- settings
@dataclass(frozen=True)
class Endpoint:
    base_url: str
    model: str
    api_key: str = field(repr=False)  #: never printed or recorded
    key_variable: str


def resolve_endpoint(config: TeacherConfig) -> Endpoint:
    """Base URL, model and key from config, environment, then .env (edgetune.endpoint); no key is a ConfigError."""
    api = endpoint.resolve(config.base_url, key_variables=KEY_VARIABLES, base_url_variables=("TEACHER_BASE_URL",),
                           timeout_s=config.timeout, env_file=config.env_file)
    model = config.model or endpoint.settings(config.env_file).get("TEACHER_MODEL") or DEFAULT_MODEL
    return Endpoint(api.base_url, model, api.api_key, api.key_variable)


def price_of(model: str, config: TeacherConfig) -> tuple[float, float] | None:
    """USD per 1M (input, output) tokens: the override, else the table (longest matching prefix), else None."""
    if model in config.prices:
        return float(config.prices[model][0]), float(config.prices[model][1])
    name = model.removeprefix("openai/")
    matches = [m for m in PRICES if name == m or name.startswith(m + "-")]
    return PRICES[max(matches, key=len)] if matches else None


# --------------------------------------------------------------------------------------------- the client
@dataclass
class Reply:
    content: str | None
    prompt_tokens: int
    completion_tokens: int
    retries: int


class Teacher:
    """One OpenAI-compatible endpoint with our own retry policy (the client's is off so retries are counted)."""

    RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}

    def __init__(self, config: TeacherConfig, endpoint: Endpoint, sleep: Callable[[float], None] = time.sleep):
        from openai import OpenAI

        self.config, self.endpoint, self.sleep = config, endpoint, sleep
        self.client = OpenAI(base_url=endpoint.base_url, api_key=endpoint.api_key, max_retries=0,
                             timeout=config.timeout)
        self._rng = random.Random()

    def retry_delay(self, attempt: int, retry_after: float | None) -> float:
        """Retry-After when the server gives one, else exponential backoff with full jitter (both capped)."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.config.backoff_max)
        return min(self.config.backoff * 2 ** attempt, self.config.backoff_max) * (0.5 + self._rng.random() / 2)

    def chat(self, messages: list[dict[str, str]], json_mode: bool | None = None, max_tokens: int | None = None,
             temperature: float | None = None) -> Reply:
        import openai

        json_mode = self.config.json_mode if json_mode is None else json_mode
        extra = {"response_format": {"type": "json_object"}} if json_mode else {}
        retries = 0
        while True:
            try:
                response = self.client.chat.completions.create(
                    model=self.endpoint.model, messages=messages,  # type: ignore[arg-type]
                    temperature=self.config.temperature if temperature is None else temperature,
                    max_tokens=max_tokens or self.config.max_tokens, **extra)
            except (openai.APITimeoutError, openai.APIConnectionError, openai.APIStatusError) as exc:
                status = getattr(exc, "status_code", None)
                if isinstance(exc, openai.APIStatusError) and status not in self.RETRY_STATUS:
                    raise TeacherError(self._refusal(exc)) from exc
                if retries >= self.config.max_retries:
                    what = f"HTTP {status}" if status else type(exc).__name__.replace("API", "")
                    raise TeacherError(f"teacher at {self.endpoint.base_url} failed after {retries + 1} attempts "
                                       f"({what}: {exc}); check TEACHER_BASE_URL and that the server is up, or "
                                       "raise openai.max_retries") from exc
                response_obj = getattr(exc, "response", None)
                self.sleep(self.retry_delay(retries, _retry_after(response_obj)))
                retries += 1
                continue
            usage = response.usage
            content = response.choices[0].message.content if response.choices else None
            return Reply(content, usage.prompt_tokens if usage else 0, usage.completion_tokens if usage else 0,
                         retries)

    def _refusal(self, exc) -> str:
        status = exc.status_code
        if status == 401:
            return (f"the teacher at {self.endpoint.base_url} rejected the API key from {self.endpoint.key_variable} "
                    "(HTTP 401); set a valid key")
        if status == 404:
            return (f"the teacher at {self.endpoint.base_url} does not know model {self.endpoint.model!r} or the "
                    "path (HTTP 404); check TEACHER_MODEL and that TEACHER_BASE_URL ends in /v1")
        return f"the teacher at {self.endpoint.base_url} refused the request (HTTP {status}): {exc.message}"


def _retry_after(response) -> float | None:
    """Seconds from Retry-After / retry-after-ms headers (numbers or an HTTP date), if any."""
    if response is None:
        return None
    headers = response.headers
    if headers.get("retry-after-ms"):
        try:
            return float(headers["retry-after-ms"]) / 1000
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        from email.utils import parsedate_to_datetime

        try:
            return parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError):
            return None


# ------------------------------------------------------------------------------------------- the pool
class Pool:
    """Append-only JSONL of every example received plus a request ledger; both survive kill -9."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.examples_path = workdir / "pool.jsonl"
        self.ledger_path = workdir / "requests.jsonl"
        self.examples = [Example(**r) for r in _read_jsonl(self.examples_path)]
        self.ledger = _read_jsonl(self.ledger_path)
        self._examples_fh = open(self.examples_path, "a", encoding="utf-8")
        self._ledger_fh = open(self.ledger_path, "a", encoding="utf-8")

    def usage(self) -> Usage:
        u = Usage()
        for r in self.ledger:
            u.prompt_tokens += r.get("prompt_tokens", 0)
            u.completion_tokens += r.get("completion_tokens", 0)
            u.cost_usd += r.get("cost_usd", 0.0)
            u.requests += 1
            u.retries += r.get("retries", 0)
            u.malformed += r.get("status") == "malformed"
        return u

    def add(self, examples: list[Example], entry: dict) -> None:
        """Append one request's examples, then its ledger line; flushed and fsynced before returning."""
        if examples:
            self._examples_fh.write("".join(json.dumps(_asdict(e), ensure_ascii=False) + "\n" for e in examples))
            self._examples_fh.flush()
            os.fsync(self._examples_fh.fileno())
        self._ledger_fh.write(json.dumps(entry) + "\n")
        self._ledger_fh.flush()
        os.fsync(self._ledger_fh.fileno())
        self.examples.extend(examples)
        self.ledger.append(entry)

    def close(self) -> None:
        self._examples_fh.close()
        self._ledger_fh.close()


def _asdict(example: Example) -> dict:
    return {"user": example.user, "assistant": example.assistant, "source": example.source}


def _read_jsonl(path: Path) -> list[dict]:
    """Records of a JSONL file; a torn last line (a crash mid-write) is cut off so appends stay valid."""
    if not path.is_file():
        return []
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        data = data[: data.rfind(b"\n") + 1]
        with open(path, "r+b") as fh:
            fh.truncate(len(data))
    return [json.loads(line) for line in data.decode("utf-8").splitlines() if line.strip()]


# ------------------------------------------------------------------------------------------ generation
@dataclass
class GenerationResult:
    examples: list[Example]
    usage: dict
    stopped_by: str  #: "target", "max_requests", "max_cost"
    malformed: list[dict]  #: ledger entries of malformed answers (for rejected.jsonl)
    system: str | None = None  #: auto-generated system message, if asked for
    endpoint: dict = field(default_factory=dict)  #: base_url and model (never the key)


def generate(task, config: TeacherConfig, workdir: Path, target: int, seed: int,
             usable: Callable[[Example], bool] | None = None,
             commands: list[Example] | None = None) -> GenerationResult:
    """Grow the pool in ``workdir`` until it holds ``target`` usable examples or a limit stops it.

    ``usable`` says whether an example counts (default: valid under the task's contract once respelled); distinct
    normalised instructions only. With ``config.paraphrase`` the teacher rephrases ``commands`` (answers kept).
    """
    from tqdm import tqdm

    endpoint = resolve_endpoint(config)
    price = price_of(endpoint.model, config)
    if config.max_cost is not None and price is None:
        raise ConfigError("command line", f"openai.prices.{endpoint.model}",
                          f"no price known for model {endpoint.model!r}, so --max-cost cannot be enforced; set "
                          f"openai.prices.{endpoint.model}=[input,output] (USD per 1M tokens)")
    if config.paraphrase and not commands:
        raise ConfigError("command line", "openai.paraphrase", "paraphrasing needs commands to rephrase (synth)")
    usable = usable or (lambda e: task.contract.validate(e.assistant).respellable)
    teacher = Teacher(config, endpoint)
    pool = Pool(workdir)
    seen: set[str] = set()
    count = 0

    def admit(examples: list[Example]) -> int:
        nonlocal count
        fresh = 0
        for e in examples:
            key = normalize_text(e.user)
            if key and key not in seen and usable(e):
                seen.add(key)
                fresh += 1
        count += fresh
        return fresh

    admit(pool.examples)
    system = _system_message(teacher, task, pool, price) if config.auto_system else None
    usage = pool.usage()
    request_id = len(pool.ledger)
    stopped_by = "target"
    barren = 0
    in_flight: dict[Future, tuple[int, list[Example], int, float]] = {}  #: id, batch, prompt chars, reserved $
    bar = tqdm(total=target, initial=min(count, target), desc="teacher", unit="ex", dynamic_ncols=True,
               disable=None)

    def bound(messages: list[dict[str, str]]) -> float:
        """Most one request can cost: its prompt at the worst token/char ratio seen (else 1 token per 2
        characters) plus a full max_tokens completion. Reserving this keeps --max-cost a hard limit."""
        if price is None:
            return 0.0
        chars = sum(len(m["content"]) for m in messages)
        ratios = [r["prompt_tokens"] / r["prompt_chars"] for r in pool.ledger if r.get("prompt_chars")]
        ratio = max(ratios) * 1.2 if ratios else 0.5
        return (chars * ratio * price[0] + config.max_tokens * price[1]) / 1e6

    def launch(pool_executor: ThreadPoolExecutor) -> bool:
        nonlocal request_id, stopped_by
        if config.max_requests is not None and usage.requests + len(in_flight) >= config.max_requests:
            stopped_by = "max_requests"
            return False
        req_rng = random.Random(f"{seed}:{request_id}")
        if config.paraphrase:
            assert commands is not None
            batch = [commands[(request_id * config.examples_per_request + i) % len(commands)]
                     for i in range(config.examples_per_request)]
            messages = paraphrase_prompt(batch)
        else:
            batch = []
            shown = req_rng.sample(pool.examples, min(config.feedback, len(pool.examples)))
            messages = generation_prompt(task, config.examples_per_request, shown)
        reserve = bound(messages)
        if config.max_cost is not None and usage.cost_usd + sum(r[3] for r in in_flight.values()) + reserve \
                > config.max_cost:
            stopped_by = "max_cost"
            return False
        prompt_chars = sum(len(m["content"]) for m in messages)
        in_flight[pool_executor.submit(teacher.chat, messages)] = (request_id, batch, prompt_chars, reserve)
        request_id += 1
        return True

    executor = ThreadPoolExecutor(max_workers=config.concurrency, thread_name_prefix="teacher")
    try:
        while True:
            while count + _pending(in_flight, config) < target and len(in_flight) < config.concurrency:
                if not launch(executor):
                    break
            if not in_flight:
                if count >= target:
                    stopped_by = "target"
                break
            done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
            for future in done:
                rid, batch, prompt_chars, _ = in_flight.pop(future)
                reply = future.result()  # TeacherError propagates: the pool keeps what arrived
                cost = ((reply.prompt_tokens * price[0] + reply.completion_tokens * price[1]) / 1e6
                        if price else 0.0)
                entry = {"id": rid, "status": "ok", "prompt_chars": prompt_chars,
                         "prompt_tokens": reply.prompt_tokens,
                         "completion_tokens": reply.completion_tokens, "cost_usd": cost,
                         "retries": reply.retries, "model": endpoint.model}
                try:
                    examples = (paraphrases_from_answer(reply.content, batch) if config.paraphrase
                                else examples_from_answer(reply.content))
                except (ValueError, json.JSONDecodeError) as exc:
                    examples = []
                    entry.update(status="malformed", error=str(exc)[:200], content=(reply.content or "")[:500])
                entry["examples"] = len(examples)
                pool.add(examples, entry)
                usage.prompt_tokens += reply.prompt_tokens
                usage.completion_tokens += reply.completion_tokens
                usage.cost_usd += cost
                usage.requests += 1
                usage.retries += reply.retries
                usage.malformed += entry["status"] == "malformed"
                fresh = admit(examples)
                barren = 0 if fresh else barren + 1
                bar.update(max(0, min(count, target) - bar.n))
                bar.set_postfix(req=usage.requests, retries=usage.retries, bad=usage.malformed,
                                usd=f"{usage.cost_usd:.4f}")
            if barren >= config.max_barren:
                raise TeacherError(f"the teacher gave no usable example in {barren} requests in a row "
                                   f"(last: {pool.ledger[-1].get('error', 'all examples invalid')}); see "
                                   f"{pool.ledger_path} and try a stronger TEACHER_MODEL")
    finally:
        # in-flight requests are abandoned on an error or Ctrl-C; everything already received is in the pool
        executor.shutdown(wait=False, cancel_futures=True)
        bar.close()
        pool.close()
    if stopped_by != "target":
        print(f"teacher: stopped by {stopped_by} with {count}/{target} usable examples "
              f"({usage.requests} requests, ${usage.cost_usd:.4f})", file=sys.stderr)
    malformed = [r for r in pool.ledger if r.get("status") == "malformed"]
    return GenerationResult(pool.examples, usage.as_dict(), stopped_by, malformed, system,
                            {"base_url": endpoint.base_url, "model": endpoint.model})


def _pending(in_flight: dict, config: TeacherConfig) -> int:
    """Usable examples expected from requests in flight (so we stop launching near the target)."""
    return len(in_flight) * config.examples_per_request


def _system_message(teacher: Teacher, task, pool: Pool, price: tuple[float, float] | None) -> str:
    """The teacher-written system message, generated once per pool (and priced) and reused on resume."""
    from edgetune.rundir import atomic_write

    path = pool.workdir / "system.txt"
    if path.is_file():
        return path.read_text(encoding="utf-8").strip()
    reply = teacher.chat(system_prompt_request(task), json_mode=False, max_tokens=200, temperature=0.3)
    text = " ".join((reply.content or "").split()).strip('"')
    if not text:
        raise TeacherError("the teacher returned an empty system message; set openai.auto_system=false")
    cost = (reply.prompt_tokens * price[0] + reply.completion_tokens * price[1]) / 1e6 if price else 0.0
    pool.add([], {"id": len(pool.ledger), "status": "system", "prompt_tokens": reply.prompt_tokens,
                  "completion_tokens": reply.completion_tokens, "cost_usd": cost, "retries": reply.retries,
                  "examples": 0, "model": teacher.endpoint.model})
    atomic_write(path, text + "\n")
    return text
