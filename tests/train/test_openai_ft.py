"""The OpenAI fine-tuning path, end to end: the official openai client against a real HTTP server on loopback
(tests/train/fake_openai.py), no mocks. Data fixtures are built here, not taken from the data stage."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edgetune.artifacts import read_openai_ft
from edgetune.rundir import RunDir, sha256_file
from tests.train.fake_openai import FakeOpenAI
from edgetune.config import ConfigError
from edgetune.endpoint import Endpoint, resolve
from train.openai_ft import (
    DataValidationError, JobFailed, OpenAIFineTuneConfig, OpenAIFineTuneError, WatchTimeout, cancel,
    attach, estimate_tokens, fine_tune, main, plan,
)

REPO = Path(__file__).resolve().parents[2]
SYSTEM = "Translate the robot command into a JSON list of robot SDK calls."


def example(user: str, answer: str) -> dict:
    return {"messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user},
                         {"role": "assistant", "content": answer}]}


def write_jsonl(path: Path, rows: list) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows))


def examples(n: int) -> list[dict]:
    return [example(f"walk forward {i} meters", f'["sport.Move(vx=0.{i % 9 + 1}, vy=0.0, vyaw=0.0)"]')
            for i in range(n)]


@pytest.fixture
def run_dir(tmp_path: Path) -> RunDir:
    run = RunDir(tmp_path / "runs" / "t")
    write_jsonl(run.data / "train.jsonl", examples(12))
    write_jsonl(run.data / "val.jsonl", examples(3))
    return run


@pytest.fixture
def fake():
    with FakeOpenAI() as server:
        yield server


@pytest.fixture
def config() -> OpenAIFineTuneConfig:
    return OpenAIFineTuneConfig(epochs=2, batch_size=4, lr_multiplier=0.5, suffix="robot", seed=7, poll_seconds=0.01)


def creds(fake: FakeOpenAI, key: str | None = None) -> Endpoint:
    return Endpoint(base_url=fake.base_url, api_key=key or fake.api_key)


def cli_args(run_dir: RunDir, *extra: str) -> list[str]:
    return ["--run", run_dir.root.name, "--runs-dir", str(run_dir.root.parent), "--poll-interval", "0.01",
            "--epochs", "2", "--batch-size", "4", *extra]


@pytest.fixture
def cli_env(fake: FakeOpenAI, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> FakeOpenAI:
    """The CLI's environment: key and endpoint from the environment, no stray ./.env, not in CI."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OPENAI_API_KEY", fake.api_key)
    monkeypatch.setenv("OPENAI_BASE_URL", fake.base_url)
    monkeypatch.delenv("CI", raising=False)
    return fake


# --- the whole path ------------------------------------------------------------------------------------------------


def test_upload_create_watch_to_success_records_the_model(run_dir, fake, config, capsys):
    record = fine_tune(run_dir, config, creds(fake), confirm=lambda plan_: True)

    job = fake.jobs[record.job_id]["job"]
    assert record.status == "succeeded" and record.model == job["fine_tuned_model"]
    assert record.model.startswith("ft:gpt-4o-mini-2024-07-18:org-fake:robot:")
    # both files went up as fine-tune files, byte for byte
    assert [u["purpose"] for u in fake.uploads] == ["fine-tune", "fine-tune"]
    assert fake.uploads[0]["content"] == (run_dir.data / "train.jsonl").read_bytes()
    assert fake.uploads[1]["content"] == (run_dir.data / "val.jsonl").read_bytes()
    # the job was created with the supervised method and our hyperparameters, suffix and seed
    (request,) = fake.job_requests
    assert request["method"] == {"type": "supervised", "supervised": {"hyperparameters": {
        "n_epochs": 2, "batch_size": 4, "learning_rate_multiplier": 0.5}}}
    assert (request["training_file"], request["validation_file"]) == (fake.uploads[0]["id"], fake.uploads[1]["id"])
    assert (request["suffix"], request["seed"], request["model"]) == ("robot", 7, "gpt-4o-mini-2024-07-18")
    # the model id lands in the run directory, in openai_ft.json and in the manifest
    saved = json.loads((run_dir.root / "openai_ft.json").read_text())
    assert saved["model"] == record.model and saved["job_id"] == record.job_id
    assert saved["base_url"] == fake.base_url and saved["status"] == "succeeded"
    assert saved["trained_tokens"] == job["trained_tokens"] > 0
    assert saved["hyperparameters"] == {"n_epochs": 2, "batch_size": 4, "learning_rate_multiplier": 0.5}
    estimate = plan(run_dir, config)
    assert saved["estimated_cost_usd"] == pytest.approx(estimate.cost_usd) and estimate.cost_usd < 0.01
    stage = run_dir.stage("openai_ft")
    assert (stage["model"], stage["job_id"], stage["status"]) == (record.model, record.job_id, "succeeded")
    assert stage["inputs"]["train"]["sha256"] == sha256_file(run_dir.data / "train.jsonl")
    # every step's metrics arrived once and in order across the server's 2-item pages; checkpoints per epoch
    assert [m["step"] for m in saved["metrics"]] == [1, 2, 3, 4, 5, 6]
    assert [c["step"] for c in saved["checkpoints"]] == [3, 6]
    assert (run_dir.root / "openai_ft_loss.png").stat().st_size > 1000
    out, err = capsys.readouterr()
    assert f"~${estimate.cost_usd:.4f} at $3.00/1M tokens" in out and "Fine-tuning job started" in err and "checkpoint step 3" in err
    assert "queued -> running" in err and "train_loss=" in err
    # the key is never printed or recorded
    for text in (out, err, (run_dir.root / "openai_ft.json").read_text(), run_dir.manifest_path.read_text()):
        assert fake.api_key not in text

    # a rerun with the same data and settings is a no-op; new settings start a new job
    assert fine_tune(run_dir, config, creds(fake), confirm=lambda plan_: True).model == record.model
    assert len(fake.job_requests) == 1
    config.epochs = 1
    assert fine_tune(run_dir, config, creds(fake), confirm=lambda plan_: True).model != record.model
    assert len(fake.job_requests) == 2


