"""The quality gate: contract validation with reasons, exact and near-duplicate removal, leak-free split."""

from __future__ import annotations

import json

from train.dataset import Example, gate, normalize_text, split

GO_KITCHEN = '["nav.go_to(place=\'kitchen\')", "nav.wait_for_arrival()"]'


def wait(seconds: float) -> str:
    return json.dumps([f"robot.wait(seconds={seconds})"])


def test_invalid_answers_are_rejected_with_the_contract_reason(robot_task):
    examples = [
        Example("go to the kitchen", GO_KITCHEN),
        Example("go to the moon", '["nav.go_to(place=\'moon\')"]'),
        Example("delete everything", '["os.system(\'rm -rf /\')"]'),
        Example("say hi", "nav.dock()"),
        Example("   ", GO_KITCHEN),
    ]
    result = gate(robot_task, examples)
    assert [e.user for e in result.kept] == ["go to the kitchen"]
    reasons = {r.example.user: r.reason for r in result.rejected}
    assert reasons == {"go to the moon": "contract:not_in_enum", "delete everything": "contract:unknown_callee",
                       "say hi": "contract:not_json", "   ": "empty_instruction"}
    assert "moon" in next(r.detail for r in result.rejected if r.example.user == "go to the moon")
    assert result.rejects_by_reason() == {"contract:not_in_enum": 1, "contract:unknown_callee": 1,
                                          "contract:not_json": 1, "empty_instruction": 1}


def test_answers_are_respelled_in_the_contract_spelling(robot_task):
    # a teacher's loose spelling is not valid (the validator accepts the canonical spelling only), but its meaning
    # is known: the gate keeps the canonical text
    result = gate(robot_task, [Example("wait", '[ "robot.wait( 2 )" ]'), Example("dock", '["nav.dock()  # now"]')])
    assert [e.assistant for e in result.kept] == ['["robot.wait(seconds=2.0)"]', '["nav.dock()"]']


def test_exact_and_near_duplicates_are_dropped_but_similar_different_answers_kept(robot_task):
    examples = [
        Example("Go to the kitchen, please.", GO_KITCHEN),
        Example("go to the KITCHEN please!!", GO_KITCHEN),  # exact after normalisation
        Example("Please go to the kitchen, please", GO_KITCHEN),  # near-duplicate, same answer
        Example("Wait for 3 seconds please.", wait(3.0)),
        Example("Wait for 5 seconds please.", wait(5.0)),  # similar text, different answer: kept, grouped
        Example("Report your battery level.", '["status.report_battery()"]'),
    ]
    result = gate(robot_task, examples, similarity=0.8)
    assert result.exact_duplicates == 1 and result.near_duplicates == 1
    kept = [e.user for e in result.kept]
    assert kept == ["Go to the kitchen, please.", "Wait for 3 seconds please.", "Wait for 5 seconds please.",
                    "Report your battery level."]
    groups = sorted(sorted(kept[i] for i in g) for g in result.groups)
    assert ["Wait for 3 seconds please.", "Wait for 5 seconds please."] in groups


def test_split_never_divides_a_group_and_hits_exact_sizes(robot_task):
    examples = [Example(f"wait for {n} seconds and then report your battery level", json.dumps(
        [f"robot.wait(seconds={n}.0)", "status.report_battery()"])) for n in range(1, 31)]
    examples += [Example(f"{verb} to the {place}", json.dumps([f"nav.go_to(place='{place}')", "nav.wait_for_arrival()"]))
                 for verb in ("go", "drive over", "navigate carefully") for place in ("kitchen", "garage", "office")]
    result = gate(robot_task, examples, similarity=0.8)
    sizes = {"train": 12, "val": 3, "test": 3}
    parts = split(result, sizes, seed=0)
    assert {k: len(v) for k, v in parts.items()} == sizes
    where = {e.user: name for name, items in parts.items() for e in items}
    for group in result.groups:
        assert len({where[result.kept[i].user] for i in group if result.kept[i].user in where}) <= 1
    assert split(result, sizes, seed=0) == parts  # deterministic


def test_normalize_text_folds_case_punctuation_and_spacing():
    assert normalize_text("  Go, to   the KITCHEN!! ") == "go to the kitchen"
