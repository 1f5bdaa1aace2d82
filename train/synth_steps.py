"""The step kinds of the robot_sdk synthesizer (train/synth.py): each writes one clause of a command in people's
words and the compact calls it means, following the conventions in docs/README.data.md; ``refused`` writes a clause
the robot must refuse."""

from __future__ import annotations

import random
from typing import Callable

from train.synth_phrasing import (SAY, SAY_END, SPEAK, State, Step, call, find, go, it, keep, lying, meters_text,
                                  object_phrase, pick, place_phrase, seconds_text, surface_phrase)
from train.synth_vocab import (ANIMALS, AXIS, BRING_ME, CARRY, DIRECTIONS, FIND_VERBS, GO_VERBS, PEOPLE, PICK_VERBS,
                               PLACES, PLACE_NAMES, POSTURES, PUT, RAW_SPEEDS, RETURN_VERBS, SAY_VERBS, SIMPLE, SPEECH,
                               SPEED_WORDS, START_FORMS, TELL, TERSE, UNSAFE, UNSUPPORTED, WAIT_VERBS)


def step_go(rng: random.Random, st: State) -> Step:
    place, text = place_phrase(rng, st)
    verb = rng.choice(RETURN_VERBS if st.place and rng.random() < 0.25 else GO_VERBS)
    tail = rng.choice(["", "", "", "", "", " quickly", " now", " right away", " please", " for me"])
    if st.solo and not st.unknown and rng.random() < 0.12:  # terse: "kitchen. now."
        place, text = place_phrase(rng, st, bare=True)
        return Step(rng.choice([f"{text}. now", f"{text}, now", f"to the {text}", f"{text} please",
                                f"{text}!", f"go {text}", f"{text}. go"]), (go(place),), sentence=True)
    st.place = place
    return Step(f"{verb} {text}{tail}", (go(place),))


def _find_in(rng: random.Random, st: State, obj: str, plural: bool) -> tuple[str | None, str]:
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


def step_find(rng: random.Random, st: State) -> Step:
    name, obj, plural = object_phrase(rng)
    if st.unknown or rng.random() < 0.42:
        place, text = _find_in(rng, st, obj, plural)
        st.place = place
        return Step(text, (go(place), find(name)))
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


def step_pick(rng: random.Random, st: State) -> Step:
    """pick(X) [after go(P)]; "... and bring it to me" adds nothing, "... and bring it to Q" adds go(Q)."""
    name, obj, plural = object_phrase(rng)
    st.holding, st.plural = name, plural
    verb = rng.choice(PICK_VERBS)
    calls: tuple[str, ...]
    if st.unknown or rng.random() < 0.35:
        place, where = place_phrase(rng, st)
        st.place = place
        text = rng.choice([f"{verb} {obj} {rng.choice(['in', 'from', 'in', 'at'])} {where}",
                           f"once you're in {where}, {verb} {obj}", f"when you reach {where}, {verb} {obj}",
                           f"in {where}, {verb} {obj}", f"go to {where} and {verb} {obj}",
                           f"if you see {obj} in {where}, {rng.choice(['grab', 'pick up', 'take'])} {it(plural)}"])
        calls = (go(place), pick(name))
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


def step_bring(rng: random.Random, st: State) -> Step:
    """bring/fetch: [go(P)], pick(X), [go(Q)]; "bring X to me" with no place known is pick(X) alone."""
    name, obj, plural = object_phrase(rng)
    st.holding, st.plural = name, plural
    unknown_at = rng.choice(["src", "dst"]) if st.unknown else None
    src = dst = None
    calls: list[str] = []

    def at(which: str) -> tuple[str, str]:
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
    calls = ([go(src)] if src else []) + [pick(name)] + ([go(dst)] if dst else [])
    st.place = dst or src or st.place
    return Step(text, tuple(calls))


def step_place(rng: random.Random, st: State) -> Step:
    """Put down what is held: arm.place(surface)."""
    surface, where = surface_phrase(rng)
    thing = it(st.plural)
    verb = rng.choice(PUT)
    text = rng.choice([f"{verb} {thing} {where}", f"{verb} {thing} down {where}", f"{verb} {thing} {where}",
                       f"{verb} {thing} back {where}"])
    st.holding = None
    return Step(text, (call("arm.place", surface=surface),))


def step_put(rng: random.Random, st: State) -> Step:
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


def step_move(rng: random.Random, st: State) -> Step:
    """A timed move: move(direction, speed word, seconds), or move_at(direction, speed, seconds) for a speed said
    as a number (m/s, rad/s): the model copies the number, the contract picks the axis and the sign."""
    direction = rng.choice(list(DIRECTIONS))
    verb = rng.choice(DIRECTIONS[direction])
    seconds = float(rng.choice([0.5, 1, 1.5, 2, 2, 3, 3, 4, 5, 5, 6, 7, 8, 10, 2.5, 12, 15, 20, 30, 4.5]))
    duration = seconds_text(rng, seconds)
    duration = f"for {duration}" if rng.random() < 0.85 else duration
    if rng.random() < 0.12:  # "at 0.6 m/s": the exact velocity, no speed word
        axis = AXIS[direction]
        value = rng.choice(RAW_SPEEDS[axis])
        unit = "rad/s" if axis == "vyaw" else rng.choice(["m/s", "meters per second", "m/s", "metres per second"])
        speed = f"at {value:g} {unit}"
        if value in (0.5, 1.0) and unit != "rad/s" and rng.random() < 0.5:  # "at half a meter per second"
            speed = f"at {'half a' if value == 0.5 else 'one'} {rng.choice(['meter', 'metre'])} per second"
        calls = (call("move_at", direction=direction, speed=float(value), seconds=seconds),)
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


