"""Prometheus metrics: requests and errors by status code, TTFT and tokens/s histograms, queue depth.

Each server owns its registry (several servers in one process, as in tests, do not collide); ``serve_http``
exposes it on ``/metrics``.
"""

from __future__ import annotations

from typing import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

_TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_TPS_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("edgetune_requests", "RPCs by method and gRPC status code", ["method", "code"],
                                registry=r)
        self.errors = Counter("edgetune_errors", "RPCs that did not end OK, by method and gRPC status code",
                              ["method", "code"], registry=r)
        self.answers = Counter("edgetune_answers", "backend answers by backend, finish reason and contract verdict",
                               ["backend", "finish", "valid"], registry=r)
        self.fallbacks = Counter("edgetune_fallbacks", "auto routing: remote answered instead of local, by reason",
                                 ["reason"], registry=r)
        self.ttft = Histogram("edgetune_ttft_seconds", "time to first token (queue included)", ["backend"],
                              buckets=_TTFT_BUCKETS, registry=r)
        self.tokens_per_second = Histogram("edgetune_tokens_per_second", "completion tokens per second of work",
                                           ["backend"], buckets=_TPS_BUCKETS, registry=r)
        self.queue_depth = Gauge("edgetune_queue_depth", "requests waiting for a llama.cpp context", registry=r)
        self.contexts_busy = Gauge("edgetune_contexts_busy", "llama.cpp contexts decoding now", registry=r)

    def track_pool(self, waiting: Callable[[], float], busy: Callable[[], float]) -> None:
        self.queue_depth.set_function(waiting)
        self.contexts_busy.set_function(busy)

    def rpc(self, method: str, code: str) -> None:
        self.requests.labels(method, code).inc()
        if code != "OK":
            self.errors.labels(method, code).inc()

    def answer(self, backend: str, finish: str, valid: bool, ttft_s: float, tokens_per_second: float) -> None:
        self.answers.labels(backend, finish, str(valid).lower()).inc()
        if ttft_s > 0:
            self.ttft.labels(backend).observe(ttft_s)
        if tokens_per_second > 0:
            self.tokens_per_second.labels(backend).observe(tokens_per_second)

    def serve_http(self, port: int, host: str):
        """Start /metrics on ``host:port``; returns the HTTP server (``shutdown()`` stops it)."""
        server, _thread = start_http_server(port, addr=host, registry=self.registry)
        return server
