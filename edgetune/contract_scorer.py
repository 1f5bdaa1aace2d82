"""The contract's scorer: exact match after normalisation, per-call precision/recall/F1, valid rate, and what the
answers did with the commands a robot must refuse. Call answers are compared as the robot would run them
(compact calls expanded, ``match: loose`` arguments loosened); text answers by their normalised tokens."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass
from typing import Sequence

from edgetune.contract import ContractSpec, Verdict
from edgetune.contract_validator import judge


@dataclass
class Score:
    """Task metrics over a set of answers."""

    n: int
    exact_match: float
    valid_rate: float
    precision: float
    recall: float
    f1: float
    #: references answered by an exclusive call (a refusal), and what the answers did with them: the share of
    #: them answered with valid calls the robot would run (the worst outcome: it acts on what it must refuse), and
    #: the share of the other references answered with a refusal (it refuses what it could do)
    refusals: int = 0
    acted_on_refusal: float = 0.0
    refused_action: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


def score(contract: ContractSpec, predictions: Sequence[str], references: Sequence[str]) -> Score:
    """Exact match after normalisation, micro precision/recall/F1 over calls (tokens for text), valid rate.

    Call answers are compared expanded (the API calls the robot would run), ``loose`` arguments loosened.
    """
    if len(predictions) != len(references):
        raise ValueError(f"Expected as many predictions as references, got {len(predictions)} and {len(references)}")
    n = len(predictions)
    exact = valid = hit = n_pred = n_ref = refusals = acted = refused = 0
    for pred, ref in zip(predictions, references):
        (verdict, got), (ref_verdict, want) = judge(contract, pred), judge(contract, ref)
        valid += verdict.valid
        exact += verdict.valid and got == want
        hit += sum((Counter(got) & Counter(want)).values())
        n_pred += len(got)
        n_ref += len(want)
        if _refuses(contract, ref_verdict):
            refusals += 1
            acted += verdict.valid and not _refuses(contract, verdict)
        else:
            refused += _refuses(contract, verdict)
    precision = hit / n_pred if n_pred else 0.0
    recall = hit / n_ref if n_ref else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return Score(n, exact / n if n else 0.0, valid / n if n else 0.0, precision, recall, f1, refusals,
                 acted / refusals if refusals else 0.0, refused / (n - refusals) if n > refusals else 0.0)


def _refuses(contract: ContractSpec, verdict: Verdict) -> bool:
    """A valid answer made of an exclusive call (a refusal: nothing runs)."""
    callees = (call.split("(", 1)[0] for call in verdict.calls)
    return verdict.valid and any(callee in contract.api and contract.api[callee].exclusive for callee in callees)
