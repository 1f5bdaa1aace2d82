"""edgetune.cli: every stage's command line comes from its config dataclass, with one exit-code convention and one
error format. The stages' ``main(argv)`` are called in process; each bad input fails before any work starts."""

from __future__ import annotations

import argparse
import importlib
from dataclasses import dataclass, field
from typing import Literal

import pytest

from edgetune.cli import Stage, field_docs, given
from edgetune.config import ConfigError
from edgetune.rundir import RunDir

#: stage -> (module with main(argv), a field whose #: comment must show in --help, whether --run must exist)
STAGES = {
    "data": ("train.data", "oversample", False),
    "finetune": ("train.finetune", "learning_rate", True),
    "openai-ft": ("train.openai_ft.cli", "lr_multiplier", True),
    "prompt-opt": ("train.prompt_opt", "max_bootstrapped_demos", True),
    "export": ("export.__main__", "min_greedy_agreement", True),
    "serve": ("serve.__main__", "grammar_candidates", False),
    "bench": ("bench.__main__", "quality_prompts", False),
    "compare": ("bench.compare", "warmup", True),
}


def _main(stage: str):
    return importlib.import_module(STAGES[stage][0]).main


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: "), err
    return err


@pytest.mark.parametrize("stage", STAGES)
def test_a_mistyped_override_exits_2_naming_the_field(stage, tmp_path, capsys):
    assert _main(stage)(["--runs-dir", str(tmp_path), "learnin_rate=1"]) == 2
    assert "learnin_rate: unknown field" in _one_error_line(capsys)


@pytest.mark.parametrize("stage", [name for name, (_, _, reads) in STAGES.items() if reads])
def test_a_run_that_does_not_exist_exits_2_naming_run(stage, tmp_path, capsys):
    (tmp_path / "other").mkdir()
    assert _main(stage)(["--run", "does-not-exist", "--runs-dir", str(tmp_path)]) == 2
    err = _one_error_line(capsys)
    assert f"run: no run directory {tmp_path / 'does-not-exist'} (runs there: other)" in err


@pytest.mark.parametrize("stage", STAGES)
def test_a_run_name_that_is_no_folder_name_exits_2_naming_run(stage, tmp_path, capsys):
    assert _main(stage)(["--run", "no/such", "--runs-dir", str(tmp_path)]) == 2
    assert "run: RUN must be a plain folder name" in _one_error_line(capsys)


@pytest.mark.parametrize("stage", STAGES)
def test_help_is_the_field_comments(stage, capsys):
    module, name, _ = STAGES[stage]
    with pytest.raises(SystemExit) as done:
        _main(stage)(["--help"])
    assert done.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    config = importlib.import_module(module).STAGE.config
    assert "--run" in out and "--runs-dir" in out and "--set KEY=VALUE" in out
    assert " ".join(field_docs(config)[name].split()) in out


# ------------------------------------------------------------------------------------------ the mechanism


@dataclass
class Inner:
    r: int = 16  #: rank


@dataclass
class Toy:
    """A stage config with every kind of field."""

    run: str = "default"  #: the run
    #: a comment on the lines
    #: above the field
    mode: Literal["fast", "slow"] = "fast"
    quants: list[str] = field(default_factory=lambda: ["F16"])  #: types to make
    resume: bool = False  #: continue
    limit: float | None = None  #: a limit
    lora: Inner = field(default_factory=Inner)

    def check(self):
        if self.limit is not None and self.limit < 0:
            yield "limit", "must be >= 0"


class Failed(RuntimeError):
    pass


def _toy(**kwargs) -> tuple[Stage, list]:
    seen: list = []

    def run(config: Toy, run_dir: RunDir, args: argparse.Namespace) -> int | None:
        seen.append((config, run_dir, args))
        if config.mode == "slow":
            raise Failed("the job ran and failed")
        return None

    return Stage(prog="toy", config=Toy, run=run, flags={"--rank": "lora.r"}, failed=(Failed,), **kwargs), seen


def test_field_docs_inline_and_above():
    assert field_docs(Toy) == {"run": "the run", "mode": "a comment on the lines above the field",
                               "quants": "types to make", "resume": "continue", "limit": "a limit", "lora": ""}


def test_flags_yaml_and_overrides_in_order(tmp_path):
    stage, seen = _toy()
    (tmp_path / "toy.yaml").write_text("limit: 1.5\nlora: {r: 2}\nquants: [Q8_0]\n")
    argv = ["--config", str(tmp_path / "toy.yaml"), "--quants", "F16,Q8_0", "Q4_K_M", "lora.r=8", "--resume",
            "--rank", "4", "--runs-dir", str(tmp_path)]
    assert stage.main(argv) == 0
    (config, run_dir, args), = seen
    # list items comma- or space-separated, a KEY=VALUE after a list flag is an override, overrides beat flags
    assert config == Toy(quants=["F16", "Q8_0", "Q4_K_M"], resume=True, limit=1.5, lora=Inner(r=8))
    assert run_dir == RunDir(tmp_path / "default") and given(args, "resume") and not given(args, "mode")
    assert stage.main(["--no-resume", "--set", "limit=2", "--runs-dir", str(tmp_path)]) == 0
    assert seen[-1][0] == Toy(resume=False, limit=2.0)


def test_exit_codes_and_one_line_errors(tmp_path, capsys):
    stage, _ = _toy()
    assert stage.main(["--mode", "slow"]) == 1
    assert capsys.readouterr().err == "error: the job ran and failed\n"
    assert stage.main(["--mode", "quick"]) == 2
    assert capsys.readouterr().err == "error: command line: mode: must be one of ['fast', 'slow'], got 'quick'\n"
    assert stage.main(["--limit", "-1"]) == 2
    assert capsys.readouterr().err == "error: command line: limit: must be >= 0\n"
    assert stage.main(["lora.rr=1"]) == 2
    assert "lora.rr: unknown field (did you mean 'r'?)" in capsys.readouterr().err
    assert stage.main(["oops"]) == 2
    assert "oops: overrides look like key=value" in capsys.readouterr().err
    (tmp_path / "toy.yaml").write_text("limit: 1\n")
    assert stage.main(["--config", str(tmp_path / "toy.yaml"), "limit=-3"]) == 2  # the override is blamed
    assert capsys.readouterr().err == f"error: command line (over {tmp_path / 'toy.yaml'}): limit: must be >= 0\n"
    with pytest.raises(SystemExit) as done:  # argparse's own usage errors exit 2 as well
        stage.main(["--no-such-flag"])
    assert done.value.code == 2


def test_interrupt_exits_130_saying_what_is_left(capsys):
    def run(config, run_dir, args):
        raise KeyboardInterrupt

    stage = Stage(prog="toy", config=Toy, run=run, interrupted="the pool keeps every answer; rerun")
    assert stage.main([]) == 130
    assert "the pool keeps every answer; rerun" in capsys.readouterr().err


def test_a_config_error_from_the_job_is_bad_input(capsys):
    def run(config, run_dir, args):
        raise ConfigError("environment", "OPENAI_API_KEY", "no API key")

    assert Stage(prog="toy", config=Toy, run=run).main([]) == 2
    assert capsys.readouterr().err == "error: environment: OPENAI_API_KEY: no API key\n"
