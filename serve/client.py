"""Client library and CLI for the edge server (what a robot, a test or a benchmark uses).

    python -m serve.client "go to the kitchen"                    # streams tokens, then the calls and the verdict
    python -m serve.client "go to the kitchen" --no-stream --backend compare --target robot:50051 --token s3cret

    from serve.client import Client
    with Client("127.0.0.1:50051") as client:
        answer = client.generate("go to the kitchen", max_tokens=64)
        answer.valid, answer.calls, answer.timings.ttft_ms
        stream = client.stream("stand up and wave")
        for chunk in stream:
            print(chunk.text, end="")
        stream.answer.verdict_line()

Exit status of the CLI: 0 valid answer, 1 answer that fails the contract, 2 the RPC failed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import grpc

from serve.proto import BACKEND_NAMES, BACKENDS, CONSTRAINTS, FINISH_NAMES, pb, pb_grpc


@dataclass
class Timings:
    """Server-side timings (ms from when the server received the request) plus the client's own."""

    queue_ms: float = 0.0
    ttft_ms: float = 0.0
    decode_ms: float = 0.0
    total_ms: float = 0.0
    tokens_per_second: float = 0.0
    client_ttft_ms: float = 0.0  #: first streamed chunk seen by the client (streams only)
    client_total_ms: float = 0.0  #: the whole call as the client saw it


@dataclass
class Answer:
    """One backend's answer, typed."""

    text: str
    finish_reason: str  #: stop, length, cancelled, deadline_exceeded or error
    backend: str  #: local or remote
    model: str
    valid: bool
    calls: list[str]
    violations: list[str]
    prompt_tokens: int
    completion_tokens: int
    timings: Timings
    error: str = ""
    forced_close: bool = False
    request_id: str = ""
    fallback_reason: str = ""
    alternatives: list["Answer"] = field(default_factory=list)  #: compare: remote's; auto: the rejected local

    @classmethod
    def from_completion(cls, c: pb.Completion) -> "Answer":
        t = c.timings
        return cls(
            text=c.text, finish_reason=FINISH_NAMES.get(c.finish_reason, "unspecified"),
            backend=BACKEND_NAMES.get(c.backend, "unspecified"), model=c.model, valid=c.verdict.valid,
            calls=list(c.verdict.calls), violations=[f"[{v.code}] {v.message}" for v in c.verdict.violations],
            prompt_tokens=c.usage.prompt_tokens, completion_tokens=c.usage.completion_tokens,
            timings=Timings(t.queue_ms, t.ttft_ms, t.decode_ms, t.total_ms, t.tokens_per_second),
            error=c.error, forced_close=c.forced_close,
        )

    @classmethod
    def from_response(cls, response: pb.GenerateResponse) -> "Answer":
        answer = cls.from_completion(response.completion)
        answer.request_id = response.request_id
        answer.fallback_reason = response.fallback_reason
        answer.alternatives = [cls.from_completion(c) for c in response.alternatives]
        return answer

    def to_dict(self) -> dict:
        return asdict(self)

    def verdict_line(self) -> str:
        t = self.timings
        verdict = "VALID" if self.valid else "INVALID: " + "; ".join(self.violations)
        return (f"{self.backend} ({self.model}) {self.finish_reason}: {verdict} | {self.completion_tokens} tokens, "
                f"queue {t.queue_ms:.0f} ms, ttft {t.ttft_ms:.0f} ms, total {t.total_ms:.0f} ms")


@dataclass
class Chunk:
    text: str
    backend: str
    restart: bool = False  #: auto fell back to remote: discard the text received so far


