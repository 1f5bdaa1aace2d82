"""The real server over real gRPC on loopback, with the embedded SmolLM2 GGUF and llama.cpp's OpenAI-compatible
server as the remote backend. Answers are kept short (small max_tokens) so the suite stays fast on 2 cores."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
import urllib.request

import grpc
import pytest

from edgetune.task import load_task
from serve.client import Client, build_request
from serve.proto import pb, pb_grpc
from tests.serve.conftest import TOKEN

AUTH = (("authorization", f"Bearer {TOKEN}"),)
#: A grammar that never completes: decoding only ends at max_tokens, a cancel or a deadline.
ENDLESS = 'root ::= "la " root'


def test_unary_answer_is_contract_valid_with_timings(client):
    answer = client.generate("go to the kitchen", max_tokens=40, request_id="unary-1")
    assert answer.request_id == "unary-1"
    assert answer.backend == "local" and answer.model.endswith(".gguf")
    assert answer.finish_reason == "stop"
    assert answer.valid, answer.violations
    assert answer.calls and json.loads(answer.text)
    assert 0 < answer.completion_tokens <= 40 and answer.prompt_tokens > 10
    t = answer.timings
    assert 0 <= t.queue_ms <= t.ttft_ms <= t.total_ms and t.decode_ms <= t.total_ms and t.tokens_per_second > 0


def test_stream_sends_token_chunks_then_one_final_message(client):
    stream = client.stream("stand up and wave hello", max_tokens=40)
    chunks = list(stream)
    assert len(chunks) >= 3 and all(c.backend == "local" and not c.restart for c in chunks)
    assert stream.answer is not None
    assert "".join(c.text for c in chunks) == stream.answer.text
    assert stream.answer.valid and stream.answer.finish_reason == "stop"
    assert stream.answer.timings.client_ttft_ms <= stream.answer.timings.client_total_ms


def test_unconstrained_text_and_length_finish(client):
    answer = client.generate("Tell me a long story about a robot.", constraint="none", max_tokens=5)
    assert answer.finish_reason == "length" and answer.completion_tokens == 5 and answer.text


def test_custom_gbnf_and_json_schema_constrain_the_answer(client):
    yes_no = client.generate("is the door open?", grammar='root ::= "yes" | "no"', max_tokens=8)
    assert yes_no.text in ("yes", "no")
    schema = json.dumps({"type": "object", "properties": {"room": {"enum": ["kitchen", "garage"]}},
                         "required": ["room"], "additionalProperties": False})
    answer = client.generate("which room has the car?", json_schema=schema, max_tokens=24)
    assert json.loads(answer.text)["room"] in ("kitchen", "garage")


def test_health_and_reflection_with_generic_clients(edge):
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    with grpc.insecure_channel(edge.target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "edgetune.v1.Inference"):  # health needs no token (probes)
            status = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5).status
            assert status == health_pb2.HealthCheckResponse.SERVING
        reflect = reflection_pb2_grpc.ServerReflectionStub(channel)
        requests = [reflection_pb2.ServerReflectionRequest(list_services=""),
                    reflection_pb2.ServerReflectionRequest(file_containing_symbol="edgetune.v1.Inference")]
        listed, described = list(reflect.ServerReflectionInfo(iter(requests), metadata=AUTH, timeout=5))
        names = {s.name for s in listed.list_services_response.service}
        assert {"edgetune.v1.Inference", "grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"} <= names
        assert described.file_descriptor_response.file_descriptor_proto  # grpcurl can describe the service


def test_model_info(client):
    info = client.model_info()
    assert info.task == "robot_sdk" and info.source == "embedded" and info.has_contract_grammar
    assert info.contexts == 4 and info.queue == 2 and info.n_ctx == 2048
    assert info.remote_model == "smol-remote" and info.few_shot_examples == len(load_task("robot_sdk").examples)
    assert info.sampling.max_tokens == 160


def test_constrained_answers_are_all_contract_valid(edge):
    """50 varied robot commands, contract grammar, a short budget: every answer passes the contract (the grammar
    admits only valid calls, and closes the list before max_tokens runs out)."""
    places = ["kitchen", "garage", "office", "bedroom", "garden", "lab", "hallway", "front door", "bathroom", "elevator"]
    actions = ["go to the {p}", "find the keys in the {p}", "take a photo of the {p} and report your battery",
               "walk to the {p} then sit down", "bring the red ball to the {p}", "say hello and go to the {p}"]
    commands = [a.format(p=p) for a, p in itertools.product(actions, places)][:50]

    async def run():
        async with grpc.aio.insecure_channel(edge.target) as channel:
            stub = pb_grpc.InferenceStub(channel)
            gate = asyncio.Semaphore(6)  # sequences + queue: never RESOURCE_EXHAUSTED

            async def one(command):
                async with gate:
                    return await stub.Generate(build_request(command, max_tokens=48), metadata=AUTH, timeout=120)

            return await asyncio.gather(*(one(c) for c in commands))

    responses = asyncio.run(run())
    invalid = [(r.completion.text, [v.message for v in r.completion.verdict.violations])
               for r in responses if not r.completion.verdict.valid]
    assert len(responses) >= 50 and not invalid
    assert all(r.completion.finish_reason == pb.FINISH_REASON_STOP for r in responses)


def test_auto_falls_back_to_remote_when_local_times_out(client):
    answer = client.generate("go to the garage", backend="auto", local_timeout_ms=1, max_tokens=8, constraint="none")
    assert answer.backend == "remote" and answer.model == "smol-remote"
    assert answer.fallback_reason.startswith("local timeout"), answer.fallback_reason
    assert answer.text and answer.finish_reason in ("stop", "length")
    assert all(alt.backend == "local" and alt.finish_reason == "deadline_exceeded" for alt in answer.alternatives)


def test_auto_falls_back_when_local_answer_fails_the_contract_streaming(client):
    stream = client.stream("go to the office", backend="auto", constraint="none", max_tokens=3)
    chunks = list(stream)
    answer = stream.answer
    assert answer.backend == "remote"
    assert answer.fallback_reason.startswith("local answer failed the contract"), answer.fallback_reason
    assert [a.backend for a in answer.alternatives] == ["local"] and not answer.alternatives[0].valid
    restart = next(i for i, c in enumerate(chunks) if c.restart)
    assert all(c.backend == "local" for c in chunks[:restart])
    assert "".join(c.text for c in chunks[restart + 1:]) == answer.text
    assert all(c.backend == "remote" for c in chunks[restart:])


def test_auto_keeps_a_valid_local_answer(client):
    answer = client.generate("go to the kitchen", backend="auto", max_tokens=40)
    assert answer.backend == "local" and answer.valid and not answer.fallback_reason and not answer.alternatives


def test_compare_returns_both_answers_with_timings(client):
    answer = client.generate("report your battery", backend="compare", max_tokens=8, constraint="none")
    assert answer.backend == "local" and len(answer.alternatives) == 1
    remote = answer.alternatives[0]
    assert remote.backend == "remote" and remote.text and remote.timings.total_ms > 0
    assert answer.text and answer.timings.total_ms > 0


def test_remote_backend_streams(client):
    stream = client.stream("say hi", backend="remote", max_tokens=6)
    chunks = list(stream)
    assert chunks and all(c.backend == "remote" for c in chunks)
    assert "".join(c.text for c in chunks) == stream.answer.text
    assert stream.answer.completion_tokens > 0


def _status(exc_info) -> tuple[grpc.StatusCode, str]:
    return exc_info.value.code(), exc_info.value.details()


@pytest.mark.parametrize("kwargs, field", [
    (dict(command="x" * 4001), "command"),
    (dict(command="   "), "command"),
    (dict(command=None), "command"),
    (dict(messages=[{"role": "user", "content": "w" * 3900}] * 18), "request"),
    (dict(messages=[{"role": "user", "content": "dog cat " * 480}] * 3, max_tokens=64), "messages"),
    (dict(messages=[{"role": "robot", "content": "hi"}]), "messages[0].role"),
    (dict(command="hi", max_tokens=5000), "sampling.max_tokens"),
    (dict(command="hi", stop=[f"s{i}" for i in range(20)]), "sampling.stop"),
    (dict(command="hi", temperature=9.0), "sampling.temperature"),
    (dict(command="hi", grammar="root ::= [unclosed"), "constraint.value"),
    (dict(command="hi", grammar='start ::= "a"'), "constraint.value"),
    (dict(command="hi", json_schema="{not json"), "constraint.value"),
    (dict(command="hi", max_tokens=24), "sampling.max_tokens"),  # below the close reserve: it could not close
])
def test_bad_input_is_invalid_argument_naming_the_field(client, kwargs, field):
    command = kwargs.pop("command", None)
    with pytest.raises(grpc.RpcError) as exc:
        client.generate(command, **kwargs)
    code, details = _status(exc)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and details.startswith(field + ":"), details


def test_wrong_or_missing_token_is_unauthenticated(edge):
    for token in ("wrong", None):
        with Client(edge.target, token) as bad:
            with pytest.raises(grpc.RpcError) as exc:
                bad.generate("go to the kitchen", max_tokens=4)
            assert exc.value.code() == grpc.StatusCode.UNAUTHENTICATED
            with pytest.raises(grpc.RpcError) as exc:
                list(bad.stream("go to the kitchen", max_tokens=4))
            assert exc.value.code() == grpc.StatusCode.UNAUTHENTICATED
            assert bad.health() == "SERVING"


def test_deadline_of_50ms_is_deadline_exceeded_and_frees_the_sequence(client):
    with pytest.raises(grpc.RpcError) as exc:
        client.generate("go", grammar=ENDLESS, max_tokens=600, timeout=0.05)
    assert exc.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    with pytest.raises(grpc.RpcError) as exc:
        list(client.stream("go", grammar=ENDLESS, max_tokens=600, timeout=0.05))
    assert exc.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    for _ in range(4):  # every sequence is free again at once
        assert client.generate("go to the lab", max_tokens=4, constraint="none").timings.queue_ms < 1000


def test_client_disconnect_mid_stream_frees_its_sequence(client):
    streams = [client.stream("sing", grammar=ENDLESS, max_tokens=600) for _ in range(4)]  # every sequence busy
    for stream in streams:
        first = next(iter(stream))
        assert first.text
        stream.cancel()
    started = time.monotonic()
    answer = client.generate("go to the lab", max_tokens=4, constraint="none")
    # 600 tokens would take many seconds; a freed sequence starts the next request at once.
    assert answer.timings.queue_ms < 1000 and time.monotonic() - started < 10


def test_overload_excess_clients_get_resource_exhausted_rest_succeed(edge, client):
    capacity = 4 + 2  # sequences + queue
    clients = 4 * capacity

    async def run():
        async with grpc.aio.insecure_channel(edge.target) as channel:
            stub = pb_grpc.InferenceStub(channel)

            async def one():
                request = build_request("go", grammar=ENDLESS, max_tokens=48)
                try:
                    await stub.Generate(request, metadata=AUTH, timeout=120)
                    return "OK"
                except grpc.aio.AioRpcError as exc:
                    return exc.code().name

            async def auto_while_full():
                await asyncio.sleep(0.3)
                return await stub.Generate(build_request("go to the lab", backend="auto", max_tokens=4,
                                                         constraint="none"),
                                           metadata=AUTH, timeout=120)

            return await asyncio.gather(asyncio.gather(*(one() for _ in range(clients))), auto_while_full())

    codes, auto = asyncio.run(run())
    assert set(codes) <= {"OK", "RESOURCE_EXHAUSTED"}, codes
    assert codes.count("OK") >= capacity and codes.count("RESOURCE_EXHAUSTED") >= clients - capacity - 2, codes
    assert auto.completion.backend == pb.BACKEND_REMOTE and auto.fallback_reason.startswith("local busy")
    assert client.health() == "SERVING"
    assert client.generate("go to the kitchen", max_tokens=40).valid


def test_metrics_count_requests_errors_ttft_and_queue(edge, client):
    client.generate("go to the kitchen", max_tokens=40)
    text = urllib.request.urlopen(f"http://127.0.0.1:{edge.metrics_port}/metrics", timeout=5).read().decode()
    assert 'edgetune_requests_total{code="OK",method="Generate"}' in text
    assert 'edgetune_errors_total{code="INVALID_ARGUMENT",method="Generate"}' in text
    assert 'edgetune_errors_total{code="RESOURCE_EXHAUSTED",method="Generate"}' in text
    assert 'edgetune_ttft_seconds_count{backend="local"}' in text
    assert 'edgetune_tokens_per_second_bucket' in text
    assert "edgetune_queue_depth 0.0" in text and "edgetune_contexts_busy" in text


def test_json_logs_carry_the_request_id(edge, client):
    client.generate("go to the kitchen", max_tokens=4, constraint="none", request_id="log-me-1")
    lines = [json.loads(line) for line in edge.log.read_text().splitlines() if line.startswith("{")]
    rpc = [line for line in lines if line.get("request_id") == "log-me-1"]
    assert rpc and rpc[-1]["msg"] == "rpc" and rpc[-1]["code"] == "OK" and rpc[-1]["completion_tokens"] > 0


def test_soak_500_requests_bounded_rss_growth(edge):
    """500 tiny requests; the server's RSS may grow by at most 48 MiB after a 30-request warm-up."""
    bound = 48 * 2**20

    async def batch(n: int):
        async with grpc.aio.insecure_channel(edge.target) as channel:
            stub = pb_grpc.InferenceStub(channel)
            gate = asyncio.Semaphore(4)

            async def one(i):
                async with gate:
                    chat = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": f"room {i}"}]
                    request = build_request(messages=chat, max_tokens=1, constraint="none")
                    return await stub.Generate(request, metadata=AUTH, timeout=120)

            return await asyncio.gather(*(one(i) for i in range(n)))

    asyncio.run(batch(30))
    before = edge.rss_bytes()
    responses = asyncio.run(batch(500))
    growth = edge.rss_bytes() - before
    print(f"server RSS {before / 2**20:.1f} MiB -> +{growth / 2**20:.1f} MiB over 500 requests")
    assert len(responses) == 500 and all(r.completion.usage.completion_tokens >= 1 for r in responses)
    assert growth < bound, f"RSS grew by {growth / 2**20:.1f} MiB over 500 requests"
