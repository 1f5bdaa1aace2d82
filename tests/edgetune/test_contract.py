"""The output contract: the validator's verdicts and positions, normalisation, the scorer, the text contract."""

from __future__ import annotations

import json

import pytest

from edgetune.config import from_dict
from edgetune.contract import ArgSpec, ContractSpec, Violation
from edgetune.task import load_task


@pytest.fixture(scope="module")
def contract(robot_task) -> ContractSpec:
    return robot_task.contract


def answer(*calls: str) -> str:
    return json.dumps(list(calls))


def only_violation(contract: ContractSpec, text: str) -> Violation:
    verdict = contract.validate(text)
    assert not verdict.valid
    assert len(verdict.violations) == 1, verdict.violations
    return verdict.violations[0]


# One bad item between two good ones: (item text, violation code, column of the offending part inside the item).
BAD_ITEMS = [
    ("os.system('ls')", "unknown_callee", 0),
    ("robot.self_destruct()", "unknown_attribute", 0),
    ("sport.Move(vx=1.5, vy=0.0, vyaw=0.0)", "out_of_range", 14),
    ("robot.wait(seconds=0.0)", "out_of_range", 19),
    ("robot.wait(seconds=-1)", "out_of_range", 19),
    ("import os", "syntax", 0),
    ("__import__('os')", "forbidden", 0),
    ("__import__('os').system('ls')", "bad_callee", 0),
    ("eval('nav.dock()')", "forbidden", 0),
    ("getattr(nav, 'dock')()", "bad_callee", 0),
    ("getattr(nav, 'dock')", "forbidden", 0),
    ("nav.go_to.__class__()", "unknown_attribute", 0),
    ("nav.go_to.__globals__['os'].system('ls')", "bad_callee", 0),
    ("nav.dock", "not_a_call", 0),
    ("nav", "not_a_call", 0),
    ("1 + 2", "not_a_call", 0),
    ("nav.dock() or nav.cancel()", "not_a_call", 0),
    ("(x := nav.dock())", "not_a_call", 0),
    ("f'{nav.dock()}'", "not_a_call", 0),
    ("audio.speak(text=f'hi {nav}')", "not_literal", 17),
    ("lambda: nav.dock()", "not_a_call", 0),
    ("(lambda: nav.dock())()", "bad_callee", 1),
    ("nav.go_to['kitchen']", "not_a_call", 0),
    ("[nav.dock][0]()", "bad_callee", 0),
    ("nav.go_to(place=kitchen)", "not_literal", 16),
    ("audio.speak(text=open('/etc/passwd').read())", "not_literal", 17),
    ("nav.go_to(place=3)", "wrong_type", 16),
    ("robot.wait(seconds='3')", "wrong_type", 19),
    ("robot.wait(seconds=True)", "wrong_type", 19),
    ("robot.wait(seconds=1e999)", "wrong_type", 19),
    ("robot.wait(seconds=2j)", "not_literal", 19),
    ("nav.go_to(place='mars')", "not_in_enum", 16),
    ("nav.go_to(place='Kitchen')", "not_in_enum", 16),
    ("robot.wait()", "missing_argument", 11),
    ("nav.dock(1)", "extra_argument", 9),
    ("nav.dock(force=True)", "unknown_argument", 9),
    ("robot.wait(1.0, seconds=2.0)", "duplicate_argument", 16),
    ("robot.wait(seconds=1.0, seconds=2.0)", "duplicate_argument", 24),
    ("robot.wait(*[1.0])", "unpacking", 11),
    ("robot.wait(**{'seconds': 1.0})", "unpacking", 11),
    ("audio.speak(text='')", "bad_value", 17),
    ("audio.speak(text='rm -rf /; echo')", "bad_value", 17),
    ("audio.speak(text='hi\\n')", "bad_value", 17),
    ("audio.speak(text='" + "a" * 81 + "')", "bad_value", 17),
    ("nav.dock(", "syntax", 8),
    ("  robot.wait(seconds=99)", "out_of_range", 21),
]


@pytest.mark.parametrize(("item", "code", "col"), BAD_ITEMS, ids=[case[0][:40] for case in BAD_ITEMS])
def test_each_bad_item_is_rejected_with_its_code_and_position(contract, item, code, col):
    violation = only_violation(contract, answer("nav.dock()", item, "status.report_battery()"))
    assert (violation.code, violation.index, violation.col) == (code, 1, col), violation
    assert str(violation).startswith(f"[{code}] item 1, col {col}: ")


