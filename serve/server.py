"""The gRPC edge server: ``edgetune.v1.Inference`` + ``grpc.health.v1.Health`` + reflection on one grpc.aio server.

    python -m serve --run default --port 50051            # or: make serve
    serve.server.serve(ServeConfig(port=50051))           # the same, from Python

Requests are validated at the boundary (INVALID_ARGUMENT names the field), routed to llama.cpp (local), the
OpenAI-compatible endpoint (remote), local-then-remote (auto) or both (compare), and answered with the contract's
verdict on the text. Health reports NOT_SERVING until the model is loaded and again while draining on SIGTERM.
"""

from __future__ import annotations

import asyncio
import logging
import re
import signal
import time
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Callable

import grpc
from google.protobuf.message import DecodeError
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

import edgetune
from edgetune.contract import Verdict
from edgetune.deployed import Deployed
from serve import logs
from serve.auth import BearerTokenInterceptor, read_token, server_credentials
from serve.backends import (GrammarFailed, Job, LocalBackend, PoolFull, QueueTimeout, RemoteBackend, RemoteUnavailable,
                            Result)
from serve.config import ServeConfig
from serve.metrics import Metrics
from serve.proto import BACKEND_NAMES, BACKENDS, FINISH, pb, pb_grpc
from serve.requests import MAX_REQUEST_ID, InvalidRequest, prepare
from serve.source import resolve
from serve.threads import prefer_passive_waits

log = logging.getLogger("serve")
SERVICE = pb.DESCRIPTOR.services_by_name["Inference"].full_name
_SURROGATE = re.compile("[\ud800-\udfff]")
#: a cancel this close to the deadline is the deadline: the client's clock starts before the server's copy does
DEADLINE_SLACK_S = 0.25


def _utf8(text: str) -> str:
    """``text`` as protobuf can carry it: a lone surrogate (a remote model's JSON can hold one) becomes U+FFFD."""
    return _SURROGATE.sub("\ufffd", text)


class Undecodable:
    """What arrives instead of a request whose bytes do not parse (corrupt protobuf, a string that is not UTF-8)."""

    request_id = ""

    def __init__(self, message: str, problem: str):
        self.message, self.problem = message, problem

    def invalid(self) -> InvalidRequest:
        return InvalidRequest("request", f"is not a valid {self.message} ({self.problem}): send a serialized "
                                         f"{self.message} whose string fields are UTF-8")


def _lenient(message_type: Any) -> Callable[[bytes], Any]:
    """A request deserializer that hands a parse failure to the servicer (as :class:`Undecodable`), which answers
    INVALID_ARGUMENT, logs and counts it; grpc's own would answer UNKNOWN with a Python class name, unlogged."""
    def parse(data: bytes) -> Any:
        try:
            return message_type.FromString(data)
        except DecodeError as exc:
            return Undecodable(message_type.DESCRIPTOR.full_name, str(exc) or "does not parse")
    return parse


def add_inference_service(servicer: "InferenceService", server: grpc.aio.Server) -> None:
    """``pb_grpc.add_InferenceServicer_to_server`` with :func:`_lenient` request deserializers."""
    handlers = {}
    for method in pb.DESCRIPTOR.services_by_name["Inference"].methods:
        make = grpc.unary_stream_rpc_method_handler if method.server_streaming else grpc.unary_unary_rpc_method_handler
        handlers[method.name] = make(getattr(servicer, method.name),
                                     request_deserializer=_lenient(getattr(pb, method.input_type.name)),
                                     response_serializer=getattr(pb, method.output_type.name).SerializeToString)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    server.add_registered_method_handlers(SERVICE, handlers)


class Failure(Exception):
    """Ends an RPC with ``code`` and ``details``."""

    def __init__(self, code: grpc.StatusCode, details: str):
        self.code = code
        super().__init__(details)


@dataclass
class Routed:
    """What routing produced: the answer, the other backends' answers, and why remote answered (auto)."""

    answer: Result
    alternatives: list[Result] = field(default_factory=list)
    fallback_reason: str = ""


