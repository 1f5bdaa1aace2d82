"""Targets that cannot start are reported, not fatal: a model llama.cpp dies on (issue 14) skips the in-process
target with the signal named, and a server that dies by a signal while starting says which."""

from __future__ import annotations

import sys

import pytest

import edgetune.llama
from bench.targets import InProcessTarget, ServerProcess, TargetUnavailable
from bench.workload import load_workload
from edgetune.rundir import RunDir

#: A child that dies by SIGILL, as ggml's AMX kernels do on some Xeon VMs (no core file).
KILL = "import os, resource, signal; resource.setrlimit(resource.RLIMIT_CORE, (0, 0)); os.kill(os.getpid(), 4)"


def test_in_process_target_on_a_model_llama_cpp_dies_on_is_unavailable_naming_the_signal(tmp_path, monkeypatch,
                                                                                        embedded_gguf_path):
    monkeypatch.setattr(edgetune.llama, "_verdicts", {})
    monkeypatch.setattr(edgetune.llama, "probe_command", lambda path, kwargs: [sys.executable, "-c", KILL])
    workload = load_workload(RunDir.named("r", tmp_path), max_tokens=8)
    with pytest.raises(TargetUnavailable, match=f"cannot run {embedded_gguf_path}.*died with SIGILL"):
        with InProcessTarget(workload, n_ctx=256, n_threads=1):
            pass


def test_a_server_that_dies_by_a_signal_while_starting_is_named_so(tmp_path):
    server = ServerProcess("llama_cpp.server", [sys.executable, "-c", KILL], tmp_path / "server.log",
                           ready=lambda: False, timeout_s=60)
    with pytest.raises(TargetUnavailable, match=r"^llama_cpp\.server died with SIGILL while starting"):
        with server:
            pass
