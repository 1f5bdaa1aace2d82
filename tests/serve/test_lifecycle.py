"""Start-up, TLS/mTLS and shutdown: NOT_SERVING while the model loads, SIGTERM drains in-flight requests."""

from __future__ import annotations

import asyncio
import shutil
import signal
import subprocess
import time

import grpc
import pytest

from serve.client import Client, build_request
from tests.serve.conftest import start_edge

ENDLESS = 'root ::= "la " root'


def test_health_is_not_serving_while_the_model_loads(tmp_path, monkeypatch):
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from serve.config import ServeConfig
    from serve.proto import pb_grpc
    from serve.server import EdgeServer

    monkeypatch.setattr("edgetune.rundir.RUNS_DIR", tmp_path)

    async def scenario():
        server = EdgeServer(ServeConfig(port=0, contexts=1, threads=1))
        port = await server.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                health = health_pb2_grpc.HealthStub(channel)
                check = health_pb2.HealthCheckRequest(service="")
                assert (await health.Check(check)).status == health_pb2.HealthCheckResponse.NOT_SERVING
                with pytest.raises(grpc.aio.AioRpcError) as exc:
                    await pb_grpc.InferenceStub(channel).Generate(build_request("go", max_tokens=1))
                assert exc.value.code() == grpc.StatusCode.UNAVAILABLE
                await server.load()
                assert (await health.Check(check)).status == health_pb2.HealthCheckResponse.SERVING
                response = await pb_grpc.InferenceStub(channel).Generate(build_request("go", max_tokens=1,
                                                                                       constraint="none"))
                assert response.completion.usage.completion_tokens == 1
        finally:
            await server.stop(0)

    asyncio.run(scenario())


def test_a_model_llama_cpp_dies_on_never_reports_serving_and_the_log_says_why(tmp_path, monkeypatch, caplog):
    """The probe's child dies by SIGILL (as ggml's AMX kernels do on some Xeon VMs): health stays NOT_SERVING,
    the load fails with the signal named, and `python -m serve` logs why and exits 1 instead of crashing later."""
    import sys

    from grpc_health.v1 import health_pb2, health_pb2_grpc

    import edgetune.llama
    from serve.config import ServeConfig
    from serve.server import EdgeServer, run

    kill = "import os, resource, signal; resource.setrlimit(resource.RLIMIT_CORE, (0, 0)); os.kill(os.getpid(), 4)"
    monkeypatch.setattr(edgetune.llama, "_verdicts", {})
    monkeypatch.setattr(edgetune.llama, "probe_command", lambda path, kwargs: [sys.executable, "-c", kill])
    monkeypatch.setattr("edgetune.rundir.RUNS_DIR", tmp_path)
    config = ServeConfig(port=0, contexts=1, threads=1)

    async def scenario():
        server = EdgeServer(config)
        port = await server.start()
        try:
            with pytest.raises(edgetune.llama.LlamaCrash, match="died with SIGILL"):
                await server.load()
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                check = health_pb2.HealthCheckRequest(service="")
                status = (await health_pb2_grpc.HealthStub(channel).Check(check)).status
                assert status == health_pb2.HealthCheckResponse.NOT_SERVING
        finally:
            await server.stop(0)

    asyncio.run(scenario())
    with caplog.at_level("INFO", logger="serve"):
        assert asyncio.run(run(config)) == 1
    failed = [r for r in caplog.records if r.getMessage() == "loading the model failed"]
    assert failed and "died with SIGILL" in str(failed[0].exc_info[1])
    assert not [r for r in caplog.records if r.getMessage() == "serving"]


