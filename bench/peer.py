"""llama.cpp's own C++ server, ``llama-server``, built from the llama.cpp source vendored in the installed
llama-cpp-python's sdist: the same llama.cpp the edgetune server links, so the bench compares engines, not versions.

    python -m bench.peer            # or: make llama-server (once; ~15 min on 2 cores; cached)
    python -m bench.peer --print    # the cached binary's path, or exit 1 when it is not built

The build goes to ``~/.cache/edgetune/llama-server-<version>/`` (``$EDGETUNE_CACHE`` moves it), outside the
repository: the sdist comes from PyPI with pip, only the ``llama-server`` target is built (no tests, examples or web
UI: the sdist has no ``tools/server/public`` assets, and the UI download is turned off), with the same portable
x86-64 flags as ``make setup``'s llama-cpp-python (no -march=native, no AMX), statically linked so the binary does
not pick up another libllama.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

#: CMake flags of the build; on x86-64 the Makefile's X86_64_V3 set (AVX2/FMA/F16C, no AVX-512, no AMX).
BASE_FLAGS = ["-DCMAKE_BUILD_TYPE=Release", "-DBUILD_SHARED_LIBS=OFF", "-DLLAMA_BUILD_SERVER=ON",
              "-DLLAMA_BUILD_TOOLS=ON", "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF",
              "-DLLAMA_BUILD_UI=OFF", "-DLLAMA_USE_PREBUILT_UI=OFF", "-DLLAMA_OPENSSL=OFF", "-DGGML_NATIVE=OFF"]
X86_FLAGS = ["-DGGML_SSE42=ON", "-DGGML_AVX=ON", "-DGGML_AVX2=ON", "-DGGML_FMA=ON", "-DGGML_F16C=ON",
             "-DGGML_BMI2=ON", "-DGGML_AVX_VNNI=OFF", "-DGGML_AVX512=OFF", "-DGGML_AVX512_VBMI=OFF",
             "-DGGML_AVX512_VNNI=OFF", "-DGGML_AVX512_BF16=OFF", "-DGGML_AMX_TILE=OFF", "-DGGML_AMX_INT8=OFF",
             "-DGGML_AMX_BF16=OFF", "-DGGML_CPU_REPACK=ON"]


class PeerError(RuntimeError):
    """The llama-server build failed; the message says where its log is."""


def llama_cpp_version() -> str:
    from importlib.metadata import version

    return version("llama_cpp_python")


def cache_dir() -> Path:
    return Path(os.environ.get("EDGETUNE_CACHE") or Path.home() / ".cache" / "edgetune")


def build_dir(version: str | None = None) -> Path:
    return cache_dir() / f"llama-server-{version or llama_cpp_version()}"


def binary(version: str | None = None) -> Path | None:
    """The cached llama-server for the installed llama-cpp-python, or None when it was not built."""
    path = build_dir(version) / "bin" / "llama-server"
    return path if path.is_file() and os.access(path, os.X_OK) else None


def _run(argv: list[str], log, cwd: Path | None = None) -> None:
    log.write(f"$ {' '.join(argv)}\n".encode())
    log.flush()
    done = subprocess.run(argv, cwd=cwd, stdout=log, stderr=subprocess.STDOUT)
    if done.returncode:
        raise PeerError(f"`{' '.join(argv[:3])} ...` failed with exit {done.returncode}; see {log.name}")


def build(jobs: int = 2, version: str | None = None) -> Path:
    """Download the sdist, configure and build ``llama-server`` (niced, ``jobs`` parallel); returns the binary."""
    version = version or llama_cpp_version()
    out = build_dir(version)
    if (found := binary(version)) is not None:
        return found
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "build.log", "ab") as log:
        sdist = out / f"llama_cpp_python-{version}.tar.gz"
        if not sdist.is_file():
            _run([sys.executable, "-m", "pip", "download", f"llama-cpp-python=={version}", "--no-deps",
                  "--no-binary", ":all:", "-d", str(out)], log)
        source = out / f"llama_cpp_python-{version}" / "vendor" / "llama.cpp"
        if not source.is_dir():
            with tarfile.open(sdist) as tar:
                tar.extractall(out, filter="data")
        flags = BASE_FLAGS + (X86_FLAGS if platform.machine() in ("x86_64", "AMD64") else [])
        generator = ["-G", "Ninja"] if shutil.which("ninja") else []
        nice = ["nice", "-n", "10"] if shutil.which("nice") else []
        _run([*nice, "cmake", "-S", str(source), "-B", str(out / "build"), *generator, *flags], log)
        _run([*nice, "cmake", "--build", str(out / "build"), "--target", "llama-server", "-j", str(jobs)], log)
        (out / "bin").mkdir(exist_ok=True)
        built = out / "build" / "bin" / "llama-server"
        tmp = out / "bin" / "llama-server.tmp"
        shutil.copy2(built, tmp)
        tmp.replace(out / "bin" / "llama-server")
    found = binary(version)
    assert found is not None
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.peer", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=2, help="parallel compile jobs (default 2)")
    parser.add_argument("--print", action="store_true", help="print the cached binary's path; exit 1 if not built")
    args = parser.parse_args(argv)
    if args.print:
        found = binary()
        print(found or f"not built: run `make llama-server` (builds into {build_dir()})")
        return 0 if found else 1
    try:
        print(build(args.jobs))
    except PeerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
