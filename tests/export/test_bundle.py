"""The export stage end to end on the tiny model, its choice of quant, and its behaviour on bad input."""

from __future__ import annotations

import json

import pytest

from edgetune.config import ConfigError, load
from edgetune.rundir import sha256_file
from export import ExportError, bundle
from export.config import ExportConfig

#: A random model never stops and never answers right: allow truncation and skip the greedy bar, keep it short.
FAST = dict(eval_samples=3, human_samples=4, greedy_prompts=2, max_tokens=8, max_truncated=1.0, min_greedy_agreement=0.0, threads=2)


def _config(run, **overrides) -> ExportConfig:
    return ExportConfig(run=run.root.name, runs_dir=str(run.root.parent), **{**FAST, **overrides})


def test_export_writes_a_complete_verified_bundle(make_run):
    run = make_run()
    out = bundle.run(_config(run, quants=["F16", "Q8_0", "Q4_K_M"]))
    assert out == run.bundle
    names = {p.name for p in out.iterdir()}
    assert names == {"tiny-F16.gguf", "tiny-Q8_0.gguf", "tiny-Q4_K_M.gguf", "manifest.json", "verification.json",
                     "REPORT.md", "quality_vs_size.png", "Modelfile"}
    manifest = json.loads((out / "manifest.json").read_text())
    for q in manifest["quants"]:
        assert sha256_file(out / q["file"]) == q["sha256"]
        assert (out / q["file"]).stat().st_size == q["size_bytes"]
        assert q["n"] == 3 and 0.0 <= q["exact_match"] <= 1.0 and q["tokens_per_second"] > 0
        assert q["constrained_valid_rate"] is not None
        # the human set is answered too (grammar on; a random model cut at 8 tokens rarely closes a valid answer)
        assert q["human_n"] == 4 and 0.0 <= q["human_valid_rate"] <= 1.0 and 0.0 <= q["human_exact_match"] <= 1.0
    # a random model scores 0 everywhere, so every quant is within tolerance and the smallest wins
    assert manifest["chosen"]["quant"] == "Q4_K_M"
    assert manifest["chosen"]["sha256"] == sha256_file(out / manifest["chosen"]["file"])
    assert manifest["sampling"]["stop"] == ["<|im_end|>"] and manifest["sampling"]["max_tokens"] == 8
    assert manifest["grammar"].startswith("root ::=") and manifest["contract"]["kind"] == "call_list"
    assert manifest["task"] == "robot_sdk" and manifest["system_prompt"]
    assert set(manifest["data_sha256"]) == {"test"}
    assert manifest["versions"]["llama-cpp-python"]
    modelfile = (out / "Modelfile").read_text()
    assert "FROM ./tiny-Q4_K_M.gguf" in modelfile and 'PARAMETER stop "<|im_end|>"' in modelfile
    assert 'TEMPLATE """<|im_start|>system\n{{ .System }}<|im_end|>\n<|im_start|>user\n{{ .Prompt }}<|im_end|>\n' \
           '<|im_start|>assistant\n{{ .Response }}<|im_end|>\n"""' in modelfile
    report = (out / "REPORT.md").read_text()
    assert "**Chosen: Q4_K_M**" in report and "| Q8_0 |" in report and "quality_vs_size.png" in report
    assert "exact human" in report and manifest["eval"]["human_samples"] == 4
    assert (out / "quality_vs_size.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert run.stage("export")["outputs"]["chosen"]["quant"] == "Q4_K_M"
    # no staging leftovers (the manifest's lock file is RunDir's own and stays)
    assert not [p for p in run.root.iterdir() if p.name.startswith(".") and p.name != ".manifest.lock"]
    assert json.loads((run.root / "export-logs" / "quants.json").read_text()) == manifest["quants"]


def test_run_without_adapter_is_a_clear_error(make_run):
    run = make_run(with_adapter=False)
    with pytest.raises(ExportError, match=r"adapter: no PEFT adapter here .*run `make train RUN=tiny` first"):
        bundle.run(_config(run))


def test_interrupted_export_keeps_the_previous_bundle(make_run, monkeypatch):
    run = make_run()
    run.bundle.mkdir()
    (run.bundle / "manifest.json").write_text('{"previous": true}')

    def interrupted(gguf_path, *args, **kwargs):
        assert gguf_path.stat().st_size > 0  # the F16 GGUF is staged: interrupt with files half-way done
        raise KeyboardInterrupt

    monkeypatch.setattr("export.verify.check_tokenizer", interrupted)
    with pytest.raises(KeyboardInterrupt):
        bundle.run(_config(run, quants=["F16", "Q8_0"]))
    assert [p.name for p in run.bundle.iterdir()] == ["manifest.json"]
    assert json.loads((run.bundle / "manifest.json").read_text()) == {"previous": True}
    # no staging leftovers (the manifest's lock file is RunDir's own and stays)
    assert not [p for p in run.root.iterdir() if p.name.startswith(".") and p.name != ".manifest.lock"]


def _quant(name, size, exact, truncated=0, n=50):
    return {"quant": name, "size_bytes": size, "exact_match": exact, "n": n, "truncated": truncated,
            "constrained_valid_rate": 1.0, "constrained_invalid_stopped": 0}


def test_choose_smallest_within_tolerance_that_stops_and_fits():
    quants = [_quant("F16", 300 * 2**20, 0.90), _quant("Q8_0", 160 * 2**20, 0.90),
              _quant("Q6_K", 140 * 2**20, 0.88), _quant("Q4_K_M", 100 * 2**20, 0.86)]
    config = ExportConfig(run="r")
    assert bundle.choose(quants, config)["quant"] == "Q6_K"  # lost exactly 2 points: inside the tolerance
    assert "4.0 points below F16" in quants[3]["rejected_because"][0]
    assert bundle.choose(quants, ExportConfig(run="r", tolerance=5))["quant"] == "Q4_K_M"
    assert bundle.choose(quants, ExportConfig(run="r", max_model_mb=150))["quant"] == "Q6_K"
    quants[2]["truncated"] = 1
    assert bundle.choose(quants, config)["quant"] == "Q8_0"
    with pytest.raises(ExportError, match=r"no quant qualifies:(.|\n)*Q8_0: 160.0 MiB exceeds max_model_mb=120"):
        bundle.choose(quants, ExportConfig(run="r", max_model_mb=120))


def test_choose_also_holds_the_human_set_to_the_tolerance():
    quants = [{**_quant("F16", 300 * 2**20, 0.90), "human_exact_match": 0.80},
              {**_quant("Q8_0", 160 * 2**20, 0.90), "human_exact_match": 0.80},
              {**_quant("Q4_K_M", 100 * 2**20, 0.90), "human_exact_match": 0.70}]
    assert bundle.choose(quants, ExportConfig(run="r"))["quant"] == "Q8_0"
    assert quants[2]["rejected_because"] == ["human-set exact match 70.0 is 10.0 points below F16 (tolerance 2)"]


def test_config_errors_name_the_field():
    with pytest.raises(ConfigError, match=r"quants\[1\]: unknown quant 'Q9_X'"):
        load(ExportConfig, None, ["run=r", "quants=[F16,Q9_X]"])
    with pytest.raises(ConfigError, match="quants: must include F16"):
        load(ExportConfig, None, ["run=r", "quants=[Q8_0]"])
    with pytest.raises(ConfigError, match="run: missing required field"):
        load(ExportConfig, None, [])


def test_cli_reports_errors_without_a_traceback(capsys, tmp_path):
    from export.__main__ import main

    assert main(["--run", "nope", f"runs_dir={tmp_path}"]) == 2
    assert capsys.readouterr().err.startswith(f"error: command line: run: no run directory {tmp_path / 'nope'}")


def test_example_config_is_the_defaults():
    from pathlib import Path

    example = Path(bundle.__file__).parent / "configs" / "default.yaml"
    assert load(ExportConfig, example, ["run=r"]) == ExportConfig(run="r")


def test_a_quant_llama_cpp_dies_on_fails_naming_quant_step_and_signal_and_leaves_no_staging(make_run, monkeypatch):
    """The probe's child dies by SIGILL on the Q8_0 file only (as ggml's AMX kernels do on some Xeon VMs): the
    export stops with an error naming the quant, the step and the signal, and removes its staging folder."""
    import sys

    import edgetune.llama

    kill = "import os, resource, signal; resource.setrlimit(resource.RLIMIT_CORE, (0, 0)); os.kill(os.getpid(), 4)"
    real = edgetune.llama.probe_command
    monkeypatch.setattr(edgetune.llama, "_verdicts", {})
    monkeypatch.setattr(edgetune.llama, "probe_command", lambda path, kwargs: [sys.executable, "-c", kill]
                        if str(path).endswith("-Q8_0.gguf") else real(path, kwargs))
    run = make_run()
    stale = run.root / ".export-999999999-left-by-a-crash"  # a staging folder of a process that died outright
    (stale / "bundle").mkdir(parents=True)
    with pytest.raises(ExportError, match=r"^Q8_0: task score: llama\.cpp cannot run \S+-Q8_0\.gguf on this machine: "
                                          r"in a child process it died with SIGILL"):
        bundle.run(_config(run, quants=["F16", "Q8_0"]))
    assert not run.bundle.exists()
    assert not [p for p in run.root.iterdir() if p.name.startswith(".") and p.name != ".manifest.lock"]
