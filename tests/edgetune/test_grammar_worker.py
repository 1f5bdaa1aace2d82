"""Client grammars in a worker process: what llama.cpp crashes, spins or runs out of memory on ends the call with
GrammarRejected, and the worker is started again and works."""

from __future__ import annotations

import llama_cpp
import numpy as np
import pytest

from edgetune.sampling import GrammarError
from edgetune.grammar_worker import CustomGrammar, GrammarRejected, GrammarWorker, gbnf_from_json_schema
from tests.hostile import PARENS, REPEATS, WEDGE


@pytest.fixture(scope="module")
def vocab(embedded_gguf_path):
    llm = llama_cpp.Llama(str(embedded_gguf_path), vocab_only=True, verbose=False)
    yield llm
    llm.close()


@pytest.fixture()
def worker(embedded_gguf_path):
    w = GrammarWorker(embedded_gguf_path, timeout_s=0.5, memory_bytes=256 * 2**20)
    w.wait_ready()
    yield w
    w.close()


def _yes_no(worker, vocab):
    worker.compile(CustomGrammar("gbnf", 'root ::= "yes" | "no"'))
    yes, no, maybe = (vocab.tokenize(w.encode(), add_bos=False)[0] for w in ("yes", "no", "maybe"))
    assert set(worker.allowed(np.asarray([yes, no, maybe], dtype=np.intc))) == {yes, no}
    worker.accept(yes)
    assert not len(worker.allowed(np.asarray([yes, no, maybe], dtype=np.intc)))  # "yes" is complete
    worker.free()


def test_a_worker_checks_and_accepts_tokens(worker, vocab):
    _yes_no(worker, vocab)
    with pytest.raises(GrammarError, match="does not compile") as exc:
        worker.compile(CustomGrammar("gbnf", "root ::= ["))
    assert not isinstance(exc.value, GrammarRejected) and worker.restarts == 0  # a plain error: no restart
    worker.compile(CustomGrammar("json_schema", '{"enum": ["yes", "no"]}'))


@pytest.mark.parametrize("grammar, timeout_s, problem", [
    (PARENS, 0.5, r"compiling the grammar ran out of memory or crashed \(its worker process died with SIGSEGV"),
    (WEDGE, 0.5, "checking tokens against the grammar took longer than 500 ms"),
    (REPEATS, 30.0, r"compiling the grammar ran out of memory or crashed .* it may use 128 MiB"),  # wanted 2.3 GB
])
def test_a_crashing_spinning_or_swelling_grammar_restarts_the_worker(embedded_gguf_path, vocab, grammar, timeout_s,
                                                                     problem):
    worker = GrammarWorker(embedded_gguf_path, timeout_s=timeout_s, memory_bytes=128 * 2**20)
    try:
        old = worker.pid
        with pytest.raises(GrammarRejected, match=problem):
            worker.compile(CustomGrammar("gbnf", grammar))
            worker.accept(vocab.tokenize(b"{", add_bos=False)[0])  # WEDGE compiles; its parse stacks explode here
            worker.allowed(np.arange(vocab.n_vocab(), dtype=np.intc))
        assert worker.restarts == 1 and worker.pid != old
        _yes_no(worker, vocab)
    finally:
        worker.close()


@pytest.mark.parametrize("schema, problem", [
    ('{"type": "banana"}', "Unrecognized schema"),
    ('{"$ref": "https://example.com/s.json"}', "Fetching remote schemas is not allowed"),
    ('{"$ref": "#/$defs/nope"}', "Error resolving ref"),
    ('{"type": "string", "pattern": "(("}', "Pattern must start with"),
])
def test_json_schemas_llama_cpp_cannot_convert_are_grammar_errors(schema, problem):
    """llama.cpp's converter reports them with assert (an AssertionError was an INTERNAL error)."""
    with pytest.raises(GrammarError, match=f"cannot be turned into a grammar: {problem}"):
        gbnf_from_json_schema(schema)
    assert "root" in gbnf_from_json_schema('{"type": "object", "properties": {"a": {"type": "integer"}}}')