def _pki(tmp_path):
    """A CA, a server certificate for 127.0.0.1 and a client certificate, made with the openssl CLI."""
    def run(*args):
        subprocess.run(["openssl", *args], cwd=tmp_path, check=True, capture_output=True)

    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    run("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "1", "-subj", "/CN=edgetune-test-ca")
    for name, san in (("server", "subjectAltName=IP:127.0.0.1,DNS:localhost"), ("client", "subjectAltName=DNS:robot")):
        run("req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}")
        (tmp_path / f"{name}.ext").write_text(san + "\n")
        run("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", f"{name}.pem", "-days", "1", "-extfile", f"{name}.ext")
    return {name: str(tmp_path / name) for name in
            ("ca.pem", "server.pem", "server.key", "client.pem", "client.key")}


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl CLI to make test certificates")
def test_mtls_and_sigterm_drains_in_flight_requests(tmp_path):
    pki = _pki(tmp_path)
    edge = start_edge(tmp_path, "--contexts", "1", "--queue", "1", "--drain-s", "60", "--custom-grammars",
                      "--tls-cert", pki["server.pem"],
                      "--tls-key", pki["server.key"], "--tls-client-ca", pki["ca.pem"], metrics=False,
                      tls_ca=pki["ca.pem"], tls_cert=pki["client.pem"], tls_key=pki["client.key"])
    try:
        with Client(edge.target, tls_ca=pki["ca.pem"]) as no_cert:  # TLS without a client certificate
            with pytest.raises(grpc.RpcError) as exc:
                no_cert.generate("go", max_tokens=1, timeout=5)
            assert exc.value.code() == grpc.StatusCode.UNAVAILABLE
        with Client(edge.target, tls_ca=pki["ca.pem"], tls_cert=pki["client.pem"], tls_key=pki["client.key"]) as c:
            assert c.generate("go to the kitchen", max_tokens=1, constraint="none").completion_tokens == 1
            stream = c.stream("sing", grammar=ENDLESS, max_tokens=60)
            chunks = iter(stream)
            assert next(chunks).text
            edge.popen.send_signal(signal.SIGTERM)
            time.sleep(0.5)
            with pytest.raises(grpc.RpcError):  # draining: no new requests
                c.generate("go", max_tokens=1, timeout=5)
            rest = list(chunks)  # ...but the one in flight finishes
            assert stream.answer is not None and stream.answer.finish_reason == "length"
            assert stream.answer.completion_tokens == 60 and len(rest) >= 50
        assert edge.popen.wait(30) == 0
        assert '"msg": "draining"' in edge.log.read_text()
    finally:
        edge.stop()


@pytest.mark.slow
def test_four_sequences_cost_only_their_kv_cache(tmp_path, embedded_gguf_path):
    """One model, one context: a server decoding 4 sequences holds at most the 1-sequence server's memory plus the
    KV cache of the 3 extra sequences, + 10% (a pool of 4 contexts held 4 copies of everything else)."""
    from llama_cpp import Llama

    meta = Llama(str(embedded_gguf_path), vocab_only=True, verbose=False).metadata
    layers, embd = int(meta["llama.block_count"]), int(meta["llama.embedding_length"])
    heads, kv_heads = int(meta["llama.attention.head_count"]), int(meta["llama.attention.head_count_kv"])
    n_ctx = 2048
    kv_per_sequence = n_ctx * layers * 2 * (embd // heads * kv_heads) * 2  # K and V, f16

    def rss(contexts: int) -> int:
        edge = start_edge(tmp_path, "--contexts", str(contexts), "--queue", "0", "--n-ctx", str(n_ctx),
                          metrics=False)
        try:
            async def load():
                async with grpc.aio.insecure_channel(edge.target) as channel:
                    from serve.proto import pb_grpc

                    stub = pb_grpc.InferenceStub(channel)
                    requests = [build_request(f"go to room {i}", max_tokens=40) for i in range(contexts)]
                    return await asyncio.gather(*(stub.Generate(r, timeout=300) for r in requests))

            assert all(r.completion.usage.completion_tokens > 0 for r in asyncio.run(load()))
            return edge.rss_bytes()
        finally:
            edge.stop()

    one, four = rss(1), rss(4)
    extra_kv = 3 * kv_per_sequence
    print(f"RSS contexts=1 {one / 2**20:.1f} MiB, contexts=4 {four / 2**20:.1f} MiB, extra KV {extra_kv / 2**20:.1f} MiB")
    assert four <= (one + extra_kv) * 1.10
