"""edgetune bench stage: latency benchmarks of the edge server against its baselines (``bench.run(config)``)."""

from bench.config import BenchConfig
from bench.runner import run

__all__ = ["BenchConfig", "run"]
