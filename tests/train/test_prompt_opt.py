"""DSPy prompt optimization end to end: the real llama_cpp.server on loopback serving the embedded GGUF, a tiny
budget; the saved program reloads, its demos come from the train split, and a rerun is answered from DSPy's cache."""

from __future__ import annotations

import json

import pytest

from edgetune.demos import read_demos
from tests.conftest import write_small_run
from train.prompt_opt import PromptOptConfig, load_program, main, metric, run

pytestmark = pytest.mark.timeout(300)
TINY = PromptOptConfig(optimizer="bootstrap", train_examples=3, val_examples=2, max_labeled_demos=2,
                       max_bootstrapped_demos=1, n_threads=1)


@pytest.fixture(scope="module")
def optimized(tmp_path_factory, robot_task, embedded_gguf_path):
    runs = tmp_path_factory.mktemp("runs")
    write_small_run(runs / "opt", robot_task)
    return runs, run("opt", TINY, runs)


@pytest.mark.slow
def test_optimization_writes_a_program_that_reloads(optimized, robot_task):
    runs, demos_path = optimized
    demos = read_demos(demos_path)
    train = [json.loads(line)["messages"] for line in (runs / "opt" / "data" / "train.jsonl").read_text().splitlines()]
    train_answers = {m[1]["content"]: m[2]["content"] for m in train}
    assert demos.task == "robot_sdk" and len(demos.pairs) == 2
    for pair in demos.pairs:  # demos come from the train split: its answer, or a bootstrapped one the robot runs alike
        assert pair["user"] in train_answers, pair
        assert robot_task.contract.score([pair["assistant"]], [train_answers[pair["user"]]]).exact_match == 1.0
    assert demos.facts["optimizer"] == "BootstrapFewShot" and demos.facts["lm"]["grammar"] is True
    assert demos.facts["val"]["n"] == 2 and 0 <= demos.facts["val"]["f1"] <= 1

    program = load_program(demos_path.parent / "program.json")
    assert [(d["command"], d["answer"]) for d in program.demos] == [(p["user"], p["assistant"]) for p in demos.pairs]
    stage = json.loads((runs / "opt" / "manifest.json").read_text())["stages"]["prompt_opt"]
    assert stage["outputs"]["demos"] == str(demos_path) and stage["seconds"] > 0


@pytest.mark.slow
def test_rerun_is_answered_from_the_cache(optimized):
    runs, demos_path = optimized
    first = read_demos(demos_path)
    log = demos_path.parent / "logs" / "llama_cpp_server.log"
    assert log.read_text().count("POST /v1/chat/completions") >= 3  # bootstrap + val: the LM really answered
    assert any(p.is_file() for p in (demos_path.parent / "dspy_cache").rglob("*"))  # DSPy's cache is in the run
    again = read_demos(run("opt", TINY, runs))
    assert again.pairs == first.pairs and again.facts["val"] == first.facts["val"]
    assert log.read_text().count("POST /v1/chat/completions") == 0  # the rerun's server was never asked
    # the one-time cost stays the first, uncached run's; another budget starts over
    assert again.facts["first_seconds"] == first.facts["first_seconds"] == first.facts["seconds"]
    assert again.facts["fingerprint"] == first.facts["fingerprint"]


def test_metric_is_the_contract_scorer(robot_task):
    import dspy

    score = metric(robot_task)
    example = dspy.Example(command="sit", answer='["sport.Sit()"]')
    assert score(example, dspy.Prediction(answer='["sport.Sit()"]')) == 1.0
    assert score(example, dspy.Prediction(answer='["sport.Sit()", "sport.Hello()"]')) == pytest.approx(2 / 3)
    assert score(example, dspy.Prediction(answer='["sport.Hello()"]'), trace=[]) is False  # bootstrap: exact only


def test_bad_budget_and_missing_data_exit_2(tmp_path, capsys):
    assert main(["--run", "x", "--runs-dir", str(tmp_path), "--set", "train_examples=0"]) == 2
    assert "train_examples" in capsys.readouterr().err
    assert main(["--run", "x", "--runs-dir", str(tmp_path)]) == 2
    assert "run: no run directory" in capsys.readouterr().err
    (tmp_path / "x").mkdir()
    assert main(["--run", "x", "--runs-dir", str(tmp_path)]) == 2
    assert "train.jsonl: missing; run `make data` first" in capsys.readouterr().err


@pytest.mark.slow
def test_random_search_keeps_the_best_scoring_candidate(tmp_path, robot_task, embedded_gguf_path):
    write_small_run(tmp_path / "rs", robot_task)
    config = PromptOptConfig(optimizer="random_search", train_examples=2, val_examples=1, max_labeled_demos=2,
                             max_bootstrapped_demos=1, candidates=0, n_threads=1)
    demos = read_demos(run("rs", config, tmp_path))
    assert demos.facts["optimizer"] == "BootstrapFewShotWithRandomSearch" and demos.facts["val"]["n"] == 1
    # its candidates (zero-shot, labeled, bootstrapped) were each scored on the val sample: LM calls beyond bootstrap
    log = (tmp_path / "rs" / "prompt_opt" / "logs" / "llama_cpp_server.log").read_text()
    assert log.count("POST /v1/chat/completions") >= 3
    assert len(load_program(tmp_path / "rs" / "prompt_opt" / "program.json").demos) == len(demos.pairs) <= 2


def test_an_lm_server_that_does_not_start_exits_1_naming_its_log(tmp_path, robot_task, capsys):
    write_small_run(tmp_path / "bad", robot_task)
    not_a_model = tmp_path / "not_a_model.gguf"
    not_a_model.write_bytes(b"not a GGUF")
    assert main(["--run", "bad", "--runs-dir", str(tmp_path), "--set", f"model={not_a_model}"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: llama_cpp.server ") and "llama_cpp_server.log" in err


def test_importing_the_stage_does_not_import_bench():
    import subprocess
    import sys

    code = "import sys, train.prompt_opt; print(sorted(m for m in sys.modules if m.split('.')[0] == 'bench'))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "[]\n"