class Engine:
    """The backends and the routing between them."""

    def __init__(self, config: ServeConfig, served: Deployed, metrics: Metrics):
        self.config = config
        self.served = served
        self.metrics = metrics
        # two chats that differ only in the command: the engine decodes what they share once
        self.local = LocalBackend.from_config(served.model_path, config, served.contract,
                                              prefix_chats=[served.chat("a"), served.chat("b")])
        self.remote: RemoteBackend | None = None
        self.remote_problem = "no remote model: pass --remote-model (and --remote-base-url) or run `make openai-ft`"
        if served.remote_model:
            try:
                self.remote = RemoteBackend(served.remote_model, served.remote_base_url, config.remote_timeout_s)
            except RemoteUnavailable as exc:
                self.remote_problem = str(exc)
        self.ready = False

    @property
    def default_backend(self) -> str:
        return self.config.backend or ("auto" if self.remote else "local")

    async def load(self) -> None:
        await asyncio.to_thread(self.local.load)
        pool = self.local.pool
        assert pool is not None
        self.metrics.track_pool(lambda: pool.waiting, lambda: pool.busy)
        self.ready = True

    def verdict(self, text: str) -> Verdict:
        return self.served.contract.validate(text)

    def _remote(self) -> RemoteBackend:
        if self.remote is None:
            raise Failure(grpc.StatusCode.FAILED_PRECONDITION, f"backend: {self.remote_problem}")
        return self.remote

    async def route(self, job: Job, backend: str, emit: Callable[[str, str, bool], None],
                    local_timeout_ms: int) -> Routed:
        """Answer ``job`` on ``backend``; ``emit(text, backend, restart)`` receives streamed text."""
        if backend == "remote":
            return Routed(await self._remote().generate(job, lambda t: emit(t, "remote", False)))
        if backend == "local":
            return Routed(await self._local_or_fail(job, lambda t: emit(t, "local", False)))
        if backend == "compare":
            return await self._compare(job, emit)
        return await self._auto(job, emit, local_timeout_ms)

    async def _local_or_fail(self, job: Job, emit: Callable[[str], None]) -> Result:
        try:
            result = await self.local.generate(job, emit)
        except PoolFull as exc:
            raise Failure(grpc.StatusCode.RESOURCE_EXHAUSTED, f"server busy: {exc}; retry later") from None
        except QueueTimeout as exc:
            raise Failure(grpc.StatusCode.DEADLINE_EXCEEDED, str(exc)) from None
        if result.finish == "error":
            raise Failure(grpc.StatusCode.INTERNAL, f"local backend failed: {result.error}")
        return result

    async def _auto(self, job: Job, emit: Callable[[str, str, bool], None], local_timeout_ms: int) -> Routed:
        remote = self._remote()
        local_deadline = job.received + local_timeout_ms / 1000.0
        if job.deadline is not None:
            local_deadline = min(local_deadline, job.deadline)
        attempt: Result | None = None
        try:
            attempt = await self.local.generate(job, lambda t: emit(t, "local", False), deadline=local_deadline)
        except PoolFull as exc:
            reason = f"local busy: {exc}"
        except QueueTimeout:
            reason = f"local timeout: no context became free within {local_timeout_ms} ms"
        else:
            verdict = self.verdict(attempt.text)
            if attempt.finish == "deadline_exceeded":
                reason = f"local timeout: no answer within {local_timeout_ms} ms"
            elif attempt.finish == "error":
                reason = f"local error: {attempt.error}"
            elif not verdict.valid:
                reason = f"local answer failed the contract: {verdict.violations[0]}"
            else:
                return Routed(attempt)
        self.metrics.fallbacks.labels(reason.split(":")[0]).inc()
        emit("", "remote", True)
        answer = await remote.generate(job, lambda t: emit(t, "remote", False))
        return Routed(answer, [attempt] if attempt else [], reason)

    async def _compare(self, job: Job, emit: Callable[[str, str, bool], None]) -> Routed:
        remote = self._remote()
        local_run = self.local.generate(job, lambda t: emit(t, "local", False))
        local, other = await asyncio.gather(local_run, remote.generate(job), return_exceptions=True)
        if isinstance(local, (PoolFull, QueueTimeout)):
            local = Result("local", self.local.name, finish="error", error=str(local))
        for outcome in (local, other):
            if isinstance(outcome, BaseException):
                raise outcome
        return Routed(local, [other])

    async def close(self) -> None:
        self.local.close()
        if self.remote is not None:
            await self.remote.close()


