"""Importers: every format becomes the same chat JSONL; bad mappings name the column."""

from __future__ import annotations

import json

import pytest

from edgetune.config import ConfigError
from train.data import main
from edgetune.artifacts import SPLITS, read_split
from train.importers import ImportConfig, import_examples

GO = '["nav.go_to(place=\'kitchen\')", "nav.wait_for_arrival()"]'


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_openai_chat_jsonl(tmp_path, robot_task):
    path = write_jsonl(tmp_path / "chat.jsonl", [
        {"messages": [{"role": "system", "content": "old system"}, {"role": "user", "content": "go to the kitchen"},
                      {"role": "assistant", "content": GO}]},
        {"messages": [{"role": "user", "content": "dock"}, {"role": "assistant", "content": '["nav.dock()"]'},
                      {"role": "user", "content": "report your battery"},
                      {"role": "assistant", "content": '["status.report_battery()"]'}]},
    ])
    result = import_examples(ImportConfig(path=str(path)), robot_task, 0)
    assert result.stats["format"] == "openai"
    assert [(e.user, e.assistant) for e in result.examples] == [
        ("go to the kitchen", GO), ("dock", '["nav.dock()"]'), ("report your battery", '["status.report_battery()"]')]


def test_alpaca_json_list(tmp_path, robot_task):
    path = tmp_path / "alpaca.json"
    path.write_text(json.dumps([{"instruction": "Translate the command.", "input": "go to the kitchen", "output": GO},
                                {"instruction": "dock now", "input": "", "output": '["nav.dock()"]'},
                                {"instruction": "", "input": "x", "output": "y"}]))
    result = import_examples(ImportConfig(path=str(path)), robot_task, 0)
    assert result.stats["format"] == "alpaca" and result.stats["dropped"] == {"empty_or_missing": 1}
    assert [e.user for e in result.examples] == ["Translate the command.\n\ngo to the kitchen", "dock now"]


def test_dialogues_become_turn_pairs(tmp_path):
    """Seed 003's format: teacher turns are the user, student turns the answer."""
    from edgetune.task import load_task

    path = write_jsonl(tmp_path / "dialogues.jsonl", [{"dialogue": [
        {"role": "teacher", "content": "Can you explain what photosynthesis is?"},
        {"role": "student", "content": "It's how plants make their food, right?"},
        {"role": "teacher", "content": "That's a good start! Can you tell me more?"},
        {"role": "student", "content": "They eat sunlight?"}]}])
    result = import_examples(ImportConfig(path=str(path)), load_task("student_2nd_grade"), 0)
    assert [(e.user, e.assistant) for e in result.examples] == [
        ("Can you explain what photosynthesis is?", "It's how plants make their food, right?"),
        ("That's a good start! Can you tell me more?", "They eat sunlight?")]


def test_csv_mapping_cleaning_and_seeded_sampling(tmp_path):
    """Seed 004: product titles -> questions, cleaned, sampled."""
    from edgetune.task import load_task

    task = load_task("student_2nd_grade")
    rows = ["uid,title,content"] + [f"{i},Product {i},Description number {i}" for i in range(500)]
    rows += ["900,,no title", "901,Lamp,nan", "902,Chair,   "]
    path = tmp_path / "titles.csv"
    path.write_text("\n".join(rows) + "\n")
    config = ImportConfig(path=str(path), user="What is {title}?", assistant="content", sample=50)
    first = import_examples(config, task, seed=1)
    assert len(first.examples) == 50 and first.stats["rows"] == 503
    assert first.stats["dropped"] == {"empty_or_missing": 3}
    assert first.examples == import_examples(config, task, seed=1).examples
    assert first.examples != import_examples(config, task, seed=2).examples
    indices = sorted(int(e.user.split()[-1].rstrip("?")) for e in first.examples)
    assert indices[-1] > 100  # a sample of the whole file, not its head
    assert all(e.user == f"What is Product {e.assistant.split()[-1]}?" for e in first.examples)


def test_missing_column_names_it_and_lists_the_available(tmp_path, robot_task):
    path = tmp_path / "t.csv"
    path.write_text("uid,title,content\n1,a,b\n")
    with pytest.raises(ConfigError) as err:
        import_examples(ImportConfig(path=str(path), user="titel", assistant="content"), robot_task, 0)
    assert "importer.user" in str(err.value) and "'titel'" in str(err.value)
    assert "uid, title, content" in str(err.value)
    with pytest.raises(ConfigError, match="'answer' not found; available columns: uid, title, content"):
        import_examples(ImportConfig(path=str(path), user="Q: {title}", assistant="{answer}"), robot_task, 0)


def test_import_through_the_stage_writes_chat_splits(tmp_path, robot_task, capsys):
    records = [{"instruction": f"wait {n} seconds", "output": json.dumps([f"robot.wait(seconds={n}.0)"])}
               for n in range(1, 41)] + [{"instruction": "fly to the moon", "output": '["rocket.launch()"]'}]
    path = write_jsonl(tmp_path / "a.jsonl", records)
    assert main(["--run", "imp", "--teacher", "import", "--input", str(path), f"runs_dir={tmp_path}",
                 "train=20", "val=2", "test=2"]) == 0
    data = tmp_path / "imp" / "data"
    for name in SPLITS:
        path = data / f"{name}.jsonl"
        if not path.stat().st_size:  # what the gate rejected can leave a split short, even empty (the stage warns)
            continue
        for rec in read_split(path):
            assert rec.messages[0]["content"] == robot_task.system
    report = json.loads((data / "data_report.json").read_text())
    assert report["rejects"] == {"contract:unknown_callee": 1} and report["import"]["format"] == "alpaca"
    assert main(["--run", "imp", "--teacher", "import", "--input", str(tmp_path / "nope.csv"),
                 f"runs_dir={tmp_path}"]) == 2
    assert "importer.path" in capsys.readouterr().err
