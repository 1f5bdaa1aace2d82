"""The embedded model through llama-cpp-python: it answers, llama.cpp accepts every grammar the contract emits, and
constrained decoding with sampling only ever produces answers the validator accepts."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings

from edgetune.task import load_task
from tests.edgetune import gbnf
from tests.edgetune.strategies import contracts

llama_cpp = pytest.importorskip("llama_cpp")

PROMPTS = [
    "Go to the kitchen and find the red ball.",
    "Stand up and walk forward slowly for three seconds.",
    "Report your battery level, then dock.",
    "Say hello to the guests at the front door.",
    "Pick up the keys and put them on the table.",
    "Sit down.",
    "Turn left in place for two seconds, then stop.",
    "Take a photo of the garden and tell me where you are.",
]
SEEDS = (1, 2, 3)


@pytest.fixture(scope="module")
def llm(embedded_gguf_path):
    # one thread: on a shared CI box llama.cpp's spinning worker threads lose their cores and a 135M model runs
    # 10x slower with two threads than with one (measured here)
    model = llama_cpp.Llama(model_path=str(embedded_gguf_path), n_ctx=1024, n_threads=1, seed=0, verbose=False)
    yield model
    model.close()


def llama_parses(llm, grammar: str) -> bool:
    """Whether llama.cpp itself parses ``grammar`` (LlamaGrammar.from_string only stores the text)."""
    sampler = llama_cpp.llama_sampler_init_grammar(llm._model.vocab, grammar.encode("utf-8"), b"root")
    if not sampler:
        return False
    llama_cpp.llama_sampler_free(sampler)
    return True


def test_llama_cpp_answers_the_capital_of_france(llm):
    out = llm.create_chat_completion(
        messages=[
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "What is the capital of France?"},
        ],
        temperature=0.0,
        max_tokens=24,
    )
    assert "Paris" in out["choices"][0]["message"]["content"]


def test_llama_cpp_rejects_a_broken_grammar_so_the_check_below_can_fail(llm):
    assert not llama_parses(llm, 'root ::= "[" (call\n')


def test_llama_cpp_parses_the_robot_grammar(llm, robot_task):
    assert llama_parses(llm, robot_task.contract.grammar())


@settings(max_examples=25, deadline=None)
@given(contract=contracts())
def test_llama_cpp_parses_every_grammar_the_contract_emits(llm, contract):
    assert llama_parses(llm, contract.grammar()), contract.grammar()


@pytest.mark.slow  # 24 generations
def test_constrained_sampling_on_the_embedded_model_only_produces_valid_answers(llm, robot_task):
    # The robot grammar with at most 3 calls keeps each answer short (the tiny model likes to repeat a call up to
    # max_calls); max_tokens covers the longest answer the grammar admits (every token is at least one byte), so
    # an answer that does not finish means the grammar failed to end, not that the budget ran out.
    contract = dataclasses.replace(robot_task.contract, max_calls=3)
    grammar = contract.grammar()
    max_tokens = int(gbnf.max_length(gbnf.parse(grammar))) + 1
    constraint = llama_cpp.LlamaGrammar.from_string(grammar, verbose=False)
    answers = []
    for prompt in PROMPTS:
        for seed in SEEDS:
            out = llm.create_chat_completion(
                messages=robot_task.messages(prompt),
                grammar=constraint,
                temperature=1.0,  # with llama-cpp-python's default top-k/top-p/min-p, as a server samples
                max_tokens=max_tokens,
                seed=seed,
            )
            choice = out["choices"][0]
            text = choice["message"]["content"]
            assert choice["finish_reason"] == "stop", (prompt, seed, text)
            verdict = contract.validate(text)
            assert verdict.valid, (prompt, seed, text, verdict.violations)
            assert robot_task.contract.validate(text).valid
            answers.append(verdict.normalized)
    assert len(set(answers)) > len(PROMPTS), "sampling should vary the answers; is the seed ignored?"


def test_student_task_has_no_grammar_so_it_is_sampled_freely():
    assert load_task("student_2nd_grade").contract.grammar() is None
