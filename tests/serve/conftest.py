"""Fixtures for the server tests: the real server (``python -m serve``) on a loopback port with the embedded GGUF,
and a real OpenAI-compatible server (``python -m llama_cpp.server``) on loopback as its remote backend.

One server process is shared by most tests (the slow part is starting it); tests that need other flags start
their own. The gRPC stubs are generated here when a fresh clone has none (the same protoc command as `make proto`).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "test-token"


def ensure_stubs() -> None:
    """Generate edgetune/v1/*_pb2*.py when missing: the Makefile's protoc command."""
    if (ROOT / "edgetune" / "v1" / "inference_pb2_grpc.py").is_file():
        return
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    protos = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "proto" / "edgetune" / "v1").glob("*.proto"))
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", "-I", "proto", "--python_out=.", "--grpc_python_out=.",
                    "--mypy_out=.", "--mypy_grpc_out=.", *protos], cwd=ROOT, env=env, check=True)


# Test modules import serve.client (and so the stubs) when they are collected, before any fixture runs.
ensure_stubs()


@pytest.fixture(scope="session")
def proto_stubs() -> Path:
    ensure_stubs()
    return ROOT / "edgetune" / "v1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Proc:
    """A server subprocess with its port and log file."""

    popen: subprocess.Popen
    port: int
    log: Path
    metrics_port: int = 0

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def rss_bytes(self) -> int:
        for line in Path(f"/proc/{self.popen.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError("no VmRSS")

    def stop(self, timeout: float = 20.0) -> int:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                return self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
        return self.popen.wait()


def start(args: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    out = open(log, "wb")
    return subprocess.Popen(["nice", "-n", "10", sys.executable, *args], cwd=ROOT, stdout=out,
                            stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})


def wait_http(url: str, proc: subprocess.Popen, log: Path, timeout: float = 120.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            urllib.request.urlopen(url, timeout=1).read()
            return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer in {timeout} s:\n{log.read_text()[-3000:]}")


def start_edge(tmp: Path, *flags: str, env: dict[str, str] | None = None, metrics: bool = True,
               **client_kwargs) -> Proc:
    """``python -m serve`` on a free loopback port, waited on (with a Client(**client_kwargs)) until SERVING."""
    from serve.client import Client

    port = free_port()
    metrics_port = free_port() if metrics else 0
    log = tmp / f"serve-{port}.log"
    argv = ["-m", "serve", "--run", "test-serve-none", "--port", str(port), "--threads", "1", *flags]
    if metrics_port:
        argv += ["--metrics-port", str(metrics_port)]
    popen = start(argv, log, {"EDGETUNE_RUNS": str(tmp / "runs"), **(env or {})})
    proc = Proc(popen, port, log, metrics_port)
    with Client(proc.target, timeout=2.0, **client_kwargs) as client:
        end = time.monotonic() + 120
        while True:
            if popen.poll() is not None:
                raise RuntimeError(f"server exited with {popen.returncode}:\n{log.read_text()[-3000:]}")
            try:
                client.wait_ready(timeout=0.5)
                return proc
            except TimeoutError:
                if time.monotonic() > end:
                    proc.stop()
                    raise


@pytest.fixture(scope="session")
def remote_server(tmp_path_factory, embedded_gguf_path):
    """llama-cpp-python's OpenAI-compatible HTTP server on loopback: the remote backend."""
    tmp = tmp_path_factory.mktemp("remote")
    port = free_port()
    log = tmp / "llama_cpp_server.log"
    popen = start(["-m", "llama_cpp.server", "--model", str(embedded_gguf_path), "--model_alias", "smol-remote",
                   "--host", "127.0.0.1", "--port", str(port), "--n_threads", "1", "--n_ctx", "2048"], log)
    proc = Proc(popen, port, log)
    try:
        wait_http(f"http://127.0.0.1:{port}/v1/models", popen, log)
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="session")
def edge(tmp_path_factory, remote_server):
    """The shared server: 4 sequences decoding at once, a queue of 2, a token, metrics, custom grammars on, the
    llama.cpp server as remote backend."""
    tmp = tmp_path_factory.mktemp("edge")
    proc = start_edge(
        tmp, "--contexts", "4", "--queue", "2", "--token", TOKEN, "--backend", "local",
        "--remote-model", "smol-remote", "--remote-base-url", f"http://127.0.0.1:{remote_server.port}/v1",
        "--max-message-chars", "4000", "--max-request-bytes", "65536", "--max-tokens-limit", "1024",
        "--local-timeout-ms", "20000", "--custom-grammars",
    )
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture()
def client(edge):
    from serve.client import Client

    with Client(edge.target, TOKEN, timeout=60.0) as c:
        yield c
