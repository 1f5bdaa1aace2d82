"""The contract's scorer (edgetune/contract_scorer.py): exact match, per-call precision/recall/F1, valid rate,
refusal metrics, loosely compared text, the text contract's tokens."""

from __future__ import annotations

import pytest

from tests.edgetune.contract_cases import answer


def test_scorer_on_handcrafted_cases(contract):
    references = [
        answer("nav.dock()", "status.report_battery()"),
        answer("sport.Move(vx=0.3, vy=0.0, vyaw=0.0)", "robot.wait(seconds=3.0)"),
        answer("nav.go_to(place='kitchen')"),
        answer("sport.StandUp()", "sport.Sit()"),
    ]
    predictions = [
        answer("nav.dock()", "status.report_battery()"),  # exact
        answer("sport.Move(vx=0.3, vy=0.0, vyaw=0.0)", "robot.wait(seconds=2.0)"),  # valid; 1 of 2 calls right
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
    assert score.to_dict() == {"n": 1, "exact_match": 0.0, "valid_rate": 0.0, "precision": 0.0, "recall": 0.0, "f1": 0.0,
                               "refusals": 0, "acted_on_refusal": 0.0, "refused_action": 0.0}
    assert contract.score([], []).n == 0


def test_scorer_counts_acting_on_a_refusal_and_refusing_an_action(contract):
    """What matters most on a robot: of the commands it must refuse, how many it acted on (an invalid answer runs
    nothing, so it does not count); of the others, how many it refused."""
    unsafe, kitchen = answer("robot.reject(reason='unsafe')"), answer("go(place='kitchen')")
    references = [unsafe, unsafe, unsafe, kitchen, kitchen]
    predictions = [answer("robot.reject(reason='unclear')"), kitchen, "go to the kitchen", unsafe, kitchen]
    score = contract.score(predictions, references)
    assert (score.refusals, score.acted_on_refusal, score.refused_action) == (3, 1 / 3, 1 / 2)
    assert score.exact_match == 1 / 5  # the wrong reason is still a refusal, but not the right answer


def test_scorer_compares_expanded_calls(contract):
    raw = answer("nav.go_to(place='kitchen')", "nav.wait_for_arrival()", "sport.Move(vx=0.0, vy=0.0, vyaw=1.0)",
                 "robot.wait(seconds=1.5)", "sport.StopMove()")
    score = contract.score([answer("go(place='kitchen')", "turn(direction='left', degrees=90)")], [raw])
    assert (score.exact_match, score.f1) == (1.0, 1.0)
    score = contract.score([answer("go(place='kitchen')", "move(direction='turn_left', speed='normal', seconds=2.0)")],
                           [raw])
    assert score.exact_match == 0.0 and (score.precision, score.recall) == (4 / 5, 4 / 5)


@pytest.mark.parametrize("said", ["dinner is ready.", "Dinner is ready", " DINNER IS READY!! ", "dinner is ready?"])
def test_spoken_text_is_scored_loosely_but_sent_as_written(contract, said):
    verdict = contract.validate(answer(f"audio.speak(text='{said}')"))
    assert verdict.calls == [f"audio.speak(text='{said}')"]
    score = contract.score([answer(f"audio.speak(text='{said}')")], [answer("audio.speak(text='Dinner is ready')")])
    assert score.exact_match == 1.0
    assert contract.score([answer("audio.speak(text='Dinner is not ready')")],
                          [answer("audio.speak(text='Dinner is ready')")]).exact_match == 0.0
    assert contract.score([answer("arm.place(surface='bin')")], [answer("arm.place(surface='bin ')")]).f1 == 0.0


def test_scorer_refuses_mismatched_lengths(contract):
    with pytest.raises(ValueError, match="as many predictions as references"):
        contract.score([answer("nav.dock()")], [])


def test_text_contract_scores_tokens_after_normalising_case_and_space(student):
    score = student.score(["Um,  it is TWELVE!", "as an AI, 12"], ["um, it is twelve!", "It is 12"])
    assert score.exact_match == 0.5
    assert score.valid_rate == 0.5
    # tokens: pred 4 + 4 = 8, ref 4 + 3 = 7; hits 4 + 1 ("12")
    assert score.precision == pytest.approx(5 / 8)
    assert score.recall == pytest.approx(5 / 7)