def step_start(rng: random.Random, st: State) -> Step:
    """An untimed move (no duration, no distance): start(direction, speed word), or start_at(direction, speed) at
    a speed said as a number."""
    direction = rng.choice(list(START_FORMS))
    if rng.random() < 0.15 and not direction.startswith("turn"):
        axis = AXIS[direction]
        value = rng.choice(RAW_SPEEDS[axis])
        verb = rng.choice(DIRECTIONS[direction] + START_FORMS[direction])
        speed = f"{value:g} {rng.choice(['m/s', 'meters per second', 'm/s', 'metres per second'])}"
        if value in (0.5, 1.0) and rng.random() < 0.5:
            speed = f"{'half a' if value == 0.5 else 'one'} {rng.choice(['meter', 'metre'])} per second"
        return Step(f"{verb} {'at ' if rng.random() < 0.8 else ''}{speed}",
                    (call("start_at", direction=direction, speed=float(value)),))
    speed_key = rng.choice(list(SPEED_WORDS))
    speed = rng.choice(SPEED_WORDS[speed_key])
    # a bare "turn left" is a 90 degree turn (step_turn), so untimed turning always says start/keep
    forms = START_FORMS[direction] + ([] if direction.startswith("turn") else DIRECTIONS[direction])
    verb = rng.choice(forms)
    text = " ".join(p for p in ([speed, verb] if speed.endswith("ly") and rng.random() < 0.3 else [verb, speed]) if p)
    if rng.random() < 0.15:
        text += rng.choice([" until I say stop", " until I tell you to stop", " and keep going"])
    return Step(text, (call("start", direction=direction, speed=speed_key),))


def step_walk(rng: random.Random, st: State) -> Step:
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


def step_turn(rng: random.Random, st: State) -> Step:
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


def step_wait(rng: random.Random, st: State) -> Step:
    seconds = float(rng.choice([1, 2, 3, 4, 5, 5, 8, 10, 10, 15, 20, 30, 45, 60, 1.5, 2.5, 7, 12, 25, 40, 0.5]))
    verb = rng.choice(WAIT_VERBS)
    dur = seconds_text(rng, seconds)
    if verb in ("wait", "pause", "give it"):
        text = f"{verb} {dur}" if verb != "pause" or rng.random() < 0.5 else f"pause for {dur}"
    else:
        text = f"{verb} {dur}"
    return Step(text, (call("robot.wait", seconds=seconds),))


def step_posture(rng: random.Random, st: State) -> Step:
    # "stop" right after a timed move, a distance or a turn is part of it (they end with StopMove)
    callee = rng.choice([c for c in POSTURES if not (c == "sport.StopMove" and (st.ends_move or st.started))])
    if st.solo and callee in TERSE and rng.random() < 0.2:
        return Step(rng.choice(TERSE[callee]), (call(callee),), sentence=True)
    return Step(rng.choice(POSTURES[callee]), (call(callee),))


def step_simple(rng: random.Random, st: State) -> Step:
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


def step_say(rng: random.Random, st: State) -> Step:
    """Speech: quoted anywhere; unquoted ("tell everyone dinner is ready") only as the last clause."""
    phrase = _speech(rng)
    if st.last and rng.random() < 0.45:
        text = phrase.rstrip("!?.")
        text = text[0].lower() + text[1:] if not text.startswith("I ") else text
        return Step(f"{rng.choice(TELL)} {SAY}{text}{SAY_END}", (SPEAK,))
    quote = rng.choice(["'", '"', '"'])
    verb = rng.choice(SAY_VERBS)
    return Step(f"{verb} {quote}{SAY}{phrase}{SAY_END}{quote}", (SPEAK,))


#: step kind -> (builder, weight)
STEP_KINDS: dict[str, tuple[Callable[[random.Random, State], Step], float]] = {
    "go": (step_go, 3.0), "find": (step_find, 2.6), "pick": (step_pick, 1.8), "bring": (step_bring, 2.6),
    "place": (step_place, 3.0), "put": (step_put, 0.8), "move": (step_move, 2.6), "start": (step_start, 0.9),
    "walk": (step_walk, 1.6), "turn": (step_turn, 1.6), "wait": (step_wait, 1.0), "posture": (step_posture, 1.8),
    "simple": (step_simple, 2.2), "say": (step_say, 1.2),
}
#: kinds that name a place, so a step of them can name an unknown one
_PLACED = ["go", "go", "find", "pick", "bring", "bring"]


def refused(rng: random.Random, st: State, reason: str) -> Step:
    """A clause the robot must refuse. One naming a place not on the map is written like any other (the place
    as said): the contract refuses the place, not the model."""
    if reason == "unknown_place":
        st.unknown = True
        kind = rng.choice(_PLACED)
        step = STEP_KINDS[kind][0](rng, st)
        st.unknown = False
        return step
    templates = UNSUPPORTED if reason == "unsupported" else UNSAFE
    template = rng.choice(templates)
    name, obj, _ = object_phrase(rng)
    text = template.format(o=name, p=rng.choice(PEOPLE), a=rng.choice(ANIMALS))
    if reason == "unsafe" and rng.random() < 0.15:  # faster than the robot may go
        text = f"{rng.choice(DIRECTIONS['forward'])} at {rng.choice([2, 3, 5, 10, 20])} " \
               f"{rng.choice(['m/s', 'meters per second'])}"
    return Step(keep(text) if reason == "unsafe" else text, ())