@pytest.mark.parametrize(
    ("text", "code", "col"),
    [
        ('"nav.dock()"', "not_list", 0),
        ('{"calls": ["nav.dock()"]}', "not_list", 0),
        ("nav.dock()", "not_json", 0),
        ("['nav.dock()']", "not_json", 1),
        ('["nav.dock()"] and then import os', "not_json", 15),
        ('["nav.dock()"]\n["nav.cancel()"]', "not_json", 15),
        ("[" * 100_000 + "]" * 100_000, "not_json", 0),
        ("", "not_json", 0),
    ],
)
def test_answers_that_are_not_a_json_list_are_rejected_with_their_position(contract, text, code, col):
    violation = only_violation(contract, text)
    assert (violation.code, violation.index, violation.col) == (code, None, col)


def test_items_that_are_not_strings_are_rejected(contract):
    verdict = contract.validate('["nav.dock()", 3, ["nav.cancel()"]]')
    assert [(v.code, v.index) for v in verdict.violations] == [("not_string", 1), ("not_string", 2)]


def test_call_count_is_bounded(contract):
    assert only_violation(contract, "[]").code == "call_count"
    assert contract.validate(answer(*["nav.dock()"] * contract.max_calls)).valid
    violation = only_violation(contract, answer(*["nav.dock()"] * (contract.max_calls + 1)))
    assert (violation.code, violation.index) == ("call_count", contract.max_calls)


def test_every_violation_is_reported_not_just_the_first(contract):
    verdict = contract.validate(answer("sport.Move(vx=5, vy='a')", "os.system('ls')", "nav.dock()", "import os"))
    codes = [(v.code, v.index, v.col) for v in verdict.violations]
    assert codes == [
        ("out_of_range", 0, 14),
        ("wrong_type", 0, 20),
        ("missing_argument", 0, 23),
        ("unknown_callee", 1, 0),
        ("syntax", 3, 0),
    ]


@pytest.mark.parametrize(
    "item",
    [
        "[" * 300 + "]" * 300 + "()",
        "-" * 100_000 + "1",
        "nav." + "x." * 50_000 + "dock()",
        "(" * 300 + "nav.dock()" + ")" * 300,
        "nav.dock(\x00)",
    ],
    ids=["nested-brackets", "deep-unary", "long-attribute-chain", "nested-parens", "nul-byte"],
)
def test_hostile_items_are_rejected_without_crashing_the_parser(contract, item):
    verdict = contract.validate(answer(item))
    assert not verdict.valid
    assert verdict.violations[0].code in {"too_long", "syntax"}


@pytest.mark.parametrize(
    ("given", "canonical"),
    [
        ("sport.Move(0.3, 0, vyaw=-1)", "sport.Move(vx=0.3, vy=0.0, vyaw=-1.0)"),
        ("sport.Move(vyaw=-1, vx=.3, vy=-0.0)", "sport.Move(vx=0.3, vy=0.0, vyaw=-1.0)"),
        ("  sport.Move( 0.30 ,0.0,  +0.5 ) ", "sport.Move(vx=0.3, vy=0.0, vyaw=0.5)"),
        ("nav.go_to('kitchen')", "nav.go_to(place='kitchen')"),
        ('nav.go_to(place="kitchen")', "nav.go_to(place='kitchen')"),
        ("robot.wait(3)", "robot.wait(seconds=3.0)"),
        ("robot.wait(seconds=2.75)", "robot.wait(seconds=2.75)"),
        ("audio.speak(text='Hello, I am here!')", "audio.speak(text='Hello, I am here!')"),
        ("nav.dock( )", "nav.dock()"),
    ],
)
def test_positional_and_keyword_forms_normalise_to_one_canonical_call(contract, given, canonical):
    verdict = contract.validate(answer(given))
    assert verdict.valid, verdict.violations
    assert verdict.calls == [canonical]
    assert contract.validate(answer(canonical)).calls == [canonical]
    assert verdict.normalized == json.dumps([canonical])


def test_the_task_examples_are_valid(robot_task):
    for example in robot_task.examples:
        assert robot_task.contract.validate(example["assistant"]).valid, example


def test_whitespace_around_the_list_and_items_is_allowed(contract):
    verdict = contract.validate('\n [ "nav.dock()" ,\n"status.report_state()"] \n')
    assert verdict.valid
    assert verdict.calls == ["nav.dock()", "status.report_state()"]


