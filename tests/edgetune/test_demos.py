"""The few-shot demos artifact: written once, read back as chat turns, and a broken file is refused by name."""

from __future__ import annotations

import json

import pytest

from edgetune.config import ConfigError
from edgetune.demos import Demos, read_demos, write_demos


def test_round_trip_and_turn_order(tmp_path):
    pairs = [{"user": "sit", "assistant": '["sport.Sit()"]'}, {"user": "stand", "assistant": '["sport.StandUp()"]'}]
    path = write_demos(tmp_path / "demos.json", Demos(task="robot_sdk", pairs=pairs, facts={"optimizer": "X"}))
    demos = read_demos(path)
    assert demos.task == "robot_sdk" and demos.pairs == pairs and demos.facts == {"optimizer": "X"}
    assert [(t["role"], t["content"]) for t in demos.turns()] == [
        ("user", "sit"), ("assistant", '["sport.Sit()"]'), ("user", "stand"), ("assistant", '["sport.StandUp()"]')]
    assert not list(tmp_path.glob(".*.tmp"))  # atomic: no temp file left behind


@pytest.mark.parametrize("content, field", [
    ("not json", ""),
    (json.dumps({"schema": "other", "pairs": []}), "schema"),
    (json.dumps({"schema": "edgetune.demos/v1", "pairs": {}}), "pairs"),
    (json.dumps({"schema": "edgetune.demos/v1", "pairs": [{"user": "go"}]}), "pairs[0]"),
    (json.dumps({"schema": "edgetune.demos/v1", "pairs": [{"user": " ", "assistant": "[]"}]}), "pairs[0]"),
])
def test_broken_files_name_the_field_and_the_fix(tmp_path, content, field):
    path = tmp_path / "demos.json"
    path.write_text(content)
    with pytest.raises(ConfigError) as info:
        read_demos(path)
    assert info.value.field == field and "prompt-opt" in str(info.value)


def test_missing_file_says_how_to_make_it(tmp_path):
    with pytest.raises(ConfigError, match="does not exist; re-run `python -m train prompt-opt"):
        read_demos(tmp_path / "demos.json")
