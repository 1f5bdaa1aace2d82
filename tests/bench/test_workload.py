"""What a bench reads from the run directory, and how bad input is reported."""

from __future__ import annotations

import json
import shutil

import pytest

from bench.config import BenchConfig
from bench.__main__ import main
from bench.runner import _request_plan
from bench.workload import load_workload
from edgetune.artifacts import FineTuneRecord, write_openai_ft
from edgetune.config import ConfigError, load
from edgetune.rundir import RunDir
from tests.conftest import bundle_manifest


@pytest.fixture
def run_dir(tmp_path) -> RunDir:
    return RunDir.named("r", tmp_path)


def _write_test_split(run_dir: RunDir, robot_task, users: list[str]) -> None:
    run_dir.data.mkdir(parents=True)
    lines = [json.dumps({"messages": [*robot_task.messages(u), {"role": "assistant", "content": '["nav.dock()"]'}]})
             for u in users]
    (run_dir.data / "test.jsonl").write_text("\n".join(lines) + "\n")


def test_without_bundle_or_data_uses_embedded_model_and_task_examples(run_dir, robot_task, embedded_gguf_path):
    w = load_workload(run_dir, max_tokens=32)
    d = w.deployed
    assert d.model_path == embedded_gguf_path and d.source == "embedded" and d.quant == "Q4_1"
    assert w.prompts == [ex["user"] for ex in robot_task.examples]
    assert d.system_prompt == robot_task.system
    assert d.sampling.max_tokens == 32 and w.answer_max_tokens == robot_task.generation.max_tokens
    assert d.grammar == robot_task.contract.grammar()
    assert load_workload(run_dir, use_grammar=False).deployed.grammar is None


def test_bundle_and_test_split_decide_model_settings_and_prompts(run_dir, robot_task, embedded_gguf_path):
    run_dir.bundle.mkdir(parents=True)
    shutil.copy(embedded_gguf_path, run_dir.bundle / "model.Q8_0.gguf")
    manifest = bundle_manifest(robot_task, "model.Q8_0.gguf", "Q8_0", system_prompt="Answer in calls.", grammar=None,
                               sampling={"temperature": 0.2, "top_p": 0.9, "top_k": 20, "max_tokens": 99,
                                         "repeat_penalty": 1.1, "stop": ["<|im_end|>"]})
    (run_dir.bundle / "manifest.json").write_text(json.dumps(manifest))
    _write_test_split(run_dir, robot_task, ["dock now", "go to the kitchen"])
    w = load_workload(run_dir)
    d = w.deployed
    assert (d.source, d.quant, d.system_prompt, d.grammar) == ("bundle", "Q8_0", "Answer in calls.", None)
    assert (d.sampling.max_tokens, d.sampling.top_k, d.sampling.stop) == (99, 20, ["<|im_end|>"])
    assert w.prompts == ["dock now", "go to the kitchen"] and w.references == ['["nav.dock()"]'] * 2
    assert d.chat("hi")[0] == {"role": "system", "content": "Answer in calls."}


def test_bad_inputs_name_the_field(run_dir, robot_task):
    _write_test_split(run_dir, robot_task, ["ok"])
    with open(run_dir.data / "test.jsonl", "a") as fh:
        fh.write("{not json\n")
    with pytest.raises(ConfigError, match=r"test.jsonl:2: not valid JSON"):
        load_workload(run_dir)
    with pytest.raises(ConfigError, match="--model: .*missing.gguf does not exist"):
        load_workload(run_dir, model=str(run_dir.root / "missing.gguf"))
    run_dir.bundle.mkdir(parents=True)
    broken = bundle_manifest(robot_task, "model.Q8_0.gguf", chosen={"quant": "Q8_0"})
    (run_dir.bundle / "manifest.json").write_text(json.dumps(broken))
    with pytest.raises(ConfigError, match="chosen.file: missing required field"):
        load_workload(run_dir)


def test_config_errors_name_the_field():
    with pytest.raises(ConfigError, match="concurrency"):
        load(BenchConfig, None, ["concurrency=[0, 2]"])
    with pytest.raises(ConfigError, match="target: use host:port"):
        load(BenchConfig, None, ["target=localhost"])
    with pytest.raises(ConfigError, match="baselines: unknown"):
        load(BenchConfig, None, ["baselines=[vllm]"])
    assert load(BenchConfig, None, ["rate=2.5"]).rate == 2.5


def test_cli_rejects_bad_values_with_exit_2(capsys):
    assert main(["--run", "x", "--concurrency", "0"]) == 2
    assert "concurrency" in capsys.readouterr().err
    assert main(["--concurrency", "one,two"]) == 2
    assert "concurrency[0]: must be an integer, got 'one'" in capsys.readouterr().err


def test_every_target_gets_the_same_prompts_and_warmup_differs():
    warm, plan = _request_plan(10, [1, 4], requests=3, warmup=2, seed=0)
    assert len(plan[1]) == 3 and len(plan[4]) == 4  # a level has at least as many requests as workers
    assert plan[4][:3] == plan[1]
    assert not set(warm) & set(plan[1])
    assert _request_plan(10, [1, 4], 3, 2, 0) == (warm, plan)


def test_remote_target_is_configured_by_the_openai_ft_record(run_dir, monkeypatch):
    from bench.targets import TargetUnavailable, remote_target
    from bench.workload import load_workload

    workload = load_workload(run_dir)
    with pytest.raises(TargetUnavailable, match="no .*openai_ft.json"):
        remote_target(run_dir.root, workload, 10)
    write_openai_ft(run_dir, FineTuneRecord(job_id="j", base_url="", status="succeeded", model="ft:gpt-4o-mini:acme::x"))
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(TargetUnavailable, match="OPENAI_API_KEY"):
        remote_target(run_dir.root, workload, 10)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    with remote_target(run_dir.root, workload, 10) as target:
        assert (target.name, target.model) == ("remote", "ft:gpt-4o-mini:acme::x")
        assert target.endpoint == "https://api.openai.com/v1"
        assert target.extra_body is None  # no llama.cpp-only fields (grammar, top_k) sent to OpenAI

