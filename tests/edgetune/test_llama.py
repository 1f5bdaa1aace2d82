"""The embedded model through llama-cpp-python: it answers, llama.cpp accepts every grammar the contract emits, and
constrained decoding with sampling only ever produces answers the validator accepts. And edgetune.llama's loader:
a native crash in its child process becomes an error naming the signal (or a fallback without extra buffer types),
shown as the failure of the one test that loads, never the death of the test session (issue 14)."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from hypothesis import given, settings

import edgetune.llama
from edgetune.llama import NO_EXTRA_BUFTS, LlamaCrash, construct, cpu_advertises_amx, load_llama, safe_settings
from edgetune.task import load_task
from tests.edgetune import gbnf
from tests.edgetune.strategies import contracts

llama_cpp = pytest.importorskip("llama_cpp")

PROMPTS = [
    "Go to the kitchen and find the red ball.",
    "Stand up and walk forward slowly for three seconds.",
    "Report your battery level, then dock.",
    "Say hello to the guests at the front door.",
    "Pick up the keys and put them on the table.",
    "Sit down.",
    "Turn left in place for two seconds, then stop.",
    "Take a photo of the garden and tell me where you are.",
]
SEEDS = (1, 2, 3)


@pytest.fixture(scope="module")
def llm(embedded_gguf_path):
    # one thread: on a shared CI box llama.cpp's spinning worker threads lose their cores and a 135M model runs
    # 10x slower with two threads than with one (measured here)
    model = load_llama(embedded_gguf_path, n_ctx=1024, n_threads=1, seed=0, verbose=False)
    yield model
    model.close()


def llama_parses(llm, grammar: str) -> bool:
    """Whether llama.cpp itself parses ``grammar`` (LlamaGrammar.from_string only stores the text)."""
    sampler = llama_cpp.llama_sampler_init_grammar(llm._model.vocab, grammar.encode("utf-8"), b"root")
    if not sampler:
        return False
    llama_cpp.llama_sampler_free(sampler)
    return True


def test_llama_cpp_answers_the_capital_of_france(llm):
    out = llm.create_chat_completion(
        messages=[
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "What is the capital of France?"},
        ],
        temperature=0.0,
        max_tokens=24,
    )
    assert "Paris" in out["choices"][0]["message"]["content"]


def test_llama_cpp_rejects_a_broken_grammar_so_the_check_below_can_fail(llm):
    assert not llama_parses(llm, 'root ::= "[" (call\n')


def test_llama_cpp_parses_the_robot_grammar(llm, robot_task):
    assert llama_parses(llm, robot_task.contract.grammar())


@settings(max_examples=25, deadline=None)
@given(contract=contracts())
def test_llama_cpp_parses_every_grammar_the_contract_emits(llm, contract):
    assert llama_parses(llm, contract.grammar()), contract.grammar()


@pytest.mark.slow  # 24 generations
def test_constrained_sampling_on_the_embedded_model_only_produces_valid_answers(llm, robot_task):
    # The robot grammar with at most 3 calls keeps each answer short (the tiny model likes to repeat a call up to
    # max_calls); max_tokens covers the longest answer the grammar admits (every token is at least one byte), so
    # an answer that does not finish means the grammar failed to end, not that the budget ran out.
    contract = dataclasses.replace(robot_task.contract, max_calls=3)
    grammar = contract.grammar()
    max_tokens = int(gbnf.max_length(gbnf.parse(grammar))) + 1
    constraint = llama_cpp.LlamaGrammar.from_string(grammar, verbose=False)
    answers = []
    for prompt in PROMPTS:
        for seed in SEEDS:
            out = llm.create_chat_completion(
                messages=robot_task.messages(prompt),
                grammar=constraint,
                temperature=1.0,  # with llama-cpp-python's default top-k/top-p/min-p, as a server samples
                max_tokens=max_tokens,
                seed=seed,
            )
            choice = out["choices"][0]
            text = choice["message"]["content"]
            assert choice["finish_reason"] == "stop", (prompt, seed, text)
            verdict = contract.validate(text)
            assert verdict.valid, (prompt, seed, text, verdict.violations)
            assert robot_task.contract.validate(text).valid
            answers.append(verdict.normalized)
    assert len(set(answers)) > len(PROMPTS), "sampling should vary the answers; is the seed ignored?"


def test_student_task_has_no_grammar_so_it_is_sampled_freely():
    assert load_task("student_2nd_grade").contract.grammar() is None


# ----------------------------------------------------------------------------------------- the loader's probe
#: A probe child that dies by SIGILL like ggml's AMX kernels do (no core file), unless extra buffer types are off
#: and ``ALWAYS`` is not set.
FAKE_PROBE = textwrap.dedent("""
    import json, os, resource, signal, sys
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    with open(os.environ["PROBE_LOG"], "a") as log:
        log.write(sys.argv[1] + "\\n")
    if os.environ.get("ALWAYS") or json.loads(sys.argv[1]).get("use_extra_bufts") is not False:
        print("amx repack tensor blk.0.attn_q.weight", file=sys.stderr, flush=True)
        os.kill(os.getpid(), signal.SIGILL)
