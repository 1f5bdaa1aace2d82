"""Hostile and careless clients against the real server (issue 19, item 8): every answer has the right status code,
is logged and counted, cannot forge or flood the log, and the server stays SERVING for the next good request."""

from __future__ import annotations

import json
import signal
import socket
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import grpc
import pytest

from serve.client import Client
from serve.metrics import IDLE_TIMEOUT_S, MAX_CONNECTIONS
from tests.serve.conftest import TOKEN, start_edge

ENDLESS = 'root ::= "la " root'
AUTH = (("authorization", f"Bearer {TOKEN}"),)
FORGED = '\n{"level": "error", "msg": "forged"}\n'


def _log_lines(log: Path) -> list[str]:
    return log.read_text(errors="replace").splitlines()


def _rpc_line(log: Path, request_id: str, timeout: float = 5.0) -> dict:
    """The server's JSON 'rpc' line for ``request_id`` (it is written just after the client sees the status)."""
    end = time.monotonic() + timeout
    while True:
        for line in _log_lines(log):
            if line.startswith("{"):
                record = json.loads(line)
                if record.get("msg") == "rpc" and record.get("request_id") == request_id:
                    return record
        if time.monotonic() > end:
            raise AssertionError(f"no rpc log line for {request_id}")
        time.sleep(0.1)


def _still_serving(client: Client) -> None:
    assert client.health() == "SERVING"
    answer = client.generate("go to the kitchen", max_tokens=8, constraint="none")  # 8: below the close reserve
    assert answer.completion_tokens > 0 and answer.finish_reason in ("stop", "length") and not answer.error


def _metric(edge, name: str) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{edge.metrics_port}/metrics", timeout=5).read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name))


@pytest.mark.parametrize("method, data", [
    ("Generate", b"\x12\x02\xff\xfe"),  # field 2 (command): two bytes that are not UTF-8
    ("GenerateStream", b"\x12\x02\xc3\x28"),
    ("Generate", b"\xff\xff\xff\xff"),  # not a protobuf at all
    ("GetModelInfo", b"\x0a\xff"),
])
def test_corrupt_or_non_utf8_request_is_invalid_argument_logged_and_counted(edge, client, method, data):
    counted = f'edgetune_errors_total{{code="INVALID_ARGUMENT",method="{method}"}}'
    before = _metric(edge, counted)
    with grpc.insecure_channel(edge.target) as channel:
        call = (channel.unary_stream if method == "GenerateStream" else channel.unary_unary)(
            f"/edgetune.v1.Inference/{method}")
        with pytest.raises(grpc.RpcError) as exc:
            result = call(data, metadata=AUTH, timeout=10)
            list(result) if method == "GenerateStream" else result
    assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert exc.value.details().startswith("request: is not a valid edgetune.v1."), exc.value.details()
    assert _metric(edge, counted) == before + 1
    logged = [json.loads(line) for line in _log_lines(edge.log) if line.startswith("{") and '"msg": "rpc"' in line]
    assert any(r["method"] == method and r["code"] == "INVALID_ARGUMENT" and "not a valid" in r["details"]
               for r in logged)
    _still_serving(client)


@pytest.mark.parametrize("stream", [False, True])
def test_deadline_expiring_mid_decode_is_logged_and_counted_as_deadline_exceeded(edge, client, stream):
    """The client's deadline can reach the server as a cancel just before the server's own copy expires (before
    the fix: 5 of 12 such requests logged CANCELLED), so several deadlines are tried."""
    method = "GenerateStream" if stream else "Generate"
    counted = f'edgetune_errors_total{{code="DEADLINE_EXCEEDED",method="{method}"}}'
    before = _metric(edge, counted)
    timeouts = (0.3, 0.5, 0.7, 0.9, 1.1, 1.3)
    for i, timeout in enumerate(timeouts):
        request_id = f"deadline-mid-decode-{stream}-{i}"
        with pytest.raises(grpc.RpcError) as exc:
            if stream:
                list(client.stream("sing", grammar=ENDLESS, max_tokens=600, timeout=timeout, request_id=request_id))
            else:
                client.generate("sing", grammar=ENDLESS, max_tokens=600, timeout=timeout, request_id=request_id)
        assert exc.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert _rpc_line(edge.log, request_id)["code"] == "DEADLINE_EXCEEDED", timeout
    assert _metric(edge, counted) == before + len(timeouts)
    _still_serving(client)


def test_oversized_request_id_is_cut_in_the_log_and_cannot_forge_lines(edge, client):
    request_id = "hostile" + FORGED + "x" * 60000
    with pytest.raises(grpc.RpcError) as exc:
        client.generate("go to the kitchen", max_tokens=4, request_id=request_id)
    assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT and exc.value.details().startswith("request_id:")
    line = _rpc_line(edge.log, request_id[:128])
    assert line["code"] == "INVALID_ARGUMENT"
    assert max(len(line) for line in _log_lines(edge.log)) < 4000
    assert not any('"forged"' in line and not line.startswith('{"ts"') for line in _log_lines(edge.log))
    _still_serving(client)


