"""Client grammars (custom GBNF, JSON schemas) in a child process per sequence, bounded in time and memory.

llama.cpp's grammar code is not safe against hostile input: its GBNF parser recurses per nesting level (30,000
nested parentheses overflow the stack: SIGSEGV), an ambiguous grammar multiplies its parse stacks at every accepted
token (a 56-byte one spins for minutes once it has accepted "{", and no stop flag is checked meanwhile), and 64 KB
of repetitions like ``"ab"{0,999}`` allocate gigabytes. None of that can be stopped from inside the process it runs
in. So a grammar the operator did not ship runs in a :class:`GrammarWorker`: a child process that loads only the
model's vocabulary (``vocab_only``, no weights), under an address-space limit, that converts and compiles the
grammar and answers "which of these tokens are allowed" and "accept this token" over a pipe. Every call has a time
bound; a worker that misses it, runs out of memory or dies is killed and started again, and only its request ends
(:class:`GrammarRejected`). The worker's stderr goes nowhere: llama.cpp prints a rejected grammar verbatim there,
which would let a client write lines into the server's log.

The contract grammar from the bundle is trusted and stays in process (edgetune.engine): no pipe on the default path.

    python -m edgetune.grammar_worker MODEL.gguf MEMORY_BYTES     # the child (the engine starts it)
"""

from __future__ import annotations

import os
import select
import struct
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from edgetune.sampling import GrammarError
from edgetune.llama import _child_env, exit_reason

if TYPE_CHECKING:
    import numpy as np

#: Address space a worker may use beyond what it holds once the vocabulary is loaded (a legitimate grammar needs a
#: few MB; the 64 KB repetition grammar of issue 19 wanted 2.3 GB).
WORKER_MEMORY_BYTES = 512 * 2**20
START_TIMEOUT_S = 60.0  #: Python, llama_cpp and a vocabulary-only load (about 1 s here)
_HEADER = struct.Struct("<Ic")  # payload length, operation
_KINDS = {"gbnf": b"g", "json_schema": b"j"}


class GrammarRejected(GrammarError):
    """The request's own grammar failed: it does not compile, or it cost more time or memory than allowed."""


@dataclass(frozen=True)
class CustomGrammar:
    """A grammar a client sent: compiled and applied only in a :class:`GrammarWorker`."""

    kind: Literal["gbnf", "json_schema"]
    text: str

    @property
    def what(self) -> str:
        """What a message calls it."""
        return "GBNF grammar" if self.kind == "gbnf" else "JSON schema"


def gbnf_from_json_schema(schema: str) -> str:
    """GBNF for a JSON schema (llama.cpp's converter); GrammarError when the schema is not usable. The converter
    reports what it cannot handle (an unknown type, an unresolvable or remote ``$ref``, a bad pattern) with
    ``assert``: those are the client's errors, not the server's."""
    import json

    from llama_cpp.llama_grammar import json_schema_to_gbnf

    try:
        parsed = json.loads(schema)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise GrammarError(f"not valid JSON: {getattr(exc, 'msg', exc)}") from None
    if not isinstance(parsed, dict):
        raise GrammarError(f"a JSON schema is an object, got {type(parsed).__name__}")
    try:
        return json_schema_to_gbnf(schema)
    except (AssertionError, ValueError, KeyError, TypeError, IndexError, NotImplementedError, RecursionError) as exc:
        raise GrammarError(f"cannot be turned into a grammar: {str(exc)[:200]}") from None