""")


@pytest.fixture
def fake_probe(monkeypatch, tmp_path):
    """Replace the probe's child by FAKE_PROBE; returns the file that lists the settings of every probe run."""
    monkeypatch.setattr(edgetune.llama, "_verdicts", {})
    monkeypatch.setattr(edgetune.llama, "probe_command",
                        lambda path, kwargs: [sys.executable, "-c", FAKE_PROBE, json.dumps(kwargs)])
    monkeypatch.setattr(edgetune.llama, "cpu_advertises_amx", lambda: False)
    monkeypatch.delenv("EDGETUNE_LLAMA_PROBE", raising=False)
    log = tmp_path / "probes.log"
    log.touch()
    monkeypatch.setenv("PROBE_LOG", str(log))
    return log


def _probes(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()]


def test_a_probe_killed_by_sigill_falls_back_to_no_extra_buffer_types(fake_probe, embedded_gguf_path, caplog):
    llm = load_llama(embedded_gguf_path, n_ctx=256, n_threads=1, verbose=False)
    try:
        assert llm.model_params.use_extra_bufts is False  # llama.cpp really got the setting
        out = llm.create_completion("The capital of France is", max_tokens=4, temperature=0.0)
        assert out["choices"][0]["text"].strip()
    finally:
        llm.close()
    assert [p.get("use_extra_bufts") for p in _probes(fake_probe)] == [None, False]
    assert "died with SIGILL" in caplog.text and "amx repack tensor" in caplog.text
    assert "without extra buffer types" in caplog.text
    # the verdict is kept: a second load with the same file and settings runs no child
    assert safe_settings(embedded_gguf_path, dict(n_ctx=256, n_threads=1, verbose=False)) == NO_EXTRA_BUFTS
    assert len(_probes(fake_probe)) == 2
    import llama_cpp  # and the process-wide default is left as it was

    assert llama_cpp.llama_cpp.llama_model_default_params().use_extra_bufts is True


def test_a_probe_that_dies_either_way_raises_naming_file_signal_and_fix(fake_probe, monkeypatch, tmp_path):
    monkeypatch.setenv("ALWAYS", "1")
    gguf = tmp_path / "model-Q8_0.gguf"
    gguf.write_bytes(b"GGUF")
    with pytest.raises(LlamaCrash) as info:
        load_llama(gguf, n_ctx=64)
    message = str(info.value)
    assert str(gguf) in message and message.count("died with SIGILL") == 2 and "use_extra_bufts=False" in message
    assert "make setup" in message and "n_ctx=64" in message


def test_a_new_file_or_other_settings_are_probed_again(fake_probe, tmp_path):
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF")
    assert safe_settings(gguf, {"n_ctx": 64}) == NO_EXTRA_BUFTS
    safe_settings(gguf, {"n_ctx": 64})
    safe_settings(gguf, {"n_ctx": 128})
    time.sleep(0.01)
    gguf.write_bytes(b"GGUF again")
    safe_settings(gguf, {"n_ctx": 64})
    assert [p["n_ctx"] for p in _probes(fake_probe)] == [64, 64, 128, 128, 64, 64]


