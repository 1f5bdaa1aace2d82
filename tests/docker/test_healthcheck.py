"""docker/healthcheck.py (the edge image's HEALTHCHECK) against a real gRPC health service on loopback."""

from __future__ import annotations

import importlib.util
import re
import socket
import time
from concurrent import futures

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from tests.docker.dockerfile import DOCKER_DIR

Status = health_pb2.HealthCheckResponse


def _load_probe():
    spec = importlib.util.spec_from_file_location("edgetune_healthcheck", DOCKER_DIR / "healthcheck.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


probe = _load_probe()


@pytest.fixture()
def health_server():
    """A gRPC server on a free loopback port with only the standard health service; yields (port, servicer)."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield port, servicer
    server.stop(grace=None)


def test_serving_is_healthy(health_server, capsys):
    port, servicer = health_server
    servicer.set("", Status.SERVING)
    assert probe.main(["--port", str(port)]) == 0
    assert "SERVING" in capsys.readouterr().out


def test_loading_model_is_not_healthy_yet(health_server, capsys):
    port, servicer = health_server
    servicer.set("", Status.NOT_SERVING)
    assert probe.main(["--port", str(port)]) == 1
    assert "NOT_SERVING" in capsys.readouterr().out


def test_asks_about_the_named_service(health_server):
    port, servicer = health_server
    servicer.set("", Status.SERVING)
    servicer.set("edgetune.v1.Inference", Status.NOT_SERVING)
    assert probe.main(["--port", str(port), "--service", "edgetune.v1.Inference"]) == 1
    assert probe.main(["--port", str(port), "--service", "no.such.Service"]) == 1  # NOT_FOUND


def test_port_comes_from_the_environment(health_server, monkeypatch):
    port, servicer = health_server
    servicer.set("", Status.SERVING)
    monkeypatch.setenv("EDGETUNE_PORT", str(port))
    assert probe.main([]) == 0


def test_no_server_is_unhealthy_within_the_timeout(capsys):
    with socket.socket() as sock:  # a port that nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    started = time.monotonic()
    assert probe.main(["--port", str(port), "--timeout", "1"]) == 1
    assert time.monotonic() - started < 5
    assert re.search(r"health check failed: (UNAVAILABLE|DEADLINE_EXCEEDED)", capsys.readouterr().out)