class GrammarWorker:
    """One child process holding at most one compiled grammar; its calls raise GrammarRejected on a timeout or its
    death (it is then started again). Used from one thread (the engine's)."""

    def __init__(self, model_path: Path | str, timeout_s: float, memory_bytes: int = WORKER_MEMORY_BYTES):
        self.model_path = Path(model_path)
        self.timeout_s = timeout_s
        self.memory_bytes = memory_bytes
        self.restarts = 0
        self._proc: subprocess.Popen | None = None
        self._ready = False
        self._spawn()

    def _spawn(self) -> None:
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "edgetune.grammar_worker", str(self.model_path), str(self.memory_bytes)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=_child_env(),
            start_new_session=True)  # a Ctrl-C to the server's process group is the server's to handle
        self._ready = False

    @property
    def pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid

    def wait_ready(self) -> None:
        """Block until the child has loaded the vocabulary (GrammarRejected if it cannot)."""
        if not self._ready:
            self._expect(self._recv(START_TIMEOUT_S, "starting"), b"R", "starting")
            self._ready = True

    def compile(self, grammar: CustomGrammar) -> None:
        """Convert (JSON schema) and compile ``grammar``, replacing the previous one; GrammarError if it does not
        compile, GrammarRejected if it takes too long or too much memory."""
        self.wait_ready()
        self._send(b"G", _KINDS[grammar.kind] + grammar.text.encode("utf-8", "surrogatepass"))
        op, payload = self._recv(self.timeout_s, "compiling the grammar")
        if op == b"E":
            raise GrammarError(payload.decode("utf-8", "replace"))
        self._expect((op, payload), b"K", "compiling the grammar")

    def allowed(self, ids: "np.ndarray") -> "np.ndarray":
        """The ``ids`` (int32) the compiled grammar allows in its current state."""
        import numpy as np

        self._send(b"A", np.ascontiguousarray(ids, dtype=np.intc).tobytes())
        op, payload = self._recv(self.timeout_s, "checking tokens against the grammar")
        self._expect((op, payload), b"A", "checking tokens against the grammar")
        return np.frombuffer(payload, dtype=np.intc)

    def accept(self, token: int) -> None:
        self._send(b"T", struct.pack("<i", token))
        self._expect(self._recv(self.timeout_s, "accepting a token"), b"K", "accepting a token")

    def free(self) -> None:
        """Drop the compiled grammar (the worker waits for the next one); a worker that does not answer at once is
        restarted."""
        if self._proc is None or not self._ready:
            return
        try:
            self._send(b"F", b"")
            self._expect(self._recv(self.timeout_s, "releasing the grammar"), b"K", "releasing the grammar")
        except GrammarRejected:
            pass  # _recv restarted it already

    def close(self) -> None:
        if self._proc is None:
            return
        proc, self._proc = self._proc, None
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                stream.close()  # EOF: the child exits
        try:
            proc.wait(2.0)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    # ------------------------------------------------------------------------------------------------ the pipe
    def _send(self, op: bytes, payload: bytes) -> None:
        assert self._proc is not None and self._proc.stdin is not None
        try:
            self._proc.stdin.write(_HEADER.pack(len(payload), op) + payload)
            self._proc.stdin.flush()
        except (BrokenPipeError, OSError):
            self._fail("receiving a request")

    def _recv(self, timeout_s: float, doing: str) -> tuple[bytes, bytes]:
        assert self._proc is not None and self._proc.stdout is not None
        fd = self._proc.stdout.fileno()
        end = time.monotonic() + timeout_s
        data = b""
        need = _HEADER.size
        header: tuple[int, bytes] | None = None
        while True:
            while len(data) < need:
                left = end - time.monotonic()
                if left <= 0 or not select.select([fd], [], [], left)[0]:
                    self._fail(doing, timed_out=timeout_s)
                chunk = os.read(fd, max(need - len(data), 1 << 16))
                if not chunk:
                    self._fail(doing)
                data += chunk
            if header is None:
                header = _HEADER.unpack(data[:_HEADER.size])
                data = data[_HEADER.size:]
                need = header[0]
                continue
            return header[1], data

    def _expect(self, message: tuple[bytes, bytes], op: bytes, doing: str) -> None:
        if message[0] != op:
            self._fail(doing, unexpected=message[0])

    def _fail(self, doing: str, timed_out: float | None = None, unexpected: bytes | None = None) -> None:
        """Kill the worker, start a fresh one, raise GrammarRejected saying what happened."""
        assert self._proc is not None
        proc = self._proc
        if proc.poll() is None:
            proc.kill()
        code = proc.wait()
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                stream.close()
        self.restarts += 1
        self._spawn()
        if timed_out is not None:
            why = f"took longer than {timed_out * 1000:g} ms"
        elif unexpected is not None:
            why = f"answered {unexpected!r}"
        else:
            why = (f"ran out of memory or crashed (its worker process {exit_reason(code)}; it may use "
                   f"{self.memory_bytes // 2**20} MiB)")
        raise GrammarRejected(f"is too expensive: {doing} {why}")


# ------------------------------------------------------------------------------------------------- the child
def _read_exact(stream: Any, n: int) -> bytes | None:
    data = stream.read(n)
    return data if len(data) == n else None


def _serve(model_path: str, memory_bytes: int) -> int:
    import resource

    import llama_cpp
    import numpy as np

    from edgetune.sampling import grammar_allows, init_grammar
    from edgetune.llama import construct

    llm = construct(model_path, vocab_only=True, verbose=False)
    vocab = llm._model.vocab
    scratch = np.zeros(llama_cpp.llama_vocab_n_tokens(vocab), dtype=np.dtype([("id", np.intc), ("logit", np.single), ("p", np.single)],
                                                  align=True))
    with open("/proc/self/statm") as f:
        size = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    resource.setrlimit(resource.RLIMIT_AS, (size + memory_bytes, size + memory_bytes))
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer

    def reply(op: bytes, payload: bytes = b"") -> None:
        stdout.write(_HEADER.pack(len(payload), op) + payload)
        stdout.flush()

    grammar = None
    reply(b"R")
    while (header := _read_exact(stdin, _HEADER.size)) is not None:
        length, op = _HEADER.unpack(header)
        payload = _read_exact(stdin, length) if length else b""
        if payload is None:
            break
        if op == b"G":
            if grammar is not None:
                llama_cpp.llama_sampler_free(grammar)
                grammar = None
            text = payload[1:].decode("utf-8", "surrogatepass")
            try:
                gbnf = text if payload[:1] == b"g" else gbnf_from_json_schema(text)
                grammar = init_grammar(vocab, gbnf)
            except GrammarError as exc:
                reply(b"E", str(exc).encode("utf-8", "replace"))
                continue
            reply(b"K")
        elif op == b"A":
            reply(b"A", grammar_allows(grammar, np.frombuffer(payload, dtype=np.intc), scratch).tobytes())
        elif op == b"T":
            llama_cpp.llama_sampler_accept(grammar, struct.unpack("<i", payload)[0])
            reply(b"K")
        elif op == b"F":
            if grammar is not None:
                llama_cpp.llama_sampler_free(grammar)
                grammar = None
            reply(b"K")
    return 0


if __name__ == "__main__":
    sys.exit(_serve(sys.argv[1], int(sys.argv[2])))
