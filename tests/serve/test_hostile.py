"""Hostile grammars and budgets against the real server on loopback (issue 19): each request fails with the status
named, or answers cleanly, and the server stays alive, SERVING, and answers the next good request normally."""

from __future__ import annotations

import json
import threading

import grpc
import pytest

from serve.client import Client
from tests.hostile import FORGED, PARENS, REPEATS, WEDGE
from tests.serve.conftest import start_edge



@pytest.fixture(scope="module")
def guarded(tmp_path_factory):
    """A server with custom grammars on, two sequences, a 500 ms grammar time bound."""
    proc = start_edge(tmp_path_factory.mktemp("guarded"), "--contexts", "2", "--queue", "2", "--custom-grammars",
                      "--grammar-timeout-ms", "500", metrics=False)
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture()
def client(guarded):
    with Client(guarded.target, timeout=60.0) as c:
        yield c


def _still_serving(proc, client) -> None:
    assert proc.popen.poll() is None, "the server died"
    assert client.health() == "SERVING"
    answer = client.generate("go to the kitchen", max_tokens=40)
    assert answer.valid and answer.finish_reason == "stop", answer.text


def _rejected(client, **kwargs) -> str:
    with pytest.raises(grpc.RpcError) as exc:
        client.generate("go", max_tokens=40, **kwargs)
    assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT, exc.value.details()
    return exc.value.details()


@pytest.mark.parametrize("kwargs, problem", [
    (dict(grammar=PARENS), "constraint.value: the GBNF grammar nests parentheses more than 64 deep"),
    (dict(grammar=REPEATS), "constraint.value: the GBNF grammar expands to more than"),
    (dict(grammar='root ::= "a"{0,60000}'), "constraint.value: the GBNF grammar repeats up to 60000 times"),
    (dict(json_schema='{"type": "array", "minItems": 1e8}'), "constraint.value: the JSON schema $.minItems is 1e+08"),
    (dict(json_schema='{"type": "object", "properties": {"a": {"type": "string", "minLength": 100000000}}}'),
     "constraint.value: the JSON schema $.properties.a.minLength is 1e+08"),
    (dict(json_schema='{"$ref": "https://example.com/schema.json"}'), "constraint.value: the JSON schema $.$ref is"),
    (dict(json_schema='{"type": "banana"}'), "constraint.value: the JSON schema cannot be turned into a grammar: "
                                             "Unrecognized schema"),
    (dict(json_schema='{"$ref": "#/$defs/nope"}'), "constraint.value: the JSON schema cannot be turned into"),
    (dict(json_schema='{"type": "string", "pattern": "(("}'), "constraint.value: the JSON schema cannot be turned"),
    (dict(grammar=FORGED), "constraint.value: the GBNF grammar does not compile"),
])
def test_hostile_grammar_is_invalid_argument_and_the_server_lives(guarded, client, kwargs, problem):
    assert _rejected(client, **kwargs).startswith(problem)
    _still_serving(guarded, client)


def test_wedging_grammar_ends_its_request_while_the_other_sequence_decodes(guarded, client):
    """The grammar spins inside llama.cpp: its worker is killed at the time bound, the request fails, and a request
    decoding beside it in the other sequence answers normally."""
    beside = {}

    def neighbour():
        with Client(guarded.target, timeout=60.0) as other:
            beside["answer"] = other.generate("walk to the garden then sit down", max_tokens=60)

    thread = threading.Thread(target=neighbour)
    thread.start()
    details = _rejected(client, grammar=WEDGE)
    thread.join(60)
    assert details.startswith("constraint.value: the GBNF grammar is too expensive:") and "500 ms" in details
    assert beside["answer"].valid and beside["answer"].finish_reason == "stop"
    _still_serving(guarded, client)
    assert client.generate("is the door open?", grammar='root ::= "yes" | "no"', max_tokens=8).text in ("yes", "no")


def test_huge_max_length_is_clamped_and_answers(guarded, client):
    """maxLength 25000 (200 KB of nested GBNF from llama.cpp's converter: SIGSEGV) is clamped to SCHEMA_BOUND."""
    answer = client.generate("name a colour", json_schema='{"type": "string", "maxLength": 25000}', max_tokens=16)
    assert answer.finish_reason in ("stop", "length")
    assert answer.text.startswith('"')
    _still_serving(guarded, client)


def test_grammar_that_allows_no_token_ends_the_answer_cleanly(guarded, client):
    """No token spells "\\x00": every step's check rejects the whole vocabulary, and the answer stops, empty."""
    for seed in (1, 2):
        answer = client.generate("go", grammar='root ::= "\\x00" "a"', temperature=1.0, seed=seed, max_tokens=8)
        assert answer.finish_reason == "stop" and answer.text == "" and not answer.error
    _still_serving(guarded, client)


def test_rejected_grammars_do_not_reach_the_log(guarded, client):
    _rejected(client, grammar=FORGED)
    assert "FORGED" not in guarded.log.read_text()


def test_max_tokens_below_the_close_reserve_is_refused_naming_the_minimum(guarded, client):
    with pytest.raises(grpc.RpcError) as exc:
        client.generate("go", max_tokens=16)
    assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    minimum = int(exc.value.details().split("at least ")[1].split()[0])
    assert exc.value.details().startswith("sampling.max_tokens: 16; a contract-constrained answer needs at least")
    with pytest.raises(grpc.RpcError) as exc:
        client.generate("go", max_tokens=minimum, temperature=1.0)
    sampled = int(exc.value.details().split("at least ")[1].split()[0])
    assert sampled > minimum  # sampling may spell a call a character per token
    assert client.generate("go to the lab", max_tokens=minimum).valid
    assert client.generate("go", max_tokens=16, constraint="none").completion_tokens <= 16
    assert json.loads(client.generate("go to the lab", max_tokens=sampled, temperature=1.0, seed=3).text)
