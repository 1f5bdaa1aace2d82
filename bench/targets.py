"""The engines a bench drives, all with the same GGUF and settings: the edgetune gRPC server, llama-cpp-python
in process, llama-cpp-python's OpenAI-compatible HTTP server, and the remote OpenAI fine-tuned model.

Each target is a context manager (it starts and stops what it needs) with ``stream(prompt) -> Iterator[Delta]``.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Callable, Iterator

from bench.loadgen import Delta
from bench.workload import Workload


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
                raise TargetUnavailable(f"{self.name} exited with {self.proc.returncode} while starting: "
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


# ---------------------------------------------------------------------------------------------- in-process
class InProcessTarget(contextlib.AbstractContextManager):
    """llama-cpp-python in this process: the floor any server adds overhead to. One request at a time."""

    name = "inprocess"
    max_concurrency = 1

    def __init__(self, workload: Workload, n_ctx: int, n_threads: int):
        self.workload, self.n_ctx, self.n_threads = workload, n_ctx, n_threads
        self.llm: Any = None
        self.endpoint = "in process"

    def __enter__(self) -> "InProcessTarget":
        import llama_cpp

        self.llm = llama_cpp.Llama(str(self.workload.model_path), n_ctx=self.n_ctx, n_threads=self.n_threads,
                                   verbose=False)
        self._grammar = (llama_cpp.LlamaGrammar.from_string(self.workload.grammar, verbose=False)
                         if self.workload.grammar else None)
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.llm is not None:
            self.llm.close()
            self.llm = None

    def stream(self, prompt: str) -> Iterator[Delta]:
        s = self.workload.sampling
        chunks = self.llm.create_chat_completion(
            self.workload.messages(prompt), stream=True, grammar=self._grammar, temperature=s.temperature,
            top_p=s.top_p, top_k=s.top_k, max_tokens=s.max_tokens, repeat_penalty=s.repeat_penalty,
            stop=s.stop or None,
        )
        for chunk in chunks:
            yield Delta(chunk["choices"][0]["delta"].get("content") or "")


# --------------------------------------------------------------------------------- OpenAI-compatible HTTP
class OpenAITarget(contextlib.AbstractContextManager):
    """An OpenAI-compatible chat endpoint driven with the official ``openai`` client, streaming for TTFT."""

    def __init__(self, name: str, workload: Workload, base_url: str, model: str, api_key: str,
                 timeout_s: float, llama_extras: bool):
        import openai

        self.name, self.workload, self.model, self.endpoint = name, workload, model, base_url
        self.client = openai.OpenAI(base_url=base_url, api_key=api_key, timeout=timeout_s, max_retries=0)
        s = workload.sampling
        # llama.cpp's server takes the sampling knobs OpenAI's API lacks (and the grammar) in the request body.
        self.extra_body = ({"top_k": s.top_k, "repeat_penalty": s.repeat_penalty,
                            **({"grammar": workload.grammar} if workload.grammar else {})}
                           if llama_extras else None)

    def __exit__(self, *exc_info: object) -> None:
        self.client.close()

    def stream(self, prompt: str) -> Iterator[Delta]:
        s = self.workload.sampling
        chunks = self.client.chat.completions.create(
            model=self.model, messages=self.workload.messages(prompt), stream=True, temperature=s.temperature,
            top_p=s.top_p, max_tokens=s.max_tokens, stop=s.stop or None, extra_body=self.extra_body,
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
    argv = [sys.executable, "-m", "llama_cpp.server", "--model", str(workload.model_path), "--host", "127.0.0.1",
            "--port", str(port), "--n_ctx", str(n_ctx), "--n_threads", str(n_threads), "--model_alias", "bench",
            # By default a new request interrupts the one streaming; queue them instead, like any real server.
            "--interrupt_requests", "False"]
    base = f"http://127.0.0.1:{port}/v1"
    with ServerProcess("llama_cpp.server", argv, log_dir / "llama_cpp_server.log",
                       lambda: _http_ok(f"{base}/models"), startup_timeout_s):
        with OpenAITarget("llama_cpp_server", workload, base, "bench", "none", request_timeout_s,
                          llama_extras=True) as target:
            yield target


def remote_target(run_root: Path, workload: Workload, request_timeout_s: float) -> OpenAITarget:
    """The OpenAI fine-tuned fallback from runs/RUN/openai_ft.json; unavailable without it or an API key."""
    path = run_root / "openai_ft.json"
    if not path.is_file():
        raise TargetUnavailable(f"not configured: no {path} (run `make openai-ft` to create the fallback model)")
    info = json.loads(path.read_text(encoding="utf-8"))
    if not info.get("model"):
        raise TargetUnavailable(f"not configured: {path} has no 'model'")
    api_key = os.environ.get("OPENAI_API_KEY")
    if not api_key:
        raise TargetUnavailable("not configured: OPENAI_API_KEY is not set")
    base_url = info.get("base_url") or "https://api.openai.com/v1"
    return OpenAITarget("remote", workload, base_url, info["model"], api_key, request_timeout_s, llama_extras=False)


# ------------------------------------------------------------------------------------------ edgetune gRPC
@contextlib.contextmanager
def edgetune_target(config, workload: Workload, log_dir: Path, n_threads: int) -> Iterator[Any]:
    """The edgetune gRPC server: ``config.target`` when given, else ``python -m serve`` started on a free port."""
    try:
        import serve.client  # noqa: F401
    except ImportError as exc:
        raise TargetUnavailable(f"the serve package has no client yet ({exc})") from exc
    raise TargetUnavailable("not wired yet")
    yield
