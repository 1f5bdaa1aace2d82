"""make compare on a small run: the real edge server (python -m serve) on loopback for every local method, the real
DSPy optimization against llama_cpp.server, the embedded GGUF standing in for the tuned bundle quant."""

from __future__ import annotations

import json

import pytest

from bench.compare import CompareConfig, Skipped, _local_costs, _remote, _remote_costs, main, run
from bench.prices import load_prices
from edgetune.artifacts import BaseModelFacts, FineTuneRecord, TrainStage, record_stage, write_openai_ft
from edgetune.config import to_dict
from edgetune.rundir import RunDir
from tests.conftest import bundle_manifest, write_small_run
from train.prompt_opt import PromptOptConfig

pytestmark = pytest.mark.timeout(400)
TINY_OPT = PromptOptConfig(optimizer="bootstrap", train_examples=3, val_examples=2, max_labeled_demos=2,
                           max_bootstrapped_demos=1, n_threads=1)


@pytest.fixture(scope="module")
def compared(tmp_path_factory, robot_task, embedded_gguf_path):
    runs = tmp_path_factory.mktemp("runs")
    root = write_small_run(runs / "small", robot_task)
    bundle = root / "bundle"
    bundle.mkdir()
    (bundle / "small-Q4_1.gguf").symlink_to(embedded_gguf_path)
    sampling = {**to_dict(robot_task.generation), "max_tokens": 96, "stop": ["<|im_end|>"]}
    (bundle / "manifest.json").write_text(json.dumps(bundle_manifest(robot_task, "small-Q4_1.gguf", sampling=sampling)))
    (bundle / "REPORT.md").write_text("# Export report\n")
    (root / "data" / "data_report.json").write_text(json.dumps({"cost_usd": 1.5}))
    record_stage(RunDir(root), TrainStage(task=robot_task.name, base_model=BaseModelFacts("embedded", "gguf", "m.gguf"),
                                          timings={"wall_seconds": 3600.0}))
    patch = pytest.MonkeyPatch()
    patch.delenv("OPENAI_API_KEY", raising=False)
    try:
        yield root, run("small", CompareConfig(prompts=2, threads=1, prompt_opt=TINY_OPT), runs_dir=runs)
    finally:
        patch.undo()


