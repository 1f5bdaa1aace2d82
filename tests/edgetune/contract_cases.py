"""What the contract tests share: answers built from calls, the one violation of an answer."""

from __future__ import annotations

import json

from edgetune.contract import ContractSpec, Violation


def answer(*calls: str) -> str:
    return json.dumps(list(calls))


def only_violation(contract: ContractSpec, text: str) -> Violation:
    verdict = contract.validate(text)
    assert not verdict.valid
    assert len(verdict.violations) == 1, verdict.violations
    return verdict.violations[0]
