"""The run directory: one folder per run that describes itself, so the next stage reads artifacts, not flags.

    runs/<run>/
      manifest.json   every stage appends: config, package versions, input hashes, timings, outputs
      data/           train/val/test JSONL and data_report.json           (make data)
      adapter/        LoRA adapter, tokenizer, train_report.json           (make train)
      bundle/         GGUFs, manifest.json, REPORT.md, Modelfile           (make export)
      bench/          bench.json, tables and plots                         (make bench)
      prompt_opt/     DSPy-optimized program, its demos, DSPy's LM cache     (python -m train prompt-opt)
      compare/        compare.json, COMPARE.md, compare.png                (make compare)

Everything is written atomically (temp file + rename) so a crash never leaves a half-written artifact.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import platform
import re
import tempfile
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Iterator

RUNS_DIR = Path(os.environ.get("EDGETUNE_RUNS", "runs"))
_VERSIONED = (
    "edgetune", "torch", "transformers", "peft", "trl", "bitsandbytes", "accelerate",
    "llama-cpp-python", "gguf", "grpcio", "openai", "numpy",
)
_RUN_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+=@-]*")
# mkstemp creates files readable by the owner only; artifacts get the permissions a plain open() would give
_UMASK = os.umask(0)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temp path beside ``path``; on success it is renamed over ``path``, on error it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.fchmod(fd, 0o666 & ~_UMASK)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


def atomic_write(path: str | Path, data: str | bytes) -> Path:
    """Write ``data`` to ``path`` atomically, fsynced."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data.encode("utf-8") if isinstance(data, str) else data)
            fh.flush()
            os.fsync(fh.fileno())
    return Path(path)


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    return atomic_write(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def package_versions(names: tuple[str, ...] = _VERSIONED) -> dict[str, str]:
    """Versions of the packages that decide a run's behaviour (those installed)."""
    out = {"python": platform.python_version()}
    for name in names:
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[name] = metadata.version(name)
    return out


@dataclass(frozen=True)
class RunDir:
    """Paths of one run; ``record`` appends a stage's facts to the run manifest."""

    root: Path

    @classmethod
    def named(cls, run: str, runs_dir: str | Path | None = None) -> "RunDir":
        if not _RUN_NAME.fullmatch(run or ""):
            raise ValueError(f"RUN must be a plain folder name like 'default' (letters, digits, _.+=@-), got {run!r}")
        return cls(Path(runs_dir or RUNS_DIR) / run)

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def adapter(self) -> Path:
        return self.root / "adapter"

    @property
    def bundle(self) -> Path:
        return self.root / "bundle"

    @property
    def bench(self) -> Path:
        return self.root / "bench"

    @property
    def prompt_opt(self) -> Path:
        return self.root / "prompt_opt"

    @property
    def compare(self) -> Path:
        return self.root / "compare"

    @property
    def manifest_path(self) -> Path:
        return self.root / "manifest.json"

    def manifest(self) -> dict[str, Any]:
        if not self.manifest_path.is_file():
            return {"run": self.root.name, "stages": {}}
        return json.loads(self.manifest_path.read_text(encoding="utf-8"))

    def stage(self, name: str) -> dict[str, Any] | None:
        """What stage ``name`` recorded, or None if it has not run."""
        return self.manifest()["stages"].get(name)

    def record(self, stage: str, **facts: Any) -> dict[str, Any]:
        """Append (replace) ``stage``'s entry: the given facts plus versions and a timestamp.

        Stages of one run may finish concurrently (an OpenAI fine-tune beside a local one), so the
        read-modify-write of the manifest holds an exclusive lock; otherwise one stage's entry could be lost.
        """
        entry = {"finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "versions": package_versions(), **facts}
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".manifest.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            manifest = self.manifest()
            manifest["stages"][stage] = entry
            atomic_write_json(self.manifest_path, manifest)
        return entry