def test_cli_reads_key_from_dotenv_and_endpoint_from_env(run_dir, cli_env, monkeypatch, tmp_path, capsys):
    monkeypatch.delenv("OPENAI_API_KEY")
    (tmp_path / ".env").write_text(f"# local secrets\nexport OPENAI_API_KEY='{cli_env.api_key}'\n")
    assert main(cli_args(run_dir, "--yes", "--model", "gpt-4o-2024-08-06", "--suffix", "cli")) == 0
    saved = read_openai_ft(run_dir)
    assert saved.model.startswith("ft:gpt-4o-2024-08-06:org-fake:cli:")
    assert cli_env.job_requests[0]["model"] == "gpt-4o-2024-08-06"
    assert cli_env.api_key not in "".join(capsys.readouterr())


def test_failed_job_reports_its_error(run_dir, cli_env, capsys):
    cli_env.fail_with = {"code": "invalid_training_file", "param": "training_file",
                         "message": "The file has 3 examples with too few assistant messages."}
    assert main(cli_args(run_dir, "--yes")) == 1
    err = capsys.readouterr().err
    assert "failed: invalid_training_file: The file has 3 examples" in err and "param training_file" in err
    saved = read_openai_ft(run_dir)
    assert (saved.status, saved.model, saved.error["code"]) == ("failed", None, "invalid_training_file")


def test_failed_job_raises_job_failed(run_dir, config):
    with FakeOpenAI(fail_with={"code": "quota", "message": "over quota", "param": None}) as fake:
        with pytest.raises(JobFailed, match="failed: quota: over quota") as caught:
            fine_tune(run_dir, config, creds(fake), confirm=lambda plan_: True)
    assert caught.value.record.status == "failed" and run_dir.stage("openai_ft")["status"] == "failed"


# --- validation, as OpenAI does it -----------------------------------------------------------------------------------

BAD_LINES = {
    "example_missing_assistant_message": {"messages": [{"role": "user", "content": "sit"}]},
    "unrecognized_key": {**example("sit", '["sport.Sit()"]'), "label": "sit"},
    "message_unrecognized_key": {"messages": [{"role": "user", "content": "sit", "lang": "en"},
                                              {"role": "assistant", "content": '["sport.Sit()"]'}]},
    "unrecognized_role": {"messages": [{"role": "robot", "content": "sit"},
                                       {"role": "assistant", "content": '["sport.Sit()"]'}]},
    "empty_content": example("sit", "   "),
    "message_missing_key": {"messages": [{"role": "user"}, {"role": "assistant", "content": '["sport.Sit()"]'}]},
    "missing_content": {"messages": [{"role": "user", "content": 42},
                                     {"role": "assistant", "content": '["sport.Sit()"]'}]},
    "missing_messages_list": {"messages": []},
    "data_type": ["not", "an", "object"],
    "invalid_weight": {"messages": [{"role": "user", "content": "sit", "weight": 1},
                                    {"role": "assistant", "content": '["sport.Sit()"]'}]},
    "invalid_json": '{"messages": [',
    "too_many_tokens": example("walk " * 400, '["sport.Move(vx=0.1, vy=0.0, vyaw=0.0)"]'),
}