def test_vocab_only_loads_and_a_disabled_probe_run_no_child(fake_probe, monkeypatch, tmp_path):
    assert safe_settings(tmp_path / "m.gguf", {"vocab_only": True}) == {}
    monkeypatch.setenv("EDGETUNE_LLAMA_PROBE", "0")
    assert safe_settings(tmp_path / "m.gguf", {"n_ctx": 64}) == {}
    assert _probes(fake_probe) == []


def test_where_the_cpu_advertises_amx_and_the_build_has_it_extra_buffer_types_start_off(fake_probe, monkeypatch,
                                                                                         tmp_path, caplog):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512f amx_bf16 amx_tile amx_int8\n")
    monkeypatch.setattr(edgetune.llama, "cpu_advertises_amx", lambda: cpu_advertises_amx(cpuinfo))
    monkeypatch.setattr(edgetune.llama, "build_has_amx", lambda: True)
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF")
    assert safe_settings(gguf, {"n_ctx": 64}) == NO_EXTRA_BUFTS
    assert [p.get("use_extra_bufts") for p in _probes(fake_probe)] == [False]  # no crash was waited for
    assert "advertises AMX" in caplog.text
    monkeypatch.setattr(edgetune.llama, "build_has_amx", lambda: False)  # the Makefile's build: nothing to avoid
    assert safe_settings(gguf, {"n_ctx": 128}) == NO_EXTRA_BUFTS  # found by the probe instead (the fake dies)
    assert [p.get("use_extra_bufts") for p in _probes(fake_probe)] == [False, None, False]


