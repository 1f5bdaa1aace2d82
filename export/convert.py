"""HF checkpoint -> GGUF with llama.cpp's own ``convert_hf_to_gguf.py``, from the sdist of the *installed*
llama-cpp-python, so the converter and the runtime that loads its output are the same llama.cpp.

The sdist is fetched once with ``pip download --no-binary :all: --no-deps llama-cpp-python==VERSION`` and only the
converter (``convert_hf_to_gguf.py``, ``convert_lora_to_gguf.py``, ``conversion/``, ``gguf-py/``) is extracted into
``.cache/llama-cpp-python-VERSION/``. It runs in a subprocess with that ``gguf-py`` first on PYTHONPATH.
No git clone, no unpinned converter, no tensor mapping of our own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import tempfile
from importlib import metadata
from pathlib import Path

from edgetune.embedded import MODELS_DIR, RegistryError, pip_download
from export import ExportError

#: The cache lives beside models/ (the checkout root); EDGETUNE_CACHE overrides.
CACHE_DIR = Path(os.environ.get("EDGETUNE_CACHE") or MODELS_DIR.parent / ".cache")
_KEEP = ("convert_hf_to_gguf.py", "convert_lora_to_gguf.py", "LICENSE", "conversion/", "gguf-py/gguf/")
#: converter output types for the float GGUFs; every other quant is made from the F16 file.
FLOAT_OUTTYPES = {"F32": "f32", "F16": "f16", "BF16": "bf16"}


def llama_cpp_version() -> str:
    try:
        return metadata.version("llama-cpp-python")
    except metadata.PackageNotFoundError:
        raise ExportError(
            "llama-cpp-python is not installed; export needs it (`pip install -e '.[export]'` or `make setup`)"
        ) from None


def converter_dir(cache_dir: Path | None = None) -> Path:
    """``vendor/llama.cpp`` of the installed llama-cpp-python's sdist, fetched and extracted once."""
    version = llama_cpp_version()
    target = (cache_dir or CACHE_DIR) / f"llama-cpp-python-{version}"
    if (target / "convert_hf_to_gguf.py").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".sdist-", dir=target.parent) as tmp:
        print(f"export: fetching llama.cpp's converter from the llama-cpp-python=={version} sdist (once)",
              file=sys.stderr)
        try:
            archive = pip_download(f"llama-cpp-python=={version}", Path(tmp), source=True)
        except RegistryError as exc:
            raise ExportError(f"{exc}; llama.cpp's converter comes from this sdist") from exc
        staging = Path(tmp) / "llama.cpp"
        _extract_converter(archive, staging)
        try:
            staging.rename(target)
        except OSError:
            if not (target / "convert_hf_to_gguf.py").is_file():  # not a concurrent extraction that won
                raise
    return target


def _extract_converter(archive: Path, dest: Path) -> None:
    with tarfile.open(archive, "r:gz") as tar:
        members = []
        for member in tar.getmembers():
            parts = member.name.split("/", 3)  # llama_cpp_python-V / vendor / llama.cpp / rest
            if len(parts) == 4 and parts[1:3] == ["vendor", "llama.cpp"] and parts[3].startswith(_KEEP):
                if member.isfile() and "/tests/" not in parts[3]:
                    member.name = parts[3]
                    members.append(member)
        if not any(m.name == "convert_hf_to_gguf.py" for m in members):
            raise ExportError(f"{archive.name} holds no vendor/llama.cpp/convert_hf_to_gguf.py")
        tar.extractall(dest, members=members, filter="data")


def _converter_env(directory: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(directory / "gguf-py"), str(directory),
                                                      env.get("PYTHONPATH", "")]))
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def supported_architectures(directory: Path | None = None) -> list[str]:
    """Architectures (config.json ``architectures``) the converter knows, cached beside it."""
    directory = directory or converter_dir()
    cached = directory / "supported_architectures.json"
    if cached.is_file():
        return json.loads(cached.read_text())
    done = subprocess.run([sys.executable, str(directory / "convert_hf_to_gguf.py"), "--print-supported-models"],
                          capture_output=True, text=True, env=_converter_env(directory))
    names = sorted({line.strip()[2:] for line in (done.stdout + done.stderr).splitlines()
                    if line.strip().startswith("- ")})
    if done.returncode != 0 or not names:
        raise ExportError(f"llama.cpp's converter did not list its models (exit {done.returncode}): "
                          f"{done.stderr.strip()[-400:]}")
    from edgetune.rundir import atomic_write_json

    atomic_write_json(cached, names)
    return names


def check_architecture(hf_dir: Path) -> str:
    """The checkpoint's architecture, or an ExportError when llama.cpp's converter cannot convert it."""
    config_path = hf_dir / "config.json"
    try:
        architectures = json.loads(config_path.read_text())["architectures"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ExportError(f"{config_path}: cannot read 'architectures' ({exc}); is this a transformers checkpoint?")
    supported = supported_architectures()
    for arch in architectures or []:
        if arch in supported:
            return arch
    raise ExportError(
        f"{config_path}: architecture {architectures} is not supported by llama.cpp's converter "
        f"(llama-cpp-python=={llama_cpp_version()}), so it cannot become a GGUF. Use a base model of a supported "
        f"family (Llama, Qwen2, Mistral, Gemma, Phi3, ... {len(supported)} in all; "
        f"`python {converter_dir() / 'convert_hf_to_gguf.py'} --print-supported-models` lists them)"
    )


def convert_to_gguf(hf_dir: Path, out_path: Path, quant: str = "F16") -> Path:
    """Convert ``hf_dir`` to a float GGUF (F16, BF16 or F32) at ``out_path``; the log goes beside it.

    Written atomically: a failed or interrupted conversion (the subprocess is killed with us) leaves no file."""
    if quant not in FLOAT_OUTTYPES:
        raise ValueError(f"Expected one of {list(FLOAT_OUTTYPES)}, got {quant!r}")
    directory = converter_dir()
    check_architecture(hf_dir)
    from edgetune.rundir import atomic_path

    log_path = out_path.with_suffix(".convert.log")
    with atomic_path(out_path) as tmp, open(log_path, "w", encoding="utf-8") as log:
        cmd = [sys.executable, str(directory / "convert_hf_to_gguf.py"), str(hf_dir),
               "--outfile", str(tmp), "--outtype", FLOAT_OUTTYPES[quant]]
        done = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=_converter_env(directory))
        if done.returncode != 0:
            log.flush()
            tail = "\n".join(log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-15:])
            raise ExportError(f"llama.cpp's converter failed on {hf_dir} (exit {done.returncode}); "
                              f"full log: {log_path}\n{tail}")
    return out_path

