"""The one way edgetune loads a GGUF into llama.cpp in process: :func:`load_llama`.

A native crash in llama.cpp does not raise, it kills the process: on Intel Xeon VMs that advertise AMX, ggml's AMX
kernels die with SIGILL on the first matrix multiply (issue 14), which took down whole exports, servers and test
sessions. So before the first in-process load of a (file, settings) pair, a child process loads the same GGUF with
the same settings and decodes a few tokens. If the child dies by a signal, the child is run again with llama.cpp's
extra buffer types off (``use_extra_bufts=False``: no AMX, no CPU weight repack) and the load uses that when it
works; if that dies too, :class:`LlamaCrash` names the file, the signal and the fix. The verdict is kept for the
life of the process. Where the CPU advertises AMX and the installed llama.cpp was compiled with AMX kernels, extra
buffer types are off from the start. The Makefile builds llama.cpp without AMX kernels, so on a ``make setup``
venv the child always succeeds and the only cost is the probe itself (docs/README.export.md has the figures).

``EDGETUNE_LLAMA_PROBE=0`` skips the child process (and its protection) for a caller that has already proved the
file and settings on this machine.

    python -m edgetune.llama MODEL.gguf '{"n_ctx": 512}'     # the probe itself: exit 0, or death by a signal
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import llama_cpp

log = logging.getLogger("edgetune.llama")

PROBE_ENV = "EDGETUNE_LLAMA_PROBE"
PROBE_TIMEOUT_S = 300.0
#: Decoded by the probe: a prompt batch (several rows through every matrix multiply) and then single tokens.
PROBE_TEXT = "The robot walks to the kitchen and"
PROBE_TOKENS = 2
NO_EXTRA_BUFTS = {"use_extra_bufts": False}
FIX = ("build llama-cpp-python without ggml's AMX kernels, as `make setup` does (x86-64-v3 flags, no -march=native; "
       "docs/README.export.md); `make setup` rebuilds a venv that was set up with other flags")

_verdicts: dict[tuple[Any, ...], dict[str, Any]] = {}  #: probe key -> the extra settings that load safely
_verdicts_lock = threading.Lock()
_params_lock = threading.Lock()


class LlamaCrash(RuntimeError):
    """llama.cpp died by a signal (or hung) loading or decoding a GGUF in the probe's child process."""


def cpu_advertises_amx(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Whether the kernel lists the AMX tile feature for this CPU (not whether AMX works: in some VMs it faults)."""
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        return False
    return any(line.startswith("flags") and "amx_tile" in line.split() for line in text.splitlines())


def build_has_amx() -> bool:
    """Whether the installed llama.cpp was compiled with ggml's AMX kernels (its CPU backend reports AMX_INT8)."""
    import llama_cpp

    return b"AMX_INT8 = 1" in llama_cpp.llama_print_system_info()


def load_llama(path: Path | str, *, cls: type | None = None, **kwargs: Any) -> "llama_cpp.Llama":
    """``cls(model_path=path, **kwargs)`` (default ``llama_cpp.Llama``) once a child process has loaded and decoded
    the same file with the same settings; with extra buffer types off when only that survives.

    ``use_extra_bufts`` (a llama.cpp model parameter that ``Llama`` does not take) may be passed to force it.
    Raises LlamaCrash when llama.cpp cannot run the file on this machine either way."""
    return construct(path, cls=cls, **kwargs, **safe_settings(path, kwargs))


def safe_settings(path: Path | str, kwargs: dict[str, Any]) -> dict[str, Any]:
    """The extra settings (``{}`` or ``use_extra_bufts=False``) under which ``path`` loads and decodes with
    ``kwargs`` without a native crash, probed in a child process once per process."""
    if "use_extra_bufts" in kwargs:
        candidates: list[dict[str, Any]] = [{}]
    elif cpu_advertises_amx() and build_has_amx():
        candidates = [dict(NO_EXTRA_BUFTS)]
    else:
        candidates = [{}, dict(NO_EXTRA_BUFTS)]
    if kwargs.get("vocab_only") or os.environ.get(PROBE_ENV) == "0":
        return candidates[0]  # vocab_only computes nothing to crash on; a skipped probe keeps the AMX rule
    key = _key(path, kwargs)
    with _verdicts_lock:
        if key in _verdicts:
            return _verdicts[key]
    if candidates[0]:
        log.warning("this CPU advertises AMX and llama.cpp was built with AMX kernels, which die with SIGILL in "
                    "some VMs: loading %s without extra buffer types (no AMX, no CPU repack). To run at full "
                    "speed, %s", path, FIX)
    deaths = []
    for extra in candidates:
        death = _probe(path, {**kwargs, **extra})
        if death is None:
            if deaths:
                log.warning("llama.cpp %s with %s; it works without extra buffer types (no AMX, no CPU repack), "
                            "which is how it is loaded now (slower where CPU repack helps). To run at full speed, "
                            "%s", deaths[0], path, FIX)
            with _verdicts_lock:
                _verdicts[key] = extra
            return extra
        deaths.append(death)
    tried = " and ".join(f"{d} ({'use_extra_bufts=False' if e else 'default settings'})"
                         for d, e in zip(deaths, candidates))
    raise LlamaCrash(f"llama.cpp cannot run {path} on this machine: in a child process it {tried} while loading "
                     f"and decoding {PROBE_TOKENS} tokens with {_describe(kwargs)}. Fix: {FIX}")


def construct(path: Path | str, *, cls: type | None = None, use_extra_bufts: bool | None = None,
              **kwargs: Any) -> "llama_cpp.Llama":
    """``cls(model_path=path, **kwargs)`` without a probe; ``use_extra_bufts`` set in llama.cpp's model params.

    ``Llama.__init__`` builds its model params from ``llama_model_default_params()`` and loads at once, with no
    argument for this field: for the length of the constructor that function returns params with the field set.
    Loads through here take turns, so no other load sees that function meanwhile."""
    import llama_cpp

    cls = cls or llama_cpp.Llama
    module = llama_cpp.llama_cpp
    with _params_lock:
        if use_extra_bufts is None:
            return cls(model_path=str(path), **kwargs)
        default = module.llama_model_default_params

        def params() -> Any:
            p = default()
            p.use_extra_bufts = use_extra_bufts
            return p

        module.llama_model_default_params = params
        try:
            return cls(model_path=str(path), **kwargs)
        finally:
            module.llama_model_default_params = default


def _key(path: Path | str, kwargs: dict[str, Any]) -> tuple[Any, ...]:
    resolved = Path(path).resolve()
    try:
        stat = resolved.stat()
        identity: tuple[Any, ...] = (stat.st_size, stat.st_mtime_ns)
    except OSError:
        identity = ()
    return (str(resolved), *identity, json.dumps(kwargs, sort_keys=True, default=str))


def _describe(kwargs: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in sorted(kwargs.items())) or "default settings"


def probe_command(path: Path | str, kwargs: dict[str, Any]) -> list[str]:
    """The child process that loads ``path`` with ``kwargs`` and decodes a few tokens."""
    return [sys.executable, "-m", "edgetune.llama", str(path), json.dumps(kwargs)]


def _child_env() -> dict[str, str]:
    """This process's environment, with this edgetune first on the path: the child runs the code its parent runs."""
    root = str(Path(__file__).resolve().parents[1])
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}


