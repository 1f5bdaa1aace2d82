"""The robot_sdk human-phrased held-out set: contract-valid, well covered, and disjoint from generated data.

The set measures how the model does on what people actually say; these tests keep it honest: every answer is one
the contract accepts, every refusal is the refusal call alone, and no command is (nearly) one the data stage
writes: the gate drops generated commands near a human one (decontamination), and writes none of the set's text.
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import pytest

from edgetune.config import ConfigError
from edgetune.task import TASKS_DIR, load_holdout, load_task, read_holdout

REASON_OF_KIND = {"unsupported": "unsupported", "unknown_place": "unknown_place", "injection": "unsafe",
                  "unsafe": "unsafe", "unclear": "unclear"}
KINDS = {"expressible", "open_object", *REASON_OF_KIND}


@pytest.fixture(scope="module")
def task():
    return load_task("robot_sdk")


@pytest.fixture(scope="module")
def human(task):
    return read_holdout(task)


def test_the_task_declares_the_set_next_to_its_yaml(task):
    assert task.holdout_path() == TASKS_DIR / "robot_sdk.human.jsonl"


def test_the_set_ships_in_the_package(task):
    import fnmatch

    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    pyproject = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text(encoding="utf-8"))
    globs = pyproject["tool"]["setuptools"]["package-data"]["edgetune"]
    relative = task.holdout_path().relative_to(TASKS_DIR.parent).as_posix()
    assert any(fnmatch.fnmatch(relative, g) for g in globs), globs


def test_every_answer_is_valid_and_already_in_normalised_form(task, human):
    for example in human:
        verdict = task.contract.validate(example.assistant)
        assert verdict.valid, (example.id, verdict.violations)
        assert example.assistant == verdict.normalized, example.id  # one spelling: what a model would be taught


def test_ids_are_unique_and_the_set_is_large_enough(task):
    lines = task.holdout_path().read_text(encoding="utf-8").splitlines()
    ids = [json.loads(line)["id"] for line in lines if line.strip()]
    assert len(ids) == len(set(ids)) >= 80


def test_every_kind_is_covered(human):
    counts = Counter(e.kind for e in human)
    assert set(counts) == KINDS
    assert min(counts.values()) >= 3, counts
    assert sum(counts[k] for k in REASON_OF_KIND) >= 25, counts
    assert counts["expressible"] + counts["open_object"] > len(human) / 2, counts


def test_refusals_are_the_reject_call_alone_and_actions_never_reject(human):
    for example in human:
        calls = json.loads(example.assistant)
        if example.kind in REASON_OF_KIND:
            assert calls == [f"robot.reject(reason='{REASON_OF_KIND[example.kind]}')"], example.id
        else:
            assert not any(c.startswith("robot.reject(") for c in calls), example.id


def test_user_texts_are_distinct(human):
    from train.dataset import normalize_text

    texts = [normalize_text(e.user) for e in human]
    assert len(set(texts)) == len(texts)


def test_conversations_have_the_split_files_shape(task, human):
    conversations = load_holdout(task)
    assert len(conversations) == len(human)
    for conversation, example in zip(conversations, human):
        assert conversation == [{"role": "system", "content": task.system},
                                {"role": "user", "content": task.contract.read_command(example.user)},
                                {"role": "assistant", "content": example.assistant}]
    # read as the model reads commands: "can you get yourself to the kitchn pls" is scored as "... kitchen pls"
    assert sum(c[1]["content"] != e.user for c, e in zip(conversations, human)) >= 5


def test_a_task_without_a_holdout_has_none():
    task = load_task("student_2nd_grade")
    assert task.holdout_path() is None and load_holdout(task) == []


@pytest.mark.parametrize("seed_offset", [0, 1, 2])
def test_no_training_command_is_a_human_one_or_near_it(task, human, seed_offset, tmp_path):
    """The data stage at the task's default sizes, at the data config's seed and two others: no split holds a human
    command or one near it by the gate's own near-duplicate measure at the data stage's threshold, because the gate
    drops them (the synthesizer alone writes some: "kick the dog" is one of its unsafe templates)."""
    from train.data import DataConfig, run
    from train.dataset import normalize_text, similar_across

    data = run(DataConfig(run="d", runs_dir=str(tmp_path), seed=task.data.seed + seed_offset))
    written = sorted({normalize_text(json.loads(line)["messages"][1]["content"]) for name in ("train", "val", "test")
                      for line in (data / f"{name}.jsonl").read_text(encoding="utf-8").splitlines()})
    ours = [normalize_text(e.user) for e in human]
    assert not set(ours) & set(written)
    assert not [(ours[i], written[j]) for i, j in similar_across(ours, written, DataConfig().similarity)]
    report = json.loads((data / "data_report.json").read_text(encoding="utf-8"))
    assert report["counts"] == {"train": task.data.train, "val": task.data.val, "test": task.data.test}


def test_the_gate_drops_what_is_near_a_held_out_command(robot_task, human):
    from train.dataset import Example, gate

    near = Example("please " + human[0].user, human[0].assistant)
    kept = Example("report your battery level and then dock", '["status.report_battery()", "nav.dock()"]')
    result = gate(robot_task, [near, kept], similarity=0.8, held_out=[e.user for e in human])
    assert [e.user for e in result.kept] == [kept.user]
    assert result.rejects_by_reason() == {"holdout:near_duplicate": 1}
    assert human[0].user not in result.rejected[0].detail  # the held-out text is never written


def test_the_near_duplicate_measure_would_catch_a_rephrasing(human):
    """The check above can fail: a human command with one word changed is flagged."""
    from train.data import DataConfig
    from train.dataset import normalize_text, similar_across

    text = normalize_text(next(e.user for e in human if len(e.user) > 40))
    assert list(similar_across([text], ["please " + text], DataConfig().similarity)) == [(0, 0)]


def test_the_data_stage_writes_no_human_command(task, human, tmp_path):
    from train.data import DataConfig, run

    data = run(DataConfig(run="h", runs_dir=str(tmp_path), train=60, val=10, test=10))
    written = "\n".join(p.read_text(encoding="utf-8") for p in sorted(data.glob("*.jsonl")))
    users = {json.loads(line)["messages"][1]["content"] for name in ("train", "val", "test")
             for line in (data / f"{name}.jsonl").read_text(encoding="utf-8").splitlines()}
    assert len(users) == 80
    assert not users & {e.user for e in human}
    assert not any(json.dumps(e.user)[1:-1] in written for e in human if len(e.user) > 12)  # rejects included


# ------------------------------------------------------------------------------------------------ loader errors
def _task_with(tmp_path: Path, lines: list[str] | None):
    yaml_path = tmp_path / "robot_sdk.yaml"
    shutil.copy(TASKS_DIR / "robot_sdk.yaml", yaml_path)
    if lines is not None:
        (tmp_path / "robot_sdk.human.jsonl").write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return yaml_path


GOOD = json.dumps({"id": "a", "user": "go to the kitchen", "assistant": json.dumps(["nav.dock()"]), "kind": "x"})


def test_a_missing_holdout_file_fails_at_load_naming_the_field(tmp_path):
    with pytest.raises(ConfigError) as err:
        load_task(_task_with(tmp_path, None))
    assert err.value.field == "holdout" and "robot_sdk.human.jsonl" in str(err.value)


def test_the_set_is_read_next_to_a_yaml_given_by_path(tmp_path):
    task = load_task(_task_with(tmp_path, [GOOD]))
    assert [e.id for e in read_holdout(task)] == ["a"]


@pytest.mark.parametrize(("line", "field", "words"), [
    ("{not json", "", "not a JSON object"),
    ("[1, 2]", "", "must be a JSON object"),
    (json.dumps({"id": "b", "user": "x", "assistant": "[]", "note": 1}), "note", "unknown field"),
    (json.dumps({"id": "b", "assistant": json.dumps(["nav.dock()"])}), "user", "non-empty string"),
    (json.dumps({"id": "a", "user": "dock", "assistant": json.dumps(["nav.dock()"])}), "id", "already used on line 1"),
    (json.dumps({"id": "b", "user": "fly", "assistant": json.dumps(["nav.fly()"])}), "assistant", "contract"),
])
def test_a_bad_line_is_named_with_its_field(tmp_path, line, field, words):
    task = load_task(_task_with(tmp_path, [GOOD, line]))
    with pytest.raises(ConfigError) as err:
        read_holdout(task)
    assert err.value.source.endswith("robot_sdk.human.jsonl line 2")
    assert err.value.field == field and words in err.value.problem


def test_an_empty_set_is_an_error(tmp_path):
    task = load_task(_task_with(tmp_path, ["", "  "]))
    with pytest.raises(ConfigError, match="empty"):
        read_holdout(task)
