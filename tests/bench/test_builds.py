"""bench/builds.py on the embedded model: every build and buffer-type variant gets a row with real numbers."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_builds_are_measured_side_by_side(tmp_path, embedded_gguf_path):
    out = tmp_path / "builds.json"
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "builds.py"), "--build", f"here={sys.executable}",
                           "--model", str(embedded_gguf_path), "--extra-bufts", "both", "--rounds", "1",
                           "--prompt-tokens", "16", "--decode-tokens", "4", "--json", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    rows = [line for line in done.stdout.splitlines() if line.startswith("| here |")]
    assert [row.split("|")[2].strip() for row in rows] == ["on (default)", "off"]
    for row in rows:
        assert len(re.findall(r"\d+\.\d \(\d+-\d+\)", row)) == 4, row
    assert "AVX2" in done.stdout or "NEON" in done.stdout  # the build's own feature list
    runs = json.loads(out.read_text())["runs"]
    assert [r["results"][0]["use_extra_bufts"] for r in runs] == [True, False]  # llama.cpp got the setting
