"""What a run deploys: serve and bench get the same answer from the one resolver."""

from __future__ import annotations

import json

import pytest

from bench.workload import load_workload
from edgetune.config import ConfigError
from edgetune.deployed import quant_of, resolve_deployed
from edgetune.rundir import RunDir
from serve.config import ServeConfig
from serve.source import resolve
from tests.conftest import bundle_manifest


@pytest.fixture
def runs(tmp_path, monkeypatch):
    monkeypatch.setattr("edgetune.rundir.RUNS_DIR", tmp_path)
    return tmp_path


def test_serve_and_bench_deploy_the_same_bundle(runs, robot_task, embedded_gguf_path):
    run = RunDir.named("r", runs)
    run.bundle.mkdir(parents=True)
    (run.bundle / "m.Q4_1.gguf").symlink_to(embedded_gguf_path)
    sampling = {"temperature": 0.3, "top_p": 0.8, "top_k": 7, "max_tokens": 50, "repeat_penalty": 1.2, "stop": ["x"]}
    manifest = bundle_manifest(robot_task, "m.Q4_1.gguf", system_prompt="Calls only.", sampling=sampling)
    (run.bundle / "manifest.json").write_text(json.dumps(manifest))
    served, benched = resolve(ServeConfig(run="r")), load_workload(run).deployed
    assert served.source == benched.source == "bundle" and served.model_path == benched.model_path
    for name in ("task", "contract", "quant", "sha256", "system_prompt", "sampling", "grammar"):
        assert getattr(served, name) == getattr(benched, name), name
    assert served.sampling.top_k == 7 and served.system_prompt == "Calls only." and served.sha256 == "abc"
    # the command as training read it: through the recorded contract's spelling
    assert served.chat("go to the kitchn")[-1] == benched.chat("go to the kitchen")[-1] == \
        {"role": "user", "content": "go to the kitchen"}
    with pytest.raises(ConfigError, match="--task: .* serves task 'robot_sdk'; drop --task"):
        resolve_deployed(run, task="student_2nd_grade")


def test_without_a_bundle_the_data_stage_task_and_a_model_flag(runs, embedded_gguf_path):
    run = RunDir.named("t", runs)
    run.record("data", task="student_2nd_grade")
    deployed = resolve_deployed(run)
    assert (deployed.source, deployed.task.name, deployed.quant) == ("embedded", "student_2nd_grade", "Q4_1")
    assert deployed.system_prompt == deployed.task.system and deployed.sampling == deployed.task.generation
    flagged = resolve_deployed(run, model=str(embedded_gguf_path))
    assert (flagged.source, flagged.model_path, flagged.sha256) == ("flag", embedded_gguf_path, "")
    with pytest.raises(ConfigError, match="--model: .*no.gguf does not exist"):
        resolve_deployed(run, model=str(runs / "no.gguf"))


def test_quant_is_read_from_the_gguf_name(tmp_path):
    assert quant_of(tmp_path / "model.Q4_K_M.gguf") == "Q4_K_M"
    assert quant_of(tmp_path / "smol.f16.gguf") == "F16"
    assert quant_of(tmp_path / "model.gguf") == "unknown"
