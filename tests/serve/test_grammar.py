"""The grammar mask against llama.cpp's own grammar sampling, on the embedded model."""

from __future__ import annotations

import pytest

from serve.grammar import (GrammarError, GrammarMask, check_gbnf, closing_tokens, gbnf_from_json_schema,
                           longest_items)


@pytest.fixture(scope="module")
def llm(embedded_gguf_path):
    from edgetune.llama import load_llama

    return load_llama(embedded_gguf_path, n_ctx=512, n_threads=1, verbose=False)


def _prompt(llm, robot_task, command):
    text = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in robot_task.messages(command))
    return llm.tokenize((text + "<|im_start|>assistant\n").encode(), add_bos=False, special=True)


def test_greedy_output_equals_llama_cpp_full_vocabulary_grammar(llm, robot_task):
    from llama_cpp import LlamaGrammar, LogitsProcessorList

    gbnf = robot_task.contract.grammar()
    for command in ("stand up and wave hello", "report your battery"):
        tokens = _prompt(llm, robot_task, command)
        # both from an empty cache: a reused prompt prefix changes the logits in the last bits, enough to flip
        # near-ties (the compact grammar has some: 'a' vs 'art' after "st")
        llm.reset()
        reference = llm.create_completion(tokens, max_tokens=16, temperature=0, grammar=LlamaGrammar.from_string(gbnf))
        llm.reset()
        with GrammarMask(llm._model.vocab, gbnf, candidates=64) as mask:
            fast = llm.create_completion(tokens, max_tokens=16, temperature=0,
                                         logits_processor=LogitsProcessorList([mask]))
        assert fast["choices"][0]["text"] == reference["choices"][0]["text"]


def test_budget_close_keeps_a_looping_answer_valid(llm, robot_task):
    from llama_cpp import LogitsProcessorList

    vocab = llm._model.vocab
    closing = closing_tokens(vocab, llm.detokenize)
    assert len(closing) > 10
    longest = max(len(llm.tokenize(item.encode(), add_bos=False)) for item in longest_items(robot_task.contract))
    assert longest >= 20  # "sport.Move(vx=-1.0, vy=-0.5, vyaw=-1.5)", ...
    tokens = _prompt(llm, robot_task, "walk forward, then walk forward again, and again, and again")
    with GrammarMask(vocab, robot_task.contract.grammar(), max_tokens=64, reserve=longest + 4, closing=closing) as mask:
        out = llm.create_completion(tokens, max_tokens=64, temperature=0, logits_processor=LogitsProcessorList([mask]))
    text = out["choices"][0]["text"]
    assert out["choices"][0]["finish_reason"] == "stop" and mask.forced_close
    assert robot_task.contract.validate(text).valid, text


@pytest.mark.parametrize("gbnf, problem", [
    ("root ::= undefined-rule", "does not compile"),
    ("root ::= [", "does not compile"),
    ('start ::= "a"', "no 'root"),
])
def test_grammar_that_does_not_compile_is_reported_not_crashing(llm, gbnf, problem):
    with pytest.raises(GrammarError, match=problem):
        check_gbnf(llm._model.vocab, gbnf)


def test_json_schema_errors():
    with pytest.raises(GrammarError, match="not valid JSON"):
        gbnf_from_json_schema("{nope")
    with pytest.raises(GrammarError, match="object"):
        gbnf_from_json_schema("[1, 2]")
    assert "root" in gbnf_from_json_schema('{"type": "object", "properties": {"a": {"type": "integer"}}}')