def test_cpuinfo_flags_are_read_as_words(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("model name\t: amx_tile in a name\nflags\t\t: fpu sse avx2 amx_tilex\n")
    assert not cpu_advertises_amx(cpuinfo)
    cpuinfo.write_text("flags\t\t: fpu amx_tile\n")
    assert cpu_advertises_amx(cpuinfo)
    assert not cpu_advertises_amx(tmp_path / "missing")


def test_the_real_probe_passes_on_the_embedded_model(embedded_gguf_path, monkeypatch):
    monkeypatch.setattr(edgetune.llama, "_verdicts", {})
    started = time.monotonic()
    assert safe_settings(embedded_gguf_path, {"n_ctx": 256, "n_threads": 1, "verbose": False}) == {}
    assert time.monotonic() - started < 30  # about 1.3 s on a 2-core EPYC VM


def test_a_corrupt_file_is_left_to_the_in_process_load_to_refuse(tmp_path, monkeypatch):
    monkeypatch.setattr(edgetune.llama, "_verdicts", {})
    corrupt = tmp_path / "corrupt.gguf"
    corrupt.write_bytes(b"GGUF" + b"\0" * 64)
    with pytest.raises(ValueError):  # llama-cpp-python's own error, not a crash report
        load_llama(corrupt, n_ctx=64, verbose=False)


def test_construct_sets_use_extra_bufts_only_for_that_load(embedded_gguf_path):
    for value in (False, True):
        llm = construct(embedded_gguf_path, n_ctx=64, n_threads=1, verbose=False, use_extra_bufts=value)
        assert llm.model_params.use_extra_bufts is value
        llm.close()


def test_a_test_whose_load_dies_by_a_signal_fails_alone_and_names_it(pytester, embedded_gguf_path, monkeypatch):
    """A pytest session in a child process: the test whose GGUF kills llama.cpp (simulated: the probe child dies
    by SIGILL) fails with the signal named; the tests before and after it still run and pass."""
    pytester.makepyfile(test_crash=textwrap.dedent(f"""
        import os, signal, sys
        import edgetune.llama

        GGUF = {str(embedded_gguf_path)!r}

        def test_before():
            assert edgetune.llama.safe_settings(GGUF, {{"n_ctx": 64, "n_threads": 1, "verbose": False}}) == {{}}

        def test_crash(monkeypatch):
            kill = "import os, resource, signal; resource.setrlimit(resource.RLIMIT_CORE, (0, 0)); " \\
                   "os.kill(os.getpid(), signal.SIGILL)"
            monkeypatch.setattr(edgetune.llama, "probe_command", lambda path, kwargs: [sys.executable, "-c", kill])
            edgetune.llama.load_llama(GGUF, n_ctx=128, n_threads=1, verbose=False)

        def test_after():
            llm = edgetune.llama.load_llama(GGUF, n_ctx=64, n_threads=1, verbose=False)
            assert llm.tokenize(b"hello")
            llm.close()
    """))
    monkeypatch.setenv("PYTHONPATH", str(Path(edgetune.llama.__file__).resolve().parents[1]))  # this checkout's
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-o", "addopts=", timeout=240)
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(["E   *LlamaCrash: llama.cpp cannot run*died with SIGILL*",
                                 "FAILED test_crash.py::test_crash*"])


# ------------------------------------------------------------------------------------ the build itself (no AMX)
AMX_INSTRUCTIONS = ("tilezero", "tdpbssd", "tdpbsud", "tdpbusd", "tdpbuud", "tdpbf16ps", "ldtilecfg", "sttilecfg",
                    "tileloadd", "tileloaddt1", "tilestored", "tilerelease")


def test_the_installed_llama_cpp_cpu_backend_holds_no_amx_tile_instructions():
    """The Makefile's x86-64-v3 build compiles none of ggml's AMX kernels, so no AMX tile instruction can fault
    (issue 14): proven on the library itself, on any x86 machine, AMX or not."""
    objdump = shutil.which("objdump")
    lib = Path(llama_cpp.__file__).parent / "lib" / "libggml-cpu.so"
    if objdump is None or not lib.is_file():
        pytest.skip(f"needs objdump (binutils) and {lib}")
    listing = subprocess.run([objdump, "-d", "--no-show-raw-insn", str(lib)], capture_output=True, text=True,
                             check=True).stdout
    assert "vfmadd" in listing  # the disassembly is of real x86 code (AVX2/FMA kernels), so absence means something
    mnemonics = {line.split("\t")[-1].split(" ")[0] for line in listing.splitlines() if "\t" in line}
    assert not mnemonics & set(AMX_INSTRUCTIONS), f"{lib} holds AMX tile code: rebuild it with `make setup`"
    assert not edgetune.llama.build_has_amx()


@pytest.mark.parametrize("recorded", [None, "llama-cpp-python==0.3.36 CMAKE_ARGS="])
def test_setup_rebuilds_llama_cpp_portably_when_the_venv_records_no_or_another_build(tmp_path, recorded):
    """A venv set up before this rule (no record) or with other flags gets llama.cpp rebuilt for x86-64-v3, from
    source and past pip's wheel cache (which keys a local build by version alone) into a wheel folder named by the
    build; a matching record does not."""
    import platform

    root = Path(__file__).resolve().parents[2]
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").symlink_to(sys.executable)
    if recorded is not None:
        (venv / ".llama-cpp-build").write_text(recorded)
    (venv / ".edgetune-setup").touch()

    def dry_run(*args: str) -> str:
        return subprocess.run(["make", "-n", "-C", str(root), f"VENV={venv}", f"LLAMA_WHEELS={tmp_path}/wheels",
                               *args, str(venv / ".edgetune-setup")], capture_output=True, text=True,
                              check=True).stdout

    out = dry_run()
    assert "pip wheel -q --no-cache-dir --no-deps" in out and "--no-binary llama-cpp-python" in out
    assert f"pip install -q --force-reinstall --no-deps \"{tmp_path}/wheels\"/llama_cpp_python-" in out
    if platform.machine() in ("x86_64", "AMD64"):
        assert "-DGGML_NATIVE=OFF" in out and "-DGGML_AVX2=ON" in out
        assert all(f"-DGGML_{x}=OFF" in out for x in ("AVX512", "AMX_TILE", "AMX_INT8", "AMX_BF16"))
    record = re.search(r"printf '%s' '([^']*)' > \S*\.llama-cpp-build", out).group(1)
    (venv / ".llama-cpp-build").write_text(record)
    (venv / ".edgetune-setup").touch()
    assert "pip install" not in dry_run()
    folders = {re.search(r'"(\S+/wheels/[^"]+)"/llama_cpp_python', subprocess.run(
        ["make", "-n", "-C", str(root), f"VENV={venv}", f"LLAMA_CMAKE_ARGS={flags}", str(venv / ".edgetune-setup")],
        capture_output=True, text=True, check=True).stdout).group(1) for flags in ("-DGGML_NATIVE=ON", "-DA=1")}
    assert len(folders) == 2  # each build its own wheel folder: one never stands in for another
