"""The quality gate every example passes, whatever produced it (synthesizer, teacher, importer).

1. validate: the answer must satisfy the task's contract (robot_sdk: the allowlist validator); call-list answers
   are rewritten to the contract's normalised form so the student sees one spelling per answer;
2. deduplicate: exact duplicates (normalised instruction) and near-duplicates (similar instruction *and* the same
   answer) are dropped, and so is anything near a command of the task's held-out set (decontamination);
3. split: instructions that are similar but have different answers ("walk for 3 seconds" / "... 5 seconds") are
   kept, but grouped, and a group never straddles train/val/test, so the held-out splits hold no near-duplicate of
   a training instruction.

Similarity is rapidfuzz's normalised Indel ratio over the normalised instruction (C++, all pairs in chunks).
"""

from __future__ import annotations

import json
import random
import re
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from edgetune.artifacts import Conversation
from edgetune.contract import ContractSpec
from edgetune.task import TaskSpec

_NON_WORD = re.compile(r"[^0-9a-z]+")


@dataclass(frozen=True)
class Example:
    """One instruction/answer pair; ``source`` says where it came from (synth, teacher, import:<format>)."""

    user: str
    assistant: str
    source: str = "synth"

    def conversation(self, system: str, contract: ContractSpec) -> Conversation:
        """The line of a split file this pair becomes: the command as the model reads it (the contract's spelling)."""
        return Conversation(({"role": "system", "content": system},
                             {"role": "user", "content": contract.read_command(self.user)},
                             {"role": "assistant", "content": self.assistant}))


@dataclass
class Rejected:
    example: Example
    reason: str  #: short code, counted in the report
    detail: str  #: the full explanation

    def record(self) -> dict:
        return {**asdict(self.example), "reason": self.reason, "detail": self.detail}


@dataclass
class GateResult:
    """What the gate kept, dropped and grouped."""

    kept: list[Example] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    exact_duplicates: int = 0
    near_duplicates: int = 0
    groups: list[list[int]] = field(default_factory=list)  #: indices into ``kept``; similar instructions together

    def rejects_by_reason(self) -> dict[str, int]:
        return dict(Counter(r.reason for r in self.rejected).most_common())


def normalize_text(text: str) -> str:
    """Case, punctuation and spacing folded away: what 'the same instruction' means."""
    return " ".join(_NON_WORD.sub(" ", text.casefold()).split())


def check_example(task: TaskSpec, example: Example) -> tuple[Example | None, Rejected | None]:
    """Validate one example; return it with its answer normalised, or the reason it is rejected."""
    user = " ".join(example.user.split())
    if not user:
        return None, Rejected(example, "empty_instruction", "the user message is empty")
    if len(user) > 1000:
        return None, Rejected(example, "instruction_too_long", f"{len(user)} characters; at most 1000")
    verdict = task.contract.validate(example.assistant)
    if not verdict.respellable:  # a teacher's loose spelling is respelled below, not dropped
        first = verdict.violations[0]
        detail = "; ".join(str(v) for v in verdict.violations)
        return None, Rejected(example, f"contract:{first.code}", detail)
    answer = verdict.normalized if task.contract.kind == "call_list" else example.assistant.strip()
    return Example(user, answer, example.source), None


def _similar(rows: Sequence[str], texts: Sequence[str], threshold: float) -> Iterable[tuple[int, int]]:
    """(i, j) for every rows[i], texts[j] whose normalised Indel similarity is >= ``threshold`` (0..1)."""
    import numpy as np
    from rapidfuzz import fuzz, process

    scores = process.cdist(rows, texts, scorer=fuzz.ratio, score_cutoff=threshold * 100, dtype=np.uint8, workers=1)
    for i, j in zip(*np.nonzero(scores)):
        yield int(i), int(j)


def similar_pairs(texts: Sequence[str], threshold: float, chunk: int = 512) -> Iterable[tuple[int, int]]:
    """All pairs (i < j) whose normalised Indel similarity is >= ``threshold`` (0..1)."""
    for start in range(0, len(texts), chunk):
        for i, j in _similar(texts[start:start + chunk], texts[start:], threshold):
            if i < j:
                yield start + i, start + j