@pytest.mark.parametrize("rule", sorted(BAD_LINES))
def test_validation_error_names_the_line_and_the_rule(run_dir, config, rule):
    rows = examples(12)
    rows[4] = BAD_LINES[rule]
    write_jsonl(run_dir.data / "train.jsonl", rows)
    config.max_example_tokens = 300
    with pytest.raises(DataValidationError) as caught:
        plan(run_dir, config)
    assert f"train.jsonl line 5: {rule}:" in str(caught.value)
    assert [(p.line, p.rule) for p in caught.value.problems] == [(5, rule)]


def test_validation_reports_every_problem_and_too_few_examples(run_dir, config):
    write_jsonl(run_dir.data / "train.jsonl", examples(8) + [BAD_LINES["empty_content"]])
    write_jsonl(run_dir.data / "val.jsonl", [BAD_LINES["unrecognized_role"]])
    with pytest.raises(DataValidationError) as caught:
        plan(run_dir, config)
    message = str(caught.value)
    assert "train.jsonl line 9: empty_content" in message and "val.jsonl line 1: unrecognized_role" in message
    assert "train.jsonl: too_few_examples: 9 example(s); OpenAI needs at least 10" in message


def test_cli_validation_error_touches_no_server(run_dir, cli_env, capsys):
    write_jsonl(run_dir.data / "train.jsonl", examples(11) + [BAD_LINES["example_missing_assistant_message"]])
    assert main(cli_args(run_dir, "--yes")) == 2
    assert "line 12: example_missing_assistant_message" in capsys.readouterr().err
    assert cli_env.requests == []


# --- estimate and confirmation -----------------------------------------------------------------------------------


def test_estimate_counts_tokens_times_epochs_at_the_table_price(run_dir, config):
    rows = [json.loads(line) for line in (run_dir.data / "train.jsonl").read_text().splitlines()]
    per_epoch = sum(estimate_tokens(row["messages"]) for row in rows)
    estimate = plan(run_dir, config)
    assert (estimate.train_examples, estimate.val_examples, estimate.epochs) == (12, 3, 2)
    assert estimate.tokens_per_epoch == per_epoch and estimate.billed_tokens == 2 * per_epoch
    assert estimate.cost_usd == pytest.approx(2 * per_epoch / 1e6 * 3.00)
    config.epochs, config.price_per_mtok = None, 10.0  # auto epochs as OpenAI picks them: 100 // 12 for 12 examples
    auto = plan(run_dir, config)
    assert auto.epochs == 8 and auto.cost_usd == pytest.approx(8 * per_epoch / 1e6 * 10.0)
    config.model, config.price_per_mtok = "some-new-model", None
    assert plan(run_dir, config).cost_usd is None and "pass --price-per-mtok" in plan(run_dir, config).describe("m")


def test_dry_run_needs_no_key_and_no_network(run_dir, monkeypatch, capsys):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    assert main(cli_args(run_dir, "--dry-run", "--price-per-mtok", "4")) == 0
    out = capsys.readouterr().out
    assert "12 examples" in out and "at $4.00/1M tokens" in out


def test_without_a_terminal_or_in_ci_yes_is_required(run_dir, cli_env, monkeypatch, capsys):
    monkeypatch.setenv("CI", "true")
    assert main(cli_args(run_dir)) == 1
    assert "pass --yes" in capsys.readouterr().err
    assert cli_env.uploads == [] and cli_env.job_requests == []


def test_declining_uploads_nothing(run_dir, fake, config):
    with pytest.raises(OpenAIFineTuneError, match="not confirmed"):
        fine_tune(run_dir, config, creds(fake), confirm=lambda plan_: False)
    assert fake.uploads == []


# --- credentials ---------------------------------------------------------------------------------------------------


def test_no_key_is_a_clear_error_before_anything_is_sent(run_dir, fake, config, tmp_path):
    credentials = resolve(fake.base_url, require_key=False, environ={}, env_file=tmp_path / "missing.env")
    assert credentials.api_key == ""
    with pytest.raises(ConfigError, match="OPENAI_API_KEY: no OpenAI API key: set OPENAI_API_KEY"):
        fine_tune(run_dir, config, credentials, confirm=lambda plan_: True)
    assert fake.requests == [] and fake.uploads == []


