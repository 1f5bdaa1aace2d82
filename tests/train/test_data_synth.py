"""The offline synthesizer and the `make data` stage: valid, deterministic, learnable, leak-free."""

from __future__ import annotations

import json
import re
import time


from train import synth
from train.data import DataConfig, main, run
from train.dataset import SPLITS, read_split


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


def test_synth_is_deterministic_valid_and_large(robot_task):
    first = synth.synthesize(3000, seed=7, contract=robot_task.contract)
    assert first == synth.synthesize(3000, seed=7)
    assert first != synth.synthesize(3000, seed=8)
    assert len({c.user.lower() for c in first}) == 3000
    for cmd in first:
        verdict = robot_task.contract.validate(cmd.assistant)
        assert verdict.valid, (cmd.user, verdict.violations)
        assert verdict.calls == list(cmd.calls)  # answers are already in the contract's normalised form


def test_synth_follows_its_implicit_step_rules():
    for cmd in synth.synthesize(2000, seed=1):
        calls = list(cmd.calls)
        for i, c in enumerate(calls):
            if c.startswith("nav.go_to("):
                assert calls[i + 1] == "nav.wait_for_arrival()", cmd
            if c.startswith("perception.find_object("):
                assert calls[i + 1] == "perception.wait_for_result()", cmd
            if c.startswith("arm.pick("):
                name = c[len("arm.pick("):]
                assert calls[i - 2] == f"perception.find_object({name}" and calls[i - 1] == "perception.wait_for_result()"
        if "audio.speak" in cmd.assistant:  # the spoken text is quoted verbatim in the command
            for c in calls:
                if c.startswith("audio.speak("):
                    assert c[len("audio.speak(text='"):-2] in cmd.user


def test_speed_words_always_mean_the_same_velocity():
    """"slowly" walking forward is vx=0.3 every time: the text alone determines the answer."""
    seen: dict[str, set[str]] = {}
    for cmd in synth.synthesize(3000, seed=2):
        text = cmd.user.lower()
        moves = [c for c in cmd.calls if c.startswith("sport.Move(")]
        if len(moves) == 1 and "forward" in text and "backward" not in text and " m/s" not in text and "meters" not in text:
            for word in ("slowly", "quickly", "briskly"):
                if word in text:
                    seen.setdefault(word, set()).add(moves[0])
    assert seen["slowly"] == {"sport.Move(vx=0.3, vy=0.0, vyaw=0.0)"}
    assert seen["quickly"] == seen["briskly"] == {"sport.Move(vx=0.8, vy=0.0, vyaw=0.0)"}


def test_typos_only_touch_filler_words():
    """A typo in a verb ("pace it on the desk", "sipn left") would leave the call to a guess."""
    import random

    text = "could you place it on the table and spin to the left slowly"
    changed = set()
    for seed in range(40):
        typoed = synth._typo(random.Random(seed), text).split()
        changed |= {before for before, after in zip(text.split(), typoed) if before != after}
    assert changed == {"could"}


def test_task_example_phrasing_matches_the_synthesizer(robot_task):
    """The task's own worked example and the synthesizer agree on a timed move followed by 'then stop'."""
    example = robot_task.examples[2]
    assert "for three seconds, then stop" in example["user"]
    assert json.loads(example["assistant"])[1:] == ["sport.Move(vx=0.3, vy=0.0, vyaw=0.0)", "robot.wait(seconds=3.0)",
                                                    "sport.StopMove()"]
    assert synth.SPEEDS["slow"]["vx"] == 0.3


def test_make_data_writes_valid_leak_free_splits_fast(tmp_path, robot_task, capsys):
    started = time.perf_counter()
    assert main(["--run", "r", "--task", "robot_sdk", "--teacher", "synth", f"runs_dir={tmp_path}"]) == 0
    assert time.perf_counter() - started < 30
    data = tmp_path / "r" / "data"
    splits = {name: read_split(data / f"{name}.jsonl") for name in SPLITS}
    assert {n: len(v) for n, v in splits.items()} == {"train": 1000, "val": 100, "test": 200}
    users = {}
    for name, records in splits.items():
        for rec in records:
            roles = [m["role"] for m in rec["messages"]]
            assert roles == ["system", "user", "assistant"]
            assert rec["messages"][0]["content"] == robot_task.system
            assert robot_task.contract.validate(rec["messages"][2]["content"]).valid
        users[name] = [rec["messages"][1]["content"] for rec in records]
    for a, b in (("val", "train"), ("test", "train"), ("val", "test")):
        score, text_a, text_b = max_jaccard(users[a], users[b])
        assert score < 0.8, f"near-duplicate across {a}/{b}: {text_a!r} ~ {text_b!r} ({score:.2f})"
    report = json.loads((data / "data_report.json").read_text())
    assert report["counts"] == {"train": 1000, "val": 100, "test": 200}
    assert report["requested"]["total"] == 1300 and report["received"] >= 1300
    manifest = json.loads((tmp_path / "r" / "manifest.json").read_text())
    stage = manifest["stages"]["data"]
    assert stage["task"] == "robot_sdk" and stage["counts"] == report["counts"] and set(stage["sha256"]) == set(SPLITS)
    assert "train 1000  val 100  test 200" in capsys.readouterr().out


def test_same_seed_gives_byte_identical_splits(tmp_path):
    a = run(DataConfig(run="a", runs_dir=str(tmp_path), train=200, val=20, test=40))
    b = run(DataConfig(run="b", runs_dir=str(tmp_path), train=200, val=20, test=40))
    for name in SPLITS:
        assert (a / f"{name}.jsonl").read_bytes() == (b / f"{name}.jsonl").read_bytes()


def test_bad_config_names_the_field(tmp_path, capsys):
    assert main(["--run", "x", f"runs_dir={tmp_path}", "similarity=2"]) == 2
    assert "similarity" in capsys.readouterr().err
    assert main(["--run", "x", f"runs_dir={tmp_path}", "--task", "student_2nd_grade"]) == 2
    assert "synthesizer knows only robot_sdk" in capsys.readouterr().err
