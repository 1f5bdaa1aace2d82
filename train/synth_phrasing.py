"""The parts of a synthesized robot_sdk command (train/synth.py): objects, places, surfaces, durations and distances
as people say them, and the compact calls each answer is spelled with.

A clause is built with span markers around speech (spoken as written) and protected text (no typos, no
punctuation changes); train/synth.py removes them once the command is finished.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

from edgetune.contract import format_value
from train.synth_vocab import (BARE_PLACES, COMMON, COMMON_SURFACES, CONTAINERS, DETERMINERS, MASS, MODIFIERS, OBJECTS,
                               PLACES, PLACE_NAMES, PLURAL, SURFACES, UNKNOWN_PLACES)

# span markers inside a command while it is built: speech (spoken as written) and protected text (no typos,
# no punctuation changes); both are removed before the command is returned
SAY, SAY_END, KEEP, KEEP_END = "\x01", "\x02", "\x03", "\x04"
SPANS = re.compile(f"[{SAY}{KEEP}].*?[{SAY_END}{KEEP_END}]")

_ONES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
         "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen"]
_TENS = {20: "twenty", 30: "thirty", 40: "forty", 50: "fifty", 60: "sixty"}
NUMBER_WORDS = {w for w in _ONES + list(_TENS.values())} | {"half", "quarter", "a", "and"}


def number_word(n: int, rng: random.Random) -> str:
    """0..60 in words ("twenty-five" or "twenty five")."""
    if n < 20:
        return _ONES[n]
    tens, ones = divmod(n, 10)
    return _TENS[tens * 10] if not ones else f"{_TENS[tens * 10]}{rng.choice(['-', ' '])}{_ONES[ones]}"


def call(callee: str, **kwargs: object) -> str:
    """One call in the contract's normalised spelling."""
    return f"{callee}({', '.join(f'{k}={format_value(v)}' for k, v in kwargs.items())})"


def reject(reason: str) -> str:
    return call("robot.reject", reason=reason)


#: what each step kind emits, spelled once
def go(place: str) -> str:
    return call("go", place=place)


def find(name: str) -> str:
    return call("find", name=name)


def pick(name: str) -> str:
    return call("pick", name=name)


#: the speech slot: an audio.speak call whose text is filled from the finished command (case changes included)
SPEAK = "audio.speak(text=\x00)"


@dataclass(frozen=True)
class Step:
    """One clause of a command: its text (markers included, no final punctuation) and its compact calls."""

    text: str
    calls: tuple[str, ...]
    ends_move: bool = False  #: ends with StopMove, so a following "stop" adds nothing
    question: bool = False  #: a question ("where are my keys"): the command ends with "?"
    sentence: bool = False  #: not a bare imperative ("I'm in the kitchen, ...", "kitchen. now"): no wrapper in front


@dataclass
class State:
    """What the command so far implies, and what the step being built must do."""

    n_steps: int = 1
    index: int = 0
    holding: str | None = None  #: the object held (after a pick)
    plural: bool = False  #: the held object is "them"
    place: str | None = None  #: where the robot is
    ends_move: bool = False
    started: bool = False  #: the last step started an untimed move (a "stop" right after it would undo it)
    unknown: bool = False  #: the step being built must name a place that is not on the map

    @property
    def last(self) -> bool:
        return self.index == self.n_steps - 1

    @property
    def solo(self) -> bool:
        return self.n_steps == 1


def keep(text: str) -> str:
    """Protect ``text`` from typos and punctuation changes."""
    return f"{KEEP}{text}{KEEP_END}"


def typo(rng: random.Random, word: str) -> str:
    """One plausible typing slip in a word of 4+ letters (a drop only in 5+ letters, so 'left' never becomes 'let')."""
    k = rng.randrange(1, len(word) - 1)
    kind = rng.random()
    if kind < 0.4 or len(word) < 5:
        return word[:k] + word[k + 1] + word[k] + word[k + 2:] if kind < 0.7 else word[:k] + word[k] + word[k:]
    if kind < 0.75:
        return word[:k] + word[k + 1:]
    return word[:k] + word[k] + word[k:]


def object_phrase(rng: random.Random) -> tuple[str, str, bool]:
    """An object as said (determiner, maybe a modifier, maybe a typo) -> (name in the answer, text, plural)."""
    base = rng.choice(OBJECTS)
    name = base
    if rng.random() < 0.14 and not base.split()[0] in MODIFIERS:
        name = f"{rng.choice(MODIFIERS)} {base}"
    plural, mass = base in PLURAL, base in MASS
    weights = {d: w for d, w in DETERMINERS.items()
               if not ((plural or mass) and d in ("a", "one")) and not (d == "some" and not (plural or mass))}
    det = rng.choices(list(weights), list(weights.values()))[0]
    if det == "a" and (name[0] in "aeio" or (name[0] == "u" and not name.startswith(("us", "un")))):
        det = "an"
    if plural and det in ("that", "this"):
        det = {"that": "those", "this": "these"}[det]
    said = name
    if base in COMMON and rng.random() < 0.12:  # a slip in a word the student knows; the answer keeps the real one
        words = said.split(" ")
        long_words = [i for i, w in enumerate(words) if len(w) >= 4 and w.isalpha() and w not in MODIFIERS]
        if long_words:
            i = rng.choice(long_words)
            words[i] = typo(rng, words[i])
            said = " ".join(words)
    return name, f"{det} {keep(said)}".strip(), plural


