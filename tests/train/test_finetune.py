"""The fine-tuning stage end to end on a tiny random Llama (hidden 64, 2 layers) and a tokenizer made here."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from edgetune.config import ConfigError
from edgetune.task import load_holdout, load_task
from tests.train.tiny_llama import build_run, build_tiny_llama
from train.finetune import FinetuneError, main, run
from train.finetune_config import FinetuneConfig, load_config

ADAPTER_FILES = {
    "adapter_config.json", "adapter_model.safetensors", "tokenizer.json", "tokenizer_config.json",
    "chat_template.jinja", "train_config.yaml", "train_report.json", "loss.png", "versions.json", "base_eval.json",
    "mistakes.jsonl",
}
LINEAR_MODULES = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}


def tiny_overrides(runs_dir: Path, model_dir: Path, run_name: str = "tiny", **extra) -> list[str]:
    """A job that takes seconds: 4 examples = one batch, repeated every step; a few generated tokens."""
    settings = {
        "run": run_name, "runs_dir": runs_dir, "base_model": model_dir, "train_examples": 4, "batch_size": 4,
        "max_steps": 20, "learning_rate": 1e-2, "warmup_ratio": 0.0, "lr_scheduler": "constant_with_warmup",
        "save_steps": 10, "eval.base_examples": 2, "eval.test_examples": 3, "eval.margin_tokens": 2,
        "eval.val_evals": 2, "seed": 1, **extra,
    }
    return [f"{k}={v}" for k, v in settings.items()]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory, robot_task) -> Path:
    return build_tiny_llama(tmp_path_factory.mktemp("tiny") / "model", robot_task)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_model, robot_task):
    """One complete run of the stage: (runs_dir, adapter dir, report)."""
    runs_dir = tmp_path_factory.mktemp("runs")
    build_run(runs_dir, robot_task)
    adapter = run(load_config(None, tiny_overrides(runs_dir, tiny_model)))
    report = json.loads((adapter / "train_report.json").read_text(encoding="utf-8"))
    return runs_dir, adapter, report


def test_shipped_config_is_the_dataclass_default():
    assert load_config() == FinetuneConfig()


def test_config_errors_name_the_field():
    with pytest.raises(ConfigError, match=r"lora\.rr: unknown field \(did you mean 'r'\?\)"):
        load_config(None, ["lora.rr=8"])
    with pytest.raises(ConfigError, match="learning_rate: must be in"):
        load_config(None, ["learning_rate=3"])
    with pytest.raises(ConfigError, match="quant: must be one of"):
        load_config(None, ["quant=int3"])


def test_run_writes_the_agreed_adapter_files(trained):
    _, adapter, report = trained
    assert {p.name for p in adapter.iterdir()} == ADAPTER_FILES  # checkpoints are removed after success
    for key in ("exact_match", "valid_rate", "n"):
        assert key in report["base"] and key in report["tuned"]
    # the task's held-out human set is scored too: the tuned model on all of it, the base model on its subset
    humans = len(load_holdout(load_task("robot_sdk")))
    assert report["human"]["tuned"]["n"] == report["examples"]["human"] == humans
    assert 0 < report["human"]["base"]["n"] <= humans
    assert report["wall_seconds"] > 0 and report["train_tokens_per_second"] > 0
    assert report["steps"] == 20 and report["hardware"]["processes"] == 1
    assert [v["step"] for v in report["val_loss"]] == [10, 20]


def test_every_wrong_tuned_answer_is_in_mistakes_jsonl(trained):
    _, adapter, report = trained
    rows = [json.loads(line) for line in (adapter / "mistakes.jsonl").read_text(encoding="utf-8").splitlines()]
    for name, scored in (("test", report["tuned"]), ("human", report["human"]["tuned"])):
        robot = scored["constrained"] or scored  # grammar on where it was measured: what the robot gets
        wrong = [r for r in rows if r["set"] == name]
        assert wrong and len(wrong) == round((1 - robot["exact_match"]) * robot["n"])
        assert scored["mistakes"] == [{k: r[k] for k in ("user", "expected", "got")} for r in wrong][:5]
    assert all({"set", "user", "expected", "got"} <= set(r) for r in rows)


def test_loss_falls_over_20_steps_on_a_repeated_batch(trained):
    _, _, report = trained
    assert report["train_loss_last"] < 0.5 * report["train_loss_first"], report


def test_adapter_weights_changed_on_every_linear_layer(trained):
    from safetensors.torch import load_file

    weights = load_file(trained[1] / "adapter_model.safetensors")
    lora_b = {name: w for name, w in weights.items() if "lora_B" in name}
    assert {name.split(".")[-3] for name in lora_b} == LINEAR_MODULES  # all-linear, both layers
    assert len(lora_b) == 2 * len(LINEAR_MODULES)
    assert all(w.abs().sum() > 0 for w in lora_b.values())  # lora_B starts at zero: non-zero means it trained


def test_manifest_records_the_train_stage(trained, tiny_model):
    from edgetune.rundir import RunDir

    stage = RunDir.named("tiny", trained[0]).stage("train")
    assert stage["task"] == "robot_sdk"
    assert stage["base_model"]["path"] == str(tiny_model.resolve())
    assert set(stage["base_model"]) == {"source", "kind", "path", "sha256", "hf_dir"}
    assert stage["inputs"]["data_sha256"].keys() == {"train", "val", "test"}
    assert stage["metrics"]["tuned_exact_match"] == trained[2]["tuned"]["exact_match"]


def test_complete_adapter_is_not_retrained_without_force(trained, tiny_model, capsys):
    runs_dir, adapter, _ = trained
    before = (adapter / "adapter_model.safetensors").stat().st_mtime_ns
    assert main(tiny_overrides(runs_dir, tiny_model)) == 0
    assert "nothing to do. Pass --force" in capsys.readouterr().out
    assert (adapter / "adapter_model.safetensors").stat().st_mtime_ns == before


def test_resume_continues_from_the_checkpoint_step(tmp_path, tiny_model, robot_task, monkeypatch):
    from train.sft_trainer import TokenProgress

    build_run(tmp_path, robot_task)
    overrides = tiny_overrides(tmp_path, tiny_model, max_steps=6, save_steps=2, **{"eval.val_evals": 0})
    original = TokenProgress.on_step_end

    def crash_after_step_3(self, args, state, control, **kwargs):
        original(self, args, state, control, **kwargs)
        if state.global_step == 3:
            raise KeyboardInterrupt("simulated crash")

    monkeypatch.setattr(TokenProgress, "on_step_end", crash_after_step_3)
    with pytest.raises(KeyboardInterrupt):
        run(load_config(None, overrides))
    checkpoints = tmp_path / "tiny" / "adapter" / "checkpoints"
    assert (checkpoints / "checkpoint-2").is_dir() and not (tmp_path / "tiny" / "adapter" / "train_report.json").exists()

    monkeypatch.setattr(TokenProgress, "on_step_end", original)
    with pytest.raises(FinetuneError, match="another config"):  # a checkpoint of a different job is refused
        run(load_config(None, overrides + ["resume=true", "lora.r=4"]))
    adapter = run(load_config(None, overrides + ["resume=true"]))
    report = json.loads((adapter / "train_report.json").read_text(encoding="utf-8"))
    assert report["resumed_from_step"] == 2 and report["steps"] == 6
    assert report["train_runtime_metrics"]["train_steps_per_second"] > 0


def test_nf4_forward_and_backward_run_on_cpu(tiny_model):
    """A real bitsandbytes NF4 (double-quantized) base with a LoRA adapter trains on the CPU."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    quant = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                               bnb_4bit_compute_dtype=torch.float32)
    model = AutoModelForCausalLM.from_pretrained(tiny_model, quantization_config=quant, device_map={"": "cpu"})
    linear = model.model.layers[0].mlp.down_proj
    assert type(linear).__name__ == "Linear4bit" and linear.weight.quant_state.quant_type == "nf4"
    model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear"))
    ids = torch.arange(1, 17)[None]
    loss = model(input_ids=ids, labels=ids, use_cache=False).loss
    loss.backward()
    grads = [p.grad for n, p in model.named_parameters() if "lora_B" in n]  # lora_A gets none while B is 0
    assert torch.isfinite(loss) and grads and all(g is not None and g.abs().sum() > 0 for g in grads)


