"""The tokenizer/template check: silent on a faithful GGUF, loud on every way a tokenizer goes wrong in export."""

from __future__ import annotations

import json
import shutil

import pytest

from export.verify import TokenizerMismatch, check_tokenizer, end_of_turn_id

CHAT = [{"role": "system", "content": "You translate robot commands."}, {"role": "user", "content": "Sit down."}]


def _tokenizer(directory):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(directory)


def test_faithful_gguf_passes_and_reports_what_it_compared(tiny_merged, tiny_f16):
    summary = check_tokenizer(tiny_f16, _tokenizer(tiny_merged), ["Go to the kitchen."], [CHAT])
    assert summary["chat_template"] == "identical"
    assert (summary["bos_id"], summary["eos_id"], summary["end_of_turn"]) == (1, 2, "<|im_end|>")
    assert summary["special_tokens"] >= 3 and summary["chat_prompts"] == 1


def _broken(tmp_path, source, edit):
    broken = tmp_path / "broken-tokenizer"
    shutil.copytree(source, broken, ignore=shutil.ignore_patterns("*.safetensors"))
    edit(broken)
    return _tokenizer(broken)


def _set_eos(directory):
    config = json.loads((directory / "tokenizer_config.json").read_text())
    config["eos_token"] = "<|endoftext|>"
    (directory / "tokenizer_config.json").write_text(json.dumps(config))


def _edit_template(directory):
    path = directory / "chat_template.jinja"
    path.write_text(path.read_text().replace("<|im_start|>' + message['role'] + '\n'", "<|im_start|>' + message['role'] + ': '"))


def _drop_template(directory):
    (directory / "chat_template.jinja").unlink()


@pytest.mark.parametrize("edit, expected", [
    (_set_eos, r"EOS token id: GGUF 2 vs HF 0"),
    (_edit_template, r"chat template differs from char \d+(.|\n)*chat prompt rendered by llama-cpp-python differs"),
    (_drop_template, r"chat template: the HF tokenizer has none"),
], ids=["wrong-eos", "edited-template", "no-template"])
def test_broken_tokenizer_config_fails_loudly(tmp_path, tiny_merged, tiny_f16, edit, expected):
    tokenizer = _broken(tmp_path, tiny_merged, edit)
    with pytest.raises(TokenizerMismatch, match=expected):
        check_tokenizer(tiny_f16, tokenizer, [], [CHAT])


def test_end_of_turn_comes_from_the_chat_template(tiny_merged):
    tokenizer = _tokenizer(tiny_merged)
    assert tokenizer.convert_ids_to_tokens(end_of_turn_id(tokenizer)) == "<|im_end|>"


def test_grammar_acceptance_decides_when_a_free_answer_is_also_the_constrained_one(tiny_merged, tiny_f16, robot_task):
    """A greedy free answer the grammar admits token by token (and at its stop token), all before the close reserve
    starts, is what constrained decoding would produce; anything else must be generated again under the grammar."""
    from edgetune.engine import Outcome
    from export.verify import _grammar_accepts, load_llama

    tokenizer = _tokenizer(tiny_merged)
    grammar = robot_task.contract.grammar()
    llm = load_llama(tiny_f16, vocab_only=True)
    vocab = llm._model.vocab

    def answer(text, stop=2):
        return Outcome(text=text, tokens=tokenizer.encode(text, add_special_tokens=False), stop_token=stop)

    valid = robot_task.examples[1]["assistant"]
    assert _grammar_accepts(vocab, grammar, answer(valid), close_after=100)
    assert not _grammar_accepts(vocab, grammar, answer(valid), close_after=len(answer(valid).tokens)), \
        "reached the close reserve: closing tokens may have been preferred"
    assert not _grammar_accepts(vocab, grammar, answer(valid, stop=None), 100), "ran into max_tokens: never reused"
    assert not _grammar_accepts(vocab, grammar, answer(valid[:-1]), 100), "incomplete: EOS not allowed yet"
    assert not _grammar_accepts(vocab, grammar, answer(valid.replace("kitchen", "Kitchen")), 100)  # lower case only
    assert not _grammar_accepts(vocab, grammar, answer('["nav.dock()"] trailing'), 100)
    llm.close()


def test_export_scores_a_quant_with_the_answers_the_server_gives(tmp_path, embedded_gguf_path, robot_task):
    """The same prompts, greedy: export's per-quant answers (free and grammar-constrained) are the server's
    answers token for token, so the score export chooses a quant by is the score the robot gets."""
    from edgetune.task import load_task
    from export.verify import evaluate_quant
    from serve.client import Client
    from tests.serve.conftest import start_edge

    task = load_task("robot_sdk")
    commands = [e["user"] for e in task.examples] + ["walk to the garden then sit down", "take a photo of the lab",
                                                     "say hello and go to the office"]
    references = [e["assistant"] for e in task.examples] + ['["nav.dock()"]'] * 3
    examples = [(task.messages(c), r) for c, r in zip(commands, references)]
    result = evaluate_quant(embedded_gguf_path, "Q4_1", task, examples, max_tokens=48, n_ctx=1024, threads=2)
    edge = start_edge(tmp_path, "--model", str(embedded_gguf_path), "--contexts", "4", "--n-ctx", "1024",
                      "--threads", "2", "--max-tokens-limit", "512", metrics=False)
    try:
        with Client(edge.target, timeout=120) as client:
            free = [client.generate(c, constraint="none", max_tokens=48).text for c in commands]
            constrained = [client.generate(c, max_tokens=48).text for c in commands]
    finally:
        edge.stop()
    assert result.free.answers == free
    assert result.constrained is not None and result.constrained.answers == constrained
    score = task.contract.score(constrained, references)
    assert (score.exact_match, score.valid_rate) == (result.constrained.exact_match, result.constrained.valid_rate)
    assert result.constrained.valid_rate == 1.0


def test_the_served_chat_tokens_are_compared_too(tiny_merged, tiny_f16):
    # HF parses special-token text anywhere; the engine only in the template's text, so a content holding a turn
    # marker is where the two may differ (and export's probe chats, plain commands, must not)
    chat = [*CHAT[:1], {"role": "user", "content": "Sit down.<|im_end|>"}]
    with pytest.raises(TokenizerMismatch, match=r"served chat tokens \(template text with special tokens, contents as "
                                                r"plain text\) differ from HF's at position \d+"):
        check_tokenizer(tiny_f16, _tokenizer(tiny_merged), [], [chat])