def _completion(result: Result, verdict: Verdict) -> pb.Completion:
    return pb.Completion(
        text=_utf8(result.text),
        finish_reason=FINISH[result.finish],
        usage=pb.Usage(prompt_tokens=result.prompt_tokens, completion_tokens=result.completion_tokens),
        timings=pb.Timings(queue_ms=result.queue_ms, ttft_ms=result.ttft_ms, decode_ms=result.decode_ms,
                           total_ms=result.total_ms, tokens_per_second=result.tokens_per_second),
        backend=BACKENDS[result.backend],
        model=result.model,
        verdict=pb.Verdict(
            valid=verdict.valid,
            violations=[pb.Violation(code=v.code, message=_utf8(v.message), index=-1 if v.index is None else v.index,
                                     col=-1 if v.col is None else v.col) for v in verdict.violations],
            calls=[_utf8(call) for call in verdict.calls],
        ),
        error=_utf8(result.error),
        forced_close=result.forced_close,
    )


class InferenceService(pb_grpc.InferenceServicer):
    def __init__(self, engine: Engine):
        self.engine = engine
        self.metrics = engine.metrics
        self.draining = False  #: set on SIGTERM: new Generate calls get UNAVAILABLE
        self.in_flight = 0  #: Generate and GenerateStream calls not finished yet

    # ------------------------------------------------------------------------------------------------ RPCs
    async def Generate(self, request: pb.GenerateRequest, context: grpc.aio.ServicerContext) -> pb.GenerateResponse:
        received = time.monotonic()
        async with self._rpc("Generate", request, context) as facts:  # errors leave as status codes
            response = await self._generate(request, context, received, facts, lambda text, backend, restart: None)
        return response

    async def GenerateStream(self, request: pb.GenerateRequest,
                             context: grpc.aio.ServicerContext) -> AsyncIterator[pb.GenerateStreamResponse]:
        received = time.monotonic()
        chunks: asyncio.Queue[pb.GenerateStreamResponse | None] = asyncio.Queue()  # None: decoding ended

        def emit(text: str, backend: str, restart: bool) -> None:
            chunk = pb.TokenChunk(text=_utf8(text), backend=BACKENDS[backend], restart=restart)
            chunks.put_nowait(pb.GenerateStreamResponse(chunk=chunk))

        async with self._rpc("GenerateStream", request, context) as facts:
            work = asyncio.ensure_future(self._generate(request, context, received, facts, emit))
            # The end marker queues behind every chunk: the decode thread schedules its emits before its result.
            # One plain queue read per token (no futures raced per token) keeps the stream close to in-process.
            work.add_done_callback(lambda _: chunks.put_nowait(None))
            try:
                while (chunk := await chunks.get()) is not None:
                    yield chunk
                yield pb.GenerateStreamResponse(final=work.result())
            finally:
                if not work.done():
                    work.cancel()  # the client went away: stop decoding (the context is freed by its thread)

    async def GetModelInfo(self, request: pb.GetModelInfoRequest, context: grpc.aio.ServicerContext) -> pb.ModelInfo:
        if isinstance(request, Undecodable):
            async with self._rpc("GetModelInfo", request, context):
                raise request.invalid()
        engine, served, config = self.engine, self.engine.served, self.engine.config
        d, local = served.sampling, engine.local.engine
        self.metrics.rpc("GetModelInfo", "OK")
        return pb.ModelInfo(
            model_path=str(served.model_path), model_sha256=served.sha256, quant=served.quant, source=served.source,
            task=served.task.name, system_prompt=served.system_prompt,
            sampling=pb.Sampling(temperature=d.temperature, top_p=d.top_p, top_k=d.top_k, max_tokens=d.max_tokens,
                                 stop=d.stop, repeat_penalty=d.repeat_penalty),
            has_contract_grammar=served.grammar is not None, contexts=config.contexts, queue=config.queue,
            n_ctx=config.n_ctx, remote_model=engine.remote.model if engine.remote else "",
            remote_base_url=engine.remote.base_url if engine.remote else "",
            default_backend=BACKENDS[engine.default_backend], few_shot_examples=len(served.few_shot) // 2,
            max_tokens_limit=config.max_tokens_limit, version=edgetune.__version__,
            gpu_layers=local.offloaded_layers, model_layers=local.n_layers, device=local.backend,
            prefix_tokens=len(local.prefix),
        )

    # ----------------------------------------------------------------------------------------------- helpers
    async def _generate(self, request: pb.GenerateRequest, context: grpc.aio.ServicerContext, received: float,
                        facts: dict[str, Any], emit: Callable[[str, str, bool], None]) -> pb.GenerateResponse:
        engine = self.engine
        if isinstance(request, Undecodable):
            raise request.invalid()
        if self.draining:
            raise Failure(grpc.StatusCode.UNAVAILABLE, "the server is shutting down (health NOT_SERVING); retry on "
                                                       "another server or after it restarts")
        if not engine.ready:
            raise Failure(grpc.StatusCode.UNAVAILABLE, "the model is still loading; retry when health is SERVING")
        backend = BACKEND_NAMES.get(request.backend) or engine.default_backend
        if request.backend and request.backend not in BACKEND_NAMES:
            raise InvalidRequest("backend", f"unknown backend {request.backend}")
        remaining = context.time_remaining()
        deadline = None if remaining is None else received + remaining
        job = prepare(request, engine.served, engine.config, engine.local, backend != "remote", received, deadline)
        facts.update(request_id=job.request_id, backend=backend)
        routed = await engine.route(job, backend, emit, request.local_timeout_ms or engine.config.local_timeout_ms)
        if backend == "local" and routed.answer.finish == "deadline_exceeded":
            raise Failure(grpc.StatusCode.DEADLINE_EXCEEDED, "the deadline passed while decoding")
        if routed.answer.backend == "remote" and routed.answer.finish == "error" and backend != "compare":
            raise Failure(grpc.StatusCode.UNAVAILABLE, f"remote backend failed: {routed.answer.error}")
        response = pb.GenerateResponse(request_id=job.request_id, fallback_reason=routed.fallback_reason)
        for i, result in enumerate([routed.answer, *routed.alternatives]):
            verdict = engine.verdict(result.text)
            self.metrics.answer(result.backend, result.finish, verdict.valid, result.ttft_ms / 1000.0,
                                result.tokens_per_second)
            target = response.completion if i == 0 else response.alternatives.add()
            target.CopyFrom(_completion(result, verdict))
        a = routed.answer
        facts.update(answered_by=a.backend, finish=a.finish, valid=response.completion.verdict.valid,
                     prompt_tokens=a.prompt_tokens, completion_tokens=a.completion_tokens, queue_ms=a.queue_ms,
                     ttft_ms=a.ttft_ms, total_ms=a.total_ms, fallback_reason=routed.fallback_reason or None)
        return response

    def _rpc(self, method: str, request: Any, context: grpc.aio.ServicerContext):
        return _RpcScope(self, method, request, context)


