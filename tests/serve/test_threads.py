"""The OpenMP wait policy of the server's llama.cpp threads (issue 19, item 7; the benchmark: bench.contention)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.serve.conftest import ROOT

PROBE = ("import os, sys\n"
         "from serve.threads import prefer_passive_waits\n"
         "print(prefer_passive_waits(), os.environ.get('OMP_WAIT_POLICY'))\n")


@pytest.mark.parametrize("env, before, expected", [
    ({}, "", "OMP_WAIT_POLICY=PASSIVE PASSIVE"),
    ({"OMP_WAIT_POLICY": "ACTIVE"}, "", "OMP_WAIT_POLICY=ACTIVE (operator's) ACTIVE"),
    ({"GOMP_SPINCOUNT": "1000"}, "", "GOMP_SPINCOUNT=1000 (operator's) None"),
    ({}, "import llama_cpp\n", "OpenMP default (set too late) None"),
])
def test_passive_waits_unless_the_operator_chose_or_llama_cpp_is_loaded(env, before, expected):
    clean = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    out = subprocess.run([sys.executable, "-c", before + PROBE], cwd=ROOT, env={**clean, **env},
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == expected


def test_python_m_serve_sets_the_policy_before_llama_cpp_loads(edge):
    lines = [json.loads(line) for line in edge.log.read_text().splitlines() if line.startswith("{")]
    assert any(r["msg"] == "threads" and r["openmp"] == "OMP_WAIT_POLICY=PASSIVE" for r in lines), lines[:5]
    assert not any("set too late" in json.dumps(r) or "was loaded before" in r["msg"] for r in lines)
