"""Misspelt command words: corrected into the task's words, never where the typed word is a word or speech."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgetune.config import ConfigError
from edgetune.contract import ContractSpec
from edgetune.spelling import Speller
from edgetune.task import load_task

WORDS = ["then", "room", "from", "right", "left", "quick", "slow", "turn", "photo", "bring", "kitchen", "stop", "okay",
         "key"]


@pytest.fixture(scope="module")
def speller():
    return Speller(WORDS)


@pytest.mark.parametrize("typed, read", [
    ("qick", "quick"),      # a letter dropped
    ("solw", "slow"),       # neighbours swapped
    ("phooto", "photo"),    # a letter doubled
    ("letf", "left"),
    ("kitchn", "kitchen"),
    ("froom", "from"),      # a doubled letter is likelier than an added one ("room" comes first in the list)
    ("okey", "okay"),       # a replaced letter: the list's order ("key" comes later)
    ("Tunr", "Turn"), ("STPO", "STOP"),  # case kept
])
def test_one_slip_is_read_as_the_tasks_word(speller, typed, read):
    assert speller.word(typed) == read


@pytest.mark.parametrize("typed", [
    "lift", "ring", "form", "brig",  # English words one slip from a task word stay as typed
    "dont", "youre",                 # contractions typed without the apostrophe
    "rooms", "lefts",                # plurals
    "xylophone", "qqqq",             # nothing in the list a single slip away
    "ths",                           # 3 letters is the least it corrects; "ths" has no one-slip task word
    "to", "fo",                      # shorter words are never changed
])
def test_known_words_and_words_without_one_candidate_stay_as_typed(speller, typed):
    assert speller.word(typed) == typed


def test_a_command_keeps_its_punctuation_spacing_and_quoted_speech(speller):
    command = 'Turn letf  qick, then say "tunr off the stvoe" and \u201cstpo\u201d; don\'t slwo down!'
    assert speller(command) == 'Turn left  quick, then say "tunr off the stvoe" and \u201cstpo\u201d; don\'t slow down!'
    assert speller("Bob's room, then tunr") == "Bob's room, then turn"  # an apostrophe is not a quote


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("abcdefklmnoqrstuw '\",.")), max_size=60))
def test_reading_twice_changes_nothing(text):
    speller = Speller(WORDS)
    once = speller(text)
    assert speller(once) == once


def test_the_robot_task_reads_commands_through_its_spelling():
    task = load_task("robot_sdk")
    assert task.contract.spelling[:3] == ["the", "you", "and"]  # the most common first
    command = "Colud you rlol over to the kitchn and pick up the remtoe?"
    read = "Could you roll over to the kitchen and pick up the remote?"
    assert task.contract.read_command(command) == read
    assert task.messages(command)[1]["content"] == read


def test_a_contract_without_spelling_reads_commands_as_typed():
    assert ContractSpec(kind="text").read_command("qick") == "qick"


@pytest.mark.parametrize("word", ["Left", "no", "left turn", "café", 3])
def test_a_bad_spelling_word_names_its_place(word):
    from edgetune.config import from_dict

    with pytest.raises(ConfigError, match=r"spelling\[1\]"):
        from_dict(ContractSpec, {"kind": "text", "spelling": ["left", word]}, source="t.yaml")


def test_the_dictionary_loads_with_the_speller_not_on_the_first_command():
    from edgetune.spelling import english_words

    english_words.cache_clear()
    Speller([])
    assert english_words.cache_info().currsize == 0  # a task without a list never loads it
    Speller(WORDS)
    assert english_words.cache_info().currsize == 1