class _RpcScope:
    """Maps exceptions to gRPC status codes, counts the RPC and logs one JSON line for it."""

    def __init__(self, service: InferenceService, method: str, request: Any, context: grpc.aio.ServicerContext):
        self.service, self.metrics, self.method, self.context = service, service.metrics, method, context
        # logged before validation: at most MAX_REQUEST_ID characters of whatever the client sent
        self.facts: dict[str, Any] = {"request_id": getattr(request, "request_id", "")[:MAX_REQUEST_ID]}
        self.started = time.monotonic()

    async def __aenter__(self) -> dict[str, Any]:
        self.service.in_flight += 1
        return self.facts

    def _expired(self) -> bool:
        remaining = self.context.time_remaining()
        return remaining is not None and remaining <= DEADLINE_SLACK_S

    async def __aexit__(self, exc_type, exc, tb) -> bool:
        self.service.in_flight -= 1
        code, details = grpc.StatusCode.OK, ""
        if isinstance(exc, (InvalidRequest, GrammarFailed)):
            code, details = grpc.StatusCode.INVALID_ARGUMENT, str(exc)
        elif isinstance(exc, Failure):
            code, details = exc.code, str(exc)
        elif isinstance(exc, (asyncio.CancelledError, GeneratorExit)):
            code = grpc.StatusCode.DEADLINE_EXCEEDED if self._expired() else grpc.StatusCode.CANCELLED
        elif exc is not None and not isinstance(exc, grpc.aio.AbortError):
            log.exception("unexpected error", extra={"request_id": self.facts.get("request_id")})
            code, details = grpc.StatusCode.INTERNAL, f"internal error: {type(exc).__name__}: {exc}"
        self.metrics.rpc(self.method, code.name)
        request_id = self.facts.pop("request_id", "")
        fields = {"method": self.method, "code": code.name, "ms": round((time.monotonic() - self.started) * 1e3, 1),
                  **{k: v for k, v in self.facts.items() if v is not None}}
        if details:
            fields["details"] = details
        log.info("rpc", extra={"request_id": request_id, "fields": fields})
        if code in (grpc.StatusCode.OK, grpc.StatusCode.CANCELLED) or exc_type is GeneratorExit:
            return False
        if isinstance(exc, asyncio.CancelledError):
            return False
        await self.context.abort(code, details)
        return False


