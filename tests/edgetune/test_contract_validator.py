"""The contract's validator (edgetune/contract_validator.py): verdicts and positions, normalisation, the canonical
spelling, the refusal call, open-vocabulary names, expansions (the robot task's compact calls and their exact SDK
calls), the text contract."""

from __future__ import annotations

import json

import pytest

from edgetune.config import from_dict
from edgetune.contract import ContractSpec
from tests.edgetune.contract_cases import answer, only_violation


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
    ("arm.pick(name='Red Ball')", "bad_value", 14),
    ("perception.find_object(name='')", "bad_value", 28),
    ("find(name='cat!')", "bad_value", 10),
    ("pick(name='" + "a" * 41 + "')", "bad_value", 10),
    ("arm.place(surface='the table, please')", "bad_value", 18),
    ("go(place='Attic')", "bad_value", 9),  # a place as said is lower case (an unknown one is a refusal)
    ("move(direction='up', speed='slow', seconds=2.0)", "not_in_enum", 15),
    ("move(direction='forward', speed='slow')", "missing_argument", 38),
    ("walk(direction='forward', meters=20.0)", "out_of_range", 33),
    ("turn(direction='left', degrees=90.0)", "wrong_type", 31),
    ("go.there()", "unknown_attribute", 0),
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
        "walk('forward', " + "-" * 100_000 + "1)",
        "pick(name=" + "(" * 300 + "'x'" + ")" * 300 + ")",
    ],
    ids=["nested-brackets", "deep-unary", "long-attribute-chain", "nested-parens", "nul-byte", "compact-deep-unary",
         "compact-nested-parens"],
)
def test_hostile_items_are_rejected_without_crashing_the_parser(contract, item):
    verdict = contract.validate(answer(item))
    assert not verdict.valid
    assert verdict.violations[0].code in {"too_long", "syntax"}


# Items Python reads as one valid call that are not its canonical text (issue 19): (item, canonical, the column
# where the two part). Each is refused, so the text a client sees is always the calls the validator derived.
MISSPELT = [
    ("nav.dock()  # '; os.system('rm -rf /')", "nav.dock()", 10),  # a comment carries any payload
    ("\uff4e\uff41\uff56.dock()", "nav.dock()", 0),  # fullwidth letters: the parser NFKC-folds identifiers
    ("\U0001d427\U0001d41a\U0001d42f.dock()", "nav.dock()", 0),  # mathematical bold
    ("status.report_\ufb06ate()", "status.report_state()", 14),  # the st ligature
    ("perception.find_object(name='\\x63up')", "perception.find_object(name='cup')", 29),
    ("perception.find_object(name='c' 'up')", "perception.find_object(name='cup')", 30),  # implicit concatenation
    ("perception.find_object(name='''cup''')", "perception.find_object(name='cup')", 29),
    ("go(place=u'kitchen')", "go(place='kitchen')", 9),
    ("(nav).go_to(place='kitchen')", "nav.go_to(place='kitchen')", 0),
    ("((nav.dock))()", "nav.dock()", 0),
    ("nav.go_to(\\\n place='kitchen')", "nav.go_to(place='kitchen')", 10),  # a line continuation
    ("nav.dock(\n)", "nav.dock()", 9),
    ("nav.go_to( place = 'kitchen' )", "nav.go_to(place='kitchen')", 10),
    (" nav.dock()", "nav.dock()", 0),
    ("nav.dock() ", "nav.dock()", 10),
    ("nav . dock()", "nav.dock()", 3),
    ("go(place='kitchen',)", "go(place='kitchen')", 18),
    ("go('kitchen')", "go(place='kitchen')", 3),  # positional
    ("sport.Move(0.3, 0, vyaw=-1)", "sport.Move(vx=0.3, vy=0.0, vyaw=-1.0)", 11),
    ("turn(degrees=45, direction='left')", "turn(direction='left', degrees=45)", 6),  # keyword order
    ("robot.wait(seconds=3)", "robot.wait(seconds=3.0)", 20),  # numbers: one spelling each
    ("robot.wait(seconds=1e0)", "robot.wait(seconds=1.0)", 20),
    ("robot.wait(seconds=3.00)", "robot.wait(seconds=3.0)", 22),
    ("robot.wait(seconds=+3.0)", "robot.wait(seconds=3.0)", 19),
    ("sport.Move(vx=-0.0, vy=0.0, vyaw=0.0)", "sport.Move(vx=0.0, vy=0.0, vyaw=0.0)", 14),
    ("sport.Move(vx=.3, vy=0.0, vyaw=0.0)", "sport.Move(vx=0.3, vy=0.0, vyaw=0.0)", 14),
    ("turn(direction='left', degrees=0x2d)", "turn(direction='left', degrees=45)", 31),
    ("turn(direction='left', degrees=4_5)", "turn(direction='left', degrees=45)", 32),
]


