"""bench.teacher: the teacher throughput benchmark against the loopback teacher (bench.loopback_teacher)."""

from __future__ import annotations

import re

from bench.teacher import main


def test_benchmark_prints_both_measurements_and_the_ratio(monkeypatch, tmp_path, capsys):
    for name in ("TEACHER_API_KEY", "OPENAI_API_KEY", "TEACHER_BASE_URL", "TEACHER_MODEL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # no .env of the developer's leaks in
    assert main(["--requests", "4", "--latency", "0.05", "--concurrency", "2", "--per-response", "2"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^\s+1\s+[\d.]+", out, re.M) and re.search(r"^\s+2\s+[\d.]+", out, re.M)
    assert re.search(r"speed-up at concurrency 2 vs 1: [\d.]+x", out)
