"""The contract declaration (edgetune/contract.py): argument grids and snapping, the vocabulary of API and compact
calls, the round trip through the bundle manifest, the description teachers read."""

from __future__ import annotations

from edgetune.config import from_dict, to_dict
from edgetune.contract import ArgSpec, ContractSpec
from tests.edgetune.contract_cases import answer


def test_snapping_rounds_halves_away_from_the_origin():
    seconds = ArgSpec(type="float", min=0.5, max=60.0, step=0.5)
    assert [seconds.snap(v) for v in (0.785, 0.75, 1.7449, -0.25, 33.33)] == [1.0, 1.0, 1.5, -0.5, 33.5]
    assert [ArgSpec(type="int", min=1, max=9, step=4).snap(v) for v in (2.9, 3.0, 3.1, 100)] == [1, 5, 5, 101]


def test_vocabulary_holds_the_api_and_the_compact_calls_with_resolved_arguments(contract):
    vocab = contract.vocabulary()
    compact = {"go", "find", "pick", "move", "move_at", "start", "start_at", "walk", "turn"}
    assert set(vocab) == set(contract.api) | compact
    assert vocab["find"].args["name"] == contract.api["perception.find_object"].args["name"]
    assert vocab["go"].args["place"].type == "str"  # a place as said; the contract reads it against the map
    assert contract.expander("go").said == {"place": contract.api["nav.go_to"].args["place"]}
    assert vocab["turn"].args["degrees"].grid() == [45, 90, 135, 180, 225, 270, 315, 360]
    assert not any(vocab[name].exclusive for name in contract.expansions)


def test_a_contract_survives_the_bundle_manifest_round_trip(contract):
    again = from_dict(ContractSpec, to_dict(contract), source="manifest")
    assert again.grammar() == contract.grammar()
    text = answer("walk(direction='left', meters=2.0)", "audio.speak(text='Hi there')")
    assert again.validate(text) == contract.validate(text)


def test_describe_lists_every_allowlisted_call_and_compact_call(contract):
    text = contract.describe()
    assert all(f"- {callee}(" in text for callee in contract.vocabulary())
    assert "vx: float in [-1.0, 1.0]" in text
    assert "name: str of [a-z0-9 -], at most 40" in text
    assert "degrees: int in [45, 360]" in text
    assert "Ends the answer, and alone runs: the calls before it are void." in text
    assert "-> nav.go_to, nav.wait_for_arrival" in text


def test_numeric_grid_stays_inside_the_range():
    assert ArgSpec(type="float", min=-0.25, max=0.25, step=0.1).grid() == [-0.2, -0.1, 0.0, 0.1, 0.2]
    assert ArgSpec(type="int", min=1, max=9, step=4).grid() == [1, 5, 9]
    grid = ArgSpec(type="float", min=0.0, max=4.96e-5, step=1e-7).grid()
    assert max(grid) <= 4.96e-5 and len(grid) == len(set(grid))


def test_a_place_as_said_resolves_through_aliases_articles_and_slips(contract):
    place = contract.api["nav.go_to"].args["place"]
    said = {"kitchen": "kitchen", "The Kitchen": "kitchen", "living room": "living_room", "living_room": "living_room",
            "lounge": "living_room", "my lounge": "living_room", "store room": "storage_room", "storeroom": "storage_room",
            "kitchn": "kitchen", "diinng room": "dining_room", "corridr": "hallway", "laundry rooom": "laundry_room",
            "dinning rom": "dining_room", "front-door": "front_door"}
    assert {name: place.resolve(name) for name in said} == said
    # not on the map: a short name is never read as a slip ('hall' is a place, 'mall' is not), nor is a name two
    # slips from a short one ('store' is not 'storage'), nor one as close to two places
    for name in ("mall", "pantry", "the cellar", "store", "post office", "basement", "", "garden shed", "kitchens room"):
        assert place.resolve(name) is None, name


def test_a_slip_as_close_to_two_names_resolves_to_neither():
    spec = ArgSpec(type="enum", values=["lab_a", "lab_b"], aliases={"lab_a": ["north lab"], "lab_b": ["south lab"]})
    assert spec.resolve("nrth lab") == "lab_a" and spec.resolve("lab c") is None
    assert spec.resolve("lab_a ") == "lab_a" and spec.resolve("lab-b") == "lab_b"