@pytest.mark.parametrize(("item", "canonical", "col"), MISSPELT, ids=[case[0][:40] for case in MISSPELT])
def test_an_item_that_is_not_its_canonical_spelling_is_refused_naming_the_canonical_text(contract, item, canonical,
                                                                                        col):
    verdict = contract.validate(json.dumps([item], ensure_ascii=False))
    assert not verdict.valid
    [violation] = [v for v in verdict.violations if v.index is not None]  # and one for a JSON escape of \\ or \n
    assert (violation.code, violation.index, violation.col) == ("not_canonical", 0, col)
    assert violation.message.endswith(f"; write exactly {canonical}")
    # the meaning is known (data pipelines respell teacher answers with it), and the canonical text is valid
    assert verdict.respellable and verdict.compact == [canonical]
    again = contract.validate(answer(canonical))
    assert again.valid and again.compact == [canonical]


@pytest.mark.parametrize(("item", "why"), [
    ("go('kitchen')", "every argument must be given by keyword"),
    ("turn(degrees=45, direction='left')", "arguments must be in the declared order (direction, degrees)"),
    ("nav.dock()  # x", "'  # x' follows where the canonical text ends"),
    ("robot.wait(seconds=3)", "it has ')' where the canonical text has '.0)'"),
])
def test_the_not_canonical_message_says_what_differs(contract, item, why):
    assert why in only_violation(contract, answer(item)).message


def test_python_forms_that_are_not_the_contract_still_fail_as_before(contract):
    assert only_violation(contract, answer("robot.wait(seconds=True)")).code == "wrong_type"  # True is no number
    verdict = contract.validate(json.dumps(["robot.wait(seconds=\u0661)"], ensure_ascii=False))  # an Arabic digit
    assert [v.code for v in verdict.violations] == ["syntax"]


def test_a_json_escape_in_the_answer_is_not_canonical(contract):
    verdict = contract.validate('["\\u006eav.dock()", "nav.cancel()"]')  # the item decodes to nav.dock()
    [violation] = verdict.violations
    assert (violation.code, violation.index, violation.col) == ("not_canonical", None, 2)
    assert "JSON escape (\\u006e)" in violation.message
    assert verdict.respellable and verdict.compact == ["nav.dock()", "nav.cancel()"]


def test_the_task_examples_are_valid(robot_task):
    for example in robot_task.examples:
        assert robot_task.contract.validate(example["assistant"]).valid, example


def test_whitespace_around_the_list_and_items_is_allowed(contract):
    verdict = contract.validate('\n [ "nav.dock()" ,\n"status.report_state()"] \n')
    assert verdict.valid
    assert verdict.calls == ["nav.dock()", "status.report_state()"]


# ------------------------------------------------------------------------------------------ refusal and mixing
@pytest.mark.parametrize("reason", ["unsupported", "unknown_place", "unsafe", "unclear"])
def test_the_refusal_call_is_valid_alone_and_reaches_the_robot_as_it_is(contract, reason):
    verdict = contract.validate(answer(f"robot.reject(reason='{reason}')"))
    assert verdict.valid, verdict.violations
    assert verdict.calls == verdict.compact == [f"robot.reject(reason='{reason}')"]


def test_a_refusal_after_actions_voids_them_and_alone_reaches_the_robot(contract):
    """The model may write what it read before the part it refuses; none of it runs."""
    items = ["go(place='kitchen')", "pick(name='knife')", "robot.reject(reason='unsafe')"]
    verdict = contract.validate(answer(*items))
    assert verdict.valid, verdict.violations
    assert verdict.calls == ["robot.reject(reason='unsafe')"] and verdict.compact == items
    assert contract.score([answer(*items)], [answer("robot.reject(reason='unsafe')")]).exact_match == 1.0


@pytest.mark.parametrize(
    ("items", "indices"),
    [
        (["robot.reject(reason='unsafe')", "go(place='kitchen')"], [0]),
        (["robot.reject(reason='unsafe')", "robot.reject(reason='unclear')"], [0]),
        (["nav.dock()", "robot.reject(reason='unsafe')", "nav.dock()"], [1]),
        (["robot.reject(reason='bored')", "nav.dock()"], [0]),  # an invalid refusal still may not lead
    ],
)
def test_an_exclusive_call_anywhere_but_last_is_rejected(contract, items, indices):
    verdict = contract.validate(answer(*items))
    assert not verdict.valid
    assert [v.index for v in verdict.violations if v.code == "exclusive"] == indices
    assert "must be the last item" in str(next(v for v in verdict.violations if v.code == "exclusive"))
    if not items[-1].startswith("robot.reject("):  # a refusal that does not end the answer voids nothing
        assert len(verdict.calls) > len(items) - 1


