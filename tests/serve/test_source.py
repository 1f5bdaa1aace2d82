"""What the server serves: the bundle's manifest when there is one, the embedded model and task otherwise."""

from __future__ import annotations

import json

import pytest

from edgetune.artifacts import FineTuneRecord, write_openai_ft
from edgetune.config import ConfigError
from edgetune.rundir import RunDir
from edgetune.task import load_task
from serve.config import ServeConfig
from serve.source import resolve
from tests.conftest import bundle_manifest


@pytest.fixture()
def runs(tmp_path, monkeypatch):
    monkeypatch.setattr("edgetune.rundir.RUNS_DIR", tmp_path)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    return tmp_path


def _bundle(runs, embedded_gguf_path, **manifest):
    bundle = runs / "r1" / "bundle"
    bundle.mkdir(parents=True)
    (bundle / "model-Q4_1.gguf").symlink_to(embedded_gguf_path)
    data = bundle_manifest(load_task("robot_sdk"), "model-Q4_1.gguf", system_prompt="Answer with robot calls.",
                           grammar='root ::= "[]"',
                           sampling={"temperature": 0.2, "top_p": 0.9, "top_k": 20, "max_tokens": 64,
                                     "repeat_penalty": 1.1, "stop": ["\n\n"]}, **manifest)
    (bundle / "manifest.json").write_text(json.dumps(data))
    return bundle


def test_bundle_manifest_is_served_as_recorded(runs, embedded_gguf_path):
    bundle = _bundle(runs, embedded_gguf_path)
    served = resolve(ServeConfig(run="r1"))
    assert served.source == "bundle" and served.model_path == bundle / "model-Q4_1.gguf"
    assert served.system_prompt == "Answer with robot calls." and served.grammar == 'root ::= "[]"'
    assert served.sampling.max_tokens == 64 and served.sampling.stop == ["\n\n"] and served.quant == "Q4_1"
    assert served.few_shot == []  # a fine-tuned bundle needs no examples
    assert served.chat("go")[0] == {"role": "system", "content": "Answer with robot calls."}


def test_without_bundle_the_embedded_model_and_task_with_few_shot(runs):
    served = resolve(ServeConfig(run="nothing-here"))
    assert served.source == "embedded" and served.task.name == "robot_sdk" and served.grammar
    assert len(served.few_shot) == 2 * len(served.task.examples)
    assert served.chat("go", few_shot=False)[1:] == [{"role": "user", "content": "go"}]


def test_remote_model_from_the_openai_fine_tune(runs, embedded_gguf_path):
    write_openai_ft(RunDir(runs / "r2"), FineTuneRecord(job_id="j", base_url="http://127.0.0.1:9/v1",
                                                        status="succeeded", model="ft:gpt-4o-mini:x"))
    served = resolve(ServeConfig(run="r2"))
    assert (served.remote_model, served.remote_base_url) == ("ft:gpt-4o-mini:x", "http://127.0.0.1:9/v1")
    assert resolve(ServeConfig(run="r2", remote_model="other")).remote_model == "other"


def test_errors_name_the_field(runs, embedded_gguf_path):
    _bundle(runs, embedded_gguf_path, chosen={"quant": "Q8_0"})
    with pytest.raises(ConfigError, match="chosen.file"):
        resolve(ServeConfig(run="r1"))
    with pytest.raises(ConfigError, match="--model"):
        resolve(ServeConfig(run="none", model="/no/such.gguf"))
    with pytest.raises(ConfigError, match="contexts"):
        from edgetune.config import from_dict

        from_dict(ServeConfig, {"contexts": 0})


def test_dspy_demos_become_the_few_shot_turns(runs, embedded_gguf_path):
    from edgetune.demos import Demos, write_demos

    bundle = _bundle(runs, embedded_gguf_path)
    pairs = [{"user": "sit down", "assistant": '["sport.Sit()"]'}, {"user": "wave", "assistant": '["sport.Hello()"]'}]
    write_demos(runs / "r1" / "prompt_opt" / "demos.json", Demos(task="robot_sdk", pairs=pairs))
    served = resolve(ServeConfig(run="r1", model=str(bundle / "model-Q4_1.gguf"), few_shot="dspy"))
    assert served.chat("go") == [
        {"role": "system", "content": "Answer with robot calls."},
        {"role": "user", "content": "sit down"}, {"role": "assistant", "content": '["sport.Sit()"]'},
        {"role": "user", "content": "wave"}, {"role": "assistant", "content": '["sport.Hello()"]'},
        {"role": "user", "content": "go"}]
    assert served.chat("go", few_shot=False)[1:] == [{"role": "user", "content": "go"}]  # the remote's chat
    assert resolve(ServeConfig(run="r1")).few_shot == []  # only when asked for


def test_dspy_demos_missing_or_for_another_task(runs, embedded_gguf_path):
    from edgetune.demos import Demos, write_demos

    with pytest.raises(ConfigError, match="demos.json: does not exist; re-run `python -m train prompt-opt"):
        resolve(ServeConfig(run="r9", few_shot="dspy"))
    write_demos(runs / "r9" / "prompt_opt" / "demos.json", Demos(task="student_2nd_grade", pairs=[]))
    with pytest.raises(ConfigError, match="demos are for 'student_2nd_grade', the server serves 'robot_sdk'"):
        resolve(ServeConfig(run="r9", few_shot="dspy"))