def build_request(command: str | None = None, *, messages: Sequence[dict[str, str]] | None = None,
                  backend: str = "default", constraint: str = "default", grammar: str | None = None,
                  json_schema: str | None = None, max_tokens: int | None = None, temperature: float | None = None,
                  top_p: float | None = None, top_k: int | None = None, seed: int | None = None,
                  stop: Sequence[str] = (), repeat_penalty: float | None = None, request_id: str = "",
                  local_timeout_ms: int = 0) -> pb.GenerateRequest:
    """A GenerateRequest from keyword arguments (None: the server's default)."""
    if grammar is not None:
        constraint, value = "gbnf", grammar
    elif json_schema is not None:
        constraint, value = "json_schema", json_schema
    else:
        value = ""
    sampling = pb.Sampling(stop=list(stop))
    for name, val in (("max_tokens", max_tokens), ("temperature", temperature), ("top_p", top_p), ("top_k", top_k),
                      ("seed", seed), ("repeat_penalty", repeat_penalty)):
        if val is not None:
            setattr(sampling, name, val)
    return pb.GenerateRequest(
        request_id=request_id, command=command or "",
        messages=[pb.ChatMessage(role=m["role"], content=m["content"]) for m in messages or ()],
        sampling=sampling, constraint=pb.Constraint(kind=CONSTRAINTS[constraint], value=value),
        backend=0 if backend == "default" else BACKENDS[backend], local_timeout_ms=local_timeout_ms,
    )


class Stream:
    """Iterate for :class:`Chunk`s; afterwards ``answer`` holds the final :class:`Answer`. ``cancel()`` stops it."""

    def __init__(self, call, started: float):
        self._call = call
        self._started = started
        self.answer: Answer | None = None

    def __iter__(self) -> Iterator[Chunk]:
        first = None
        for message in self._call:
            if message.HasField("chunk"):
                first = first or time.monotonic()
                c = message.chunk
                yield Chunk(c.text, BACKEND_NAMES.get(c.backend, "unspecified"), c.restart)
            else:
                self.answer = Answer.from_response(message.final)
                self.answer.timings.client_total_ms = (time.monotonic() - self._started) * 1000.0
                self.answer.timings.client_ttft_ms = ((first or time.monotonic()) - self._started) * 1000.0

    def cancel(self) -> None:
        self._call.cancel()