def lying(rng: random.Random) -> str:
    """Where an object lies in the room ("on the couch", "off the shelf"): says nothing the robot acts on."""
    surface = rng.choice(SURFACES + CONTAINERS)
    prep = rng.choice(["in", "from", "out of"]) if surface in CONTAINERS else rng.choice(["on", "from", "off"])
    return f"{prep} the {keep(surface)}"


def it(plural: bool) -> str:
    return "them" if plural else "it"


def said_place(text: str) -> str:
    """A place as the answer names it: as said, lower case, no article or apostrophe (the contract resolves it)."""
    return re.sub(r"^(the|my|our) ", "", text.lower()).replace("'", "")


def place_phrase(rng: random.Random, st: State, bare: bool = False) -> tuple[str, str]:
    """A place as said -> (its name in the answer, text). The answer names it as said, a synonym or a place not on
    the map alike: the contract maps it onto the map or refuses it (robot_sdk's go), so the model copies, never
    decides. When the step must name an unknown place, it is one of UNKNOWN_PLACES."""
    if st.unknown:
        text = rng.choice(UNKNOWN_PLACES)
        text = text.removeprefix("the ") if bare and text.startswith("the ") else text
        return said_place(text), keep(text)
    place = rng.choice([p for p in PLACES if st.place not in PLACE_NAMES[p]] or PLACES)
    name = rng.choice(PLACE_NAMES[place])
    if bare or (name in BARE_PLACES and rng.random() < 0.5):
        return name, name
    if place in ("kitchen", "bedroom", "office", "garage", "garden", "living_room") and rng.random() < 0.08:
        return name, f"{rng.choice(['my', 'our'])} {name}"
    return name, f"the {name}"


def surface_phrase(rng: random.Random) -> tuple[str, str]:
    """Where something is put down -> (surface in the answer, 'on the shelf' / 'in the bin')."""
    if rng.random() < 0.3:
        surface, prep = rng.choice(CONTAINERS), rng.choice(["in", "in", "into", "inside"])
    else:
        surface, prep = rng.choice(SURFACES), rng.choice(["on", "on", "on", "onto", "on top of"])
    said = typo(rng, surface) if surface in COMMON_SURFACES and len(surface) >= 4 and " " not in surface \
        and rng.random() < 0.08 else surface
    det = rng.choices(["the", "my", "that", "your"], [85, 7, 5, 3])[0]
    return surface, f"{prep} {det} {keep(said)}"


def seconds_text(rng: random.Random, seconds: float) -> str:
    """A duration as people say it; every form maps back to exactly one value."""
    unit = rng.choices(["seconds", "secs", "sec", "s", "second"], [70, 10, 6, 10, 4])[0]
    if seconds == 0.5:
        return rng.choice(["half a second", "0.5 seconds", "half a sec"])
    if seconds == 1.0:
        return rng.choice(["one second", "a second", "1 second", "1 sec", "1s"])
    if seconds == 60.0:
        return rng.choice(["a minute", "one minute", "60 seconds", "sixty seconds", "1 minute", "a full minute"])
    if seconds == 30.0 and rng.random() < 0.3:
        return "half a minute"
    if seconds != int(seconds):
        whole = int(seconds)
        if rng.random() < 0.4:
            return f"{number_word(whole, rng)} and a half seconds"
        return f"{seconds:g} {'seconds' if unit in ('second', 's') else unit}"
    n = int(seconds)
    if unit == "s":
        return f"{n}s" if rng.random() < 0.7 else f"{n} s"
    if unit == "second":
        unit = "seconds"
    return f"{number_word(n, rng) if rng.random() < 0.4 else n} {unit}"


def meters_text(rng: random.Random, meters: float) -> str:
    unit = rng.choices(["meters", "metres", "m", "meter"], [60, 12, 20, 8])[0]
    if meters == 0.5:
        return rng.choice(["half a meter", "half a metre", "0.5 meters", "0.5m", "50 centimeters"])
    if meters == 1.0:
        return rng.choice(["a meter", "one meter", "1 meter", "1m", "a metre", "1 m"])
    if meters == 1.5:
        return rng.choice(["a meter and a half", "1.5 meters", "one and a half meters", "1.5m"])
    if unit == "m":
        return f"{meters:g}{rng.choice(['m', ' m'])}"
    unit = "meters" if unit == "meter" else unit
    if meters != int(meters):
        return f"{number_word(int(meters), rng)} and a half {unit}" if rng.random() < 0.4 else f"{meters:g} {unit}"
    n = int(meters)
    return f"{number_word(n, rng) if rng.random() < 0.45 else n} {unit}"
