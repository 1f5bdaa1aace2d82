"""Misspelt command words read as the task's own words before the model sees a command.

A 135M student reads a word well only in the spellings it was trained on: "qick" became a slow move, "letf" a
forward one, "phooto" a phone to pick (6 of the default's 22 test mistakes were one slipped letter). Spelling
correction in the manner of Peter Norvig's corrector fixes such slips, narrowed here so it cannot do harm:

- only a word that no English dictionary knows is changed (pyspellchecker's English frequency list, less its rare
  tail; "dont" is known as "don't", "dressers" as a plural), so "lift", "ring" and "form" stay as typed, and so
  does every word of the task's list;
- it changes only into a word of the task's list (``ContractSpec.spelling``: the words its commands are made of, the
  most common first) that is one slip away: a letter dropped, doubled or added, two neighbours swapped, one replaced;
  the likelier slip wins, then the list's order;
- quoted text (speech: ``say "hi Jonh"``) stays as said.

Training data, evaluation, export checks, serving and the bench read commands through the same correction
(``ContractSpec.read_command``, called where a chat is built: the data stage's split writer, ``TaskSpec.messages``
and ``Deployed.chat``), so the model sees what it was trained on. Applying it twice changes nothing.
"""

from __future__ import annotations

import functools
import re
from typing import Container, Sequence

_LETTERS = "abcdefghijklmnopqrstuvwxyz"
_WORD = re.compile(r"[A-Za-z]+")
#: quoted speech: "...", “...”, and '...' where the quotes are not apostrophes ("don't", "Bob's")
_QUOTED = re.compile(r"\"[^\"]*\"|“[^”]*”|(?<![A-Za-z])'[^']*'(?![A-Za-z])")
MIN_LETTERS = 3  #: shorter words have too many neighbours to correct
#: a word seen fewer times than this in pyspellchecker's list counts as unknown: the list's long tail (half of it
#: sits at its floor, 50) holds common slips ("robt", "wheen", "thnk") beside rare words
KNOWN_COUNT = 100


@functools.cache
def english_words() -> frozenset[str]:
    """The words of pyspellchecker's English frequency list seen at least KNOWN_COUNT times, loaded once."""
    from spellchecker import SpellChecker

    counts = SpellChecker(language="en", distance=1).word_frequency.dictionary
    return frozenset(word for word, count in counts.items() if count >= KNOWN_COUNT)


def one_slip(typed: str) -> dict[str, int]:
    """Every string one slip away from ``typed`` -> how likely that slip is (0 most likely): two neighbours swapped
    or a letter doubled (0), a letter dropped (1), a letter added or replaced (2). "froom" is "from" with a doubled
    letter before it is "room" with an added one."""
    splits = [(typed[:i], typed[i:]) for i in range(len(typed) + 1)]
    slips: dict[str, int] = {}
    for kind, words in enumerate((
            {a + b[1] + b[0] + b[2:] for a, b in splits if len(b) > 1}
            | {a + b[1:] for a, b in splits if b and a and a[-1] == b[0]},
            {a + c + b for a, b in splits for c in _LETTERS},
            {a + b[1:] for a, b in splits if b} | {a + c + b[1:] for a, b in splits if b for c in _LETTERS})):
        for word in words:
            slips.setdefault(word, kind)
    return slips


def known(word: str, also: Container[str] = ()) -> bool:
    """An English word (or one of ``also``), also typed without its apostrophe ("dont") or as a plural ("dressers")."""
    words = english_words()
    return (word in words or word in also or any(f"{word[:i]}'{word[i:]}" in words for i in range(1, len(word)))
            or (word.endswith("s") and len(word) > 3 and (word[:-1] in words or word[:-1] in also)))


class Speller:
    """Corrects a command's misspelt words into ``words`` (lower-case, the most likely first)."""

    def __init__(self, words: Sequence[str]):
        self._rank: dict[str, int] = {}
        for word in words:
            self._rank.setdefault(word, len(self._rank))
        if self._rank:
            english_words()  # loaded here (~0.5 s), where a server builds its prompts, not on the first request

    def word(self, typed: str) -> str:
        """``typed`` corrected, or as typed when it is known or no single slip explains it; case kept."""
        lower = typed.lower()
        if len(lower) < MIN_LETTERS or known(lower, self._rank):
            return typed
        candidates = [(kind, self._rank[w], w) for w, kind in one_slip(lower).items() if w in self._rank]
        if not candidates:
            return typed
        best = min(candidates)[2]
        if typed.isupper() and len(typed) > 1:
            return best.upper()
        return best.capitalize() if typed[0].isupper() else best

    def __call__(self, text: str) -> str:
        if not self._rank:
            return text
        out, pos = [], 0
        for quoted in [*_QUOTED.finditer(text), None]:
            end = quoted.start() if quoted else len(text)
            out.append(_WORD.sub(lambda m: self.word(m.group()), text[pos:end]))
            if quoted:
                out.append(quoted.group())
                pos = quoted.end()
        return "".join(out)
