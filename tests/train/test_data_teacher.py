"""Teacher mode end to end: the real openai client against real HTTP servers on loopback (our fault-injecting
server, and llama_cpp.server on the embedded model)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from bench.loopback_teacher import Faults, LoopbackTeacher
from train.data import main
from edgetune.artifacts import SPLITS, read_split
from train.teacher import Teacher, TeacherConfig, resolve_endpoint

ROOT = Path(__file__).resolve().parents[2]
FAST = ["openai.timeout=1", "openai.backoff=0.01", "openai.prices.loopback-teacher=[100,200]"]


@pytest.fixture
def teacher_env(monkeypatch, tmp_path):
    """A clean teacher environment: no key or endpoint from the developer's shell or .env leaks in."""
    for name in ("TEACHER_API_KEY", "OPENAI_API_KEY", "TEACHER_BASE_URL", "TEACHER_MODEL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # .env is read from the working directory
    return monkeypatch


def use(monkeypatch, server: LoopbackTeacher) -> None:
    monkeypatch.setenv("TEACHER_API_KEY", "sk-loopback-secret")
    monkeypatch.setenv("TEACHER_BASE_URL", server.base_url)
    monkeypatch.setenv("TEACHER_MODEL", server.model)


def run_stage(tmp_path: Path, *args: str) -> int:
    return main(["--run", "t", "--teacher", "openai", f"runs_dir={tmp_path}", *FAST, *args])


def report(tmp_path: Path, run: str = "t") -> dict:
    return json.loads((tmp_path / run / "data" / "data_report.json").read_text())


def test_faults_are_retried_and_bad_answers_rejected_with_reasons(teacher_env, tmp_path, capsys):
    plan = ["429", "ok", "500", "timeout", "malformed", "invalid", "500", "429"]
    faults = Faults(plan=plan, retry_after="0.3", hang=3.0, per_response=5)
    with LoopbackTeacher(faults) as server:
        use(teacher_env, server)
        started = time.perf_counter()
        assert run_stage(tmp_path, "train=40", "val=5", "test=5", "openai.concurrency=1") == 0
        elapsed = time.perf_counter() - started
    assert elapsed >= 0.6  # two 429s each honoured Retry-After: 0.3 s
    rep = report(tmp_path)
    assert rep["counts"] == {"train": 40, "val": 5, "test": 5} and rep["stopped_by"] == "target"
    assert rep["retries"] == 5  # 429, 500, timeout, 500, 429: each retried, none lost
    assert rep["rejects"]["teacher:malformed_response"] == 1
    assert rep["rejects"]["contract:unknown_callee"] == 5  # the "invalid" batch
    assert server.stats["requests"] == rep["requests"] + rep["retries"]
    assert rep["tokens"]["total_tokens"] > 0 and rep["cost_usd"] > 0
    rejected = [json.loads(line) for line in (tmp_path / "t" / "data" / "rejected.jsonl").read_text().splitlines()]
    assert {r["reason"] for r in rejected} == {"teacher:malformed_response", "contract:unknown_callee"}
    assert all(r["detail"] for r in rejected)
    out = capsys.readouterr()
    assert "sk-loopback-secret" not in out.out + out.err  # the key is never printed ...
    manifest = (tmp_path / "t" / "manifest.json").read_text()
    assert "sk-loopback-secret" not in manifest  # ... nor recorded


def test_max_requests_and_max_cost_stop_the_run(teacher_env, tmp_path):
    with LoopbackTeacher(Faults(per_response=4)) as server:
        use(teacher_env, server)
        assert run_stage(tmp_path, "--max-requests", "3", "train=100", "val=10", "test=10") == 0
        rep = report(tmp_path)
        assert rep["requests"] == 3 and rep["stopped_by"] == "max_requests"
        assert sum(rep["counts"].values()) == 12  # what the budget bought, split proportionally
        # $ limit: a request costs ~0.2 USD at the test's prices (prompts grow as earlier examples are fed back)
        spent_before = rep["cost_usd"]
        assert run_stage(tmp_path, "--max-cost", str(spent_before + 0.5), "train=100", "val=10", "test=10",
                         "openai.max_tokens=600") == 0
        rep = report(tmp_path)
        assert rep["stopped_by"] == "max_cost" and spent_before < rep["cost_usd"] <= spent_before + 0.5
        assert server.stats["requests"] == rep["requests"]


def test_kill_9_mid_run_then_rerun_gives_exactly_the_target(teacher_env, tmp_path):
    with LoopbackTeacher(Faults(latency=0.05, per_response=4)) as server:
        use(teacher_env, server)
        pool = tmp_path / "t" / "data" / "teacher" / "pool.jsonl"
        args = [sys.executable, "-m", "train", "data", "--run", "t", "--teacher", "openai", f"runs_dir={tmp_path}",
                *FAST, "train=150", "val=20", "test=30", "openai.concurrency=2"]
        child = subprocess.Popen(args, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.time() + 60
        while time.time() < deadline and (not pool.is_file() or len(pool.read_bytes().splitlines()) < 40):
            time.sleep(0.02)
        child.send_signal(signal.SIGKILL)
        child.wait(10)
        assert child.returncode == -signal.SIGKILL
        assert not (tmp_path / "t" / "data" / "train.jsonl").exists()  # it really died mid-run
        before = pool.read_bytes()
        requests_before = server.stats["requests"]
        assert 40 <= len(before.splitlines()) < 300

        assert run_stage(tmp_path, "train=150", "val=20", "test=30", "openai.concurrency=2") == 0
    after = pool.read_bytes()
    complete = before[: before.rfind(b"\n") + 1]
    assert after.startswith(complete)  # nothing received before the kill was lost
    splits = {name: read_split(tmp_path / "t" / "data" / f"{name}.jsonl") for name in SPLITS}
    assert {n: len(v) for n, v in splits.items()} == {"train": 150, "val": 20, "test": 30}
    users = [r.messages[1]["content"] for records in splits.values() for r in records]
    assert len(users) == len(set(users)) == 200
    rep = report(tmp_path)
    ledger = (tmp_path / "t" / "data" / "teacher" / "requests.jsonl").read_text().splitlines()
    assert rep["requests"] == len(ledger) and server.stats["requests"] > requests_before
    assert server.stats["requests"] - len(ledger) <= 2  # at most the requests in flight at the kill were lost


def test_missing_key_names_the_variables(teacher_env, tmp_path, capsys):
    assert run_stage(tmp_path) == 2
    err = capsys.readouterr().err
    assert "TEACHER_API_KEY" in err and "OPENAI_API_KEY" in err


def test_key_from_dotenv_file(teacher_env, tmp_path):
    (tmp_path / ".env").write_text("# local secrets\nexport OPENAI_API_KEY='sk-from-dotenv'\nTEACHER_MODEL=m1\n")
    endpoint = resolve_endpoint(TeacherConfig())
    assert (endpoint.api_key, endpoint.key_variable, endpoint.model) == ("sk-from-dotenv", "OPENAI_API_KEY", "m1")
    assert "sk-from-dotenv" not in repr(endpoint)


def test_unreachable_endpoint_fails_clearly_after_bounded_retries(teacher_env, tmp_path, capsys):
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    teacher_env.setenv("TEACHER_API_KEY", "sk-x")
    teacher_env.setenv("TEACHER_BASE_URL", f"http://127.0.0.1:{port}/v1")
    started = time.perf_counter()
    assert run_stage(tmp_path, "openai.max_retries=3", "openai.prices.gpt-4o-mini=[1,1]") == 1
    assert time.perf_counter() - started < 20
    err = capsys.readouterr().err
    assert f"127.0.0.1:{port}" in err and "after 4 attempts" in err and "TEACHER_BASE_URL" in err


def test_retry_delay_honours_retry_after_and_backs_off_with_jitter(teacher_env):
    teacher_env.setenv("TEACHER_API_KEY", "sk-x")
    config = TeacherConfig(backoff=1.0, backoff_max=10.0)
    teacher = Teacher(config, resolve_endpoint(config))
    assert teacher.retry_delay(0, 2.5) == 2.5
    assert teacher.retry_delay(0, 99.0) == 10.0
    delays = [teacher.retry_delay(3, None) for _ in range(50)]
    assert all(4.0 <= d <= 8.0 for d in delays) and len(set(delays)) > 1
    assert all(teacher.retry_delay(10, None) <= 10.0 for _ in range(10))


def test_paraphrase_mode_keeps_the_synthesized_answers(teacher_env, tmp_path, robot_task):
    from train.synth import synthesize

    with LoopbackTeacher() as server:
        use(teacher_env, server)
        assert run_stage(tmp_path, "openai.paraphrase=true", "train=30", "val=5", "test=5") == 0
    records = [r for name in SPLITS for r in read_split(tmp_path / "t" / "data" / f"{name}.jsonl")]
    # the splits hold commands as the model reads them (the task's spelling correction)
    truth = {robot_task.contract.read_command(c.user): c.assistant for c in synthesize(2000, robot_task.data.seed)}
    for rec in records:
        user, answer = rec.messages[1]["content"], rec.messages[2]["content"]
        assert user.startswith("Kindly, ") and truth[user.removeprefix("Kindly, ")] == answer


def test_auto_system_message_is_written_once_and_used(teacher_env, tmp_path):
    with LoopbackTeacher() as server:
        use(teacher_env, server)
        assert run_stage(tmp_path, "openai.auto_system=true", "train=10", "val=2", "test=2") == 0
        requests = server.stats["requests"]
        assert run_stage(tmp_path, "openai.auto_system=true", "train=10", "val=2", "test=2") == 0
        assert server.stats["requests"] == requests  # resumed: neither the system message nor examples re-asked
    system = "You turn robot commands into a JSON list of allowlisted robot API calls."
    assert (tmp_path / "t" / "data" / "teacher" / "system.txt").read_text().strip() == system
    assert all(r.messages[0]["content"] == system for r in read_split(tmp_path / "t" / "data" / "train.jsonl"))
    assert report(tmp_path)["system"] == system


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_llama_cpp_server_as_teacher(teacher_env, tmp_path, embedded_gguf_path):
    """The real openai client against llama_cpp.server on the embedded 135M model: requests, usage, budget.

    The plain-text task keeps the prompt short (robot_sdk's allowlist is ~1200 tokens: a minute on 2 busy cores)."""
    pytest.importorskip("llama_cpp.server")
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(embedded_gguf_path), "--host", "127.0.0.1",
         "--port", str(port), "--n_ctx", "4096", "--n_threads", "1", "--verbose", "false"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=1).read()
                break
            except OSError:
                assert server.poll() is None and time.time() < deadline, "llama_cpp.server did not start"
                time.sleep(0.3)
        teacher_env.setenv("TEACHER_API_KEY", "local")
        teacher_env.setenv("TEACHER_BASE_URL", f"http://127.0.0.1:{port}/v1")
        teacher_env.setenv("TEACHER_MODEL", "smollm2-135m")
        code = main(["--run", "t", "--task", "student_2nd_grade", "--teacher", "openai", f"runs_dir={tmp_path}",
                     "--max-requests", "2", "--concurrency", "2", "train=4", "val=1", "test=1",
                     "openai.examples_per_request=2", "openai.max_tokens=48", "openai.timeout=120"])
    finally:
        server.terminate()
        server.wait(20)
    assert code == 0
    rep = report(tmp_path)
    assert rep["requests"] == 2 and rep["stopped_by"] in ("max_requests", "target")
    assert rep["tokens"]["prompt_tokens"] > 100 and rep["tokens"]["completion_tokens"] > 0
    ledger = [json.loads(l) for l in (tmp_path / "t" / "data" / "teacher" / "requests.jsonl").read_text().splitlines()]
    assert [r["status"] in ("ok", "malformed") for r in ledger] == [True, True]
    # whatever a 135M teacher wrote is accounted for: kept, deduplicated or rejected with a reason
    accounted = sum(rep["counts"].values()) + rep["unused"] + sum(rep["duplicates"].values()) + sum(
        v for k, v in rep["rejects"].items() if k != "teacher:malformed_response")
    assert accounted == rep["received"]