def test_a_place_not_on_the_map_turns_the_answer_into_the_refusal(contract):
    """The model copies the place as said; the contract, not the model, knows the map: an unknown place is
    robot.reject(reason='unknown_place') alone, whatever came before or after it."""
    items = ["sport.StandUp()", "go(place='pantry')", "pick(name='soda')", "go(place='kitchen')"]
    verdict = contract.validate(answer(*items))
    assert verdict.valid, verdict.violations
    assert verdict.calls == ["robot.reject(reason='unknown_place')"] and verdict.compact == items
    assert contract.score([answer(*items)], [answer("robot.reject(reason='unknown_place')")]).exact_match == 1.0
    # the first refusal said is the answer: an unknown place before a reject, or a reject ending the answer
    first = contract.validate(answer("go(place='cellar')", "robot.reject(reason='unsafe')"))
    assert first.valid and first.calls == ["robot.reject(reason='unknown_place')"]


def test_a_place_said_by_another_name_or_misspelt_goes_where_the_map_says(contract):
    verdict = contract.validate(answer("go(place='storeroom')", "go(place='the kitchn')", "go(place='living room')"))
    assert verdict.valid, verdict.violations
    assert verdict.calls[::2] == ["nav.go_to(place='storage_room')", "nav.go_to(place='kitchen')",
                                  "nav.go_to(place='living_room')"]
    assert contract.score([answer("go(place='lounge')")], [answer("go(place='living_room')")]).exact_match == 1.0
    # the raw API call keeps the closed set: only a compact call reads names as said
    assert only_violation(contract, answer("nav.go_to(place='lounge')")).code == "not_in_enum"


# --------------------------------------------------------------------------------------- open-vocabulary names
@pytest.mark.parametrize("name", ["cat", "car keys", "tennis-ball 2", "x", "a" * 40])
def test_objects_and_surfaces_are_open_vocabulary(contract, name):
    verdict = contract.validate(answer(f"find(name='{name}')", f"arm.pick(name='{name}')",
                                       f"arm.place(surface='{name}')"))
    assert verdict.valid, verdict.violations
    assert verdict.calls == [f"perception.find_object(name='{name}')", "perception.wait_for_result()",
                             f"arm.pick(name='{name}')", f"arm.place(surface='{name}')"]


# --------------------------------------------------------------------------------------------------- expansions
SPEEDS = {"slow": (0.3, 0.2, 0.5), "normal": (0.5, 0.3, 1.0), "fast": (0.8, 0.5, 1.5)}
#: direction -> which velocity (vx, vy, vyaw) it drives and its sign; written out, not read from the YAML
DIRECTIONS = {"forward": (0, 1), "backward": (0, -1), "left": (1, 1), "right": (1, -1),
              "turn_left": (2, 1), "turn_right": (2, -1)}


def _move(direction: str, speed: str) -> str:
    axis, sign = DIRECTIONS[direction]
    v = [0.0, 0.0, 0.0]
    v[axis] = sign * SPEEDS[speed][axis]
    return f"sport.Move(vx={v[0]}, vy={v[1]}, vyaw={v[2]})"


@pytest.mark.parametrize("speed", sorted(SPEEDS))
@pytest.mark.parametrize("direction", sorted(DIRECTIONS))
def test_move_and_start_expand_to_the_velocity_table(contract, direction, speed):
    move = contract.validate(answer(f"move(direction='{direction}', speed='{speed}', seconds=2.5)"))
    assert move.calls == [_move(direction, speed), "robot.wait(seconds=2.5)", "sport.StopMove()"], move.violations
    start = contract.validate(answer(f"start(direction='{direction}', speed='{speed}')"))
    assert start.calls == [_move(direction, speed)]
    assert start.compact == [f"start(direction='{direction}', speed='{speed}')"]


@pytest.mark.parametrize("direction", sorted(DIRECTIONS))
def test_move_at_and_start_at_put_the_said_speed_on_the_direction_s_axis(contract, direction):
    axis, sign = DIRECTIONS[direction]
    v = [0.0, 0.0, 0.0]
    v[axis] = sign * 0.2
    move = contract.validate(answer(f"move_at(direction='{direction}', speed=0.2, seconds=3.5)"))
    assert move.calls == [f"sport.Move(vx={v[0]}, vy={v[1]}, vyaw={v[2]})", "robot.wait(seconds=3.5)",
                          "sport.StopMove()"], move.violations
    start = contract.validate(answer(f"start_at(direction='{direction}', speed=0.2)"))
    assert start.calls == [f"sport.Move(vx={v[0]}, vy={v[1]}, vyaw={v[2]})"]


@pytest.mark.parametrize("direction, bound", [("forward", "vx=1.0"), ("backward", "vx=-1.0"), ("left", "vy=0.5"),
                                              ("right", "vy=-0.5"), ("turn_left", "vyaw=1.5")])
