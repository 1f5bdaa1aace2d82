"""Fixtures of the contract tests: the robot task's contract and the text contract of student_2nd_grade."""

from __future__ import annotations

import pytest

from edgetune.contract import ContractSpec
from edgetune.task import load_task


@pytest.fixture(scope="module")
def contract(robot_task) -> ContractSpec:
    return robot_task.contract


@pytest.fixture(scope="module")
def student() -> ContractSpec:
    return load_task("student_2nd_grade").contract
