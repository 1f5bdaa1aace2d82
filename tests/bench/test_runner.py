"""The sweep's rounds: targets take turns within a level, and a level's wall time counts only its own rounds."""

from __future__ import annotations

import time
from types import SimpleNamespace

from bench.config import BenchConfig
from bench.loadgen import Delta
from bench.runner import _sweep


class _Recorder:
    """A target that answers after ``delay_s`` and logs which prompts it got, in order."""

    def __init__(self, name: str, delay_s: float, log: list):
        self.name, self.delay_s, self.log = name, delay_s, log

    def stream(self, prompt: str, max_tokens=None):
        self.log.append((self.name, prompt))
        time.sleep(self.delay_s)
        yield Delta("x")


class _Bar:
    def set_postfix_str(self, text: str) -> None:
        pass

    def update(self, n: int = 1) -> None:
        pass


def test_targets_take_turns_each_round_and_wall_time_is_their_own():
    log: list = []
    opened = {"a": _Recorder("a", 0.0, log), "b": _Recorder("b", 0.05, log)}
    workload = SimpleNamespace(prompts=["p0", "p1", "p2", "p3"])
    timings = {"a": 0.0, "b": 0.0}
    measured = _sweep(opened, workload, BenchConfig(rounds=2), [1], {1: [0, 1, 2, 3]}, _Bar(), timings)
    assert log == [("a", "p0"), ("a", "p1"), ("b", "p0"), ("b", "p1"),  # round 1: a, then b
                   ("b", "p2"), ("b", "p3"), ("a", "p2"), ("a", "p3")]  # round 2: the order rotated
    assert [s.prompt_index for s in measured["a"][1]["samples"]] == [0, 1, 2, 3]
    # a's level took its own two rounds, not the 0.2 s b spent in between
    assert measured["a"][1]["wall_s"] < 0.05 < 0.2 <= measured["b"][1]["wall_s"]
    assert timings["b"] >= 0.2


def test_a_level_too_small_to_split_runs_in_one_round():
    log: list = []
    opened = {"a": _Recorder("a", 0.0, log)}
    workload = SimpleNamespace(prompts=["p0", "p1", "p2"])
    measured = _sweep(opened, workload, BenchConfig(rounds=3), [2], {2: [0, 1, 2]}, _Bar(), {"a": 0.0})
    assert sorted(p for _, p in log) == ["p0", "p1", "p2"]  # 3 requests at concurrency 2: one round, all sent
    assert len(measured["a"][2]["samples"]) == 3