# ------------------------------------------------------------------------------------------------------ scorer
def test_scorer_on_handcrafted_cases(contract):
    references = [
        answer("nav.dock()", "status.report_battery()"),
        answer("sport.Move(vx=0.3, vy=0.0, vyaw=0.0)", "robot.wait(seconds=3.0)"),
        answer("nav.go_to(place='kitchen')"),
        answer("sport.StandUp()", "sport.Sit()"),
    ]
    predictions = [
        answer("nav.dock()", "status.report_battery()"),  # exact
        answer("sport.Move(0.3, 0, 0)", "robot.wait(seconds=2.0)"),  # valid; 1 of 2 calls right (after normalising)
        answer("nav.go_to(place='mars')", "nav.dock()"),  # invalid; no call right
        answer("sport.Sit()", "sport.StandUp()"),  # valid, both calls right, wrong order: not exact
    ]
    score = contract.score(predictions, references)
    # hits 2+1+0+2 = 5, predicted calls 2+2+2+2 = 8, reference calls 2+2+1+2 = 7
    assert score.n == 4
    assert score.exact_match == pytest.approx(1 / 4)
    assert score.valid_rate == pytest.approx(3 / 4)
    assert score.precision == pytest.approx(5 / 8)
    assert score.recall == pytest.approx(5 / 7)
    assert score.f1 == pytest.approx(2 * (5 / 8) * (5 / 7) / (5 / 8 + 5 / 7))


def test_scorer_counts_repeated_calls_once_each(contract):
    score = contract.score([answer("nav.dock()", "nav.dock()")], [answer("nav.dock()")])
    assert (score.precision, score.recall, score.exact_match) == (0.5, 1.0, 0.0)


def test_scorer_of_garbage_is_zero_and_of_nothing_is_defined(contract):
    score = contract.score(["I will go to the kitchen."], [answer("nav.go_to(place='kitchen')")])
    assert score.to_dict() == {"n": 1, "exact_match": 0.0, "valid_rate": 0.0, "precision": 0.0, "recall": 0.0, "f1": 0.0}
    assert contract.score([], []).n == 0


def test_scorer_refuses_mismatched_lengths(contract):
    with pytest.raises(ValueError, match="as many predictions as references"):
        contract.score([answer("nav.dock()")], [])


# ------------------------------------------------------------------------------------------------ text contract
@pytest.fixture(scope="module")
def student() -> ContractSpec:
    return load_task("student_2nd_grade").contract


def test_text_contract_validates_length_and_forbidden_phrases(student):
    assert student.validate("Um, 12! I counted on my fingers.").valid
    assert student.grammar() is None
    assert only_violation(student, " a ").code == "length"
    assert only_violation(student, "x" * 401).code == "length"
    violation = only_violation(student, "Well, AS AN AI I think it is 12.")
    assert (violation.code, violation.col) == ("forbidden", 6)


def test_text_contract_scores_tokens_after_normalising_case_and_space(student):
    score = student.score(["Um,  it is TWELVE!", "as an AI, 12"], ["um, it is twelve!", "It is 12"])
    assert score.exact_match == 0.5
    assert score.valid_rate == 0.5
    # tokens: pred 4 + 4 = 8, ref 4 + 3 = 7; hits 4 + 1 ("12")
    assert score.precision == pytest.approx(5 / 8)
    assert score.recall == pytest.approx(5 / 7)


# --------------------------------------------------------------------------------------------- grammar details
def test_describe_lists_every_allowlisted_call(contract):
    text = contract.describe()
    assert all(callee in text for callee in contract.api)
    assert "vx: float in [-1.0, 1.0]" in text


def test_grammar_rule_names_stay_distinct_when_names_collide():
    spec = from_dict(ContractSpec, {
        "kind": "call_list",
        "api": {
            "a.b": {"args": {"c_d": {"type": "enum", "values": ["x"]}}},
            "a.b_c": {"args": {"d": {"type": "int", "min": 0, "max": 3}}},
            "a.b.c": {},
        },
    })
    grammar = spec.grammar()
    names = [line.split(" ::= ")[0] for line in grammar.splitlines()]
    assert len(names) == len(set(names)), grammar
    assert "\"'x'\"" in grammar and '"3"' in grammar


def test_numeric_grid_stays_inside_the_range():
    assert ArgSpec(type="float", min=-0.25, max=0.25, step=0.1).grid() == [-0.2, -0.1, 0.0, 0.1, 0.2]
    assert ArgSpec(type="int", min=1, max=9, step=4).grid() == [1, 5, 9]
    grid = ArgSpec(type="float", min=0.0, max=4.96e-5, step=1e-7).grid()
    assert max(grid) <= 4.96e-5 and len(grid) == len(set(grid))
