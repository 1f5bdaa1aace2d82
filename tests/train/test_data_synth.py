"""The offline synthesizer and the `make data` stage: valid, deterministic, open-vocabulary, leak-free."""

from __future__ import annotations

import json
import random
import re
import time

import pytest
from rapidfuzz import fuzz

from train import synth, synth_phrasing, synth_vocab
from train.data import DataConfig, main, run
from edgetune.artifacts import SPLITS, read_split
from edgetune.spelling import Speller

REASONS = ("unsupported", "unknown_place", "unsafe", "unclear")
UNKNOWN_PLACE = "robot.reject(reason='unknown_place')"


@pytest.fixture(scope="module")
def commands():
    return synth.synthesize(4000, seed=5)


def trigrams(text: str) -> frozenset[str]:
    text = " ".join(re.findall(r"[a-z0-9]+", text.lower()))
    return frozenset(text[i:i + 3] for i in range(max(len(text) - 2, 1)))


def max_jaccard(texts_a: list[str], texts_b: list[str]) -> tuple[float, str, str]:
    """An independent similarity measure (the gate uses rapidfuzz's Indel ratio): character-trigram Jaccard."""
    grams_b = [(trigrams(b), b) for b in texts_b]
    best = (0.0, "", "")
    for a in texts_a:
        ga = trigrams(a)
        for gb, b in grams_b:
            score = len(ga & gb) / len(ga | gb)
            if score > best[0]:
                best = (score, a, b)
    return best


def unspoken(cmd: synth.Command) -> str:
    """The command in lower case without what it asks to be spoken."""
    text = cmd.user.lower()
    for c in cmd.calls:
        if c.startswith("audio.speak("):
            text = text.replace(c[len("audio.speak(text='"):-2].lower(), "")
    return text


def args(call: str, key: str) -> str | None:
    m = re.search(rf"{key}=(?:'([^']*)'|([-0-9.]+))", call)
    return None if m is None else m.group(1) if m.group(1) is not None else m.group(2)


def test_synth_is_deterministic_prefix_stable_and_valid_in_both_forms(robot_task):
    first = synth.synthesize(3000, seed=7, contract=robot_task.contract)
    assert first == synth.synthesize(3000, seed=7)
    assert first[:400] == synth.synthesize(400, seed=7)
    assert first != synth.synthesize(3000, seed=8)
    assert len({c.user.lower() for c in first}) == 3000
    for cmd in first:
        verdict = robot_task.contract.validate(cmd.assistant)
        assert verdict.valid, (cmd.user, cmd.assistant, verdict.violations)
        assert verdict.compact == list(cmd.calls), cmd  # answers are already in the contract's normalised form
        flat = robot_task.contract.validate(json.dumps(verdict.calls))  # the expanded form is a valid answer too
        assert flat.valid and flat.calls == verdict.calls, (cmd, flat.violations)


def test_the_mix_holds_refusals_and_every_reason(commands, robot_task):
    mix = synth.mix(commands)
    refused = sum(mix[r] for r in REASONS)
    assert 0.22 <= refused <= 0.30, mix  # about a quarter, as in the human set (28%)
    assert all(mix[r] >= 0.01 for r in REASONS), mix
    for cmd in commands:
        rejects = [c for c in cmd.calls if c.startswith("robot.reject(")]
        if cmd.kind == "unknown_place":  # the place is named as said; the contract refuses it
            assert not rejects and robot_task.contract.validate(cmd.assistant).calls == [UNKNOWN_PLACE], cmd
        elif rejects or cmd.kind != "action":  # a refusal ends the answer where the refused part is said
            assert rejects == [f"robot.reject(reason='{cmd.kind}')"] and cmd.calls[-1] == rejects[0], cmd
    mixed = [c for c in commands if c.kind != "action" and re.search(r" and |, then |\. ", c.user)]
    assert len(mixed) > 0.25 * sum(c.kind != "action" for c in commands)  # refused parts inside longer commands


def test_the_vocabulary_is_large_and_open():
    objects = synth_vocab.OBJECTS
    assert len(set(objects)) == len(objects) >= 300
    assert sum(" " in o for o in objects) >= 120  # multi-word: "car keys", "glass of water", ...
    assert len(synth_vocab.SURFACES) + len(synth_vocab.CONTAINERS) >= 50
    assert len(synth_vocab.UNKNOWN_PLACES) >= 50 and len(synth_vocab.UNSUPPORTED) >= 100
    for name in objects + synth_vocab.SURFACES + synth_vocab.CONTAINERS:
        assert re.fullmatch(r"[a-z0-9 -]{1,40}", name), name
    places = {n for names in synth_vocab.PLACE_NAMES.values() for n in names}
    assert not {u.removeprefix("the ") for u in synth_vocab.UNKNOWN_PLACES} & places


