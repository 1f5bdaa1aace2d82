"""The engines a bench drives, all with the same GGUF and settings: the edgetune gRPC server, its engine in
process, llama-cpp-python's OpenAI-compatible HTTP server, llama.cpp's own C++ llama-server, and the remote OpenAI
fine-tuned model.

Each target is a context manager (it starts and stops what it needs) with ``stream(prompt, max_tokens=None)``
yielding :class:`~bench.loadgen.Delta`s (``max_tokens`` None: the workload's).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Iterator

from bench.loadgen import Delta
from bench.workload import Workload
from edgetune import endpoint
from edgetune.artifacts import FineTuneRecord, openai_ft_path, read_openai_ft
from edgetune.config import ConfigError
from edgetune.endpoint import Endpoint
from edgetune.llama import exit_reason
from edgetune.rundir import RunDir


class TargetUnavailable(RuntimeError):
    """A target that cannot be benched here; the message says why (recorded as the target's note)."""


def free_port() -> int:
    """A currently free loopback port (the OS picks it, so parallel runs do not collide)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def default_threads() -> int:
    """llama.cpp's own default decode thread count, made explicit so every engine gets the same."""
    return max(1, (os.cpu_count() or 2) // 2)


class ServerProcess:
    """A server subprocess with its log in a file; ``ready()`` is polled until it says yes or time runs out."""

    def __init__(self, name: str, argv: list[str], log_path: Path, ready: Callable[[], bool], timeout_s: float):
        self.name, self.argv, self.log_path, self.ready, self.timeout_s = name, argv, log_path, ready, timeout_s
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> "ServerProcess":
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + self.timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise TargetUnavailable(f"{self.name} {exit_reason(self.proc.returncode)} while starting: "
                                        f"{self.log_tail()} (full log: {self.log_path})")
            if self.ready():
                return self
            time.sleep(0.2)
        self.stop()
        raise TargetUnavailable(f"{self.name} was not ready after {self.timeout_s:g} s (log: {self.log_path})")

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def log_tail(self, chars: int = 800) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")[-chars:].strip()


def _engine_timings(timings: Any) -> dict[str, float]:
    """The server's own clock (ms since it received the request), to split added latency into engine and wire."""
    return {key: float(getattr(timings, key)) for key in ("queue_ms", "ttft_ms", "decode_ms", "total_ms")}


# ---------------------------------------------------------------------------------------------- in-process
class InProcessTarget(contextlib.AbstractContextManager):
    """The server's own engine (serve.backends.LocalBackend over edgetune.engine) called in this process: the same
    prompt tokens, shared prefix, grammar path and sampling as the server, minus gRPC and request handling, so the
    ratio of the two is the server's overhead. One request at a time (one sequence)."""

    name = "inprocess"
    max_concurrency = 1

    def __init__(self, workload: Workload, n_ctx: int, n_threads: int):
        self.workload, self.n_ctx, self.n_threads = workload, n_ctx, n_threads
        self.endpoint = "in process (serve.backends.LocalBackend)"
        self.backend: Any = None
        self.loop: asyncio.AbstractEventLoop | None = None

    def __enter__(self) -> "InProcessTarget":
        from edgetune.llama import LlamaCrash
        from serve.backends import LocalBackend
        from serve.config import ServeConfig

        # the server's engine and settings, one sequence, the bench's threads and n_ctx
        config = replace(ServeConfig(), contexts=1, queue=0, n_ctx=self.n_ctx, threads=self.n_threads)
        deployed = self.workload.deployed
        chats = [deployed.chat("a"), deployed.chat("b")]  # the server's shared prefix
        self.backend = LocalBackend.from_config(deployed.model_path, config, deployed.contract, prefix_chats=chats)
        try:
            self.backend.load()
        except LlamaCrash as exc:
            raise TargetUnavailable(str(exc)) from exc
        # The backend is asyncio-native (as in the server): it runs on a private event loop thread.
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, name="bench-inprocess-loop", daemon=True).start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.loop is not None:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.loop = None
        if self.backend is not None:
            self.backend.close()
            self.backend = None

    def stream(self, prompt: str, max_tokens: int | None = None) -> Iterator[Delta]:
        from serve.backends import Job

        s, messages = self.workload.deployed.sampling, self.workload.deployed.chat(prompt)
        job = Job(request_id="bench", messages=messages, remote_messages=messages, max_tokens=max_tokens or s.max_tokens, temperature=s.temperature,
                  top_p=s.top_p, top_k=s.top_k, repeat_penalty=s.repeat_penalty, stop=list(s.stop),
                  grammar=self.workload.deployed.grammar, prompt_tokens=self.backend.tokenize_chat(messages))
        pieces: queue.Queue[str | None] = queue.Queue()
        done = asyncio.run_coroutine_threadsafe(self.backend.generate(job, pieces.put), self.loop)
        done.add_done_callback(lambda _: pieces.put(None))
        while (text := pieces.get()) is not None:
            yield Delta(text)
        result = done.result()
        if result.finish == "error":
            raise RuntimeError(result.error)
        yield Delta("", 0, _engine_timings(result))


# --------------------------------------------------------------------------------- OpenAI-compatible HTTP
class OpenAITarget(contextlib.AbstractContextManager):
    """An OpenAI-compatible chat endpoint driven with the official ``openai`` client, streaming for TTFT."""

    def __init__(self, name: str, workload: Workload, base_url: str, model: str, api_key: str,
                 timeout_s: float, llama_extras: bool):
        import openai

        self.name, self.workload, self.model, self.endpoint = name, workload, model, base_url
        self.note = ""
        self.client = openai.OpenAI(base_url=base_url, api_key=api_key, timeout=timeout_s, max_retries=0)
        s = workload.deployed.sampling
        # llama.cpp's server takes the sampling knobs OpenAI's API lacks (and the grammar) in the request body.
        self.extra_body = ({"top_k": s.top_k, "repeat_penalty": s.repeat_penalty,
                            **({"grammar": workload.deployed.grammar} if workload.deployed.grammar else {})}
                           if llama_extras else None)

    def __exit__(self, *exc_info: object) -> None:
        self.client.close()

    def stream(self, prompt: str, max_tokens: int | None = None) -> Iterator[Delta]:
        s = self.workload.deployed.sampling
        chunks = self.client.chat.completions.create(
            model=self.model, messages=self.workload.deployed.chat(prompt), stream=True, temperature=s.temperature,
            top_p=s.top_p, max_tokens=max_tokens or s.max_tokens, stop=s.stop or None, extra_body=self.extra_body,
        )
        with contextlib.closing(chunks):
            for chunk in chunks:
                if chunk.choices:
                    yield Delta(chunk.choices[0].delta.content or "")


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


@contextlib.contextmanager
def llama_cpp_server(workload: Workload, *, n_ctx: int, n_threads: int, log_dir: Path,
                     startup_timeout_s: float, request_timeout_s: float) -> Iterator[OpenAITarget]:
    """``python -m llama_cpp.server`` on a free loopback port with the same GGUF, context and threads."""
    port = free_port()
    argv = [sys.executable, "-m", "llama_cpp.server", "--model", str(workload.deployed.model_path),
            "--host", "127.0.0.1", "--port", str(port), "--n_ctx", str(n_ctx), "--n_threads", str(n_threads), "--model_alias", "bench",
            # By default a new request interrupts the one streaming; queue them instead, like any real server.
            "--interrupt_requests", "False"]
    base = f"http://127.0.0.1:{port}/v1"
    with ServerProcess("llama_cpp.server", argv, log_dir / "llama_cpp_server.log",
                       lambda: _http_ok(f"{base}/models"), startup_timeout_s):
        with OpenAITarget("llama_cpp_server", workload, base, "bench", "none", request_timeout_s,
                          llama_extras=True) as target:
            if workload.deployed.grammar:
                target.note = ("decodes with llama.cpp's own grammar sampler (whole vocabulary each step); "
                               "`--set grammar=false` compares the engines unconstrained")
            yield target


@contextlib.contextmanager
def llama_server(workload: Workload, *, n_ctx: int, n_threads: int, parallel: int, log_dir: Path,
                 startup_timeout_s: float, request_timeout_s: float) -> Iterator[OpenAITarget]:
    """llama.cpp's own C++ ``llama-server`` (built by ``make llama-server`` from the same llama.cpp source the
    edgetune server links) with the same GGUF, threads and per-sequence context, ``parallel`` slots decoding with
    continuous batching, the grammar in each request's GBNF ``grammar`` field."""
    from bench import peer

    binary = peer.binary()
    if binary is None:
        raise TargetUnavailable(f"not built: run `make llama-server` once (builds llama.cpp's server from the "
                                f"llama-cpp-python {peer.llama_cpp_version()} sdist into {peer.build_dir()})")
    port = free_port()
    argv = [str(binary), "--model", str(workload.deployed.model_path), "--host", "127.0.0.1", "--port", str(port),
            "--ctx-size", str(n_ctx * parallel), "--parallel", str(parallel), "--cont-batching",
            "--threads", str(n_threads), "--threads-batch", str(n_threads), "--alias", "bench", "--no-webui"]
    base = f"http://127.0.0.1:{port}"
    with ServerProcess("llama-server", argv, log_dir / "llama_server.log", lambda: _http_ok(f"{base}/health"),
                       startup_timeout_s):
        with OpenAITarget("llama_server", workload, f"{base}/v1", "bench", "none", request_timeout_s,
                          llama_extras=True) as target:
            target.slots = parallel
            target.note = f"{binary} (-np {parallel}, continuous batching)"
            yield target


def fine_tuned_model(run_root: Path) -> tuple[FineTuneRecord, Endpoint]:
    """The run's OpenAI fine-tune (edgetune.artifacts.read_openai_ft) and its endpoint (edgetune.endpoint);
    TargetUnavailable saying what is missing."""
    run_dir = RunDir(run_root)
    record = read_openai_ft(run_dir)
    if record is None:
        raise TargetUnavailable(f"not configured: no {openai_ft_path(run_dir)} (run `make openai-ft` to fine-tune one)")
    if not record.model:
        raise TargetUnavailable(f"not ready: {openai_ft_path(run_dir)} has no fine-tuned 'model' (job status "
                                f"{record.status!r})")
    try:
        return record, endpoint.resolve(record.base_url or "")
    except ConfigError as exc:
        raise TargetUnavailable(f"not configured: {exc.problem}") from None


def remote_target(run_root: Path, workload: Workload, request_timeout_s: float) -> OpenAITarget:
    """The OpenAI fine-tuned fallback (the run's OpenAI fine-tune); unavailable without it or an API key."""
    record, api = fine_tuned_model(run_root)
    return OpenAITarget("remote", workload, api.base_url, record.model, api.api_key, request_timeout_s,
                        llama_extras=False)


# ------------------------------------------------------------------------------------------ edgetune gRPC
class GrpcTarget:
    """The edgetune server through serve.client over one shared channel; the local backend, the same chat
    messages and sampling as every other engine (messages, not a bare command: no server-side few-shot turns)."""

    name = "edgetune"

    def __init__(self, client: Any, workload: Workload, endpoint: str, timeout_s: float):
        self.client, self.workload, self.endpoint, self.timeout_s = client, workload, endpoint, timeout_s
        self.info = _model_info(client)
        self.slots = int(self.info.get("contexts", 1))  #: llama.cpp contexts: requests the server decodes at once

    def stream(self, prompt: str, max_tokens: int | None = None) -> Iterator[Delta]:
        s = self.workload.deployed.sampling
        stream = self.client.stream(
            messages=self.workload.deployed.chat(prompt), backend="local",
            constraint="contract" if self.workload.deployed.grammar else "none", max_tokens=max_tokens or s.max_tokens,
            temperature=s.temperature, top_p=s.top_p, top_k=s.top_k, repeat_penalty=s.repeat_penalty, stop=s.stop,
            timeout=self.timeout_s,
        )
        for chunk in stream:
            yield Delta(chunk.text)
        if stream.answer is None:
            raise RuntimeError("the stream ended without its final message")
        if stream.answer.finish_reason == "error":
            raise RuntimeError(stream.answer.error)
        yield Delta("", 0, _engine_timings(stream.answer.timings))


def _model_info(client: Any) -> dict[str, Any]:
    from google.protobuf.json_format import MessageToDict

    return MessageToDict(client.model_info(), preserving_proto_field_name=True)


@contextlib.contextmanager
def edgetune_target(config: Any, workload: Workload, run_dir: Any, n_threads: int) -> Iterator[GrpcTarget]:
    """The edgetune gRPC server: ``config.target`` when given, else ``python -m serve`` started on a free port
    with the same GGUF, context size and threads as the baselines and one llama.cpp context per worker."""
    from serve.client import Client

    if config.target:
        with Client(config.target, token=config.token or None, timeout=config.request_timeout_s) as client:
            try:
                client.wait_ready(config.startup_timeout_s)
            except TimeoutError as exc:
                raise TargetUnavailable(f"{config.target}: {exc}") from exc
            yield GrpcTarget(client, workload, config.target, config.request_timeout_s)
        return

    port = free_port()
    argv = [sys.executable, "-m", "serve", "--run", config.run, "--host", "127.0.0.1", "--port", str(port),
            "--model", str(workload.deployed.model_path), "--contexts", str(max(config.levels())),
            "--threads", str(n_threads), "--n-ctx", str(config.n_ctx), "--backend", "local", "--log-level", "warning"]
    if workload.deployed.source == "embedded":
        argv += ["--task", workload.deployed.task.name]
    endpoint = f"127.0.0.1:{port}"
    with Client(endpoint, timeout=config.request_timeout_s) as client:
        with edge_server_process(client, argv, run_dir, run_dir.bench / "logs" / "edgetune_server.log",
                                 config.startup_timeout_s):
            yield GrpcTarget(client, workload, endpoint, config.request_timeout_s)


def edge_server_process(client: Any, argv: list[str], run_dir: Any, log_path: Path,
                        timeout_s: float) -> ServerProcess:
    """``python -m serve`` (``argv``) as a ServerProcess that is ready once ``client`` sees health SERVING; it finds
    the run under ``run_dir``'s runs directory."""
    import grpc

    def serving() -> bool:
        try:
            return client.health() == "SERVING"
        except grpc.RpcError:
            return False

    return ServerProcess("edgetune server", [*argv, "--runs-dir", str(run_dir.root.parent)], log_path, serving,
                         timeout_s)