def exit_reason(returncode: int) -> str:
    """'exited with 1', or 'died with SIGILL' for a process a signal killed (a native crash)."""
    if returncode >= 0:
        return f"exited with {returncode}"
    try:
        return f"died with {signal.Signals(-returncode).name}"
    except ValueError:
        return f"died with signal {-returncode}"


def _probe(path: Path | str, kwargs: dict[str, Any]) -> str | None:
    """None when the child succeeded or failed in Python (the in-process load then raises that error itself);
    otherwise how it died, e.g. 'died with SIGILL'."""
    try:
        proc = subprocess.run(probe_command(path, kwargs), capture_output=True, text=True, timeout=PROBE_TIMEOUT_S,
                              stdin=subprocess.DEVNULL, env=_child_env())
    except subprocess.TimeoutExpired:
        return f"hung (no result after {PROBE_TIMEOUT_S:g} s)"
    if proc.returncode >= 0:
        if proc.returncode:
            log.debug("llama.cpp probe of %s failed in Python: %s", path, proc.stderr[-2000:])
        return None
    death = exit_reason(proc.returncode)
    tail = proc.stderr.strip()[-600:]
    log.warning("llama.cpp %s in a child process loading %s with %s%s", death, path, _describe(kwargs),
                f"; its last output:\n{tail}" if tail else "")
    return death


def _probe_main(argv: list[str]) -> int:
    path, kwargs = argv[0], json.loads(argv[1]) if len(argv) > 1 else {}
    kwargs.setdefault("verbose", False)
    llm = construct(path, **kwargs)
    with contextlib.closing(llm):
        if not kwargs.get("vocab_only"):
            prompt = llm.tokenize(PROBE_TEXT.encode("utf-8"), add_bos=True)
            for _, _token in zip(range(PROBE_TOKENS), llm.generate(prompt, temp=0.0)):
                pass
    return 0


if __name__ == "__main__":
    sys.exit(_probe_main(sys.argv[1:]))


def resolve_gpu_layers(n_gpu_layers: int) -> int:
    """``-1`` (auto): every layer when this llama.cpp build can offload to a GPU, none otherwise."""
    import llama_cpp

    if n_gpu_layers >= 0:
        return n_gpu_layers
    return 2**31 - 1 if llama_cpp.llama_supports_gpu_offload() else 0


def backend_name(offloaded: int) -> str:
    """The device llama.cpp runs the offloaded layers on (from its system info: CUDA, Metal, Vulkan, ...); CPU."""
    import llama_cpp

    names = re.findall(r"(\w+) : ", llama_cpp.llama_print_system_info().decode("utf-8", "replace"))
    gpus = [name for name in names if name != "CPU"]
    return gpus[0] if offloaded and gpus else "CPU"