def test_metrics_endpoint_answers_only_metrics_with_bounded_threads(edge, client):
    base = f"http://127.0.0.1:{edge.metrics_port}"
    for path in ("/", "/metrics/../x", "/favicon.ico"):
        with pytest.raises(urllib.error.HTTPError) as exc:
            urllib.request.urlopen(base + path, timeout=5)
        assert exc.value.code == 404
    status = Path(f"/proc/{edge.popen.pid}/status")

    def threads() -> int:
        return next(int(line.split()[1]) for line in status.read_text().splitlines() if line.startswith("Threads:"))

    before = threads()
    idle = [socket.create_connection(("127.0.0.1", edge.metrics_port)) for _ in range(60)]
    try:
        time.sleep(0.5)
        assert threads() <= before + MAX_CONNECTIONS
        time.sleep(IDLE_TIMEOUT_S + 0.5)  # the idle ones are dropped: scrapes work again
        assert "edgetune_requests_total" in urllib.request.urlopen(base + "/metrics", timeout=5).read().decode()
    finally:
        for sock in idle:
            sock.close()
    assert threads() <= before + 1
    _still_serving(client)


class _SurrogateRemote(BaseHTTPRequestHandler):
    """An OpenAI-compatible endpoint whose streamed answer holds a lone surrogate (valid JSON, not valid UTF-8)."""

    def do_POST(self) -> None:  # noqa: N802
        self.rfile.read(int(self.headers["Content-Length"]))
        chunks = [{"choices": [{"index": 0, "delta": {"role": "assistant", "content": piece}, "finish_reason": None}]}
                  for piece in ('["nav.dock()"]', "\ud800")]
        chunks.append({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
        body = "".join("data: " + json.dumps({"id": "x", "object": "chat.completion.chunk", "created": 0,
                                              "model": "surrogate", **c}) + "\n\n" for c in chunks)
        body += "data: [DONE]\n\n"
        data = body.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def token_file_edge(tmp_path_factory):
    """A server with its token in a file, debug logs and a remote backend that answers with a lone surrogate."""
    tmp = tmp_path_factory.mktemp("hostile")
    remote = ThreadingHTTPServer(("127.0.0.1", 0), _SurrogateRemote)
    threading.Thread(target=remote.serve_forever, daemon=True).start()
    token = tmp / "token"
    token.write_text("file-token-7\n")
    proc = start_edge(tmp, "--contexts", "1", "--log-level", "debug", "--token-file", str(token),
                      "--remote-model", "surrogate", "--remote-base-url",
                      f"http://127.0.0.1:{remote.server_address[1]}/v1", metrics=False)
    try:
        yield proc
    finally:
        proc.stop()
        remote.shutdown()


def test_token_file_keeps_the_token_out_of_ps(token_file_edge):
    assert b"file-token-7" not in Path(f"/proc/{token_file_edge.popen.pid}/cmdline").read_bytes()
    with Client(token_file_edge.target, "wrong") as bad:
        with pytest.raises(grpc.RpcError) as exc:
            bad.generate("go", max_tokens=1)
        assert exc.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with Client(token_file_edge.target, "file-token-7") as good:
        assert good.generate("go to the kitchen", max_tokens=8, backend="local",
                             constraint="none").completion_tokens > 0


def test_llama_cpp_log_goes_through_json_logging_not_raw_to_stderr(token_file_edge):
    lines = _log_lines(token_file_edge.log)
    llama = [json.loads(line) for line in lines if line.startswith("{") and '"logger": "llama.cpp"' in line]
    assert any(r["msg"].startswith("llama_context:") and r["level"] == "debug" for r in llama), lines[:20]
    assert not [line for line in lines if line.startswith("llama_")]


@pytest.mark.parametrize("stream", [False, True])
def test_lone_surrogate_in_model_output_is_replaced_not_internal(token_file_edge, stream):
    with Client(token_file_edge.target, "file-token-7") as client:
        if stream:
            s = client.stream("go to the dock", backend="remote")
            text = "".join(chunk.text for chunk in s)
            answer = s.answer
            assert text == answer.text
        else:
            answer = client.generate("go to the dock", backend="remote")
        assert answer.text == '["nav.dock()"]\ufffd' and answer.backend == "remote"
        assert client.health() == "SERVING"
        assert client.generate("go to the kitchen", max_tokens=8, backend="local",
                               constraint="none").completion_tokens > 0


def test_token_and_token_file_together_is_a_config_error():
    from serve.config import ServeConfig

    assert dict(ServeConfig(token="a", token_file="b").check())["token_file"].startswith("give the token once")


def test_draining_server_says_not_serving_and_unavailable_until_the_port_closes(tmp_path):
    edge = start_edge(tmp_path, "--contexts", "1", "--drain-s", "60", "--custom-grammars", metrics=False)
    try:
        with Client(edge.target) as client:
            stream = client.stream("sing", grammar=ENDLESS, max_tokens=60, request_id="in-flight")
            chunks = iter(stream)
            assert next(chunks).text
            edge.popen.send_signal(signal.SIGTERM)
            time.sleep(0.5)
            assert client.health() == "NOT_SERVING"  # the port is still open while the request drains
            with pytest.raises(grpc.RpcError) as exc:
                client.generate("go", max_tokens=1, timeout=5, request_id="during-drain")
            assert exc.value.code() == grpc.StatusCode.UNAVAILABLE and "shutting down" in exc.value.details()
            list(chunks)  # the one in flight finishes
            assert stream.answer is not None and stream.answer.completion_tokens == 60
        assert edge.popen.wait(30) == 0
        assert _rpc_line(edge.log, "during-drain")["code"] == "UNAVAILABLE"
        assert _rpc_line(edge.log, "in-flight")["code"] == "OK"
    finally:
        edge.stop()
