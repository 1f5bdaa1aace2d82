"""Quantize the F16 GGUF with llama.cpp's ``llama_model_quantize`` (the library llama-cpp-python loads)."""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys
from pathlib import Path
from typing import Iterator

from edgetune.rundir import atomic_path
from export import ExportError


@contextlib.contextmanager
def native_output_to(log_path: Path) -> Iterator[None]:
    """Send what native code prints (llama.cpp's per-tensor log) to ``log_path`` instead of the terminal."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(log_path, "a", encoding="utf-8") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def ftype_of(quant: str) -> int:
    """llama.cpp's LLAMA_FTYPE value for a quant name like ``Q4_K_M``."""
    import llama_cpp

    name = "LLAMA_FTYPE_ALL_F32" if quant == "F32" else f"LLAMA_FTYPE_MOSTLY_{quant}"
    if not hasattr(llama_cpp, name):
        raise ExportError(f"quant {quant!r} is not known to the installed llama-cpp-python")
    return int(getattr(llama_cpp, name))


def quantize(source: Path, out_path: Path, quant: str, threads: int = 0) -> Path:
    """Write ``source`` (a float GGUF) quantized to ``quant`` at ``out_path``, atomically; log beside it."""
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype_of(quant)
    params.nthread = threads or (os.cpu_count() or 1)
    log_path = out_path.with_suffix(".quantize.log")
    with atomic_path(out_path) as tmp, native_output_to(log_path):
        status = llama_cpp.llama_model_quantize(str(source).encode(), str(tmp).encode(), ctypes.byref(params))
        if status != 0:
            raise ExportError(f"llama_model_quantize({source.name} -> {quant}) failed with status {status}; is "
                              f"{source} a complete GGUF? llama.cpp's log: {log_path}")
    return out_path
