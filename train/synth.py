"""Offline synthesizer for robot_sdk: multi-step robot commands with the exact expected call list.

Why rules and not a model: a 135M student can only learn what the text determines. So every phrase that changes
the answer says it ("slowly" is always vx=0.3, "for three seconds" is always robot.wait(seconds=3.0)), implicit
steps follow fixed rules, and phrasing varies only where it does not change the answer (synonyms, politeness,
ordinals, sentence splits, digits or words, light typos in filler words).

Implicit-step rules (the answer is fully determined by them):
  - nav.go_to(place) is always followed by nav.wait_for_arrival()
  - perception.find_object(name) is always followed by perception.wait_for_result()
  - picking something up first finds it: find_object, wait_for_result, arm.pick
  - "... in/from the <place>" first goes there: go_to, wait_for_arrival
  - "bring/fetch X from P" = go to P, find X, pick X; "... to Q" then goes to Q
  - a timed move is Move, robot.wait(seconds), StopMove ("..., then stop" after it adds nothing)
  - "say '<text>'" speaks exactly the quoted text

    python -m train.synth -n 5 --seed 1     print a few examples
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import re
from dataclasses import dataclass
from typing import Callable, Iterator

from edgetune.contract import ContractSpec, format_value

# ------------------------------------------------------------------------------------------------ vocabulary
#: robot_sdk's enum values (checked against the task's allowlist at start so the two cannot drift apart)
PLACES = ["kitchen", "living_room", "bedroom", "bathroom", "office", "garage", "hallway", "dining_room",
          "laundry_room", "front_door", "back_door", "garden", "lab", "storage_room", "reception", "elevator"]
OBJECTS = ["red ball", "blue ball", "green cup", "water bottle", "keys", "phone", "remote control", "book",
           "backpack", "shoe", "toy car", "apple", "package", "laptop", "coffee mug", "umbrella", "glasses", "wallet"]
SURFACES = ["table", "desk", "shelf", "counter", "floor", "couch", "bed", "bin", "tray", "charging pad"]
#: objects people say "my X" about
PERSONAL = {"keys", "phone", "backpack", "shoe", "laptop", "coffee mug", "umbrella", "glasses", "wallet", "book"}

NUMBER_WORDS = {1: "one", 2: "two", 3: "three", 4: "four", 5: "five", 6: "six", 7: "seven", 8: "eight", 9: "nine",
                10: "ten", 12: "twelve", 15: "fifteen", 20: "twenty", 30: "thirty", 45: "forty-five", 60: "sixty"}

#: direction -> (Move argument, sign, phrasings)
DIRECTIONS = {
    "forward": ("vx", 1, ["walk forward", "move forward", "go forward", "move ahead", "walk straight ahead"]),
    "backward": ("vx", -1, ["walk backward", "move backward", "back up", "walk backwards", "reverse"]),
    "left": ("vy", 1, ["sidestep to the left", "strafe left", "step sideways to the left", "shuffle left"]),
    "right": ("vy", -1, ["sidestep to the right", "strafe right", "step sideways to the right", "shuffle right"]),
    "turn_left": ("vyaw", 1, ["turn left", "rotate left", "spin to the left", "turn counterclockwise"]),
    "turn_right": ("vyaw", -1, ["turn right", "rotate right", "spin to the right", "turn clockwise"]),
}
#: speed word -> magnitude per Move argument; "normal" has no word or an explicit "at normal speed"
SPEEDS = {"slow": {"vx": 0.3, "vy": 0.2, "vyaw": 0.5},
          "normal": {"vx": 0.5, "vy": 0.3, "vyaw": 1.0},
          "fast": {"vx": 0.8, "vy": 0.5, "vyaw": 1.5}}
SPEED_WORDS = {"slow": ["slowly", "at a slow pace", "gently"],
               "normal": ["", "", "at normal speed", "at a normal pace"],
               "fast": ["quickly", "fast", "at a fast pace", "briskly"]}

POSTURES = {
    "sport.StandUp": ["stand up", "get up", "get on your feet", "rise up"],
    "sport.StandDown": ["lie down", "stand down", "get down on the ground", "lay down"],
    "sport.Sit": ["sit", "sit down", "take a seat"],
    "sport.RecoveryStand": ["recover", "do a recovery stand", "recover from the fall", "get back on your feet"],
    "sport.BalanceStand": ["balance", "do a balance stand", "stand balanced", "balance yourself"],
    "sport.Hello": ["wave hello", "wave", "give a wave", "do the hello gesture"],
    "sport.Stretch": ["stretch", "do a stretch", "have a stretch"],
    "sport.Damp": ["damp the motors", "go limp", "damp all motors", "do an emergency soft stop"],
    "sport.StopMove": ["stop", "stop moving", "halt", "freeze", "stand still"],
}
SIMPLE = {
    "nav.dock": ["go to the charging dock", "dock", "go dock yourself", "return to your charging station",
                 "go recharge", "head back to the dock"],
    "nav.cancel": ["cancel the navigation", "cancel the current goal", "abort navigation", "stop navigating",
                   "cancel your route"],
    "perception.scan_area": ["scan the area", "look around", "scan the room", "map your surroundings",
                             "do a 360 scan"],
    "arm.home": ["stow your arm", "retract the arm", "put your arm away", "move the arm to its home position",
                 "home the arm"],
    "status.report_battery": ["report your battery level", "tell me your battery level", "check the battery",
                              "report the battery", "tell me how much battery you have left"],
    "status.report_state": ["report your status", "give me a status report", "report your state",
                            "check for faults", "tell me your current state"],
    "status.report_position": ["report your position", "tell me where you are", "report your location",
                               "give me your current position"],
    "camera.take_photo": ["take a photo", "take a picture", "snap a photo", "capture an image",
                          "take a snapshot"],
}
GO_VERBS = ["go to", "head to", "navigate to", "drive to", "go over to", "make your way to", "walk to", "move to"]
RETURN_VERBS = ["come back to", "return to", "go back to", "head back to"]
FIND_VERBS = ["find", "look for", "locate", "search for", "try to find"]
PICK_VERBS = ["pick up", "grab", "take", "get hold of", "grasp"]
FETCH_VERBS = ["fetch", "get", "bring me", "grab", "retrieve"]
PLACE_VERBS = ["put it on the {s}", "place it on the {s}", "set it down on the {s}", "leave it on the {s}"]
BIN_VERBS = ["drop it in the bin", "put it in the bin", "throw it in the bin"]
SAY_VERBS = ["say", "announce", "speak the words", "say out loud"]
WAIT_VERBS = ["wait", "wait for", "pause for", "hold on for", "stay put for", "stay still for"]
PHRASES = ["Hello there", "Dinner is ready", "Good morning", "Please follow me", "The package has arrived",
           "Watch your step", "I am on my way", "Welcome home", "Battery check complete", "Excuse me",
           "Time for your medicine", "The meeting starts in five minutes", "Have a nice day", "Task complete",
           "Someone is at the door", "Please stand back", "Lunch is served", "I found it", "Goodbye",
           "Please close the door", "The laundry is done", "Hello, my name is Rex", "Sorry, I cannot do that",
           "Mission accomplished!", "Is anyone here?", "Stand clear, moving now", "Coffee is ready",
           "The kitchen is clean", "Good night", "See you later"]

POLITE_PREFIX = ["", "", "", "please ", "please, ", "could you ", "can you please ", "hey robot, ", "robot, ",
                 "I need you to ", "I'd like you to ", "would you ", "okay, ", "go ahead and "]
SENTENCE_PREFIX = ["", "", "", "Hey robot. ", "Robot, listen. ", "Okay. ", "Hi. ", "Please do this. "]
POLITE_SUFFIX = ["", "", "", " please", ", thanks", ", thank you", "!"]
#: words that carry meaning and must never get a typo: enum values, speed and number words, every word of an action
#: phrase ("pace it on the desk" would leave the call to a guess) and of a quoted phrase (spoken verbatim)
_ACTION_PHRASES = [*GO_VERBS, *RETURN_VERBS, *FIND_VERBS, *PICK_VERBS, *FETCH_VERBS, *PLACE_VERBS, *BIN_VERBS,
                   *SAY_VERBS, *WAIT_VERBS, *PHRASES, *(p for _, _, ps in DIRECTIONS.values() for p in ps),
                   *(p for ps in [*POSTURES.values(), *SIMPLE.values()] for p in ps)]
_PROTECTED = {w for name in PLACES + OBJECTS + SURFACES for w in name.replace("_", " ").split()} | {
    w for words in SPEED_WORDS.values() for phrase in words for w in phrase.split()} | {
    w for words in NUMBER_WORDS.values() for w in words.split("-")} | {
    w.strip(",.!?'").lower() for phrase in _ACTION_PHRASES for w in phrase.split()} | {
    "left", "right", "forward", "backward", "backwards", "ahead", "clockwise", "counterclockwise", "turn", "back",
    "half", "minute", "second", "seconds", "then", "and", "stop", "dock", "sit", "down", "stand", "from", "into",
    "start"}


@dataclass(frozen=True)
class Step:
    """One clause of a command: its text (no leading capital, no final punctuation) and its exact calls."""

    text: str
    calls: tuple[str, ...]
    verbatim: bool = False  #: holds text spoken exactly as written (never lower-cased)


@dataclass(frozen=True)
class Command:
    """One synthesized example: the command text and the expected answer (a JSON list of call strings)."""

    user: str
    calls: tuple[str, ...]

    @property
    def assistant(self) -> str:
        return json.dumps(list(self.calls))


def call(callee: str, **kwargs: object) -> str:
    """A call string in the contract's normalised form (what the validator's ``calls`` contains)."""
    return f"{callee}({', '.join(f'{k}={format_value(v)}' for k, v in kwargs.items())})"


def check_vocabulary(contract: ContractSpec) -> None:
    """Fail loudly if the synthesizer's vocabulary drifted from the task's allowlist."""
    expected = {"nav.go_to": ("place", PLACES), "perception.find_object": ("name", OBJECTS),
                "arm.pick": ("name", OBJECTS), "arm.place": ("surface", SURFACES)}
    for callee, (arg, values) in expected.items():
        spec = contract.api.get(callee)
        arg_spec = spec.args.get(arg) if spec else None
        bad = [v for v in values if arg_spec is None or not (
            v in arg_spec.values if arg_spec.type == "enum" else arg_spec.type == "str" and arg_spec.admits_text(v))]
        if bad:
            raise ValueError(f"synth vocabulary for {callee}.{arg} is not in the task allowlist: {sorted(bad)}")
    used = set(POSTURES) | set(SIMPLE) | {"nav.wait_for_arrival", "perception.wait_for_result", "sport.Move",
                                           "robot.wait", "audio.speak"}
    missing = used - set(contract.api)
    if missing:
        raise ValueError(f"synth uses callees outside the task allowlist: {sorted(missing)}")


# ----------------------------------------------------------------------------------------------- phrasing
def place_text(rng: random.Random, place: str) -> str:
    words = place.replace("_", " ")
    return words if place in ("reception",) and rng.random() < 0.5 else f"the {words}"


def object_text(rng: random.Random, obj: str) -> str:
    return f"my {obj}" if obj in PERSONAL and rng.random() < 0.4 else f"the {obj}"


def seconds_text(rng: random.Random, seconds: float) -> str:
    """``seconds`` as words or digits; every form maps back to exactly one value."""
    if seconds == 0.5:
        return rng.choice(["half a second", "0.5 seconds"])
    if seconds == 1.0:
        return rng.choice(["one second", "a second", "1 second"])
    if seconds == 60.0:
        return rng.choice(["a minute", "one minute", "60 seconds", "sixty seconds"])
    if seconds == 30.0 and rng.random() < 0.3:
        return "half a minute"
    if seconds != int(seconds):
        whole = int(seconds)
        if rng.random() < 0.5 and whole in NUMBER_WORDS:
            return f"{NUMBER_WORDS[whole]} and a half seconds"
        return f"{seconds:g} seconds"
    n = int(seconds)
    form = rng.random()
    if form < 0.45 and n in NUMBER_WORDS:
        return f"{NUMBER_WORDS[n]} seconds"
    if form < 0.85:
        return f"{n} seconds"
    return rng.choice([f"{n}s", f"{n} sec", f"{n} secs"])


def go_steps(place: str) -> tuple[str, ...]:
    return call("nav.go_to", place=place), call("nav.wait_for_arrival")


def find_steps(obj: str) -> tuple[str, ...]:
    return call("perception.find_object", name=obj), call("perception.wait_for_result")


# ---------------------------------------------------------------------------------------------- step kinds
class _State:
    """What the command so far implies (the robot holds something after a pick)."""

    def __init__(self) -> None:
        self.holding = False
        self.place: str | None = None
        self.last: tuple[str, ...] = ()  #: calls of the previous step


def step_go(rng: random.Random, st: _State) -> Step:
    place = rng.choice([p for p in PLACES if p != st.place])
    verb = rng.choice(RETURN_VERBS if st.place and rng.random() < 0.25 else GO_VERBS)
    st.place = place
    return Step(f"{verb} {place_text(rng, place)}", go_steps(place))


def step_find(rng: random.Random, st: _State) -> Step:
    obj = rng.choice(OBJECTS)
    verb = rng.choice(FIND_VERBS)
    if rng.random() < 0.4:
        place = rng.choice(PLACES)
        st.place = place
        where = rng.choice(["in", "at"]) if place in ("front_door", "back_door", "reception", "elevator") else "in"
        return Step(f"{verb} {object_text(rng, obj)} {where} {place_text(rng, place)}", go_steps(place) + find_steps(obj))
    return Step(f"{verb} {object_text(rng, obj)}", find_steps(obj))


def step_pick(rng: random.Random, st: _State) -> Step:
    obj = rng.choice(OBJECTS)
    st.holding = True
    verb = rng.choice(PICK_VERBS)
    if rng.random() < 0.4:
        place = rng.choice(PLACES)
        st.place = place
        return Step(f"{verb} {object_text(rng, obj)} {rng.choice(['in', 'from'])} {place_text(rng, place)}",
                    go_steps(place) + find_steps(obj) + (call("arm.pick", name=obj),))
    return Step(f"{verb} {object_text(rng, obj)}", find_steps(obj) + (call("arm.pick", name=obj),))


def step_fetch(rng: random.Random, st: _State) -> Step:
    obj, src = rng.choice(OBJECTS), rng.choice(PLACES)
    calls = go_steps(src) + find_steps(obj) + (call("arm.pick", name=obj),)
    st.holding, st.place = True, src
    text = f"{rng.choice(FETCH_VERBS)} {object_text(rng, obj)} from {place_text(rng, src)}"
    if rng.random() < 0.45:
        dst = rng.choice([p for p in PLACES if p != src])
        st.place = dst
        text = f"{rng.choice(['bring', 'take', 'carry'])} {object_text(rng, obj)} from {place_text(rng, src)} " \
               f"to {place_text(rng, dst)}"
        calls += go_steps(dst)
    return Step(text, calls)


def step_place(rng: random.Random, st: _State) -> Step:
    st.holding = False
    surface = rng.choice(SURFACES)
    text = rng.choice(BIN_VERBS) if surface == "bin" and rng.random() < 0.6 else rng.choice(PLACE_VERBS).format(s=surface)
    return Step(text, (call("arm.place", surface=surface),))


def step_move(rng: random.Random, st: _State) -> Step:
    direction = rng.choice(list(DIRECTIONS))
    axis, sign, phrases = DIRECTIONS[direction]
    speed = rng.choice(list(SPEEDS))
    velocity = {"vx": 0.0, "vy": 0.0, "vyaw": 0.0}
    speed_word = rng.choice(SPEED_WORDS[speed])
    velocity[axis] = sign * SPEEDS[speed][axis]
    if axis == "vx" and rng.random() < 0.15:  # an explicit speed instead of a speed word
        magnitude = rng.choice([0.2, 0.4, 0.6, 0.7, 1.0])
        velocity[axis] = sign * magnitude
        speed_word = rng.choice([f"at {magnitude:g} m/s", f"at {magnitude:g} meters per second"])
    move = call("sport.Move", **velocity)
    verb = rng.choice(phrases)
    if rng.random() < 0.2:  # an untimed move: it keeps going until told to stop
        return Step(" ".join(w for w in ("start to", verb, speed_word) if w), (move,))
    seconds = float(rng.choice([0.5, 1, 1.5, 2, 2, 3, 3, 4, 5, 5, 6, 7, 8, 10, 2.5]))
    duration = f"for {seconds_text(rng, seconds)}"
    parts = [verb, speed_word, duration] if rng.random() < 0.6 else [verb, duration, speed_word]
    text = " ".join(w for w in parts if w)
    if rng.random() < 0.25:
        text += rng.choice([", then stop", " and then stop", " and stop"])
    return Step(text, (move, call("robot.wait", seconds=seconds), call("sport.StopMove")))


def step_wait(rng: random.Random, st: _State) -> Step:
    seconds = float(rng.choice([1, 2, 3, 4, 5, 5, 8, 10, 10, 15, 20, 30, 45, 60, 1.5, 2.5]))
    verb = rng.choice(WAIT_VERBS)
    if verb == "wait" and rng.random() < 0.5:
        return Step(f"wait {seconds_text(rng, seconds)}", (call("robot.wait", seconds=seconds),))
    return Step(f"{verb.replace(' for', '')} for {seconds_text(rng, seconds)}", (call("robot.wait", seconds=seconds),))


def step_posture(rng: random.Random, st: _State) -> Step:
    # "stop" right after a timed move is part of that move (it already ends with StopMove)
    callee = rng.choice([c for c in POSTURES if not (c == "sport.StopMove" and st.last[-1:] == (call(c),))])
    return Step(rng.choice(POSTURES[callee]), (call(callee),))


def step_simple(rng: random.Random, st: _State) -> Step:
    callee = rng.choice(list(SIMPLE))
    if callee == "nav.dock":
        st.place = None
    return Step(rng.choice(SIMPLE[callee]), (call(callee),))


def step_say(rng: random.Random, st: _State) -> Step:
    phrase = rng.choice(PHRASES)
    quote = rng.choice(["'", '"'])
    return Step(f"{rng.choice(SAY_VERBS)} {quote}{phrase}{quote}", (call("audio.speak", text=phrase),), verbatim=True)


#: step kind -> (builder, weight); place is only offered while holding something
STEP_KINDS: dict[str, tuple[Callable[[random.Random, _State], Step], float]] = {
    "go": (step_go, 3.0), "find": (step_find, 2.0), "pick": (step_pick, 1.5), "fetch": (step_fetch, 1.5),
    "place": (step_place, 3.0), "move": (step_move, 3.0), "wait": (step_wait, 1.0), "posture": (step_posture, 2.0),
    "simple": (step_simple, 2.5), "say": (step_say, 1.0),
}


# -------------------------------------------------------------------------------------------- composition
def _join(rng: random.Random, clauses: list[str]) -> str:
    """Join clauses with ordinals, connectors or separate sentences; the result has no final punctuation."""
    if len(clauses) == 1:
        return clauses[0]
    style = rng.random()
    if style < 0.25:  # First ... Then ... Finally ...
        head = rng.choice(["First", "First,", "To start,", "Start by:"]) if rng.random() < 0.7 else ""
        middle = ["Then", "Next,", "After that,", "Then,"]
        out = [f"{head} {clauses[0]}".strip()]
        for c in clauses[1:-1]:
            out.append(f"{rng.choice(middle)} {c}")
        out.append(f"{rng.choice(['Finally,', 'Lastly,', 'Then', 'And finally'])} {clauses[-1]}")
        return ". ".join(out)
    if style < 0.45:  # separate plain sentences
        return ". ".join(c[0].upper() + c[1:] for c in clauses)
    if style < 0.55:
        return "; ".join(clauses)
    connectors = [", then ", " and then ", ", and then ", " then ", ", after that ", " and "]
    out = clauses[0]
    for i, c in enumerate(clauses[1:], start=1):
        last = i == len(clauses) - 1
        out += (rng.choice([", and finally ", " and finally ", ", then "]) if last and len(clauses) > 2
                else rng.choice(connectors)) + c
    return out


def _typo(rng: random.Random, text: str) -> str:
    """One light typo in a filler word (never in a word that carries meaning)."""
    words = text.split(" ")
    candidates = [i for i, w in enumerate(words) if len(w) >= 4 and w.isalpha() and w.lower() not in _PROTECTED]
    if not candidates:
        return text
    i = rng.choice(candidates)
    w = words[i]
    k = rng.randrange(1, len(w) - 1)
    kind = rng.random()
    if kind < 0.4:
        w = w[:k] + w[k + 1] + w[k] + w[k + 2:]  # swap two letters
    elif kind < 0.7:
        w = w[:k] + w[k + 1:]  # drop one
    else:
        w = w[:k] + w[k] + w[k:]  # double one
    words[i] = w
    return " ".join(words)


def compose(rng: random.Random, max_calls: int = 10) -> Command:
    """One command of 1-4 steps whose calls fit in ``max_calls``."""
    while True:
        n_steps = rng.choices([1, 2, 3, 4], weights=[25, 40, 25, 10])[0]
        st = _State()
        steps: list[Step] = []
        for _ in range(n_steps):
            kinds = [k for k in STEP_KINDS if (k == "place") == st.holding or (k != "place" and rng.random() < 0.3)]
            kinds = [k for k in kinds if not (st.holding and k in ("pick", "fetch"))]
            kind = rng.choices(kinds, weights=[STEP_KINDS[k][1] for k in kinds])[0]
            steps.append(STEP_KINDS[kind][0](rng, st))
            st.last = steps[-1].calls
        calls = tuple(c for s in steps for c in s.calls)
        if len(calls) <= max_calls:
            break
    text = _join(rng, [s.text for s in steps])
    if ". " in text:  # several sentences: only a greeting fits in front, and no question mark at the end
        prefix, end = rng.choice(SENTENCE_PREFIX), rng.choice([".", ".", "", "!"])
    else:
        prefix = rng.choice(POLITE_PREFIX)
        end = "?" if prefix.startswith(("could", "can", "would")) else rng.choice([".", ".", ".", "", "!"])
    suffix = rng.choice(POLITE_SUFFIX)
    if suffix == "!":
        end, suffix = "!", ""
    if "please" in prefix.lower() and "please" in suffix:
        suffix = ""
    user = f"{prefix}{text if prefix.endswith(' ') and not prefix.endswith('. ') else text[0].upper() + text[1:]}"
    user = f"{user[0].upper()}{user[1:]}{suffix}{end}"
    if rng.random() < 0.1 and not any(s.verbatim for s in steps):  # all lower case, as typed on a phone
        user = user.lower()
    if rng.random() < 0.25:
        user = _typo(rng, user)
    user = re.sub(r"\s+", " ", user).replace(" ,", ",").replace("..", ".").strip()
    return Command(user, calls)


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