class Client:
    """A blocking client. ``timeout`` (seconds) is the default deadline of every call."""

    def __init__(self, target: str = "127.0.0.1:50051", token: str | None = None, *, timeout: float | None = 60.0,
                 tls_ca: str | None = None, tls_cert: str | None = None, tls_key: str | None = None,
                 tls_server_name: str | None = None):
        self.timeout = timeout
        self._metadata = (("authorization", f"Bearer {token}"),) if token else ()
        if tls_ca or tls_cert:
            creds = grpc.ssl_channel_credentials(
                root_certificates=Path(tls_ca).read_bytes() if tls_ca else None,
                private_key=Path(tls_key).read_bytes() if tls_key else None,
                certificate_chain=Path(tls_cert).read_bytes() if tls_cert else None,
            )
            options = [("grpc.ssl_target_name_override", tls_server_name)] if tls_server_name else []
            self.channel = grpc.secure_channel(target, creds, options=options)
        else:
            self.channel = grpc.insecure_channel(target)
        self.stub = pb_grpc.InferenceStub(self.channel)

    def generate(self, command: str | None = None, *, timeout: float | None = None, **kwargs) -> Answer:
        """One unary call; keyword arguments as in :func:`build_request`. Raises grpc.RpcError on failure."""
        started = time.monotonic()
        response = self.stub.Generate(build_request(command, **kwargs), timeout=timeout or self.timeout,
                                      metadata=self._metadata)
        answer = Answer.from_response(response)
        answer.timings.client_total_ms = (time.monotonic() - started) * 1000.0
        return answer

    def stream(self, command: str | None = None, *, timeout: float | None = None, **kwargs) -> Stream:
        """A streaming call; iterate the returned :class:`Stream`."""
        started = time.monotonic()
        call = self.stub.GenerateStream(build_request(command, **kwargs), timeout=timeout or self.timeout,
                                        metadata=self._metadata)
        return Stream(call, started)

    def model_info(self) -> pb.ModelInfo:
        return self.stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=self.timeout, metadata=self._metadata)

    def health(self, service: str = "") -> str:
        """SERVING, NOT_SERVING, ... of grpc.health.v1 for ``service`` ("" is the whole server)."""
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        response = health_pb2_grpc.HealthStub(self.channel).Check(health_pb2.HealthCheckRequest(service=service),
                                                                  timeout=self.timeout)
        return health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Block until health is SERVING (the model is loaded) or raise TimeoutError."""
        end = time.monotonic() + timeout
        while True:
            try:
                if self.health() == "SERVING":
                    return
            except grpc.RpcError:
                pass  # not listening yet
            if time.monotonic() > end:
                raise TimeoutError(f"the server was not SERVING within {timeout:.0f} s")
            time.sleep(0.1)

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _print_answer(answer: Answer, out) -> None:
    print(answer.verdict_line(), file=out)
    for i, call in enumerate(answer.calls, 1):
        print(f"  {i}. {call}", file=out)
    if answer.fallback_reason:
        print(f"  fallback: {answer.fallback_reason}", file=out)
    for alt in answer.alternatives:
        print(f"  also {alt.backend}: {alt.text!r}", file=out)
        print("    " + alt.verdict_line(), file=out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m serve.client", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", help="what the robot should do, e.g. 'go to the kitchen'")
    parser.add_argument("--target", default="127.0.0.1:50051", help="server host:port (default: %(default)s)")
    parser.add_argument("--no-stream", action="store_true", help="one unary call instead of streaming tokens")
    parser.add_argument("--backend", default="default", choices=["default", *BACKENDS],
                        help="local, remote, auto (local, remote on failure) or compare (both)")
    parser.add_argument("--constraint", default="default", choices=["default", "none", "contract"],
                        help="decode with the task's contract grammar (default) or unconstrained")
    parser.add_argument("--grammar-file", help="constrain with this GBNF grammar instead")
    parser.add_argument("--max-tokens", type=int, help="answer length limit (default: the bundle's)")
    parser.add_argument("--temperature", type=float, help="sampling temperature (default: the bundle's)")
    parser.add_argument("--timeout", type=float, default=60.0, help="deadline in seconds (default: %(default)s)")
    parser.add_argument("--token", help="bearer token (default: $EDGETUNE_TOKEN)")
    parser.add_argument("--tls-ca", help="PEM CA to verify the server (enables TLS)")
    parser.add_argument("--tls-cert", help="PEM client certificate (mTLS)")
    parser.add_argument("--tls-key", help="PEM client key (mTLS)")
    parser.add_argument("--json", action="store_true", help="print the final answer as JSON")
    args = parser.parse_args(argv)

    import os

    kwargs = dict(backend=args.backend, constraint=args.constraint, max_tokens=args.max_tokens,
                  temperature=args.temperature)
    if args.grammar_file:
        kwargs["grammar"] = Path(args.grammar_file).read_text(encoding="utf-8")
    client = Client(args.target, args.token or os.environ.get("EDGETUNE_TOKEN"), timeout=args.timeout,
                    tls_ca=args.tls_ca, tls_cert=args.tls_cert, tls_key=args.tls_key)
    try:
        if args.no_stream:
            answer = client.generate(args.command, **kwargs)
            if not args.json:
                print(answer.text)
        else:
            stream = client.stream(args.command, **kwargs)
            for chunk in stream:
                if chunk.restart:
                    print(f"\n[{chunk.backend} answers instead]", flush=True)
                elif not args.json:
                    print(chunk.text, end="", flush=True)
            if not args.json:
                print()
            assert stream.answer is not None, "the stream ended without its final message"
            answer = stream.answer
    except grpc.RpcError as exc:
        print(f"error: {exc.code().name}: {exc.details()}", file=sys.stderr)
        return 2
    finally:
        client.close()
    if args.json:
        print(json.dumps(answer.to_dict(), indent=2))
    else:
        _print_answer(answer, sys.stdout)
    return 0 if answer.valid else 1


if __name__ == "__main__":
    sys.exit(main())
