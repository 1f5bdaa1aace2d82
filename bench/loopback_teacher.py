"""A small OpenAI-compatible chat server on loopback that answers from the offline synthesizer, with faults.

The teacher's tests and its benchmark run the real ``openai`` client against it: it speaks
``POST /v1/chat/completions`` (and ``GET /v1/models``), reports token usage, and injects, in the order of a plan,
429 with Retry-After, 500s, hangs longer than the client's timeout, malformed answers and contract-breaking
examples, plus a fixed latency per request.

    python -m bench.loopback_teacher --port 8765 --latency 0.2     serve until Ctrl-C
"""

from __future__ import annotations

import argparse
import itertools
import json
import re
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ACTIONS = ("ok", "429", "500", "timeout", "malformed", "invalid")


@dataclass
class Faults:
    """What the server does, request by request (after the plan runs out: "ok")."""

    plan: list[str] = field(default_factory=list)  #: one of ACTIONS per request, in arrival order
    latency: float = 0.0  #: seconds every request takes
    retry_after: str = "0.1"  #: Retry-After header of a 429 (seconds)
    hang: float = 3.0  #: seconds a "timeout" request sleeps (set the client's timeout below it)
    per_response: int = 8  #: examples per answer
    seed: int = 1000  #: synthesizer seed (distinct from the stage's so answers differ from synth data)

    def __post_init__(self) -> None:
        unknown = [a for a in self.plan if a not in ACTIONS]
        if unknown:
            raise ValueError(f"Expected plan actions from {ACTIONS}, got {unknown}")


class LoopbackTeacher:
    """``with LoopbackTeacher(Faults(...)) as server: server.base_url`` -- a server thread on 127.0.0.1."""

    def __init__(self, faults: Faults | None = None, port: int = 0, model: str = "loopback-teacher"):
        from train.synth import iter_commands

        self.faults = faults or Faults()
        self.model = model
        self.stats: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._arrivals = itertools.count()
        self._commands = iter_commands(self.faults.seed)
        self._server = ThreadingHTTPServer(("127.0.0.1", port), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="loopback-teacher", daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def __enter__(self) -> "LoopbackTeacher":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    def next_action(self) -> str:
        with self._lock:
            n = next(self._arrivals)
            action = self.faults.plan[n] if n < len(self.faults.plan) else "ok"
            self.stats[action] += 1
            self.stats["requests"] += 1
            return action

    def answer(self, messages: list[dict], action: str) -> str:
        prompt = messages[-1]["content"] if messages else ""
        if action == "malformed":
            return "Sure! Here are some great examples: user: go to the kitchen -> nav.go_to(kitchen)"
        if "Write the system message" in prompt:
            return "You turn robot commands into a JSON list of allowlisted robot API calls."
        if '"paraphrases"' in prompt:
            items = [json.loads(line) for line in prompt.splitlines() if line.startswith('{"id"')]
            return json.dumps({"paraphrases": [{"id": i["id"], "user": f"Kindly, {i['user']}"} for i in items]})
        with self._lock:
            commands = [next(self._commands) for _ in range(self.faults.per_response)]
        if action == "invalid":
            return json.dumps({"examples": [{"user": c.user, "assistant": '["os.system(\'reboot\')"]'}
                                            for c in commands]})
        return json.dumps({"examples": [{"user": c.user, "assistant": c.assistant} for c in commands]})


def _handler(server: LoopbackTeacher) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:  # quiet: tests read stats instead
            return

        def _send(self, status: int, body: dict, headers: dict[str, str] | None = None) -> None:
            data = json.dumps(body).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (a timeout we injected)

        def do_GET(self) -> None:
            if self.path.rstrip("/").endswith("/models"):
                self._send(200, {"object": "list", "data": [{"id": server.model, "object": "model"}]})
            else:
                self._send(404, {"error": {"message": f"no route {self.path}"}})

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", 0))
            try:
                request = json.loads(self.rfile.read(length) or b"{}")
            except json.JSONDecodeError:
                self._send(400, {"error": {"message": "body is not JSON"}})
                return
            if not re.search(r"/chat/completions$", self.path):
                self._send(404, {"error": {"message": f"no route {self.path}"}})
                return
            action = server.next_action()
            time.sleep(server.faults.latency)
            if action == "429":
                self._send(429, {"error": {"message": "rate limited", "type": "rate_limit"}},
                           {"Retry-After": server.faults.retry_after})
                return
            if action == "500":
                self._send(500, {"error": {"message": "injected server error"}})
                return
            if action == "timeout":
                time.sleep(server.faults.hang)
            content = server.answer(request.get("messages", []), action)
            prompt_chars = sum(len(str(m.get("content", ""))) for m in request.get("messages", []))
            usage = {"prompt_tokens": prompt_chars // 4, "completion_tokens": len(content) // 4}
            usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
            self._send(200, {
                "id": f"chatcmpl-{server.stats['requests']}", "object": "chat.completion", "created": int(time.time()),
                "model": request.get("model", server.model),
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": content}}],
                "usage": usage,
            })

    return Handler


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.loopback_teacher", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=8765, help="port on 127.0.0.1")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds each request takes")
    parser.add_argument("--plan", default="", help="comma-separated actions per request, e.g. 429,ok,500,malformed")
    args = parser.parse_args(argv)
    faults = Faults(plan=[a for a in args.plan.split(",") if a], latency=args.latency)
    with LoopbackTeacher(faults, args.port) as server:
        print(f"serving {server.base_url} (Ctrl-C to stop)")
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
