"""Offline synthesizer for robot_sdk (contract v2): robot commands in people's words, with the exact compact answer.

Why rules and not a model: a 135M student can only learn what the text determines, so every phrase that changes
the answer says it, implicit steps follow fixed rules (the conventions in docs/README.data.md), and phrasing
varies freely where it changes nothing: synonyms, chatty or terse wrappers, context sentences, digits or words,
typos, case and punctuation. What must generalise is taught by breadth, not by memory: hundreds of object nouns
(the answer copies the object as said, without determiners or possessives), open-vocabulary surfaces, and
refusals (``robot.reject(reason=...)``) for requests the API cannot do, places off the map, unsafe instructions and
messages with nothing to act on. If any part of a command must be refused, the answer is the reject call alone.

Answers use the contract's compact calls (go, find, pick, move, start, walk, turn), which the contract expands into
the SDK calls the robot runs; everything else is a raw API call (explicit m/s speeds are a raw sport.Move).
The rules, in short:
  - "go to P" -> go(P); the map's synonyms ("lounge", "restroom", ...) map to its names; other places are refused
  - "find X [in P]", "search P for X" -> [go(P)], find(X); "pick up X [from P]", "find X and pick it up" ->
    [go(P)], pick(X); "bring me X [from P] [to Q]" -> [go(P)], pick(X), [go(Q)]; "bring me X, I'm in Q" ->
    pick(X), go(Q); "bring X to me/here" -> pick(X) (the robot does not know where "me" is)
  - "put it on S" (holding) -> arm.place(S); "put X on S" -> pick(X), arm.place(S)
  - direction + speed word + duration -> move; no duration -> start; a distance -> walk; an angle or a bare
    "turn left" (90), "turn around" (180), "spin around" (360) -> turn; "at N m/s" -> raw sport.Move [+ wait +
    StopMove]; "then stop" after a move adds nothing; faster than the robot may go (2+ m/s) is unsafe
  - "say 'T'", "tell everyone T" -> audio.speak(text=T), T as said (unquoted speech ends the command)

    python -m train.synth -n 20 --seed 1     print a few examples
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import re
from collections import Counter
from dataclasses import dataclass
from typing import Callable, Iterator

from edgetune.contract import ContractSpec, format_value
from train.synth_vocab import (ANIMALS, BARE_PLACES, COMMON, COMMON_SURFACES, CONTAINERS, CONTEXT, DETERMINERS,
                               MASS, MODIFIERS, OBJECTS, PEOPLE, PLACE_NAMES, PLACES, PLURAL, SPEECH, SURFACES,
                               UNCLEAR, UNKNOWN_PLACES, UNSAFE, UNSUPPORTED)

#: refusal reasons of robot.reject, and how often each kind of command is generated (percent): about a quarter
#: refusals, as in what people say to a home robot (the human set: 28%); at 16.5% the minority reasons (unsafe,
#: unclear) were almost never learned (0 of 20 unsafe human commands answered with the right reason)
MIX = {"action": 74.0, "unsupported": 7.0, "unknown_place": 7.0, "unsafe": 7.0, "unclear": 5.0}
MAX_ITEMS = 8  #: compact items per answer (robot_sdk: max_calls 24 // the longest expansion, 3)

# span markers inside a command while it is built: speech (spoken as written) and protected text (no typos,
# no punctuation changes); both are removed before the command is returned
_SAY, _SAY_END, _KEEP, _KEEP_END = "\x01", "\x02", "\x03", "\x04"
_SPANS = re.compile(f"[{_SAY}{_KEEP}].*?[{_SAY_END}{_KEEP_END}]")

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


# ------------------------------------------------------------------------------------------------ answers
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
_SPEAK = "audio.speak(text=\x00)"


@dataclass(frozen=True)
class Step:
    """One clause of a command: its text (markers included, no final punctuation) and its compact calls."""

    text: str
    calls: tuple[str, ...]
    ends_move: bool = False  #: ends with StopMove, so a following "stop" adds nothing
    question: bool = False  #: a question ("where are my keys"): the command ends with "?"
    sentence: bool = False  #: not a bare imperative ("I'm in the kitchen, ...", "kitchen. now"): no wrapper in front


@dataclass(frozen=True)
class Command:
    """One synthesized example: the command, its expected compact answer, and its kind (for the mix report)."""

    user: str
    calls: tuple[str, ...]
    kind: str = "action"

    @property
    def assistant(self) -> str:
        return json.dumps(list(self.calls))


@dataclass
class _State:
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


# ----------------------------------------------------------------------------------------------- phrasing
def keep(text: str) -> str:
    """Protect ``text`` from typos and punctuation changes."""
    return f"{_KEEP}{text}{_KEEP_END}"


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


def place_phrase(rng: random.Random, st: _State, bare: bool = False) -> tuple[str | None, str]:
    """A place as said -> (its map name, text); when the step must name an unknown place: (None, text)."""
    if st.unknown:
        text = rng.choice(UNKNOWN_PLACES)
        return None, keep(text.removeprefix("the ") if bare and text.startswith("the ") else text)
    place = rng.choice([p for p in PLACES if p != st.place] or PLACES)
    name = rng.choice(PLACE_NAMES[place])
    if bare or (name in BARE_PLACES and rng.random() < 0.5):
        return place, name
    if place in ("kitchen", "bedroom", "office", "garage", "garden", "living_room") and rng.random() < 0.08:
        return place, f"{rng.choice(['my', 'our'])} {name}"
    return place, f"the {name}"


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


# ----------------------------------------------------------------------------------------------- vocabulary
GO_VERBS = ["go to", "head to", "navigate to", "drive to", "go over to", "make your way to", "walk to", "move to",
            "head over to", "get to", "proceed to", "go into", "come to", "travel to", "pop over to", "run to",
            "go straight to", "go on over to", "take yourself to", "roll over to"]
RETURN_VERBS = ["come back to", "return to", "go back to", "head back to"]
FIND_VERBS = ["find", "look for", "locate", "search for", "try to find", "see if you can find", "look around for",
              "hunt for", "spot", "check for", "track down", "go find", "go look for", "have a look for"]
PICK_VERBS = ["pick up", "grab", "take", "get hold of", "grasp", "lift", "collect", "pick", "snag", "get"]
BRING_ME = ["bring me", "fetch me", "get me", "hand me", "give me", "grab me", "pass me", "bring"]
CARRY = ["bring", "take", "carry", "move", "deliver"]
PUT = ["put", "place", "set", "leave", "drop", "stick"]

#: direction -> (phrasings of a move in that direction)
DIRECTIONS = {
    "forward": ["walk forward", "move forward", "go forward", "move ahead", "walk straight ahead", "go straight",
                "head forward", "step forward", "drive forward", "advance", "walk straight"],
    "backward": ["walk backward", "move backward", "back up", "walk backwards", "go backward", "reverse",
                 "step back", "move back", "go backwards"],
    "left": ["sidestep to the left", "strafe left", "step sideways to the left", "shuffle left", "move to the left",
             "slide left", "side-step left", "step left", "sidestep left", "move sideways to the left"],
    "right": ["sidestep to the right", "strafe right", "step sideways to the right", "shuffle right",
              "move to the right", "slide right", "side-step right", "step right", "sidestep right",
              "move sideways to the right"],
    "turn_left": ["turn left", "rotate left", "spin to the left", "turn counterclockwise", "rotate counterclockwise",
                  "turn to the left", "spin left", "rotate to the left"],
    "turn_right": ["turn right", "rotate right", "spin to the right", "turn clockwise", "rotate clockwise",
                   "turn to the right", "spin right", "rotate to the right"],
}
#: untimed moves ("start walking forward"): gerund phrasings
START_FORMS = {
    "forward": ["start walking forward", "start moving forward", "keep going forward", "keep walking forward",
                "begin walking forward", "start heading forward", "keep moving ahead"],
    "backward": ["start walking backward", "start backing up", "keep backing up", "start moving backward",
                 "keep going backwards"],
    "left": ["start sidestepping to the left", "start strafing left", "keep sliding left",
             "start moving to the left"],
    "right": ["start sidestepping to the right", "start strafing right", "keep sliding right",
              "start moving to the right"],
    "turn_left": ["start turning left", "keep turning left", "start rotating left", "begin turning left",
                  "start spinning to the left"],
    "turn_right": ["start turning right", "keep turning right", "start rotating right", "begin turning right",
                   "start spinning to the right"],
}
SPEED_WORDS = {"slow": ["slowly", "slow", "gently", "carefully", "at a slow pace", "nice and slow", "at a crawl",
                        "real slow", "at low speed", "slowly please"],
               "normal": ["", "", "", "", "at normal speed", "at a normal pace", "at regular speed",
                          "at a moderate speed", "at an average pace", "at a steady pace", "at medium speed"],
               "fast": ["quickly", "fast", "quick", "briskly", "at a fast pace", "rapidly", "at high speed",
                        "speedily", "at a quick pace", "in a hurry"]}
#: the raw sport.Move argument and sign of each direction (explicit speeds: "back up at 0.4 m/s" -> vx=-0.4)
AXIS = {"forward": ("vx", 1), "backward": ("vx", -1), "left": ("vy", 1), "right": ("vy", -1),
        "turn_left": ("vyaw", 1), "turn_right": ("vyaw", -1)}
#: a raw sport.Move per explicit speed: forward/back m/s on vx, sidestep on vy, turning rad/s on vyaw
RAW_SPEEDS = {"vx": [0.1, 0.2, 0.3, 0.4, 0.6, 0.7, 0.9, 1.0, 0.5], "vy": [0.1, 0.2, 0.4, 0.3],
              "vyaw": [0.2, 0.4, 0.6, 0.8, 1.2]}

POSTURES = {
    "sport.StandUp": ["stand up", "get up", "get on your feet", "rise", "stand", "up you get", "stand up straight"],
    "sport.StandDown": ["lie down", "lay down", "stand down", "lie down on the floor", "get down and lie flat",
                        "lie flat"],
    "sport.Sit": ["sit", "sit down", "take a seat", "have a seat", "sit down now", "park yourself and sit"],
    "sport.RecoveryStand": ["recover", "do a recovery stand", "recover from the fall", "you fell over, recover",
                            "do a recovery"],
    "sport.BalanceStand": ["balance", "do a balance stand", "stand balanced", "balance yourself", "hold a balance"],
    "sport.Hello": ["wave hello", "wave", "give a wave", "wave at me", "wave to the guests", "do the hello gesture",
                    "give me a wave"],
    "sport.Stretch": ["stretch", "do a stretch", "have a stretch", "stretch your legs", "stretch out"],
    "sport.Damp": ["damp the motors", "go limp", "damp all motors", "do an emergency soft stop",
                   "relax your motors", "cut motor power softly"],
    "sport.StopMove": ["stop", "stop moving", "halt", "freeze", "stand still", "stop right there", "hold still"],
}
SIMPLE = {
    "nav.dock": ["go to the charging dock", "dock", "go dock yourself", "return to your charging station",
                 "go recharge", "head back to the dock", "go charge", "go to your charger", "go charge yourself",
                 "go to the charger", "dock yourself", "go back to your dock", "go plug yourself in",
                 "return to the dock", "recharge your battery", "go to your charging station"],
    "nav.cancel": ["cancel the navigation", "cancel the current goal", "abort navigation", "stop navigating",
                   "cancel your route", "cancel the trip", "abort the current goal", "cancel navigation"],
    "perception.scan_area": ["scan the area", "look around", "scan the room", "map your surroundings",
                             "survey the room", "take a look around", "scan your surroundings", "have a look around"],
    "arm.home": ["stow your arm", "retract the arm", "put your arm away", "move the arm to its home position",
                 "home the arm", "fold your arm", "tuck your arm in", "stow the arm"],
    "status.report_battery": ["report your battery level", "tell me your battery level", "check the battery",
                              "how much battery do you have", "what's your battery at", "battery status", "what's your battery level",
                              "how much battery is left",
                              "how's your battery", "check your battery", "report the battery",
                              "tell me how much charge you have left"],
    "status.report_state": ["report your status", "give me a status report", "report your state",
                            "check for faults", "tell me your current state", "status report", "report your mode",
                            "any faults"],
    "status.report_position": ["report your position", "tell me where you are", "where are you",
                               "report your location", "give me your current position", "what's your location",
                               "tell me your position"],
    "camera.take_photo": ["take a photo", "take a picture", "snap a photo", "capture an image", "take a snapshot",
                          "take a pic", "snap a picture", "grab a photo", "take one photo"],
}
TERSE = {"status.report_battery": ["battery?", "battery level?", "battery"],
         "status.report_position": ["position?", "location?"], "status.report_state": ["status?", "status"],
         "camera.take_photo": ["photo", "picture, please", "photo now"], "nav.dock": ["dock.", "charge.", "dock now"],
         "sport.Sit": ["sit!", "sit."], "sport.StopMove": ["stop!", "stop.", "halt!"]}
WAIT_VERBS = ["wait", "wait for", "pause for", "hold on for", "stay put for", "stay still for", "hang on for",
              "hold for", "give it", "wait around for", "pause", "stay there for", "do nothing for"]
SAY_VERBS = ["say", "announce", "say out loud", "speak the words", "shout", "tell everyone", "yell", "call out",
             "read out", "declare"]
TELL = ["tell everyone", "tell everyone that", "let everyone know", "let everyone know that", "announce that",
        "announce", "say", "say that", "tell the family that", "tell the room that", "let them know that"]


# ---------------------------------------------------------------------------------------------- step kinds
def step_go(rng: random.Random, st: _State) -> Step:
    place, text = place_phrase(rng, st)
    verb = rng.choice(RETURN_VERBS if st.place and rng.random() < 0.25 else GO_VERBS)
    tail = rng.choice(["", "", "", "", "", " quickly", " now", " right away", " please", " for me"])
    if st.solo and not st.unknown and rng.random() < 0.12:  # terse: "kitchen. now."
        place, text = place_phrase(rng, st, bare=True)
        return Step(rng.choice([f"{text}. now", f"{text}, now", f"to the {text}", f"{text} please",
                                f"{text}!", f"go {text}", f"{text}. go"]), (go(place),), sentence=True)
    if place is not None:
        st.place = place
    return Step(f"{verb} {text}{tail}", (go(place),) if place else ())


def _find_in(rng: random.Random, st: _State, obj: str, plural: bool) -> tuple[str | None, str]:
    place, where = place_phrase(rng, st)
    be = "are" if plural else "is"
    verb = rng.choice(FIND_VERBS)
    form = rng.choice([
        f"{verb} {obj} in {where}", f"{verb} {obj} in {where}", f"search {where} for {obj}",
        f"check {where} for {obj}", f"look in {where} for {obj}", f"in {where}, {verb} {obj}",
        f"see if {obj} {be} in {where}", f"check whether {obj} {be} in {where}",
        f"once you're in {where}, {verb} {obj}", f"when you get to {where}, {verb} {obj}",
        f"go to {where} and {verb} {obj}", f"look around {where} for {obj}",
        f"see if there's {obj} in {where}", f"check if there {be} {obj} in {where}",
    ] + ([f"{obj} should be in {where}, {verb} {it(plural)}"] if st.solo else []))
    return place, form


def step_find(rng: random.Random, st: _State) -> Step:
    name, obj, plural = object_phrase(rng)
    if st.unknown or rng.random() < 0.42:
        place, text = _find_in(rng, st, obj, plural)
        if place:
            st.place = place
        return Step(text, (go(place), find(name)) if place else ())
    if st.solo and rng.random() < 0.25:  # "I lost my keys, can you find them?"
        be, them = ("are", "them") if plural else ("is", "it")
        text = rng.choice([f"where {be} {obj}", f"have you seen {obj}", f"do you know where {obj} {be}"])
        if rng.random() < 0.5:
            return Step(text, (find(name),), question=True)
        text = rng.choice([f"I lost {obj}, can you find {them}", f"I can't find {obj}. look for {them}",
                           f"{text}? find {them} for me", f"I have no idea where {obj} {be}, find {them}",
                           f"I misplaced {obj}, please look for {them}"])
        return Step(text, (find(name),))
    return Step(f"{rng.choice(FIND_VERBS)} {obj}", (find(name),))


def step_pick(rng: random.Random, st: _State) -> Step:
    """pick(X) [after go(P)]; "... and bring it to me" adds nothing, "... and bring it to Q" adds go(Q)."""
    name, obj, plural = object_phrase(rng)
    st.holding, st.plural = name, plural
    verb = rng.choice(PICK_VERBS)
    calls: tuple[str, ...]
    if st.unknown or rng.random() < 0.35:
        place, where = place_phrase(rng, st)
        if place:
            st.place = place
        text = rng.choice([f"{verb} {obj} {rng.choice(['in', 'from', 'in', 'at'])} {where}",
                           f"once you're in {where}, {verb} {obj}", f"when you reach {where}, {verb} {obj}",
                           f"in {where}, {verb} {obj}", f"go to {where} and {verb} {obj}",
                           f"if you see {obj} in {where}, {rng.choice(['grab', 'pick up', 'take'])} {it(plural)}"])
        calls = (go(place), pick(name)) if place else ()
    else:
        form = rng.random()
        if form < 0.15 and verb == "pick up":
            text = f"pick {obj} up"
        elif form < 0.3:  # finding is part of picking: "find X and pick it up" is one pick
            text = f"{rng.choice(FIND_VERBS)} {obj} and {rng.choice(['pick', 'grab', 'take', 'lift'])} " \
                   f"{it(plural)}" + (" up" if rng.random() < 0.6 else "")
        elif form < 0.38:
            text = f"if you see {obj}, {rng.choice(['pick', 'grab', 'take'])} {it(plural)}" + \
                   (" up" if rng.random() < 0.5 else "")
        elif form < 0.46:  # where it lies is not a place on the map: "grab the remote from the couch" is a pick
            text = f"{verb} {obj} {lying(rng)}"
        else:
            text = f"{verb} {obj}"
        calls = (pick(name),)
    if calls and rng.random() < 0.2:  # the robot does not know where "me" is; a named place is a go
        if rng.random() < 0.6:
            text += rng.choice([" and bring {} to me", " and bring {} here", " and bring {} back to me",
                                " and bring {} over", ", then bring {} to me"]).format(it(plural))
        else:
            dst, dst_text = place_phrase(rng, st)
            st.place = dst
            text += f" and {rng.choice(['bring', 'take', 'carry'])} {it(plural)} to {dst_text}"
            calls += (go(dst),)
    return Step(text, calls)


def step_bring(rng: random.Random, st: _State) -> Step:
    """bring/fetch: [go(P)], pick(X), [go(Q)]; "bring X to me" with no place known is pick(X) alone."""
    name, obj, plural = object_phrase(rng)
    st.holding, st.plural = name, plural
    unknown_at = rng.choice(["src", "dst"]) if st.unknown else None
    src = dst = None
    calls: list[str] = []

    def at(which: str) -> tuple[str | None, str]:
        st.unknown = unknown_at == which
        return place_phrase(rng, st)

    form = rng.random()
    if unknown_at == "dst" or (unknown_at is None and form < (0.45 if st.solo else 0.2)):  # "..., I'm in the Y"
        if rng.random() < 0.35 and unknown_at != "src":
            st.unknown = False
            src, src_text = place_phrase(rng, st)
            st.place = src  # so the destination differs
            from_ = f" from {src_text}"
        else:
            from_ = ""
        dst, dst_text = at("dst")
        bring = rng.choice(BRING_ME[:-1])
        text = rng.choice([f"{bring} {obj}{from_}, I'm in {dst_text}", f"I'm in {dst_text}, {bring} {obj}{from_}",
                           f"I'm in {dst_text}. {bring} {obj}{from_}", f"{bring} {obj}{from_}. I am in {dst_text}",
                           f"bring {obj}{from_} to me in {dst_text}", f"{bring} {obj}{from_}, I'm over in {dst_text}",
                           f"I'm sitting in {dst_text}, could you {bring} {obj}{from_}",
                           f"I'm in {dst_text}, can you {bring} {obj}{from_}"]) if st.solo else \
            rng.choice([f"bring {obj}{from_} to me in {dst_text}", f"{rng.choice(CARRY)} {obj}{from_} to {dst_text}"])
    elif unknown_at == "src" or form < 0.6:  # "bring me X from P [to Q]"
        src, src_text = at("src")
        st.place = src or st.place
        verb = rng.choice(BRING_ME + ["fetch", "get", "retrieve", "go get"])
        if rng.random() < 0.4 and not st.unknown:
            dst, dst_text = place_phrase(rng, st)
            text = f"{rng.choice(CARRY)} {obj} from {src_text} to {dst_text}"
        elif st.solo and rng.random() < 0.3:
            text = rng.choice([f"I left {obj} in {src_text}, can you get {it(plural)} for me",
                               f"{obj} {'are' if plural else 'is'} in {src_text}, bring {it(plural)} to me",
                               f"I think I left {obj} in {src_text}. bring {it(plural)} here"])
        else:
            text = f"{verb} {obj} from {src_text}"
            if not st.unknown and rng.random() < 0.25:  # "... and bring it to me" adds nothing
                text += rng.choice([" and bring {} to me", " and bring {} here", ", then bring {} back to me"]
                                   ).format(it(plural))
    elif form < 0.8:  # "bring me X" / "bring X to me": the robot does not know where "me" is
        text = rng.choice([f"{rng.choice(BRING_ME)} {obj}", f"bring {obj} to me", f"bring {obj} here",
                           f"{rng.choice(BRING_ME)} {obj} please", f"get {obj} for me", f"I need {obj}, bring "
                           f"{it(plural)} to me", f"can I have {obj}", f"{rng.choice(BRING_ME)} {obj} {lying(rng)}"])
    else:  # "take X to Q"
        dst, dst_text = place_phrase(rng, st)
        text = f"{rng.choice(CARRY)} {obj} to {dst_text}"
    st.unknown = bool(unknown_at)
    if unknown_at:
        return Step(text, ())
    calls = ([go(src)] if src else []) + [pick(name)] + ([go(dst)] if dst else [])
    st.place = dst or src or st.place
    return Step(text, tuple(calls))


def step_place(rng: random.Random, st: _State) -> Step:
    """Put down what is held: arm.place(surface)."""
    surface, where = surface_phrase(rng)
    thing = it(st.plural)
    verb = rng.choice(PUT)
    text = rng.choice([f"{verb} {thing} {where}", f"{verb} {thing} down {where}", f"{verb} {thing} {where}",
                       f"{verb} {thing} back {where}"])
    st.holding = None
    return Step(text, (call("arm.place", surface=surface),))


def step_put(rng: random.Random, st: _State) -> Step:
    """"put the cup on the table" when nothing is held: pick it, then place it."""
    name, obj, plural = object_phrase(rng)
    surface, where = surface_phrase(rng)
    verb = rng.choice(["put", "place", "set", "move", "put away", "stick", "leave"])
    if verb == "put away":
        text = f"put {obj} away {where}"
    else:
        text = f"{verb} {obj} {where}" if rng.random() < 0.7 else \
            f"{rng.choice(PICK_VERBS)} {obj} and {rng.choice(PUT)} {it(plural)} {where}"
    return Step(text, (pick(name), call("arm.place", surface=surface)))


def _then_stop(rng: random.Random, text: str) -> str:
    return text + (rng.choice([", then stop", " and then stop", " and stop", ", then halt", " then stop"])
                   if rng.random() < 0.2 else "")


def step_move(rng: random.Random, st: _State) -> Step:
    """A timed move: move(direction, speed, seconds); explicit m/s speeds are a raw Move + wait + StopMove."""
    direction = rng.choice(list(DIRECTIONS))
    verb = rng.choice(DIRECTIONS[direction])
    seconds = float(rng.choice([0.5, 1, 1.5, 2, 2, 3, 3, 4, 5, 5, 6, 7, 8, 10, 2.5, 12, 15, 20, 30, 4.5]))
    duration = seconds_text(rng, seconds)
    duration = f"for {duration}" if rng.random() < 0.85 else duration
    if rng.random() < 0.12:  # "at 0.6 m/s": the exact velocity, no speed word
        axis, sign = AXIS[direction]
        value = rng.choice(RAW_SPEEDS[axis])
        unit = "rad/s" if axis == "vyaw" else rng.choice(["m/s", "meters per second", "m/s", "metres per second"])
        speed = f"at {value:g} {unit}"
        if value in (0.5, 1.0) and unit != "rad/s" and rng.random() < 0.5:  # "at half a meter per second"
            speed = f"at {'half a' if value == 0.5 else 'one'} {rng.choice(['meter', 'metre'])} per second"
        velocity = {"vx": 0.0, "vy": 0.0, "vyaw": 0.0, axis: sign * value}
        calls = (call("sport.Move", **velocity), call("robot.wait", seconds=seconds), call("sport.StopMove"))
    else:
        speed_key = rng.choice(list(SPEED_WORDS))
        speed = rng.choice(SPEED_WORDS[speed_key])
        if direction.startswith("turn") and rng.random() < 0.2:
            verb = f"keep {verb.replace('turn', 'turning').replace('rotate', 'rotating').replace('spin', 'spinning')}"
        calls = (call("move", direction=direction, speed=speed_key, seconds=seconds),)
    order = rng.random()
    parts = [verb, speed, duration] if order < 0.55 else [verb, duration, speed] if order < 0.85 else \
        [speed, verb, duration] if speed.endswith("ly") else [verb, speed, duration]
    st.ends_move = True
    return Step(_then_stop(rng, " ".join(p for p in parts if p)), calls, ends_move=True)


def step_start(rng: random.Random, st: _State) -> Step:
    """An untimed move (no duration, no distance): start(direction, speed), or a raw Move at an explicit m/s."""
    direction = rng.choice(list(START_FORMS))
    if rng.random() < 0.15 and not direction.startswith("turn"):
        axis, sign = AXIS[direction]
        value = rng.choice(RAW_SPEEDS[axis])
        verb = rng.choice(DIRECTIONS[direction] + START_FORMS[direction])
        speed = f"{value:g} {rng.choice(['m/s', 'meters per second', 'm/s', 'metres per second'])}"
        if value in (0.5, 1.0) and rng.random() < 0.5:
            speed = f"{'half a' if value == 0.5 else 'one'} {rng.choice(['meter', 'metre'])} per second"
        velocity = {"vx": 0.0, "vy": 0.0, "vyaw": 0.0, axis: sign * value}
        return Step(f"{verb} {'at ' if rng.random() < 0.8 else ''}{speed}", (call("sport.Move", **velocity),))
    speed_key = rng.choice(list(SPEED_WORDS))
    speed = rng.choice(SPEED_WORDS[speed_key])
    # a bare "turn left" is a 90 degree turn (step_turn), so untimed turning always says start/keep
    forms = START_FORMS[direction] + ([] if direction.startswith("turn") else DIRECTIONS[direction])
    verb = rng.choice(forms)
    text = " ".join(p for p in ([speed, verb] if speed.endswith("ly") and rng.random() < 0.3 else [verb, speed]) if p)
    if rng.random() < 0.15:
        text += rng.choice([" until I say stop", " until I tell you to stop", " and keep going"])
    return Step(text, (call("start", direction=direction, speed=speed_key),))


def step_walk(rng: random.Random, st: _State) -> Step:
    """A distance: walk(direction, meters) (normal speed; the contract turns meters into seconds)."""
    direction = rng.choice(["forward", "forward", "backward", "left", "right"])
    meters = float(rng.choice([0.5, 1, 1, 1.5, 2, 2, 2.5, 3, 3, 4, 5, 6, 7, 8, 10, 3.5]))
    dist = meters_text(rng, meters)
    side = {"left": "to the left", "right": "to the right"}
    form = rng.random()
    if direction in ("forward", "backward"):
        verb = rng.choice(DIRECTIONS[direction])
        word = {"forward": rng.choice(["forward", "ahead", "straight ahead", "forwards"]),
                "backward": rng.choice(["backward", "backwards", "back"])}[direction]
        text = f"{verb} {dist}" if form < 0.5 else \
            f"{rng.choice(['walk', 'move', 'go', 'step', 'head'])} {dist} {word}" if form < 0.85 else f"{dist} {word}"
    else:
        verb = rng.choice(DIRECTIONS[direction])
        text = f"{verb} {dist}" if form < 0.5 else \
            f"{rng.choice(['move', 'step', 'sidestep', 'slide', 'shift'])} {dist} {side[direction]}"
    st.ends_move = True
    return Step(_then_stop(rng, text), (call("walk", direction=direction, meters=meters),), ends_move=True)


def step_turn(rng: random.Random, st: _State) -> Step:
    """A turn by an angle: turn(direction, degrees); bare "turn left" is 90, "turn around" 180, "spin around" 360."""
    direction = rng.choice(["left", "right"])
    verb = rng.choice(["turn", "rotate", "turn", "pivot"])
    form = rng.random()
    if form < 0.35:
        degrees = 90
        text = rng.choice([f"{verb} {direction}", f"{verb} {direction}", f"{verb} to the {direction}",
                           f"{verb} {direction} in place", f"make a {direction} turn",
                           f"{verb} {direction} 90 degrees", f"{verb} 90 degrees to the {direction}",
                           f"do a quarter turn to the {direction}", f"{verb} a quarter turn {direction}",
                           f"{verb} {direction} ninety degrees", f"{verb} {direction} by 90 degrees"])
    elif form < 0.55:
        degrees = 45
        text = rng.choice([f"{verb} {direction} 45 degrees", f"{verb} 45 degrees to the {direction}",
                           f"{verb} {direction} by forty-five degrees", f"{verb} {direction} forty five degrees",
                           f"{verb} 45 degrees {direction}"])
    elif form < 0.8:
        degrees = 180
        if rng.random() < 0.5:
            direction = "left"
            text = rng.choice(["turn around", "turn around", "do a u-turn", "make a u-turn", "do a 180",
                               "turn back the way you came", "face the other way", "about face",
                               "do a half turn", "turn around in place"])
        else:
            text = rng.choice([f"{verb} {direction} 180 degrees", f"{verb} 180 degrees to the {direction}",
                               f"turn around to the {direction}", f"{verb} {direction} a hundred and eighty degrees"])
    else:
        degrees = 360
        if rng.random() < 0.6:
            direction = "left"
            text = rng.choice(["spin around", "do a full turn", "do a 360", "spin in a circle", "turn 360 degrees",
                               "do a full circle", "spin around once", "do a full spin", "make a full rotation"])
        else:
            text = rng.choice([f"{verb} {direction} 360 degrees", f"do a full turn to the {direction}",
                               f"spin around to the {direction}", f"do a full circle to the {direction}"])
    st.ends_move = True
    return Step(_then_stop(rng, text), (call("turn", direction=direction, degrees=degrees),), ends_move=True)


def step_wait(rng: random.Random, st: _State) -> Step:
    seconds = float(rng.choice([1, 2, 3, 4, 5, 5, 8, 10, 10, 15, 20, 30, 45, 60, 1.5, 2.5, 7, 12, 25, 40, 0.5]))
    verb = rng.choice(WAIT_VERBS)
    dur = seconds_text(rng, seconds)
    if verb in ("wait", "pause", "give it"):
        text = f"{verb} {dur}" if verb != "pause" or rng.random() < 0.5 else f"pause for {dur}"
    else:
        text = f"{verb} {dur}"
    return Step(text, (call("robot.wait", seconds=seconds),))


def step_posture(rng: random.Random, st: _State) -> Step:
    # "stop" right after a timed move, a distance or a turn is part of it (they end with StopMove)
    callee = rng.choice([c for c in POSTURES if not (c == "sport.StopMove" and (st.ends_move or st.started))])
    if st.solo and callee in TERSE and rng.random() < 0.2:
        return Step(rng.choice(TERSE[callee]), (call(callee),), sentence=True)
    return Step(rng.choice(POSTURES[callee]), (call(callee),))


def step_simple(rng: random.Random, st: _State) -> Step:
    callee = rng.choice(list(SIMPLE))
    if callee == "nav.dock":
        st.place = None
    if st.solo and callee in TERSE and rng.random() < 0.2:
        return Step(rng.choice(TERSE[callee]), (call(callee),), sentence=True)
    text = rng.choice(SIMPLE[callee])
    if text.startswith(("how", "what", "where", "any")):
        return Step(text, (call(callee),), question=True)
    if callee == "nav.dock" and rng.random() < 0.15:
        text = f"{rng.choice(['your battery is low', 'you are almost out of battery', 'battery is low'])}, {text}"
    return Step(text, (call(callee),))


def _speech(rng: random.Random) -> str:
    phrase = rng.choice(SPEECH)
    if rng.random() < 0.2:  # messages about things: open vocabulary in speech too
        name, _, plural = object_phrase(rng)
        place = rng.choice(PLACE_NAMES[rng.choice(PLACES)])
        phrase = rng.choice([f"The {name} {'are' if plural else 'is'} in the {place}", f"Please bring the {name}",
                             f"I found the {name}", f"Where is the {name}?"])
    return phrase


def step_say(rng: random.Random, st: _State) -> Step:
    """Speech: quoted anywhere; unquoted ("tell everyone dinner is ready") only as the last clause."""
    phrase = _speech(rng)
    if st.last and rng.random() < 0.45:
        text = phrase.rstrip("!?.")
        text = text[0].lower() + text[1:] if not text.startswith("I ") else text
        return Step(f"{rng.choice(TELL)} {_SAY}{text}{_SAY_END}", (_SPEAK,))
    quote = rng.choice(["'", '"', '"'])
    verb = rng.choice(SAY_VERBS)
    return Step(f"{verb} {quote}{_SAY}{phrase}{_SAY_END}{quote}", (_SPEAK,))


#: step kind -> (builder, weight)
STEP_KINDS: dict[str, tuple[Callable[[random.Random, _State], Step], float]] = {
    "go": (step_go, 3.0), "find": (step_find, 2.6), "pick": (step_pick, 1.8), "bring": (step_bring, 2.6),
    "place": (step_place, 3.0), "put": (step_put, 0.8), "move": (step_move, 2.6), "start": (step_start, 0.9),
    "walk": (step_walk, 1.6), "turn": (step_turn, 1.6), "wait": (step_wait, 1.0), "posture": (step_posture, 1.8),
    "simple": (step_simple, 2.2), "say": (step_say, 1.2),
}
#: kinds that name a place, so a step of them can name an unknown one
_PLACED = ["go", "go", "find", "pick", "bring", "bring"]


def _refused(rng: random.Random, st: _State, reason: str) -> Step:
    """A clause the robot must refuse."""
    if reason == "unknown_place":
        st.unknown = True
        kind = rng.choice(_PLACED)
        step = STEP_KINDS[kind][0](rng, st)
        st.unknown = False
        return Step(step.text, ())
    templates = UNSUPPORTED if reason == "unsupported" else UNSAFE
    template = rng.choice(templates)
    name, obj, _ = object_phrase(rng)
    text = template.format(o=name, p=rng.choice(PEOPLE), a=rng.choice(ANIMALS))
    if reason == "unsafe" and rng.random() < 0.15:  # faster than the robot may go
        text = f"{rng.choice(DIRECTIONS['forward'])} at {rng.choice([2, 3, 5, 10, 20])} " \
               f"{rng.choice(['m/s', 'meters per second'])}"
    return Step(keep(text) if reason == "unsafe" else text, ())


# -------------------------------------------------------------------------------------------- composition
QUESTION_PREFIX = ["could you ", "can you ", "would you ", "can you please ", "could you please ",
                   "hey buddy, could you ", "hey robot, can you ", "robot, could you ", "would you kindly ",
                   "do you think you could ", "any chance you could ", "is it possible to ", "can u "]
PREFIX = ["", "", "", "", "", "", "please ", "please, ", "hey robot, ", "robot, ", "I need you to ",
          "I'd like you to ", "okay, ", "ok ", "go ahead and ", "I was wondering if you could ",
          "when you get a chance, ",
          "do me a favor and ", "if you don't mind, ", "whenever you're ready, ", "quick one: ", "alright, ",
          "listen, ", "yo, ", "hey, ", "so ", "right, ", "um, ", "hey there, ", "buddy, ", "now ", "ok robot, ",
          "your next task: ", "new task: ", "I want you to ", "you need to ", "time to ", "let's "]
SUFFIX = ["", "", "", "", "", " please", ", please", ", thanks", ", thank you", " thx", ", would you", ", ok",
          " asap", " right now", " now", ", if you can", " when you have a minute", " pls", ", thanks a lot",
          ", cheers", " for me", ", buddy", " thank you so much"]
SENTENCE_PREFIX = ["", "", "", "", "Hey robot. ", "Robot, listen. ", "Okay. ", "Hi. ", "Please do this. ",
                   "New task. ", "Here's what I need. ", "Alright. ", "Ok so. "]


def _join(rng: random.Random, clauses: list[str]) -> str:
    """Clauses joined with ordinals, connectors or separate sentences (no final punctuation)."""
    if len(clauses) == 1:
        return clauses[0]
    style = rng.random()
    if style < 0.2:  # First ... Then ... Finally ...
        head = rng.choice(["First", "First,", "To start,", "Start by:", "Step one:"]) if rng.random() < 0.7 else ""
        out = [f"{head} {clauses[0]}".strip()]
        out += [f"{rng.choice(['Then', 'Next,', 'After that,', 'Then,', 'Next'])} {c}" for c in clauses[1:-1]]
        out.append(f"{rng.choice(['Finally,', 'Lastly,', 'Then', 'And finally', 'After that'])} {clauses[-1]}")
        return ". ".join(out)
    if style < 0.35:  # separate sentences, capitalised or not
        return ". ".join(map(_capitalize, clauses) if rng.random() < 0.6 else clauses)
    if style < 0.42:
        return "; ".join(clauses)
    connectors = [", then ", " and then ", ", and then ", " then ", ", after that ", " and ", ", ", " & ",
                  ". after that, ", ", afterwards ", " and after that ", ", and once that's done, ",
                  ", when you're done ", " followed by "]
    out = clauses[0]
    for i, c in enumerate(clauses[1:], start=1):
        last = i == len(clauses) - 1
        out += (rng.choice([", and finally ", " and finally ", ", then ", " and lastly "]) if last and len(clauses) > 2
                else rng.choice(connectors)) + c
    return out


_SENTENCE_STARTS = ("i ", "i'm", "where ", "have you", "do you", "how", "what", "can i ", "once you", "when you",
                    "if you", "in ", "to the ", "you ", "your ")


def _sentence(step: Step) -> bool:
    """Whether a clause is not a bare imperative, so no "could you" / "please" goes in front of it."""
    if step.sentence or step.question:
        return True
    text = step.text.lower()
    return text.startswith(_SENTENCE_STARTS) or text.startswith(_KEEP) or text.split()[0] in DETERMINERS


def _outside(text: str) -> list[tuple[int, int]]:
    """Ranges of ``text`` outside speech and protected spans."""
    out, pos = [], 0
    for m in _SPANS.finditer(text):
        out.append((pos, m.start()))
        pos = m.end()
    out.append((pos, len(text)))
    return out


def _typos(rng: random.Random, text: str, n: int) -> str:
    """``n`` slips in words of 4+ letters outside speech and protected spans (never in number words)."""
    words = [(m.start() + a, m.end() + a) for a, b in _outside(text)
             for m in re.finditer(r"[A-Za-z]{4,}", text[a:b])
             if m.group().lower() not in NUMBER_WORDS]
    for start, end in sorted(rng.sample(words, min(n, len(words))), reverse=True):
        text = text[:start] + typo(rng, text[start:end]) + text[end:]
    return text


def _strip_punctuation(text: str) -> str:
    """Drop ,.!?;: outside spans (a decimal point stays)."""
    parts, pos = [], 0
    for a, b in _outside(text):
        parts.append(text[pos:a])
        parts.append(re.sub(r"(?<!\d)[.,](?!\d)|[!?;:]", "", text[a:b]))
        pos = b
    return "".join(parts) + text[pos:]


def _capitalize(text: str) -> str:
    for i, ch in enumerate(text):
        if ch.isalpha():
            return text[:i] + ch.upper() + text[i + 1:]
    return text


def _finish(rng: random.Random, steps: list[Step], refusal: str | None) -> str:
    clauses = [s.text for s in steps]
    question = any(s.question for s in steps)
    speech_last = steps[-1].calls == (_SPEAK,) and _SAY in steps[-1].text and not steps[-1].text.endswith('"') \
        and not steps[-1].text.endswith("'")
    text = _join(rng, clauses)
    if ". " in text or question or _sentence(steps[0]):
        prefix = rng.choice(SENTENCE_PREFIX)
        end = "?" if question else rng.choice([".", ".", "", "!"])
        suffix = "" if question or speech_last else rng.choice(SUFFIX[:12])
        body = (prefix + _capitalize(text) if prefix else text) + suffix
    else:
        if rng.random() < 0.35:
            prefix = rng.choice(QUESTION_PREFIX)
            end = rng.choice(["?", "?", "?", ""])
        else:
            prefix = rng.choice(PREFIX)
            end = rng.choice([".", ".", ".", "", "!", "!"])
        suffix = "" if speech_last else rng.choice(SUFFIX)
        if "please" in prefix and "please" in suffix:
            suffix = ""
        if end == "?" and suffix in (" now", " right now", " asap"):
            suffix = ""
        body = prefix + text + suffix
        if rng.random() < 0.1 and not question:
            body = f"{rng.choice(CONTEXT)} {body}"
    if rng.random() < 0.06 and len(steps) > 1:  # "please" in the middle
        at = [m.end() for m in re.finditer(r"(, then | and then |\. )", body)]
        if at:
            k = rng.choice(at)
            body = body[:k] + "please " + body[k:]
    user = _capitalize(body) + end
    style = rng.random()
    if style < 0.12:  # all lower case, as typed on a phone
        user = user.lower()
    elif style < 0.14 and len(steps) == 1 and not refusal:
        user = user.upper()
    if rng.random() < 0.08:
        user = _strip_punctuation(user)
    if rng.random() < 0.25:
        user = _typos(rng, user, 1 if rng.random() < 0.8 else 2)
    return user


def _unclear(rng: random.Random) -> str:
    """Nothing to act on: a keyboard mash, a filler, or a vague reference, with the wrappers people add."""
    if rng.random() < 0.35:
        letters = "asdfghjklqwertyuiopzxcvbnm"
        return " ".join("".join(rng.choice(letters) for _ in range(rng.randint(3, 8)))
                        for _ in range(rng.randint(1, 3)))
    text = rng.choice(UNCLEAR)
    if rng.random() < 0.5:
        text = rng.choice(["hey robot, ", "robot, ", "um, ", "so ", "please ", "ok ", "hey, ", "uh ", "well, ",
                           "hmm, ", "listen, ", "buddy, "]) + text
    text += rng.choice(["", "", "", "?", "...", "!", " please", " now", ", ok?", " lol"])
    return _capitalize(text) if rng.random() < 0.6 else text


def compose(rng: random.Random) -> Command:
    """One command: 1-4 steps (or a refusal), at most MAX_ITEMS compact calls."""
    kind = rng.choices(list(MIX), list(MIX.values()))[0]
    if kind == "unclear":
        return Command(_unclear(rng), (reject("unclear"),), "unclear")
    while True:
        if kind == "action":
            n_steps = rng.choices([1, 2, 3, 4], weights=[30, 38, 22, 10])[0]
        else:
            n_steps = rng.choices([1, 2, 3], weights=[50, 35, 15])[0]
        refuse_at = rng.randrange(n_steps) if kind != "action" else -1
        st = _State(n_steps=n_steps)
        steps: list[Step] = []
        for i in range(n_steps):
            st.index = i
            if i == refuse_at:
                step = _refused(rng, st, kind)
            else:
                kinds = [k for k in STEP_KINDS if (k == "place") == bool(st.holding) or
                         (k != "place" and rng.random() < 0.3)]
                kinds = [k for k in kinds if not (st.holding and k in ("pick", "bring", "put"))]
                name = rng.choices(kinds, weights=[STEP_KINDS[k][1] for k in kinds])[0]
                step = STEP_KINDS[name][0](rng, st)
            st.ends_move = step.ends_move
            st.started = any(c.startswith(("start(", "sport.Move(")) for c in step.calls[-1:])
            steps.append(step)
        calls = tuple(c for s in steps for c in s.calls)
        if len(calls) <= MAX_ITEMS:
            break
    user = _finish(rng, steps, None if kind == "action" else kind)
    speech = iter(m.group(1) for m in re.finditer(f"{_SAY}(.*?){_SAY_END}", user))
    if kind != "action":
        calls = (reject(kind),)
    else:
        calls = tuple(call("audio.speak", text=next(speech)) if c == _SPEAK else c for c in calls)
    user = re.sub(f"[{_SAY}{_SAY_END}{_KEEP}{_KEEP_END}]", "", user)
    user = re.sub(r"\s+", " ", user).replace(" ,", ",").replace("..", ".").replace(",.", ".").strip()
    return Command(user, calls, kind)


def check_vocabulary(contract: ContractSpec) -> None:
    """Fail loudly if the task's contract no longer admits what the synthesizer writes (places, reasons, names)."""
    probes = [[go(p)] for p in PLACES] + [[reject(r)] for r in MIX if r != "action"]
    probes += [[find(o), pick(o), call("arm.place", surface=s)] for o, s in zip(OBJECTS, itertools.cycle(
        SURFACES + CONTAINERS))]
    probes += [[call("move", direction=d, speed=s, seconds=2.5), call("start", direction=d, speed=s)]
               for d in DIRECTIONS for s in SPEED_WORDS]
    probes += [[call("walk", direction=d, meters=10.0), call("turn", direction=t, degrees=g)]
               for d in ("forward", "backward", "left", "right") for t in ("left", "right") for g in (45, 90, 180, 360)]
    bad = [(p, contract.validate(json.dumps(p)).violations) for p in probes]
    bad = [(p, v) for p, v in bad if v]
    if bad:
        raise ValueError(f"the task contract rejects {len(bad)} of the synthesizer's answer forms, e.g. "
                         f"{bad[0][0]}: {'; '.join(map(str, bad[0][1]))}")