def test_object_names_are_copied_from_the_command(commands):
    """The answer holds the object as said, without determiners, in lower case; a typo is only in the command."""
    typos = total = 0
    for cmd in commands:
        text = cmd.user.lower()
        for c in cmd.calls:
            name = args(c, "name") or args(c, "surface")
            if name is None:
                continue
            total += 1
            assert name == name.lower() and not re.match(r"(the|a|an|my|your|some|that|this) ", name), cmd
            if name not in text:
                typos += 1
                assert fuzz.partial_ratio(name, text) >= 75, (name, cmd.user)
    assert total > 2000 and typos < 0.1 * total


def test_test_objects_are_mostly_unseen_in_train(commands):
    def names(cmds):
        return {args(c, "name") for cmd in cmds for c in cmd.calls if args(c, "name")}

    train, test = names(commands[:1000]), names(commands[1000:1200])
    assert len(names(commands)) >= 300
    assert len(test - train) / len(test) > 0.3  # exact match on the test split measures copying


@pytest.mark.parametrize("said, place", [("lounge", "living_room"), ("restroom", "bathroom"), ("study", "office"),
                                         ("backyard", "garden"), ("corridor", "hallway"), ("lift", "elevator"),
                                         ("lobby", "reception"), ("storeroom", "storage_room"),
                                         ("entryway", "front_door"), ("laboratory", "lab")])
def test_places_are_named_as_said_and_the_contract_maps_synonyms(commands, robot_task, said, place):
    hits = [c for c in commands if re.search(rf"\bthe {said}\b", unspoken(c)) and c.kind == "action"]
    assert hits and all(f"go(place='{said}')" in c.calls for c in hits)
    for cmd in hits:
        assert f"nav.go_to(place='{place}')" in robot_task.contract.validate(cmd.assistant).calls, cmd


def test_unknown_places_are_named_as_said_and_refused_by_the_contract(commands, robot_task):
    places = "|".join(re.escape(p) for p in synth_vocab.UNKNOWN_PLACES if p != "the car")  # not "the car keys"
    hits = [c for c in commands if re.search(rf"\b({places})\b", unspoken(c))]
    assert len(hits) > 100
    assert all(c.kind != "action" for c in hits), [c for c in hits if c.kind == "action"][:3]
    for cmd in hits:
        said = [args(c, "place") for c in cmd.calls if c.startswith("go(")]
        assert any(synth_phrasing.said_place(p) in said for p in synth_vocab.UNKNOWN_PLACES), cmd
        assert robot_task.contract.validate(cmd.assistant).calls == [UNKNOWN_PLACE], cmd


def test_motion_words_always_mean_the_same_call(commands):
    """"slowly" is speed slow every time; "turn around" is 180 degrees left; a bare turn is 90; "stop" after a
    move adds nothing (it already ends with StopMove)."""
    for cmd in commands:
        text = cmd.user.lower()
        moves = [c for c in cmd.calls if c.startswith(("move(", "start("))]
        if len(moves) == 1 and len(cmd.calls) == 1:
            if re.search(r"\b(slowly|at a crawl|nice and slow)\b", text):
                assert "speed='slow'" in moves[0], cmd
            if re.search(r"\b(quickly|briskly|rapidly)\b", text):
                assert "speed='fast'" in moves[0], cmd
        if cmd.kind == "action" and len(cmd.calls) == 1:
            if re.fullmatch(r"\W*turn around\W*", text):
                assert cmd.calls == ("turn(direction='left', degrees=180)",)
            if re.fullmatch(r"\W*spin around\W*", text):
                assert cmd.calls == ("turn(direction='left', degrees=360)",)
            if re.fullmatch(r"\W*turn (left|right)\W*", text):
                assert cmd.calls == (f"turn(direction='{text.strip(' .!?').split()[1]}', degrees=90)",)
        for a, b in zip(cmd.calls, cmd.calls[1:]):
            assert not (a.startswith(("move(", "walk(", "turn(", "start(")) and b == "sport.StopMove()"), cmd


def test_speeds_said_as_numbers_are_copied_into_move_at_and_start_at(commands):
    """"at 0.6 m/s" is the number as said on move_at / start_at (the contract picks the axis and sign), never a
    raw sport.Move the model would have to place on an axis itself."""
    hits = [c for c in commands if c.kind == "action" and re.search(r"\b\d\.\d (m/s|rad/s|met(er|re)s per second)",
                                                                    unspoken(c))]
    assert len(hits) > 20
    for cmd in hits:
        said = {float(x) for x in re.findall(r"\b(\d\.\d) (?:m/s|rad/s|met(?:er|re)s per second)", unspoken(cmd))}
        used = {float(x) for x in re.findall(r"_at\(direction='\w+', speed=(\d\.\d)", " ".join(cmd.calls))}
        assert said <= used, cmd
    assert not any(c.startswith("sport.Move(") for cmd in commands for c in cmd.calls)