# ------------------------------------------------------------------------------------------------ bad input


def _error_of(argv: list[str], capsys) -> str:
    assert main(argv) == 2
    return capsys.readouterr().err


def test_empty_dataset_is_a_clear_error(tmp_path, tiny_model, robot_task, capsys):
    run_dir = build_run(tmp_path, robot_task)
    (run_dir.data / "train.jsonl").write_text("", encoding="utf-8")
    err = _error_of(tiny_overrides(tmp_path, tiny_model), capsys)
    assert "train.jsonl: the split is empty" in err


def test_invalid_dataset_line_is_named(tmp_path, tiny_model, robot_task, capsys):
    run_dir = build_run(tmp_path, robot_task)
    with open(run_dir.data / "val.jsonl", "a", encoding="utf-8") as fh:
        fh.write('{"messages": "oops"}\n')
    assert "val.jsonl:5: expected" in _error_of(tiny_overrides(tmp_path, tiny_model), capsys)


def test_run_without_dataset_says_to_build_it(tmp_path, tiny_model, capsys):
    err = _error_of(tiny_overrides(tmp_path, tiny_model, run_name="nodata"), capsys)
    assert err.startswith(f"error: command line: run: no run directory {tmp_path / 'nodata'}")
    assert "make data RUN=nodata" in err
    (tmp_path / "nodata").mkdir()
    err = _error_of(tiny_overrides(tmp_path, tiny_model, run_name="nodata"), capsys)
    assert 'no "data" stage' in err and "make data RUN=nodata" in err


def test_missing_base_model_path_is_named(tmp_path, robot_task, capsys):
    build_run(tmp_path, robot_task)
    err = _error_of(tiny_overrides(tmp_path, tmp_path / "no-such-model"), capsys)
    assert "no-such-model: no such file or directory" in err


def test_cuda_requested_without_cuda_is_a_clear_error(tmp_path, tiny_model, robot_task, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    build_run(tmp_path, robot_task)
    err = _error_of(tiny_overrides(tmp_path, tiny_model, device="cuda"), capsys)
    assert "device=cuda was requested but no CUDA GPU is available" in err


# ---------------------------------------------------------------------------------------------------- DDP


@pytest.mark.slow
def test_same_entry_point_trains_under_accelerate_ddp_with_two_cpu_processes(tmp_path, tiny_model, robot_task):
    build_run(tmp_path, robot_task, repeat=4)
    overrides = tiny_overrides(tmp_path, tiny_model, max_steps=4, **{"eval.val_evals": 1})
    # --multi_gpu is accelerate's multi-process (torchrun) launcher; without CUDA the processes join over gloo
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "--main_process_port", str(_free_port()), "-m", "train", "finetune", *overrides]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2]), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((tmp_path / "tiny" / "adapter" / "train_report.json").read_text(encoding="utf-8"))
    assert report["hardware"]["processes"] == 2 and report["steps"] == 4
    assert report["train_tokens"] > 0 and "test  set: exact match base" in done.stderr


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