def iter_commands(seed: int = 0, contract: ContractSpec | None = None) -> Iterator[Command]:
    """Distinct commands (by exact text, case folded), endlessly, deterministic for a seed."""
    if contract is not None:
        check_vocabulary(contract)
    rng = random.Random(seed)
    seen: set[str] = set()
    misses = 0
    while misses < 10_000:
        cmd = compose(rng)
        if cmd.user.lower() in seen:
            misses += 1
            continue
        misses = 0
        seen.add(cmd.user.lower())
        yield cmd
    raise RuntimeError(f"the synthesizer ran out of distinct commands after {len(seen)}")


def synthesize(n: int, seed: int = 0, contract: ContractSpec | None = None) -> list[Command]:
    """``n`` distinct commands, deterministic for a seed (distinct by exact text; near-duplicates are the gate's job).

    Prefix-stable: the first k of ``synthesize(n)`` are ``synthesize(k)``."""
    return list(itertools.islice(iter_commands(seed, contract), n))


def mix(commands: list[Command]) -> dict[str, float]:
    """Share of each kind of command (action or a refusal reason)."""
    counts = Counter(c.kind for c in commands)
    return {k: round(counts[k] / max(len(commands), 1), 3) for k in MIX}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train.synth", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=10, help="how many commands to print")
    parser.add_argument("--seed", type=int, default=0, help="random seed (same seed, same commands)")
    args = parser.parse_args(argv)
    for cmd in synthesize(args.n, args.seed):
        print(f"{cmd.user}\n  -> {cmd.assistant}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
