"""The run directory: atomic writes that never leave a half file, and a manifest every stage appends to."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import stat
from pathlib import Path

import pytest

from edgetune import rundir
from edgetune.rundir import RunDir, atomic_path, atomic_write, atomic_write_json, package_versions, sha256_file


def _leftovers(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_atomic_write_writes_and_leaves_no_temp_file(tmp_path):
    target = tmp_path / "deep" / "er" / "out.txt"
    assert atomic_write(target, "héllo") == target
    assert target.read_text(encoding="utf-8") == "héllo"
    atomic_write(target, b"\x00bytes")
    assert target.read_bytes() == b"\x00bytes"
    assert _leftovers(target.parent) == []


def test_atomic_write_gives_the_permissions_of_a_plain_write(tmp_path):
    plain = tmp_path / "plain"
    plain.write_text("x")
    atomic_write(tmp_path / "atomic", "x")
    assert stat.S_IMODE((tmp_path / "atomic").stat().st_mode) == stat.S_IMODE(plain.stat().st_mode)


def test_a_failed_write_keeps_the_old_file_whole_and_removes_the_temp_file(tmp_path, monkeypatch):
    target = tmp_path / "manifest.json"
    atomic_write(target, "old contents")

    def broken_fsync(fd):  # the data is written, but the write fails before it is durable
        raise OSError("disk full")

    monkeypatch.setattr(rundir.os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, "new contents " * 100_000)
    assert target.read_text() == "old contents"
    assert _leftovers(tmp_path) == []


def test_a_failure_inside_atomic_path_never_creates_the_target(tmp_path):
    target = tmp_path / "model.gguf"
    with pytest.raises(RuntimeError, match="conversion crashed"):
        with atomic_path(target) as tmp:
            assert tmp.parent == target.parent and tmp != target
            tmp.write_bytes(b"half a model")
            raise RuntimeError("conversion crashed")
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []


def test_atomic_write_json_round_trips(tmp_path):
    obj = {"b": [1, 2.5, None], "a": {"path": tmp_path}}
    path = atomic_write_json(tmp_path / "x.json", obj)
    assert json.loads(path.read_text()) == {"b": [1, 2.5, None], "a": {"path": str(tmp_path)}}


def test_sha256_file_matches_hashlib(tmp_path):
    data = os.urandom(3 * 1024 + 7)
    (tmp_path / "blob").write_bytes(data)
    assert sha256_file(tmp_path / "blob", chunk=1024) == hashlib.sha256(data).hexdigest()


def test_package_versions_names_python_and_installed_packages():
    versions = package_versions(("pytest", "surely-not-installed-package"))
    assert set(versions) == {"python", "pytest"}


@pytest.mark.parametrize("name", ["default", "exp-1", "robot_sdk.v2", "a"])
def test_run_dir_named_accepts_plain_names(tmp_path, name):
    run = RunDir.named(name, tmp_path)
    assert run.root == tmp_path / name
    assert (run.data, run.adapter, run.bundle, run.bench) == tuple(run.root / d for d in ("data", "adapter", "bundle", "bench"))


@pytest.mark.parametrize("name", ["", ".", "..", ".hidden", "a/b", "/abs", "../escape", "a b", "a\nb", "a\\b", "a\x00"])
def test_run_dir_named_rejects_names_that_are_not_plain_folders(tmp_path, name):
    with pytest.raises(ValueError, match="RUN must be a plain folder name"):
        RunDir.named(name, tmp_path)


def test_record_appends_stages_and_keeps_earlier_ones(tmp_path):
    run = RunDir.named("r", tmp_path)
    assert run.manifest() == {"run": "r", "stages": {}}
    assert run.stage("data") is None
    run.record("data", task="robot_sdk", counts={"train": 3})
    run.record("train", task="robot_sdk", timings={"train_s": 1.5})
    entry = run.record("data", task="robot_sdk", counts={"train": 4})  # a re-run replaces its own entry only
    manifest = json.loads(run.manifest_path.read_text())
    assert list(manifest["stages"]) == ["data", "train"]
    assert manifest["stages"]["data"]["counts"] == {"train": 4}
    assert manifest["stages"]["train"]["timings"] == {"train_s": 1.5}
    assert entry == run.stage("data")
    assert entry["versions"]["python"] and entry["finished_at"]
    assert _leftovers(run.root) == []


def _record_many(root: str, worker: int) -> None:
    run = RunDir(Path(root))
    for i in range(8):
        run.record(f"w{worker}-{i}", worker=worker)


def test_concurrent_stages_do_not_lose_each_others_entries(tmp_path):
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=_record_many, args=(str(tmp_path / "run"), w)) for w in range(4)]
    for process in workers:
        process.start()
    for process in workers:
        process.join(60)
        assert process.exitcode == 0
    stages = RunDir(tmp_path / "run").manifest()["stages"]
    assert sorted(stages) == sorted(f"w{w}-{i}" for w in range(4) for i in range(8))
