"""OpenMP's wait policy for the server's llama.cpp threads: waiting threads sleep instead of spinning.

llama.cpp here is built with OpenMP (libgomp; the Makefile's and the image's builds keep ggml's default
GGML_OPENMP=ON). Decoding a token crosses hundreds of OpenMP barriers; by default a thread that reaches one first
spins (up to GOMP_SPINCOUNT = 300,000 pauses) for the others. When another process holds a core, a late thread waits
for the scheduler while its partner burns the core it needs: the issue measured 48 tokens in 72.9 s at 2 threads on
2 cores against 1.1 s at 1 thread. With ``OMP_WAIT_POLICY=PASSIVE`` a waiting thread sleeps at once and gives its
core back (``python -m bench.contention``, table in docs/README.serve.md): every core with passive waits was the
fastest setting measured both with a competing busy process and without, 1 thread was 1.1x slower, and the spinning
default 1.9x (no competitor) and 3.6x (one competitor) slower. No rebuild is needed (ggml's own threadpool,
GGML_OPENMP=OFF, would be the other way out).

libgomp reads its environment once, when llama.cpp's library is loaded, so :func:`prefer_passive_waits` must run
before anything imports llama_cpp (``python -m serve`` calls it first). An operator's own OMP_WAIT_POLICY or
GOMP_SPINCOUNT wins.
"""

from __future__ import annotations

import logging
import os
import sys

log = logging.getLogger("serve")

OPERATOR_KNOBS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")
_in_effect = ""


def prefer_passive_waits() -> str:
    """Set OMP_WAIT_POLICY=PASSIVE unless the operator set a policy; returns what is in effect (for the log)."""
    global _in_effect
    if not _in_effect:
        _in_effect = _choose()
    return _in_effect


def _choose() -> str:
    if any(os.environ.get(knob) for knob in OPERATOR_KNOBS):
        return ", ".join(f"{k}={os.environ[k]}" for k in OPERATOR_KNOBS if os.environ.get(k)) + " (operator's)"
    if "llama_cpp" in sys.modules:
        log.warning("llama_cpp was loaded before the OpenMP wait policy was set: its threads spin while they wait "
                    "and decoding slows down sharply when another process is busy; set OMP_WAIT_POLICY=PASSIVE "
                    "in the environment")
        return "OpenMP default (set too late)"
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    return "OMP_WAIT_POLICY=PASSIVE"
