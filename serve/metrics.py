"""Prometheus metrics: requests and errors by status code, TTFT and tokens/s histograms, queue depth.

Each server owns its registry (several servers in one process, as in tests, do not collide); ``serve_http``
exposes it on ``/metrics``. prometheus_client's own ``start_http_server`` answers any path and starts a thread per
connection without a limit (300 idle connections held 313 threads); :class:`MetricsHTTPServer` answers only
``/metrics``, serves at most ``MAX_CONNECTIONS`` connections at once (the rest are closed at once) and drops a
connection that sends nothing for ``IDLE_TIMEOUT_S``.
"""

from __future__ import annotations

import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

MAX_CONNECTIONS = 8  #: scrapes served at once; Prometheus makes one at a time
IDLE_TIMEOUT_S = 2.0  #: a connection silent (or unread) this long is closed


class _MetricsHandler(BaseHTTPRequestHandler):
    timeout = IDLE_TIMEOUT_S  # socket timeout for every read and write of the connection
    server: "MetricsHTTPServer"

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        if self.path.split("?", 1)[0] != "/metrics":
            self.send_error(404, "only /metrics is served here")
            return
        body = generate_latest(self.server.registry)
        self.send_response(200)
        self.send_header("Content-Type", CONTENT_TYPE_LATEST)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args) -> None:  # noqa: A002 (http.server's signature)
        """Silent: scrapes would flood the server's log (and their paths are client text)."""


class MetricsHTTPServer(ThreadingHTTPServer):
    """``/metrics`` of ``registry`` over HTTP, with a bounded number of connection threads."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], registry: CollectorRegistry):
        self.registry = registry
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        super().__init__(address, _MetricsHandler)

    def process_request(self, request: socket.socket, client_address) -> None:
        if not self._slots.acquire(blocking=False):
            self.shutdown_request(request)  # full: close it rather than start another thread
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request: socket.socket, client_address) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def stop(self) -> None:
        self.shutdown()
        self.server_close()

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

    def serve_http(self, port: int, host: str) -> MetricsHTTPServer:
        """Start /metrics on ``host:port`` in a thread; returns the HTTP server (``stop()`` stops it)."""
        server = MetricsHTTPServer((host, port), self.registry)
        threading.Thread(target=server.serve_forever, name="metrics-http", daemon=True).start()
        return server