def test_rejected_key_is_a_clear_error_before_anything_is_uploaded(run_dir, cli_env, monkeypatch, capsys):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-wrong-key-987")
    assert main(cli_args(run_dir, "--yes")) == 1
    err = capsys.readouterr().err
    assert "rejected the API key (401)" in err and "nothing was uploaded" in err and "sk-wrong" not in err
    assert cli_env.uploads == [] and cli_env.requests == [("GET", "/v1/models", 401)]


def test_unknown_model_is_refused_before_upload(run_dir, fake, config):
    config.model = "gpt-4o-mini-2024-07-19"
    with pytest.raises(OpenAIFineTuneError, match="did you mean gpt-4o-mini-2024-07-18"):
        fine_tune(run_dir, config, creds(fake), confirm=lambda plan_: True)
    assert fake.uploads == []


# --- restarts, --watch, --cancel -----------------------------------------------------------------------------------


def test_a_killed_run_reattaches_to_the_recorded_job(run_dir, cli_env, capsys):
    cli_env.hold = True  # the job stays running until released
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "train", "openai-ft", *cli_args(run_dir, "--yes")], cwd=REPO,
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while not (cli_env.jobs and (record := read_openai_ft(run_dir)) and record.status == "running"):
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "the job never started running"
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    (job_id,) = cli_env.jobs
    assert record.job_id == job_id and record.model is None

    cli_env.hold = False
    assert main(cli_args(run_dir, "--yes")) == 0
    assert f"reattaching to job {job_id}" in capsys.readouterr().out
    assert len(cli_env.job_requests) == 1 and len(cli_env.uploads) == 2
    assert read_openai_ft(run_dir).model == cli_env.jobs[job_id]["job"]["fine_tuned_model"]


def test_watch_timeout_then_cancel_then_watch_reports_cancelled(run_dir, fake, config, monkeypatch, capsys):
    fake.hold = True
    config.watch_timeout = 0.2
    with pytest.raises(WatchTimeout, match="keeps running"):
        fine_tune(run_dir, config, creds(fake), confirm=lambda plan_: True)
    assert read_openai_ft(run_dir).status == "running"

    with pytest.raises(OpenAIFineTuneError, match=f"was created at {fake.base_url}, not http://127.0.0.1:9/v1"):
        attach(run_dir, config, Endpoint("http://127.0.0.1:9/v1", fake.api_key))
    record = cancel(run_dir, config, creds(fake))
    assert record.status == "cancelled" and fake.jobs[record.job_id]["job"]["status"] == "cancelled"
    assert read_openai_ft(run_dir).status == "cancelled"
    monkeypatch.setenv("OPENAI_API_KEY", fake.api_key)
    monkeypatch.setenv("OPENAI_BASE_URL", fake.base_url)
    assert main(cli_args(run_dir, "--watch")) == 1
    assert f"job {record.job_id} cancelled" in capsys.readouterr().err


def test_watch_job_adopts_a_job_started_elsewhere(run_dir, cli_env):
    import openai

    client = openai.OpenAI(api_key=cli_env.api_key, base_url=cli_env.base_url)
    with open(run_dir.data / "train.jsonl", "rb") as fh:
        training = client.files.create(file=fh, purpose="fine-tune")
    job = client.fine_tuning.jobs.create(model="gpt-4o-mini-2024-07-18", training_file=training.id)
    assert main(cli_args(run_dir, "--watch", job.id)) == 0
    saved = read_openai_ft(run_dir)
    assert (saved.job_id, saved.status) == (job.id, "succeeded") and saved.model.startswith("ft:")
    assert saved.hyperparameters == {"n_epochs": 3, "batch_size": 1, "learning_rate_multiplier": 1.8}  # "auto" resolved


def test_bad_option_names_the_field(run_dir, capsys):
    assert main(cli_args(run_dir, "--dry-run", "--epochs", "0")) == 2
    assert "epochs: must be between 1 and 50" in capsys.readouterr().err


def test_config_yaml_with_set_overrides(run_dir, tmp_path, capsys):
    (tmp_path / "oft.yaml").write_text("epochs: 4\nsuffix: yaml\nprice_per_mtok: 1.0\n")
    args = ["--run", "t", "--runs-dir", str(run_dir.root.parent), "--dry-run", "--config", str(tmp_path / "oft.yaml")]
    assert main([*args, "--set", "price_per_mtok=2"]) == 0
    out = capsys.readouterr().out
    assert "epochs     4 (set)" in out and "at $2.00/1M tokens" in out
    assert main([*args, "--set", "epoch=2"]) == 2
    assert "epoch: unknown field (did you mean 'epochs'?)" in capsys.readouterr().err
