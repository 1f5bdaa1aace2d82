"""The machine a bench ran on: hardware, power mode and versions, and its measured memory read bandwidth.

Batch-1 decode reads every weight once per token, so ``tokens/s x model bytes`` cannot exceed the memory read
bandwidth; the bandwidth probe gives that ceiling for the roofline column.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from edgetune.rundir import package_versions


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace").strip("\x00\n ")
    except OSError:
        return None


def _command(*argv: str, timeout: float = 10.0) -> str | None:
    """Output of a probing command, or None when it is not installed or fails (a probe never stops a bench)."""
    if not shutil.which(argv[0]):
        return None
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"failed: {exc}"
    text = (done.stdout + done.stderr).strip()
    return text if done.returncode == 0 else f"exit {done.returncode}: {text[-500:]}"


def cpu_model() -> str:
    """The CPU's marketing name (x86 'model name'; on ARM boards the device-tree model or 'Hardware')."""
    info = _read("/proc/cpuinfo") or ""
    for key in ("model name", "Hardware", "Processor", "cpu model"):
        for line in info.splitlines():
            if line.split(":")[0].strip() == key and ":" in line:
                return line.split(":", 1)[1].strip()
    return _read("/proc/device-tree/model") or platform.processor() or platform.machine()


def physical_cores() -> int | None:
    """Distinct (socket, core) pairs in /proc/cpuinfo; None where the kernel does not list them (many ARM)."""
    pairs, socket = set(), "0"
    for line in (_read("/proc/cpuinfo") or "").splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "physical id":
            socket = value.strip()
        elif key.strip() == "core id":
            pairs.add((socket, value.strip()))
    return len(pairs) or None


def memory_total_gib() -> float | None:
    for line in (_read("/proc/meminfo") or "").splitlines():
        if line.startswith("MemTotal:"):
            return round(int(line.split()[1]) / 2**20, 2)
    return None


def jetson() -> dict[str, Any] | None:
    """Jetson model, L4T release and power mode (nvpmodel, jetson_clocks) when this is a Jetson."""
    release = _read("/etc/nv_tegra_release")
    model = _read("/proc/device-tree/model")
    if not release and not (model and "jetson" in model.lower()):
        return None
    return {
        "model": model,
        "l4t": release,
        "nvpmodel": _command("nvpmodel", "-q"),
        "jetson_clocks": _command("jetson_clocks", "--show"),
    }


def gpus() -> list[str]:
    out = _command("nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader")
    return [line.strip() for line in out.splitlines()] if out and not out.startswith(("exit", "failed")) else []


def offload() -> dict[str, Any]:
    """Whether this llama.cpp build offloads to a GPU and where, as the engine's n_gpu_layers auto resolves it (the
    layer count actually offloaded is the server's, in the edgetune target's server_info: gpu_layers)."""
    import llama_cpp

    from edgetune.llama import backend_name, resolve_gpu_layers

    layers = resolve_gpu_layers(-1)
    return {"supported": bool(llama_cpp.llama_supports_gpu_offload()), "auto_gpu_layers": "all" if layers else 0,
            "device": backend_name(layers)}


def capture_environment() -> dict[str, Any]:
    """Everything that decides the numbers besides the model: hardware, load, power mode, versions."""
    import llama_cpp

    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "hostname": platform.node(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_model": cpu_model(),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": affinity,
        "physical_cores": physical_cores(),
        "memory_total_gib": memory_total_gib(),
        "gpus": gpus(),
        "jetson": jetson(),
        "load_average": list(os.getloadavg()),
        "llama_cpp_system_info": llama_cpp.llama_print_system_info().decode("utf-8", "replace").strip(),
        "llama_cpp_offload": offload(),
        "versions": package_versions(),
    }


def memory_bandwidth(array_mib: int = 512, reps: int = 5) -> dict[str, Any]:
    """Best-of-``reps`` read bandwidth (GB/s) summing a large int64 array, on one thread and on every usable CPU.

    numpy releases the GIL inside the sum, so the threaded pass reads in parallel like llama.cpp's decode threads.
    """
    import numpy as np

    threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    data = np.ones((array_mib << 20) // 8, dtype=np.int64)  # ones, not empty: every page is touched before timing
    best: dict[int, float] = {}
    for n in sorted({1, threads}):
        chunks = np.array_split(data, n)
        with ThreadPoolExecutor(n) as pool:
            for _ in range(reps):
                start = time.perf_counter()
                list(pool.map(np.sum, chunks))
                elapsed = time.perf_counter() - start
                best[n] = min(best.get(n, elapsed), elapsed)
    per_thread = {str(n): data.nbytes / s / 1e9 for n, s in best.items()}
    return {
        "gb_per_s": max(per_thread.values()),
        "by_threads_gb_per_s": per_thread,
        "array_mib": array_mib,
        "reps": reps,
        "method": "numpy int64 sum, best of reps",
    }


def roofline_pct(decode_tokens_per_s: float | None, model_bytes: int, gb_per_s: float) -> float | None:
    """Batch-1 decode as % of the memory-bound limit: tokens/s x bytes read per token / bandwidth."""
    if not decode_tokens_per_s or gb_per_s <= 0:
        return None
    return 100.0 * decode_tokens_per_s * model_bytes / (gb_per_s * 1e9)
