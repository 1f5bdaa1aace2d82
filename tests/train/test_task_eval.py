"""The train-time task metric's grammar-constrained score: llama.cpp's grammar over the base GGUF's vocabulary,
applied to transformers' generation the way the server applies it."""

from __future__ import annotations

import pytest

from edgetune.base_model import load_base_model, resolve_base_model
from edgetune.task import load_task
from train.task_eval import GrammarCheck, Vocabulary, evaluate


@pytest.fixture(scope="module")
def task():
    return load_task("robot_sdk")


@pytest.fixture(scope="module")
def vocabulary():
    vocab = Vocabulary(resolve_base_model().path)
    yield vocab
    vocab.close()


@pytest.fixture(scope="module")
def base(task):
    model, tokenizer = load_base_model()
    tokenizer.padding_side = "left"
    return model, tokenizer


def _tokens(vocabulary: Vocabulary, text: str) -> list[int]:
    return vocabulary.llm.tokenize(text.encode(), add_bos=False, special=False)


def test_grammar_admits_a_valid_answer_and_rejects_an_invalid_one(task, vocabulary):
    end = vocabulary.llm.token_eos()
    valid, invalid = "[\"go(place='kitchen')\"]", "[\"go(place='The Moon')\"]"  # a place as said is lower case
    assert task.contract.validate(valid).valid and not task.contract.validate(invalid).valid
    for text, admitted in ((valid, True), (invalid, False), (valid[:-1], False)):  # cut short: no end of turn yet
        check = GrammarCheck(vocabulary, task.contract.grammar())
        assert check.admits(_tokens(vocabulary, text), end) is admitted, text
        check.close()


def test_constrained_score_makes_the_untuned_model_valid(task, vocabulary, base):
    model, tokenizer = base
    conversations = [[{"role": "system", "content": task.system}, {"role": "user", "content": command},
                      {"role": "assistant", "content": answer}]
                     for command, answer in (("go to the kitchen", "[\"go(place='kitchen')\"]"),
                                             ("sit down", '["sport.Sit()"]'))]
    scored = evaluate(model, tokenizer, task, conversations, max_new_tokens=160, batch_size=2, desc="t",
                      vocabulary=vocabulary)
    assert scored.valid_rate == 0.0  # free, the base model answers in prose
    assert scored.constrained["redecoded"] == 2
    assert scored.constrained["valid_rate"] == 1.0  # the grammar closed both answers inside 160 tokens


def test_giving_up_off_grammar_ends_answers_early_and_keeps_the_score(task, vocabulary, base):
    """The base model leaves the grammar within a few tokens: its answers end there, scored the same."""
    model, tokenizer = base
    conversations = [[{"role": "system", "content": task.system}, {"role": "user", "content": command},
                      {"role": "assistant", "content": answer}]
                     for command, answer in (("go to the kitchen", "[\"go(place='kitchen')\"]"),
                                             ("sit down", '["sport.Sit()"]'), ("what is 2+2", '["sport.Sit()"]'))]
    full = evaluate(model, tokenizer, task, conversations, max_new_tokens=48, batch_size=3, desc="t")
    cut = evaluate(model, tokenizer, task, conversations, max_new_tokens=48, batch_size=3, desc="t",
                   vocabulary=vocabulary, give_up=True)
    assert (cut.exact_match, cut.valid_rate) == (full.exact_match, full.valid_rate) == (0.0, 0.0)
    assert cut.generated_tokens == 2 * len(conversations) < full.generated_tokens  # prose: one token, then its end
    assert cut.constrained is None


def test_ordering_by_expected_length_keeps_each_answer_with_its_prompt(task, base):
    """The length hint only schedules the rows: every answer still comes back at its own prompt's index."""
    from train.sft_data import render_prompt
    from train.task_eval import generate_answers

    model, tokenizer = base
    prompts = [render_prompt(tokenizer, [*task.messages(command), {"role": "assistant", "content": ""}]) for command in
               ("go to the kitchen", "sit down", "say hello, then walk forward for two seconds")]
    plain, _ = generate_answers(model, tokenizer, prompts, 12, batch_size=1)
    hinted, _ = generate_answers(model, tokenizer, prompts, 12, batch_size=1, expected_lengths=[1, 3, 2])
    assert hinted == plain and len(set(plain)) == 3


def test_the_lm_head_projects_a_contiguous_input_while_generating(task, base):
    """A frozen model's head given the prompt pass's strided last-position slice copies its weight once per row
    (torch.matmul does not fold it): generation hands it a contiguous input instead, with the same answers."""
    from train.sft_data import render_prompt
    from train.task_eval import generate_answers

    model, tokenizer = base
    head = model.get_output_embeddings()
    inputs: list[bool] = []
    spy = head.register_forward_hook(lambda module, args, output: inputs.append(args[0].is_contiguous()))
    trainable = [p.requires_grad for p in model.parameters()]
    model.requires_grad_(False)  # as in the merged or adapter-wrapped model the evaluation decodes with
    try:
        prompts = [render_prompt(tokenizer, [*task.messages(command), {"role": "assistant", "content": ""}])
                   for command in ("go to the kitchen", "please say hello, then walk forward for two seconds")]
        batched, _ = generate_answers(model, tokenizer, prompts, 6, batch_size=2)
    finally:
        spy.remove()
        for parameter, flag in zip(model.parameters(), trainable):
            parameter.requires_grad_(flag)
    assert inputs and all(inputs)
    assert batched == generate_answers(model, tokenizer, prompts, 6, batch_size=1)[0]
