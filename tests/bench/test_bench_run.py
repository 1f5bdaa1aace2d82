"""A short real bench: the edgetune gRPC server and llama_cpp.server on loopback, llama-cpp-python in process,
the embedded model; checks what bench.json promises, the report files and --compare."""

from __future__ import annotations

import json

import pytest

from bench.__main__ import main
from bench.config import BenchConfig
from bench.report import SCHEMA, compare_markdown
from bench.runner import run
from bench.stats import PERCENTILES

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def bench_json(tmp_path_factory, embedded_gguf_path):
    config = BenchConfig(run="short", runs_dir=str(tmp_path_factory.mktemp("runs")), concurrency=[1, 2], requests=2,
                         warmup=1, max_tokens=40, quality_prompts=2, bandwidth_mib=64)
    return run(config)


def _ordered_positive(dist: dict) -> bool:
    chain = [dist["min"], *(dist[f"p{q}"] for q in PERCENTILES), dist["max"]]
    return chain[0] > 0 and all(a <= b for a, b in zip(chain, chain[1:]))


def test_bench_json_schema_and_percentiles(bench_json):
    result = json.loads(bench_json.read_text())
    assert result["schema"] == SCHEMA
    assert {"config", "model", "environment", "bandwidth", "summary", "targets", "samples"} <= set(result)
    targets = result["targets"]
    assert targets["edgetune"]["status"] == "ok", targets["edgetune"].get("note")
    assert targets["llama_cpp_server"]["status"] == "ok", targets["llama_cpp_server"].get("note")
    assert targets["inprocess"]["status"] == "ok"
    assert targets["remote"]["status"] == "skipped" and "not configured" in targets["remote"]["note"]
    from bench import peer

    if peer.binary() is None:  # llama.cpp's C++ server is benched once `make llama-server` has built it
        assert targets["llama_server"]["status"] == "skipped" and "make llama-server" in targets["llama_server"]["note"]
    else:
        assert targets["llama_server"]["status"] == "ok", targets["llama_server"].get("note")
    assert [lv["concurrency"] for lv in targets["edgetune"]["levels"]] == [1, 2]
    assert [lv["concurrency"] for lv in targets["inprocess"]["levels"]] == [1]
    for name in ("edgetune", "llama_cpp_server", "inprocess"):
        for level in targets[name]["levels"]:
            assert level["ok"] == level["requests"] >= level["concurrency"], (name, level["errors"])
            for metric in ("ttft_ms", "e2e_ms", "itl_ms", "tokens_per_s"):
                assert _ordered_positive(level[metric]), (name, metric, level[metric])
            assert level["ttft_ms"]["p50"] <= level["e2e_ms"]["p99"]
            assert level["aggregate_tokens_per_s"] > 0
    for name in ("edgetune", "inprocess"):  # engines that time themselves; the wire adds, never subtracts
        level = targets[name]["levels"][0]
        assert level["engine_ttft_ms"]["n"] == level["ok"] and level["wire_ttft_ms"]["p50"] > 0
    info = targets["edgetune"]["server_info"]
    assert info["contexts"] == 2 and info["device"] == "CPU" and int(info["prefix_tokens"]) > 10  # 2 sequences
    for name in ("edgetune", "inprocess", "llama_cpp_server"):  # whole answers, not the latency cap of 40
        quality = targets[name]["quality"]
        assert quality["n"] == 2 and "whole answers: max_tokens=160" in quality["note"], quality
    samples = result["samples"]
    assert len(samples) == sum(lv["requests"] for t in targets.values() for lv in t["levels"])
    assert all(s["status"] == "ok" and 0 < s["tokens"] <= 40 for s in samples)
    # the in-process baseline is the server's engine with the server's settings: greedy answers are identical
    # (the grammar's closing reserve included, which decides where an answer near max_tokens is closed)
    first_level = {(s["target"], s["prompt_index"]): s["text"] for s in samples if s["concurrency"] == 1}
    pairs = [(text, first_level[("edgetune", index)]) for (target, index), text in first_level.items()
             if target == "inprocess"]
    assert pairs and all(mine == served for mine, served in pairs)

    summary = result["summary"]
    assert summary["server_over_inprocess_tokens_per_s"] > 0
    assert isinstance(summary["added_ttft_ms"], float)
    assert set(summary["over_llama_cpp_server"]) == {"1", "2"}
    assert all(r["tokens_per_s"] > 0 for r in summary["over_llama_cpp_server"].values())
    assert set(summary["over_llama_server"]) == {"1", "2"}
    assert result["environment"]["llama_cpp_offload"] == {"supported": False, "auto_gpu_layers": 0, "device": "CPU"}
    assert 0 < summary["roofline_pct"]
    env = result["environment"]
    assert env["logical_cpus"] >= 1 and env["versions"]["llama-cpp-python"]
    assert result["model"]["quant"] == "Q4_1" and result["model"]["bytes"] > 10**7


