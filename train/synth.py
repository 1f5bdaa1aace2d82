"""Offline synthesizer for robot_sdk (contract v4): robot commands in people's words, with the exact compact answer.

Why rules and not a model: a 135M student can only learn what the text determines, so every phrase that changes
the answer says it, implicit steps follow fixed rules (the conventions in docs/README.data.md), and phrasing
varies freely where it changes nothing: synonyms, chatty or terse wrappers, context sentences, digits or words,
typos, case and punctuation. What must generalise is taught by breadth, not by memory: hundreds of object nouns
(the answer copies the object as said, without determiners or possessives), open-vocabulary surfaces, places as
said (the contract maps a synonym or a slip onto the map and refuses a place not on it), and refusals
(``robot.reject(reason=...)``) for requests the API cannot do, unsafe instructions and messages with nothing to act
on. If any part of a command must be refused, the answer ends with the reject call
where that part is said: the calls of the parts said before it are written (a small model decides clause by clause
far better than it looks ahead to the end of a command), and the contract voids them: only the refusal runs.

Answers use the contract's compact calls (go, find, pick, move, move_at, start, start_at, walk, turn), which the
contract expands into the SDK calls the robot runs; everything else is a raw API call.
The rules, in short:
  - "go to P" -> go(P), P as said ("lounge", "storeroom", "pantry"); the contract reads it against the map
  - "find X [in P]", "search P for X" -> [go(P)], find(X); "pick up X [from P]", "find X and pick it up" ->
    [go(P)], pick(X); "bring me X [from P] [to Q]" -> [go(P)], pick(X), [go(Q)]; "bring me X, I'm in Q" ->
    pick(X), go(Q); "bring X to me/here" -> pick(X) (the robot does not know where "me" is)
  - "put it on S" (holding) -> arm.place(S); "put X on S" -> pick(X), arm.place(S)
  - direction + speed word + duration -> move; no duration -> start; a distance -> walk; an angle or a bare
    "turn left" (90), "turn around" (180), "spin around" (360) -> turn; "at N m/s" -> move_at (with a duration) or
    start_at, the number as said (the contract picks the axis and the sign); "then stop" after a move adds nothing;
    faster than the robot may go (2+ m/s) is unsafe
  - "say 'T'", "tell everyone T" -> audio.speak(text=T), T as said (unquoted speech ends the command)

This module composes whole commands (steps, wrappers, case, typos) and is the synthesizer's API; one step's clause
is train/synth_steps.py, the parts a clause is made of train/synth_phrasing.py, the word lists train/synth_vocab.py.

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
from typing import Iterator

from edgetune.contract import ContractSpec
from train.synth_phrasing import (KEEP, KEEP_END, NUMBER_WORDS, SAY, SAY_END, SPANS, SPEAK, State, Step, call, find, go,
                                  pick, reject, said_place, typo)
from train.synth_steps import STEP_KINDS, refused
from train.synth_vocab import (CONTAINERS, CONTEXT, DETERMINERS, DIRECTIONS, OBJECTS, PLACE_NAMES, PLACES, PREFIX,
                               QUESTION_PREFIX, SENTENCE_PREFIX, SPEED_WORDS, SUFFIX, SURFACES, UNCLEAR, UNKNOWN_PLACES)

#: refusal reasons of robot.reject, and how often each kind of command is generated (percent): about a quarter
#: refusals, as in what people say to a home robot (the human set: 28%); at 16.5% the minority reasons (unsafe,
#: unclear) were almost never learned (0 of 20 unsafe human commands answered with the right reason)
MIX = {"action": 74.0, "unsupported": 7.0, "unknown_place": 7.0, "unsafe": 7.0, "unclear": 5.0}
MAX_ITEMS = 8  #: compact items per answer (robot_sdk: max_calls 24 // the longest expansion, 3)


@dataclass(frozen=True)
class Command:
    """One synthesized example: the command, its expected compact answer, and its kind (for the mix report)."""

    user: str
    calls: tuple[str, ...]
    kind: str = "action"

    @property
    def assistant(self) -> str:
        return json.dumps(list(self.calls))



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
    return text.startswith(_SENTENCE_STARTS) or text.startswith(KEEP) or text.split()[0] in DETERMINERS


def _outside(text: str) -> list[tuple[int, int]]:
    """Ranges of ``text`` outside speech and protected spans."""
    out, pos = [], 0
    for m in SPANS.finditer(text):
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
    speech_last = steps[-1].calls == (SPEAK,) and SAY in steps[-1].text and not steps[-1].text.endswith('"') \
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
        st = State(n_steps=n_steps)
        steps: list[Step] = []
        for i in range(n_steps):
            st.index = i
            if i == refuse_at:
                step = refused(rng, st, kind)
            else:
                kinds = [k for k in STEP_KINDS if (k == "place") == bool(st.holding) or
                         (k != "place" and rng.random() < 0.3)]
                kinds = [k for k in kinds if not (st.holding and k in ("pick", "bring", "put"))]
                name = rng.choices(kinds, weights=[STEP_KINDS[k][1] for k in kinds])[0]
                step = STEP_KINDS[name][0](rng, st)
            st.ends_move = step.ends_move
            st.started = any(c.startswith(("start(", "start_at(")) for c in step.calls[-1:])
            steps.append(step)
        calls = tuple(c for s in steps for c in s.calls)
        if len(calls) <= MAX_ITEMS:
            break
    user = _finish(rng, steps, None if kind == "action" else kind)
    speech = iter(m.group(1) for m in re.finditer(f"{SAY}(.*?){SAY_END}", user))
    if kind not in ("action", "unknown_place"):  # what was said before the refused part, then the refusal, which
        calls = tuple(c for s in steps[:refuse_at] for c in s.calls) + (reject(kind),)  # voids it
    # an unknown place is named as said like any other: the contract refuses it (robot_sdk's go, 'unresolved')
    calls = tuple(call("audio.speak", text=next(speech)) if c == SPEAK else c for c in calls)
    user = re.sub(f"[{SAY}{SAY_END}{KEEP}{KEEP_END}]", "", user)
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
    misread = [name for place, names in PLACE_NAMES.items() for name in names
               if contract.validate(json.dumps([go(said_place(name))])).calls[:1] != [f"nav.go_to(place='{place}')"]]
    misread += [name for name in UNKNOWN_PLACES
                if contract.validate(json.dumps([go(said_place(name))])).calls != [reject("unknown_place")]]
    if misread:
        raise ValueError(f"the task contract reads {len(misread)} of the synthesizer's places otherwise than it "
                         f"means them (a synonym off the map, or a place off the map on it), e.g. {misread[0]}")


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