def similar_across(queries: Sequence[str], texts: Sequence[str], threshold: float,
                   chunk: int = 512) -> Iterable[tuple[int, int]]:
    """Pairs (query index, text index) the gate would call near-duplicates: how a held-out set proves it shares
    no instruction with generated data, without the all-pairs cost of ``similar_pairs`` over both."""
    for start in range(0, len(queries), chunk):
        for i, j in _similar(queries[start:start + chunk], texts, threshold):
            yield start + i, j


class _UnionFind:
    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def gate(task: TaskSpec, examples: Iterable[Example], similarity: float = 0.9,
         held_out: Sequence[str] = ()) -> GateResult:
    """Validate, deduplicate and group ``examples`` (earlier examples win over later duplicates); drop any example
    whose instruction is a ``held_out`` one or near it (a measurement set must stay unseen, whatever wrote the data).
    """
    result = GateResult()
    seen: dict[str, int] = {}
    valid: list[Example] = []
    examples = list(examples)
    near = {i for i, _ in similar_across([normalize_text(e.user) for e in examples],
                                         [normalize_text(t) for t in held_out], similarity)} if held_out else set()
    for position, example in enumerate(examples):
        if position in near:  # the held-out text itself is never written, not even into rejected.jsonl
            result.rejected.append(Rejected(example, "holdout:near_duplicate",
                                            "near a command of the task's held-out set, which must stay unseen"))
            continue
        checked, rejected = check_example(task, example)
        if rejected is not None:
            result.rejected.append(rejected)
            continue
        assert checked is not None
        key = normalize_text(checked.user)
        if key in seen:
            result.exact_duplicates += 1
            continue
        seen[key] = len(valid)
        valid.append(checked)
    texts = [normalize_text(e.user) for e in valid]
    duplicate = [False] * len(valid)
    links = []
    for a, b in similar_pairs(texts, similarity):
        if valid[a].assistant == valid[b].assistant:
            if not duplicate[a]:
                duplicate[b] = True
        else:
            links.append((a, b))
    result.near_duplicates = sum(duplicate)
    index = {}
    for i, example in enumerate(valid):
        if not duplicate[i]:
            index[i] = len(result.kept)
            result.kept.append(example)
    uf = _UnionFind(len(result.kept))
    for a, b in links:
        if a in index and b in index:
            uf.union(index[a], index[b])
    groups: dict[int, list[int]] = {}
    for i in range(len(result.kept)):
        groups.setdefault(uf.find(i), []).append(i)
    result.groups = list(groups.values())
    return result


def split(result: GateResult, sizes: dict[str, int], seed: int, reserved: int = 0) -> dict[str, list[Example]]:
    """Assign whole groups to splits (largest groups first, each to the split most short of its target).

    A group larger than what a split still needs is trimmed, never divided, so no similar pair crosses splits.
    With ``reserved``, the held-out splits (all but train) are drawn from the first ``reserved`` kept examples only,
    and train from the groups that touch none of them: the held-out splits of a prefix-stable source (the
    synthesizer) then stay the same whatever size the train split is asked to be.
    """
    if not reserved:
        return _assign(result.kept, result.groups, sizes, random.Random(seed))
    held_out = {name: size for name, size in sizes.items() if name != "train"}
    touching = [g for g in result.groups if min(g) < reserved]
    out = _assign(result.kept, [[i for i in g if i < reserved] for g in touching], held_out, random.Random(seed))
    rest = [g for g in result.groups if min(g) >= reserved]
    out.update(_assign(result.kept, rest, {"train": sizes["train"]}, random.Random(f"{seed}:train")))
    return {name: out[name] for name in sizes}


def _assign(kept: list[Example], groups: list[list[int]], sizes: dict[str, int],
            rng: random.Random) -> dict[str, list[Example]]:
    groups = [list(g) for g in groups]
    rng.shuffle(groups)
    groups.sort(key=len, reverse=True)
    out: dict[str, list[Example]] = {name: [] for name in sizes}
    for group in groups:
        need = {name: sizes[name] - len(out[name]) for name in sizes}
        open_splits = [name for name in sizes if need[name] > 0]
        if not open_splits:
            break
        target = max(open_splits, key=lambda name: need[name] / max(sizes[name], 1))
        rng.shuffle(group)
        out[target].extend(kept[i] for i in group[:need[target]])
    for examples in out.values():
        rng.shuffle(examples)
    return out


def write_jsonl(path: Path, records: Iterable[dict]) -> Path:
    """Write JSONL atomically."""
    from edgetune.rundir import atomic_write

    return atomic_write(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