def test_report_files_and_manifest(bench_json):
    out = bench_json.parent
    for name in ("latency.png", "throughput.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (out / "bench.md").read_text()
    assert "| edgetune gRPC | 2 | 2/2 |" in md and "server / in-process tokens/s" in md
    manifest = json.loads((out.parent / "manifest.json").read_text())
    assert manifest["stages"]["bench"]["outputs"][0] == str(bench_json)


def test_compare_puts_two_runs_side_by_side(bench_json, tmp_path, capsys):
    other = json.loads(bench_json.read_text())
    other["run"], other["environment"]["hostname"] = "orin", "jetson"
    other["bandwidth"]["gb_per_s"] *= 2
    b = tmp_path / "b.json"
    b.write_text(json.dumps(other))
    table = compare_markdown(bench_json, b)
    assert "B: orin @ jetson" in table
    assert "| memory read bandwidth GB/s |" in table and "| 2.00x |" in table
    assert "edgetune gRPC c=2: E2E p50 ms" in table

    out = tmp_path / "compare.md"
    assert main(["--compare", str(bench_json), str(b), "--out", str(out)]) == 0
    assert out.read_text() == capsys.readouterr().out
    (tmp_path / "bad.json").write_text("{}")
    assert main(["--compare", str(bench_json), str(tmp_path / "bad.json")]) == 2
    assert "not a bench.json" in capsys.readouterr().err


def test_bench_an_already_running_server(tmp_path, monkeypatch, embedded_gguf_path):
    """--target: bench a server someone else started (here: `python -m serve` as a user runs it), no baselines."""
    import os
    import subprocess
    import sys

    import edgetune.rundir
    from bench.targets import free_port
    from serve.client import Client

    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "serve", "--port", str(port), "--contexts", "1",
                               "--log-level", "warning"], env={**os.environ, "EDGETUNE_RUNS": str(tmp_path)})
    try:
        with Client(f"127.0.0.1:{port}") as client:
            client.wait_ready(120)
        monkeypatch.setattr(edgetune.rundir, "RUNS_DIR", tmp_path)
        bench_json = run(BenchConfig(run="remote-box", target=f"127.0.0.1:{port}", baselines=[], concurrency=[1],
                                     requests=2, warmup=0, max_tokens=4, bandwidth_mib=64,
                                     grammar=False))  # 4 tokens: below the contract grammar's close reserve
    finally:
        server.terminate()
        server.wait(30)
    result = json.loads(bench_json.read_text())
    assert list(result["targets"]) == ["edgetune"]
    assert result["targets"]["edgetune"]["endpoint"] == f"127.0.0.1:{port}"
    assert result["targets"]["edgetune"]["levels"][0]["ok"] == 2
    assert result["summary"]["server_over_inprocess_tokens_per_s"] is None  # no baseline, no ratio
    assert "| edgetune gRPC | 1 | 2/2 |" in (bench_json.parent / "bench.md").read_text()