def test_distances_and_durations_are_read_from_the_text(commands):
    """Digits and words alike: "two meters" / "2m" is meters=2.0, "for five seconds" / "for 5s" is seconds=5.0."""
    seen = 0
    for cmd in commands:
        text = cmd.user.lower()
        if len(cmd.calls) != 1 or cmd.kind != "action":
            continue
        call = cmd.calls[0]
        dist = re.search(r"\b(\d+(?:\.\d+)?|two|three) ?(m|meters|metres)\b", text)
        if dist and call.startswith("walk("):
            value = {"two": "2", "three": "3"}.get(dist.group(1), dist.group(1))
            assert float(args(call, "meters")) == float(value), cmd
            seen += 1
        dur = re.search(r"\bfor (\d+(?:\.\d+)?|five|ten) ?(seconds|secs|sec|s)\b", text)
        if dur and call.startswith(("move(", "robot.wait(")):
            value = {"five": "5", "ten": "10"}.get(dur.group(1), dur.group(1))
            assert float(args(call, "seconds")) == float(value), cmd
            seen += 1
    assert seen > 50


def test_speech_is_the_text_as_said(commands):
    spoken = 0
    for cmd in commands:
        for c in cmd.calls:
            if c.startswith("audio.speak("):
                text = c[len("audio.speak(text="):-1]
                assert text[1:-1] in cmd.user, cmd  # never a typo, never re-cased
                spoken += 1
    assert spoken > 100


def test_bring_me_x_im_in_y_goes_there_after_the_pick(commands):
    said = re.compile(r"\b(i'?m (sitting |over )?in|i am in|to me in) the ")
    hits = [c for c in commands if c.kind == "action" and said.search(c.user.lower())]
    assert len(hits) > 20
    for cmd in hits:
        assert any(a.startswith("pick(") and b.startswith("go(") for a, b in zip(cmd.calls, cmd.calls[1:])), cmd


def test_typos_spare_number_words_and_protected_spans():
    rng = random.Random(0)
    text = f"walk forward for three seconds and say {synth_phrasing.SAY}Hello there{synth_phrasing.SAY_END} to " \
           f"{synth_phrasing.keep('the attic')}"
    for _ in range(50):
        out = synth._typos(rng, text, 2)
        assert "three" in out and "Hello there" in out and "the attic" in out


def test_the_tasks_spelling_reads_the_synthesizers_slips_back(monkeypatch, robot_task):
    """What the synthesizer misspells, the task's spelling list corrects (the list is the synthesizer's words)."""
    slips = []
    typo = synth_phrasing.typo

    def recorded(rng, word):
        slips.append((word.lower(), typo(rng, word).lower()))
        return slips[-1][1]

    monkeypatch.setattr(synth_phrasing, "typo", recorded)
    monkeypatch.setattr(synth, "typo", recorded)
    synth.synthesize(2500, seed=3)
    speller = Speller(robot_task.contract.spelling)
    read = [(word, speller.word(slip)) for word, slip in slips]
    assert len(slips) > 400
    assert sum(word == back for word, back in read) >= 0.93 * len(slips)  # the rest: slips that are words ("form")
    assert sum(back not in (word, slip) for (word, back), (_, slip) in zip(read, slips)) <= 0.01 * len(slips)


def test_the_spelling_list_holds_the_synthesizers_words(monkeypatch, robot_task):
    monkeypatch.setattr(synth, "_typos", lambda rng, text, n: text)
    monkeypatch.setattr(synth_phrasing, "typo", lambda rng, word: word)
    words = [w.lower() for c in synth.synthesize(1500, seed=4) if c.kind != "unclear"
             for w in re.findall(r"[A-Za-z]{3,}", c.user)]
    listed = set(robot_task.contract.spelling)
    assert sum(w in listed for w in words) >= 0.995 * len(words)


def test_prints_examples(capsys):
    assert synth.main(["-n", "5", "--seed", "1"]) == 0
    assert capsys.readouterr().out.count("  -> [") == 5