@pytest.mark.slow
def test_compare_writes_every_method_row(compared):
    root, path = compared
    out = root / "compare"
    assert {p.name for p in out.iterdir()} >= {"compare.json", "COMPARE.md", "compare.png", "logs"}
    assert (out / "compare.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    result = json.loads(path.read_text())
    methods = result["methods"]
    assert list(methods) == ["base_zero_shot", "base_dspy", "lora_grammar", "lora_free", "openai_ft"]
    assert methods["openai_ft"]["status"] == "skipped" and "not configured" in methods["openai_ft"]["note"]
    for name in ("base_zero_shot", "base_dspy", "lora_grammar", "lora_free"):
        row = methods[name]
        assert row["status"] == "ok" and row["n"] == 2 and len(row["answers"]) == 2, name
        assert 0 <= row["exact_match"] <= row["valid_rate"] <= 1
        assert 0 < row["p50_ms"] <= row["p95_ms"] and row["tokens_per_s"] > 0 and row["model"]["bytes"] > 10**7
        assert row["cost"]["per_1k"] > 0
    for name in ("base_zero_shot", "base_dspy", "lora_grammar"):  # the contract's grammar: always a valid answer
        assert methods[name]["valid_rate"] == 1.0, methods[name]["answers"]
    # the DSPy demos reached the edge server's prompt: it reports them and every prompt is longer by them
    assert methods["base_zero_shot"]["few_shot_examples"] == 0 and methods["base_dspy"]["few_shot_examples"] == 2
    demos = json.loads((root / "prompt_opt" / "demos.json").read_text())["pairs"]
    demo_chars = sum(len(p["user"]) + len(p["assistant"]) for p in demos)
    added = methods["base_dspy"]["prompt_tokens_mean"] - methods["base_zero_shot"]["prompt_tokens_mean"]
    assert demo_chars / 8 < added < demo_chars  # a token is ~1-8 characters here
    assert methods["lora_grammar"]["quant"] == "Q4_1"
    # one-time: the train wall time at the table's price plus the teacher data; zero for the untuned base
    prices = load_prices()
    assert methods["lora_grammar"]["cost"]["one_time"] == pytest.approx(1.5 + 3600 * prices.local.per_second)
    assert methods["base_zero_shot"]["cost"]["one_time"] == 0.0
    assert result["prompts"]["n"] == 2 and result["prices"]["date"] == prices.date


@pytest.mark.slow
def test_compare_markdown_and_report_link(compared):
    root, _ = compared
    md = (root / "compare" / "COMPARE.md").read_text()
    assert md.count("\n| ") == 7  # header, rule, five methods
    assert "| OpenAI fine-tuned model | - |" in md and "skipped: not configured" in md
    assert "BootstrapFewShot: 2 demos" in md and "On quality **" in md and "![quality vs latency](compare.png)" in md
    report = (root / "bundle" / "REPORT.md").read_text()
    assert report.startswith("# Export report") and report.count("../compare/COMPARE.md") == 2  # text and target
    from export.report import link_compare

    assert link_compare(RunDir(root)) is False  # already linked: never twice


def test_remote_row_skips_with_the_reason(tmp_path, monkeypatch):
    run_dir = RunDir(tmp_path / "r")
    run_dir.root.mkdir()
    with pytest.raises(Skipped, match="no .*openai_ft.json"):
        _remote(run_dir, ["go"], "sys", 16, 5)
    write_openai_ft(run_dir, FineTuneRecord(job_id="j", base_url="", status="running"))
    with pytest.raises(Skipped, match="no fine-tuned 'model' \\(job status 'running'\\)"):
        _remote(run_dir, ["go"], "sys", 16, 5)
    write_openai_ft(run_dir, FineTuneRecord(job_id="j", base_url="", status="succeeded", model="ft:x"))
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(Skipped, match="not configured: no API key .*: set OPENAI_API_KEY"):
        _remote(run_dir, ["go"], "sys", 16, 5)


def test_costs_from_the_table():
    prices = load_prices()
    row = {"mean_ms": 2000.0, "prompt_tokens_mean": 100.0, "completion_tokens_mean": 20.0}
    _local_costs(row, prices, one_time_s=7200, data_usd=0.5)
    assert row["cost"]["per_1k"] == pytest.approx(2000 * prices.local.per_second)
    assert row["cost"]["one_time"] == pytest.approx(0.5 + 7200 * prices.local.per_second)
    record = FineTuneRecord(job_id="j", base_url="", status="succeeded", model="ft:gpt-4o-mini-2024-07-18:org::x",
                            base_model="gpt-4o-mini-2024-07-18", trained_tokens=2_000_000)
    _remote_costs(row, prices, record, data_usd=0.0)
    inp, outp = prices.openai.inference_per_mtok["gpt-4o-mini-2024-07-18"]
    assert row["cost"]["one_time"] == pytest.approx(2 * prices.openai.training_per_mtok["gpt-4o-mini-2024-07-18"])
    assert row["cost"]["per_1k"] == pytest.approx((100 * inp + 20 * outp) / 1e6 * 1000)


def test_help_and_bad_input(capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0 and "make compare" in capsys.readouterr().out
    assert main(["--run", "x", "--runs-dir", str(tmp_path), "--set", "methods=[nope]"]) == 2
    assert "unknown ['nope']" in capsys.readouterr().err


@pytest.mark.slow
def test_openai_ft_row_over_a_real_openai_compatible_server(tmp_path, robot_task, embedded_gguf_path, monkeypatch):
    """The remote row with a key, against llama_cpp.server on loopback standing in for OpenAI's API."""
    import sys

    from bench.targets import ServerProcess, _http_ok, free_port

    write_small_run(tmp_path / "remote", robot_task)
    model = "ft:gpt-4o-mini-2024-07-18:edgetune::test"
    port = free_port()
    argv = [sys.executable, "-m", "llama_cpp.server", "--model", str(embedded_gguf_path), "--host", "127.0.0.1",
            "--port", str(port), "--n_ctx", "1024", "--n_threads", "1", "--model_alias", model]
    base = f"http://127.0.0.1:{port}/v1"
    (tmp_path / "remote" / "openai_ft.json").write_text(json.dumps({
        "job_id": "ftjob-1", "status": "succeeded", "model": model, "base_model": "gpt-4o-mini-2024-07-18",
        "base_url": base, "trained_tokens": 1_000_000}))
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    with ServerProcess("llama_cpp.server", argv, tmp_path / "remote.log", lambda: _http_ok(f"{base}/models"), 120):
        path = run("remote", CompareConfig(prompts=2, methods=["openai_ft"]), runs_dir=tmp_path)
    row = json.loads(path.read_text())["methods"]["openai_ft"]
    assert row["status"] == "ok" and row["n"] == 2 and row["p50_ms"] > 0 and row["model"]["id"] == model
    prices = load_prices()
    inp, outp = prices.openai.inference_per_mtok["gpt-4o-mini-2024-07-18"]
    assert row["prompt_tokens_mean"] > 20 and row["completion_tokens_mean"] > 0  # the API's own usage counts
    assert row["cost"]["per_1k"] == pytest.approx(
        (row["prompt_tokens_mean"] * inp + row["completion_tokens_mean"] * outp) / 1e6 * 1000)
    assert row["cost"]["one_time"] == pytest.approx(prices.openai.training_per_mtok["gpt-4o-mini-2024-07-18"])
    md = (path.parent / "COMPARE.md").read_text()
    assert "| OpenAI fine-tuned model | " in md and "1000000 trained tokens" in md