def test_a_said_speed_past_an_axis_bound_is_clamped_to_it(contract, direction, bound):
    verdict = contract.validate(answer(f"start_at(direction='{direction}', speed=1.5)"))
    assert verdict.valid and bound in verdict.calls[0], verdict.calls


WALKS = {  # meters -> seconds at 0.5 m/s forward/backward and 0.3 m/s sideways, on the 0.5 s grid
    0.5: (1.0, 1.5), 1.0: (2.0, 3.5), 2.0: (4.0, 6.5), 2.5: (5.0, 8.5), 7.5: (15.0, 25.0), 10.0: (20.0, 33.5),
}


@pytest.mark.parametrize("meters", sorted(WALKS))
@pytest.mark.parametrize("direction", ["forward", "backward", "left", "right"])
def test_walk_expands_to_a_normal_speed_move_for_the_distance(contract, direction, meters):
    verdict = contract.validate(answer(f"walk(direction='{direction}', meters={meters})"))
    seconds = WALKS[meters][direction in ("left", "right")]
    assert verdict.calls == [_move(direction, "normal"), f"robot.wait(seconds={seconds})", "sport.StopMove()"]


TURNS = {45: 1.0, 90: 1.5, 135: 2.5, 180: 3.0, 225: 4.0, 270: 4.5, 315: 5.5, 360: 6.5}  # degrees -> s at 1 rad/s


@pytest.mark.parametrize("degrees", sorted(TURNS))
@pytest.mark.parametrize("direction", ["left", "right"])
def test_turn_expands_to_a_timed_turn_at_one_radian_per_second(contract, direction, degrees):
    verdict = contract.validate(answer(f"turn(direction='{direction}', degrees={degrees})"))
    yaw = 1.0 if direction == "left" else -1.0
    assert verdict.calls == [f"sport.Move(vx=0.0, vy=0.0, vyaw={yaw})", f"robot.wait(seconds={TURNS[degrees]})",
                             "sport.StopMove()"]


def test_go_find_and_pick_expand_to_their_waits(contract):
    verdict = contract.validate(answer("go(place='kitchen')", "find(name='fork')", "pick(name='car keys')",
                                       "nav.dock()"))
    assert verdict.valid, verdict.violations
    assert verdict.compact == ["go(place='kitchen')", "find(name='fork')", "pick(name='car keys')", "nav.dock()"]
    assert verdict.normalized == json.dumps(verdict.compact)
    assert verdict.calls == [
        "nav.go_to(place='kitchen')", "nav.wait_for_arrival()",
        "perception.find_object(name='fork')", "perception.wait_for_result()",
        "perception.find_object(name='car keys')", "perception.wait_for_result()", "arm.pick(name='car keys')",
        "nav.dock()",
    ]


def test_max_calls_bounds_the_expanded_list(contract):
    eight = [f"move(direction='forward', speed='slow', seconds={s}.0)" for s in range(1, 9)]
    assert contract.validate(answer(*eight)).valid  # 24 API calls
    violation = only_violation(contract, answer(*eight, "go(place='kitchen')"))
    assert (violation.code, violation.index) == ("call_count", 8)
    assert "26 calls once expanded" in violation.message


def test_an_expansion_that_lands_outside_the_api_is_a_violation():
    # every grid value (the grammar's n = 1, 5, 9) expands to a valid wait, so the declaration loads; an off-grid
    # n the validator accepts may not
    spec = from_dict(ContractSpec, {
        "kind": "call_list",
        "api": {"robot.wait": {"args": {"seconds": {"type": "float", "min": 0.5, "max": 6.0, "step": 0.5}}}},
        "expansions": {"nap": {"args": {"n": {"type": "int", "min": 1, "max": 9, "step": 4}},
                               "to": ["robot.wait(seconds={1 + (n - 1) * (n - 5) * (n - 9) / 10})"]}},
    })
    assert [spec.validate(answer(f"nap(n={n})")).calls for n in (1, 3)] == [["robot.wait(seconds=1.0)"],
                                                                          ["robot.wait(seconds=3.5)"]]  # 3.4 snapped
    violation = only_violation(spec, answer("robot.wait(seconds=1.0)", "nap(n=7)"))  # 1 - 2.4
    assert (violation.code, violation.index) == ("expansion", 1)
    assert "nap expands to robot.wait(seconds=-1.5), which the API refuses" in violation.message


# ------------------------------------------------------------------------------------------------ text contract
def test_text_contract_validates_length_and_forbidden_phrases(student):
    assert student.validate("Um, 12! I counted on my fingers.").valid
    assert student.grammar() is None
    assert only_violation(student, " a ").code == "length"
    assert only_violation(student, "x" * 401).code == "length"
    violation = only_violation(student, "Well, AS AN AI I think it is 12.")
    assert (violation.code, violation.col) == ("forbidden", 6)