def test_make_data_writes_valid_leak_free_splits_fast(tmp_path, robot_task, capsys):
    started = time.perf_counter()
    assert main(["--run", "r", "--task", "robot_sdk", "--teacher", "synth", f"runs_dir={tmp_path}"]) == 0
    assert time.perf_counter() - started < 60
    data = tmp_path / "r" / "data"
    splits = {name: read_split(data / f"{name}.jsonl") for name in SPLITS}
    sizes = {"train": robot_task.data.train, "val": robot_task.data.val, "test": robot_task.data.test}
    assert {n: len(v) for n, v in splits.items()} == sizes
    users = {}
    for name, records in splits.items():
        for rec in records:
            roles = [m["role"] for m in rec.messages]
            assert roles == ["system", "user", "assistant"]
            assert rec.messages[0]["content"] == robot_task.system
            assert robot_task.contract.validate(rec.messages[2]["content"]).valid
        users[name] = [rec.messages[1]["content"] for rec in records]
        assert all(robot_task.contract.read_command(u) == u for u in users[name])  # commands as the model reads them
    for a, b in (("val", "train"), ("test", "train"), ("val", "test")):
        score, text_a, text_b = max_jaccard(users[a], users[b])
        assert score < 0.8, f"near-duplicate across {a}/{b}: {text_a!r} ~ {text_b!r} ({score:.2f})"
    report = json.loads((data / "data_report.json").read_text())
    assert report["counts"] == sizes
    assert 0.15 * sizes["test"] < report["respelled"]["test"] < 0.4 * sizes["test"]  # a quarter have a slip
    assert set(report["rejects"]) <= {"holdout:near_duplicate"} and report["answers"] == "compact"
    assert report["requested"]["total"] == sum(sizes.values()) and report["received"] >= sum(sizes.values())
    manifest = json.loads((tmp_path / "r" / "manifest.json").read_text())
    stage = manifest["stages"]["data"]
    assert stage["task"] == "robot_sdk" and stage["counts"] == report["counts"] and set(stage["sha256"]) == set(SPLITS)
    assert f"train {sizes['train']}  val {sizes['val']}  test {sizes['test']}" in capsys.readouterr().out


def test_expanded_answers_are_the_same_commands_as_sdk_calls(tmp_path, robot_task):
    compact = run(DataConfig(run="c", runs_dir=str(tmp_path), train=120, val=10, test=20))
    flat = run(DataConfig(run="e", runs_dir=str(tmp_path), train=120, val=10, test=20, answers="expanded"))
    compact_names = set(robot_task.contract.expansions)
    for name in SPLITS:
        a, b = read_split(compact / f"{name}.jsonl"), read_split(flat / f"{name}.jsonl")
        assert [r.messages[1] for r in a] == [r.messages[1] for r in b]  # same commands, same order
        for ra, rb in zip(a, b):
            answer = rb.messages[2]["content"]
            calls = json.loads(answer)
            assert calls == robot_task.contract.validate(ra.messages[2]["content"]).calls
            assert not {c.split("(")[0] for c in calls} & compact_names and robot_task.contract.validate(answer).valid
    assert json.loads((flat / "data_report.json").read_text())["answers"] == "expanded"


def test_same_seed_gives_byte_identical_splits(tmp_path):
    a = run(DataConfig(run="a", runs_dir=str(tmp_path), train=200, val=20, test=40))
    b = run(DataConfig(run="b", runs_dir=str(tmp_path), train=200, val=20, test=40))
    for name in SPLITS:
        assert (a / f"{name}.jsonl").read_bytes() == (b / f"{name}.jsonl").read_bytes()


def test_val_and_test_do_not_change_with_the_train_size(tmp_path):
    small = run(DataConfig(run="s", runs_dir=str(tmp_path), train=200, val=20, test=40))
    large = run(DataConfig(run="l", runs_dir=str(tmp_path), train=900, val=20, test=40))
    for name in ("val", "test"):
        assert (small / f"{name}.jsonl").read_bytes() == (large / f"{name}.jsonl").read_bytes()
    trains = [{r.messages[1]["content"] for r in read_split(d / "train.jsonl")} for d in (small, large)]
    assert len(trains[1]) == 900 and len(trains[0] & trains[1]) > 100  # train grows from the same stream


def test_bad_config_names_the_field(tmp_path, capsys):
    assert main(["--run", "x", f"runs_dir={tmp_path}", "similarity=2"]) == 2
    assert "similarity" in capsys.readouterr().err
    assert main(["--run", "x", f"runs_dir={tmp_path}", "answers=flat"]) == 2
    assert "answers" in capsys.readouterr().err
    assert main(["--run", "x", f"runs_dir={tmp_path}", "--task", "student_2nd_grade"]) == 2
    assert "synthesizer knows only robot_sdk" in capsys.readouterr().err