class EdgeServer:
    """One server: start() binds and serves health (NOT_SERVING), load() loads the model, stop() drains."""

    def __init__(self, config: ServeConfig):
        self.config = config
        self.token = read_token(config)
        self.served = resolve(config)
        self.metrics = Metrics()
        self.engine = Engine(config, self.served, self.metrics)
        self.service = InferenceService(self.engine)
        self.health = health.aio.HealthServicer()
        self.port = 0
        self._metrics_http = None
        self._server: grpc.aio.Server | None = None

    async def start(self) -> int:
        c = self.config
        interceptors = [BearerTokenInterceptor(self.token)] if self.token else []
        self._server = grpc.aio.server(interceptors=interceptors, options=[
            ("grpc.so_reuseport", 0),
            ("grpc.max_receive_message_length", c.max_request_bytes * 4 + (1 << 20)),
        ])
        add_inference_service(self.service, self._server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self._server)
        reflection.enable_server_reflection((SERVICE, health.SERVICE_NAME, reflection.SERVICE_NAME), self._server)
        for service in ("", SERVICE):
            await self.health.set(service, health_pb2.HealthCheckResponse.NOT_SERVING)
        address = f"{c.host}:{c.port}"
        if c.tls_cert:
            self.port = self._server.add_secure_port(address, server_credentials(c.tls_cert, c.tls_key,
                                                                                 c.tls_client_ca))
        else:
            self.port = self._server.add_insecure_port(address)
        await self._server.start()
        if c.metrics_port:
            self._metrics_http = self.metrics.serve_http(c.metrics_port, c.host)
        log.info("listening", extra={"fields": {"address": f"{c.host}:{self.port}", "tls": bool(c.tls_cert),
                                                "mtls": bool(c.tls_client_ca), "auth": bool(self.token),
                                                "metrics_port": c.metrics_port or None}})
        return self.port

    async def load(self) -> None:
        started = time.monotonic()
        await self.engine.load()
        for service in ("", SERVICE):
            await self.health.set(service, health_pb2.HealthCheckResponse.SERVING)
        s, local = self.served, self.engine.local.engine
        log.info("serving", extra={"fields": {
            "model": str(s.model_path), "source": s.source, "task": s.task.name, "contexts": self.config.contexts,
            "queue": self.config.queue, "close_reserve": local.close_reserve, "prefix_tokens": len(local.prefix),
            "custom_grammars": self.config.custom_grammars,
            "gpu_layers": local.offloaded_layers, "device": local.backend, "default_backend": self.engine.default_backend,
            "remote_model": self.engine.remote.model if self.engine.remote else None,
            "load_s": round(time.monotonic() - started, 2)}})

    async def stop(self, grace: float | None = None) -> None:
        """Drain, then stop: health NOT_SERVING and new Generate calls UNAVAILABLE while the port stays open (a
        client sees why instead of connection refused), until in-flight calls end or ``grace`` seconds pass."""
        grace = self.config.drain_s if grace is None else grace
        end = time.monotonic() + grace
        self.service.draining = True
        await self.health.enter_graceful_shutdown()
        while self.service.in_flight and time.monotonic() < end:
            await asyncio.sleep(0.05)
        if self._server is not None:
            await self._server.stop(max(0.0, end - time.monotonic()))
        await self.engine.close()
        if self._metrics_http is not None:
            self._metrics_http.stop()


async def run(config: ServeConfig) -> int:
    """Serve until SIGTERM/SIGINT, then drain; returns the exit code."""
    server = EdgeServer(config)
    await server.start()
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    loading = asyncio.ensure_future(server.load())
    waiter = asyncio.ensure_future(stopping.wait())
    await asyncio.wait({loading, waiter}, return_when=asyncio.FIRST_COMPLETED)
    code = 0
    if loading.done() and loading.exception() is not None:
        log.error("loading the model failed", exc_info=loading.exception())
        code = 1
    else:
        await waiter
        log.info("draining", extra={"fields": {"grace_s": config.drain_s}})
    await server.stop()
    log.info("stopped")
    return code


def serve(config: ServeConfig) -> int:
    """Run the server in this thread until SIGTERM (the stage function behind ``python -m serve``)."""
    logs.setup(config.log_level)
    waits = prefer_passive_waits()
    logs.route_llama_cpp()
    log.info("threads", extra={"fields": {"threads": config.threads or "every usable core", "openmp": waits}})
    return asyncio.run(run(config))
