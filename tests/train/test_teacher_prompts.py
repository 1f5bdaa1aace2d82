"""Reading the teacher's answers back (train/teacher_prompts.py): the list under its key or a bare list, code fences
tolerated, a malformed answer a ValueError naming what was expected."""

from __future__ import annotations

import json

import pytest

from train.dataset import Example
from train.teacher_prompts import examples_from_answer, paraphrases_from_answer

COMMANDS = [Example("go to the kitchen", '["go(place=\'kitchen\')"]', "synth"), Example("dock", '["nav.dock()"]', "synth")]


def test_examples_are_read_from_the_key_or_a_bare_list_inside_a_fence():
    item = {"user": "dock please", "assistant": ["nav.dock()"]}  # a call list given as a list: kept as its JSON text
    for content in (json.dumps({"examples": [item]}), "```json\n" + json.dumps([item]) + "\n```"):
        assert examples_from_answer(content, "t") == [Example("dock please", '["nav.dock()"]', "t")]


def test_paraphrases_keep_their_commands_answers_and_skip_bad_ids():
    content = json.dumps({"paraphrases": [{"id": 1, "user": "go dock"}, {"id": 7, "user": "x"}, {"id": 0, "user": " "}]})
    assert paraphrases_from_answer(content, COMMANDS) == [Example("go dock", '["nav.dock()"]', "teacher-paraphrase")]


@pytest.mark.parametrize(("read", "key"), [(lambda c: examples_from_answer(c), "examples"),
                                           (lambda c: paraphrases_from_answer(c, COMMANDS), "paraphrases")])
def test_an_answer_without_the_list_names_the_key_it_needs(read, key):
    with pytest.raises(ValueError, match=f'expected {{"{key}": \\[...\\]}}'):
        read(json.dumps({key: "not a list"}))
    with pytest.raises(ValueError, match="empty answer"):
        read("")
