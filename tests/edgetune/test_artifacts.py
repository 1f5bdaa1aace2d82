"""The typed hand-offs: every artifact round-trips through its one writer and one reader, today's files keep their
bytes and key order, and a missing or wrong field is a ConfigError naming the file and the field."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from edgetune.artifacts import (SPLITS, BaseModelFacts, BundleManifest, Conversation, DataStage, ExportStage,
                                FineTuneRecord, OpenAIFineTuneStage, TrainStage, bundle_manifest_path,
                                openai_ft_path, read_bundle_manifest, read_openai_ft, read_split, read_stage,
                                record_stage, split_path, write_bundle_manifest, write_openai_ft, write_split)
from edgetune.config import ConfigError, from_dict
from edgetune.rundir import RunDir
from tests.conftest import bundle_manifest


@pytest.fixture
def run_dir(tmp_path) -> RunDir:
    return RunDir.named("r", tmp_path)


def _conversation(user: str, answer: str) -> Conversation:
    return Conversation(({"role": "system", "content": "sys"}, {"role": "user", "content": user},
                         {"role": "assistant", "content": answer}))


# ----------------------------------------------------------------------------------------------- split files
def test_split_round_trip_keeps_the_bytes_of_todays_files(run_dir):
    conversations = [_conversation("geh zur Küche", '["nav.dock()"]'), _conversation("sit", '["sport.Sit()"]')]
    path = write_split(run_dir, "test", conversations)
    assert path == run_dir.data / "test.jsonl"
    assert read_split(path) == conversations
    # what train/data.py wrote before the typed writer: one json.dumps(ensure_ascii=False) per line
    assert path.read_text(encoding="utf-8") == "".join(
        json.dumps(c.record(), ensure_ascii=False) + "\n" for c in conversations)
    c = conversations[0]
    assert (c.user, c.answer, c.prompt) == ("geh zur Küche", '["nav.dock()"]', list(c.messages[:2]))
    assert [split_path(run_dir, name).name for name in SPLITS] == ["train.jsonl", "val.jsonl", "test.jsonl"]
    with pytest.raises(ValueError, match="split must be one of"):
        split_path(run_dir, "dev")


@pytest.mark.parametrize(
    "content, problem",
    [
        ("", "the split is empty"),
        ("{not json\n", ":1: not valid JSON"),
        (json.dumps({"text": "hi"}) + "\n", ':1: expected {"messages"'),
        (json.dumps({"messages": [{"role": "user", "content": "hi"}]}) + "\n", "last message must be"),
        (json.dumps({"messages": [{"role": "robot", "content": "hi"}]}) + "\n", "messages[0] must be"),
        (json.dumps({"messages": [{"role": "system", "content": "s"}, {"role": "assistant", "content": "a"}]}) + "\n",
         "must follow the user's command"),
    ],
)
def test_bad_split_files_are_named_with_the_line(tmp_path, content, problem):
    path = tmp_path / "train.jsonl"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ConfigError, match=str(path)) as err:
        read_split(path)
    assert problem in str(err.value)


def test_missing_split_file_says_how_to_build_it(tmp_path):
    with pytest.raises(ConfigError, match="train.jsonl: missing; run `make data` first"):
        read_split(tmp_path / "train.jsonl")


# ------------------------------------------------------------------------------------- run manifest stages
def test_stage_entries_round_trip_in_the_order_the_stages_wrote_them(run_dir):
    data = DataStage(task="robot_sdk", counts={"train": 2}, sha256={"train": "ab"}, config={"seed": 0},
                     inputs={}, outputs={"train": "t.jsonl"}, timings={"seconds": 1.5}, report="r.json")
    train = TrainStage(task="robot_sdk", base_model=BaseModelFacts("embedded", "gguf", "/m.gguf", "cd", "/hf"),
                       timings={"wall_seconds": 3.0}, fingerprint="f")
    export = ExportStage(outputs={"chosen": {"quant": "Q8_0"}}, timings={"total": 2.0})
    for entry in (data, train, export):
        record_stage(run_dir, entry)
    assert [read_stage(run_dir, kind) for kind in (DataStage, TrainStage, ExportStage)] == [data, train, export]
    raw = json.loads(run_dir.manifest_path.read_text())["stages"]
    assert list(raw["data"]) == ["finished_at", "versions", "task", "counts", "sha256", "config", "inputs", "outputs",
                                 "timings", "report"]
    assert list(raw["train"]["base_model"]) == ["source", "kind", "path", "sha256", "hf_dir"]
    assert read_stage(RunDir.named("other", run_dir.root.parent), DataStage) is None  # no manifest yet


def test_a_stage_without_a_field_its_readers_need_names_it(run_dir):
    run_dir.record("train", task="robot_sdk")  # an entry written without the base model
    with pytest.raises(ConfigError, match=r"manifest.json: stages.train.base_model: missing required field"):
        read_stage(run_dir, TrainStage)
    run_dir.record("data", task="robot_sdk", counts={"train": "many"})
    with pytest.raises(ConfigError, match=r"stages.data.counts.train: must be an integer"):
        read_stage(run_dir, DataStage)


def test_todays_run_manifests_load(tmp_path):
    """Entries as the stages wrote them before the typed writer (keys copied from a real runs/default)."""
    run = RunDir.named("old", tmp_path)
    run.record("data", task="robot_sdk", counts={"train": 1500, "val": 100, "test": 200},
               sha256={"train": "91", "val": "9c", "test": "23"}, config={"run": "default"},
               inputs={"teacher": "synth"}, outputs={"train": "runs/default/data/train.jsonl"},
               timings={"seconds": 1.4}, report="runs/default/data/data_report.json")
    run.record("train", task="robot_sdk", base_model={"source": "embedded", "kind": "gguf", "path": "/m.gguf",
                                                      "sha256": "b1", "hf_dir": "/hf"},
               config={"epochs": 1}, inputs={"data_sha256": {"train": "91"}}, outputs={"adapter": "a"},
               timings={"wall_seconds": 1290.0, "train_seconds": 900.0}, metrics={"tuned_exact_match": 0.6},
               fingerprint="0123")
    assert read_stage(run, DataStage).sha256 == {"train": "91", "val": "9c", "test": "23"}
    assert read_stage(run, TrainStage).base_model.path == "/m.gguf"


# ---------------------------------------------------------------------------------------- openai_ft.json
def test_openai_ft_round_trip_and_the_manifest_stage(run_dir):
    record = FineTuneRecord(job_id="ftjob-1", base_url="https://api.openai.com/v1", status="running",
                            hyperparameters={"n_epochs": 3})
    inputs = {"train": {"path": "t.jsonl", "sha256": "ab"}, "val": {"path": "v.jsonl", "sha256": None}}
    write_openai_ft(run_dir, record, inputs)
    assert read_openai_ft(run_dir) == record and record.active
    done = replace(record, status="succeeded", model="ft:gpt-4o-mini:x")
    write_openai_ft(run_dir, done)  # a status change keeps the inputs recorded with the upload
    stage = read_stage(run_dir, OpenAIFineTuneStage)
    assert stage.inputs == inputs and stage.model == "ft:gpt-4o-mini:x"
    assert stage.outputs == {"result": str(openai_ft_path(run_dir))} and not done.active
    openai_ft_path(run_dir).unlink()  # the manifest's entry stands in for a lost file
    assert read_openai_ft(run_dir) == done
    assert read_openai_ft(RunDir.named("none", run_dir.root.parent)) is None


def test_openai_ft_errors_name_the_field(run_dir):
    run_dir.root.mkdir(parents=True)
    openai_ft_path(run_dir).write_text(json.dumps({"job_id": "j", "status": "running"}))
    with pytest.raises(ConfigError, match="openai_ft.json: base_url: missing required field"):
        read_openai_ft(run_dir)
    openai_ft_path(run_dir).write_text("[]")
    with pytest.raises(ConfigError, match="openai_ft.json: must hold a JSON object"):
        read_openai_ft(run_dir)


# ------------------------------------------------------------------------------------- bundle manifest
def test_bundle_manifest_round_trip_keeps_keys_and_order(tmp_path, robot_task):
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "m.Q8_0.gguf").write_bytes(b"GGUF")
    data = bundle_manifest(robot_task, "m.Q8_0.gguf", "Q8_0")
    manifest = from_dict(BundleManifest, data)
    path = write_bundle_manifest(bundle, manifest)
    assert path == bundle_manifest_path(bundle) == bundle / "manifest.json"
    assert read_bundle_manifest(bundle) == manifest
    written = json.loads(path.read_text())
    assert written == data and list(written) == [
        "run", "chosen", "quants", "task", "system_prompt", "sampling", "grammar", "contract", "chat_template",
        "n_ctx", "base_model", "adapter_sha256", "data_sha256", "eval", "selection", "versions", "created_at"]
    assert list(written["sampling"]) == ["temperature", "top_p", "top_k", "max_tokens", "repeat_penalty", "stop"]
    assert manifest.model_path(bundle) == bundle / "m.Q8_0.gguf"


def test_bundle_manifest_errors_name_the_file_and_the_field(tmp_path, robot_task):
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    with pytest.raises(ConfigError, match="manifest.json: does not exist; re-run `make export`"):
        read_bundle_manifest(bundle)
    cases = [
        ({"chosen": {"quant": "Q8_0"}}, "chosen.file: missing required field"),
        ({"n_ctx": "big"}, "n_ctx: must be an integer"),
        ({"sampling": {"temperature": 0.0, "max_token": 9}}, "sampling.max_token: unknown field"),
        ({"schema_version": 2}, "schema_version: version 2; this edgetune reads version 1"),
    ]
    for fields, problem in cases:
        bundle_manifest_path(bundle).write_text(json.dumps(bundle_manifest(robot_task, "m.gguf", **fields)))
        with pytest.raises(ConfigError, match=problem):
            read_bundle_manifest(bundle)
    data = bundle_manifest(robot_task, "m.gguf")
    del data["grammar"]
    bundle_manifest_path(bundle).write_text(json.dumps(data))
    with pytest.raises(ConfigError, match="grammar: missing required field"):
        read_bundle_manifest(bundle)
    bundle_manifest_path(bundle).write_text(json.dumps({**bundle_manifest(robot_task, "m.gguf"), "schema_version": 1}))
    with pytest.raises(ConfigError, match="chosen.file: .*m.gguf does not exist"):  # version 1, but no GGUF
        read_bundle_manifest(bundle)
