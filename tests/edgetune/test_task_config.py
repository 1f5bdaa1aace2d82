"""Task YAMLs and typed configs: what loads, and bad input failing with an error that names the file and field."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest
import yaml

from edgetune.config import ConfigError, from_dict, load, parse_overrides, to_dict
from edgetune.task import TASKS_DIR, TaskSpec, available_tasks, load_task

ROBOT_YAML = yaml.safe_load((TASKS_DIR / "robot_sdk.yaml").read_text())


def test_every_shipped_task_loads_and_its_examples_satisfy_its_contract():
    assert {"robot_sdk", "student_2nd_grade"} <= set(available_tasks())
    for name in available_tasks():
        task = load_task(name)
        assert task.name == name
        assert task.examples, f"{name} should show teachers a few examples"
        assert all(task.contract.validate(e["assistant"]).valid for e in task.examples)


def test_a_task_loads_by_path_too(tmp_path):
    path = tmp_path / "mine.yaml"
    # its file stays home; sort_keys=False: argument order is part of the contract (the canonical spelling)
    path.write_text(yaml.safe_dump({k: v for k, v in ROBOT_YAML.items() if k != "holdout"}, sort_keys=False))
    assert load_task(path).contract.api.keys() == load_task("robot_sdk").contract.api.keys()
    assert load_task("robot_sdk").messages("hi") == [
        {"role": "system", "content": load_task("robot_sdk").system},
        {"role": "user", "content": "hi"},
    ]


def test_the_robot_task_prompt_is_seed_001(robot_task):
    assert robot_task.prompt.startswith("A model that acts as a specialized Robotics SDK Translator.")
    assert robot_task.generation.temperature == 0.0


def _edit(change) -> dict:
    data = copy.deepcopy(ROBOT_YAML)
    change(data)
    return data


def _seconds(data) -> dict:
    return data["contract"]["api"]["robot.wait"]["args"]["seconds"]


def _expansion(data, name: str) -> dict:
    return data["contract"]["expansions"][name]


BAD_TASKS = {
    "unknown top-level field": (
        lambda d: d.update(temprature=0.2), "temprature", "unknown field"),
    "unknown generation field": (
        lambda d: d["generation"].update(max_token=10), "generation.max_token", "did you mean 'max_tokens'"),
    "missing contract": (
        lambda d: d.pop("contract"), "contract", "missing required field"),
    "missing prompt": (
        lambda d: d.pop("prompt"), "prompt", "missing required field"),
    "empty system": (
        lambda d: d.update(system="  "), "system", "must not be empty"),
    "unknown contract kind": (
        lambda d: d["contract"].update(kind="python"), "contract.kind", "must be one of"),
    "empty allowlist": (
        lambda d: d["contract"].update(api={}), "contract.api", "non-empty 'api' allowlist"),
    "bad arg type": (
        lambda d: _seconds(d).update(type="number"), "contract.api.robot.wait.args.seconds.type", "must be one of"),
    "unknown arg field": (
        lambda d: _seconds(d).update(maximum=3), "contract.api.robot.wait.args.seconds.maximum", "unknown field"),
    "enum without values": (
        lambda d: d["contract"]["api"]["nav.go_to"]["args"]["place"].pop("values"),
        "contract.api.nav.go_to.args.place.values", "non-empty 'values'"),
    "enum value with a quote": (
        lambda d: d["contract"]["api"]["nav.go_to"]["args"]["place"]["values"].append("kid's room"),
        "contract.api.nav.go_to.args.place.values[16]", "without quotes"),
    "min above max": (
        lambda d: _seconds(d).update(min=10, max=1), "contract.api.robot.wait.args.seconds.min", "greater than max"),
    "float without bounds": (
        lambda d: [_seconds(d).pop("min"), _seconds(d).pop("max")], "contract.api.robot.wait.args.seconds.min",
        "needs both 'min' and 'max'"),
    "bound of the wrong type": (
        lambda d: _seconds(d).update(max="a lot"), "contract.api.robot.wait.args.seconds.max", "must be a number"),
    "zero step": (
        lambda d: _seconds(d).update(step=0), "contract.api.robot.wait.args.seconds.step", "must be positive"),
    "range too fine for a grammar": (
        lambda d: _seconds(d).update(min=0, max=1e12), "contract.api.robot.wait.args.seconds.step", "larger 'step'"),
    "no grid value in range": (
        lambda d: _seconds(d).update(min=0.55, max=0.9), "contract.api.robot.wait.args.seconds.step", "no multiple"),
    "values on a float": (
        lambda d: _seconds(d).update(values=["1"]), "contract.api.robot.wait.args.seconds.values", "only for enum"),
    "bounds on a string": (
        lambda d: d["contract"]["api"]["audio.speak"]["args"]["text"].update(min=1),
        "contract.api.audio.speak.args.text.min", "only for int and float"),
    "args as a list": (
        lambda d: d["contract"]["api"]["robot.wait"].update(args=["seconds"]), "contract.api.robot.wait.args",
        "must be a mapping"),
    "callee that is not a dotted name": (
        lambda d: d["contract"]["api"].update({"os.system('x')": {}}), "contract.api.os.system('x')",
        "dotted ASCII Python identifiers"),
    "keyword as argument name": (
        lambda d: d["contract"]["api"]["robot.wait"]["args"].update({"from": {"type": "bool"}}),
        "contract.api.robot.wait.args.from", "not keywords"),
    "min_calls above max_calls": (
        lambda d: d["contract"].update(min_calls=5, max_calls=2), "contract.min_calls", "min_calls <= max_calls"),
    "example that breaks the contract": (
        lambda d: d["examples"][0].update(assistant='["os.system(\'rm -rf /\')"]'), "examples[0].assistant",
        "unknown_callee"),
    "example with the wrong keys": (
        lambda d: d["examples"][1].update(answer="x"), "examples[1]", "exactly the keys"),
    "example mixing the refusal with an action": (
        lambda d: d["examples"][3].update(assistant='["robot.reject(reason=\'unsafe\')", "nav.dock()"]'),
        "examples[3].assistant", "[exclusive] item 0"),
    "chars with a quote": (
        lambda d: d["contract"]["api"]["arm.pick"]["args"]["name"].update(chars="a-z'"),
        "contract.api.arm.pick.args.name.chars", "not allowed in 'chars'"),
    "chars range over a backslash": (
        lambda d: d["contract"]["api"]["arm.pick"]["args"]["name"].update(chars="A-z"),
        "contract.api.arm.pick.args.name.chars", "must not admit"),
    "chars on a number": (
        lambda d: _seconds(d).update(chars="0-9"), "contract.api.robot.wait.args.seconds.chars", "only for str"),
    "loose match on a number": (
        lambda d: _seconds(d).update(match="loose"), "contract.api.robot.wait.args.seconds.match", "only for str"),
    "unknown match mode": (
        lambda d: d["contract"]["api"]["audio.speak"]["args"]["text"].update(match="fuzzy"),
        "contract.api.audio.speak.args.text.match", "must be one of"),
    "exclusive call with min_calls 2": (
        lambda d: d["contract"].update(min_calls=2), "contract.api.robot.reject.exclusive", "min_calls must be 1"),
    "max_calls below the longest expansion": (
        lambda d: d["contract"].update(max_calls=2), "contract.max_calls", "longest expansion (3 API calls"),
    "expansion to an unknown callee": (
        lambda d: _expansion(d, "go").update(to=["nav.goto(place={place})"]), "contract.expansions.go.to[0]",
        "'nav.goto' is not in the API allowlist"),
    "expansion to another expansion": (
        lambda d: _expansion(d, "pick").update(to=["find(name={name})"]), "contract.expansions.pick.to[0]",
        "'find' is not in the API allowlist"),
    "expansion to the exclusive call": (
        lambda d: _expansion(d, "go").update(to=["robot.reject(reason={place})"]), "contract.expansions.go.to[0]",
        "is exclusive"),
    "expansion without templates": (
        lambda d: _expansion(d, "go").update(to=[]), "contract.expansions.go.to", "at least one"),
    "unknown hole name": (
        lambda d: _expansion(d, "go").update(to=["nav.go_to(place={plac})"]), "contract.expansions.go.to[0]",
        "'plac' is not an argument"),
    "hole with a call in it": (
        lambda d: _expansion(d, "go").update(to=["nav.go_to(place={__import__('os')})"]),
        "contract.expansions.go.to[0]", "the only calls are min(a, b, ...) and max(a, b, ...)"),
    "hole with a method call in it": (
        lambda d: _expansion(d, "go").update(to=["nav.go_to(place={place.upper()})"]),
        "contract.expansions.go.to[0]", "the only calls are min"),
    "hole inside a string": (
        lambda d: _expansion(d, "go").update(to=["audio.speak(text='to {place}')"]), "contract.expansions.go.to[0]",
        "whole value of an argument"),
    "unbalanced hole": (
        lambda d: _expansion(d, "go").update(to=["nav.go_to(place={place)"]), "contract.expansions.go.to[0]",
        "unbalanced"),
    "template that is not a call": (
        lambda d: _expansion(d, "go").update(to=["nav.go_to"]), "contract.expansions.go.to[0]", "must be one call"),
    "like that points nowhere": (
        lambda d: _expansion(d, "go")["args"].update(place={"like": "nav.go_to.where"}),
        "contract.expansions.go.args.place.like", "is not an API argument"),
    "like with its own fields": (
        lambda d: _expansion(d, "go")["args"].update(place={"like": "nav.go_to.place", "type": "enum"}),
        "contract.expansions.go.args.place.like", "not both"),
    "argument without a type": (
        lambda d: _expansion(d, "go")["args"].update(place={"doc": "where"}), "contract.expansions.go.args.place.type",
        "give the argument's 'type'"),
    "argument no template uses": (
        lambda d: _expansion(d, "go")["args"].update(fast={"type": "bool"}), "contract.expansions.go.args.fast",
        "not used by any template"),
    "expansion named like an API call": (
        lambda d: d["contract"]["expansions"].update({"nav.dock": _expansion(d, "go")}),
        "contract.expansions.nav.dock", "name of an API call"),
    "let table missing an enum value": (
        lambda d: _expansion(d, "move")["let"]["direction"].pop("turn_right"), "contract.expansions.move.let.direction",
        "no entry for direction='turn_right'"),
    "let table with a value the enum lacks": (
        lambda d: _expansion(d, "turn")["let"]["direction"].update(up={"yaw": 1.0}),
        "contract.expansions.turn.let.direction.up", "is not one of the values"),
    "let table keyed by a number argument": (
        lambda d: _expansion(d, "walk")["let"].update(meters={"1": {"x": 1}}), "contract.expansions.walk.let.meters",
        "keyed by an enum argument"),
    "let attribute missing for one value": (
        lambda d: _expansion(d, "turn")["let"]["direction"].update(right={"yow": -1.0}),
        "contract.expansions.turn.to[0]",
        "cannot expand turn(direction='right', degrees=45): direction='right' has no 'yaw'"),
    "expansion out of the target's range for one combination": (
        lambda d: _expansion(d, "move")["let"]["speed"]["fast"].update(yaw=3.0), "contract.expansions.move.to[0]",
        "move(direction='turn_left', speed='fast', seconds=0.5) expands to sport.Move(vx=0.0, vy=0.0, vyaw=3.0)"),
    "walk too far for the longest wait": (
        lambda d: _expansion(d, "walk")["args"]["meters"].update(max=20.0), "contract.expansions.walk.to[1]",
        "walk(direction='left', meters=18.5) expands to robot.wait(seconds=61.5)"),
    "division by zero for one combination": (
        lambda d: _expansion(d, "walk")["let"]["direction"]["left"].update(speed=0), "contract.expansions.walk.to[1]",
        "division by zero"),
    "arithmetic that overflows": (
        lambda d: _expansion(d, "turn")["to"].__setitem__(1, "robot.wait(seconds={degrees * 1e308 * 10})"),
        "contract.expansions.turn.to[1]", "gives inf"),
    "text into a number": (
        lambda d: _expansion(d, "turn")["to"].__setitem__(0, "sport.Move(vx=0.0, vy=0.0, vyaw={direction})"),
        "contract.expansions.turn.to[0]", "gives 'left', but sport.Move.vyaw is float"),
    "a place as said into another argument": (
        lambda d: _expansion(d, "go").update(to=["robot.wait(seconds={place})"]), "contract.expansions.go.to[0]",
        "a name as said fills only the enum it names (robot.wait.seconds is another argument)"),
    "a name as said of an argument that is not an enum": (
        lambda d: _expansion(d, "go")["args"].update(place={"names": "perception.find_object.name"}),
        "contract.expansions.go.args.place.names", "is not an enum API argument"),
    "a name as said with a type of its own": (
        lambda d: _expansion(d, "go")["args"].update(place={"names": "nav.go_to.place", "type": "enum"}),
        "contract.expansions.go.args.place.names", "give no 'like' or 'type' with it"),
    "a name as said without the refusal for an unknown one": (
        lambda d: _expansion(d, "go").pop("unresolved"), "contract.expansions.go.unresolved", "needs 'unresolved'"),
    "a refusal for unknown names that is not exclusive": (
        lambda d: _expansion(d, "go").update(unresolved="nav.dock()"), "contract.expansions.go.unresolved",
        "must be one exclusive API call"),
    "a refusal for unknown names without a name as said": (
        lambda d: _expansion(d, "find").update(unresolved="robot.reject(reason='unknown_place')"),
        "contract.expansions.find.unresolved", "only for expansions with a 'names' argument"),
    "an alias that names two places": (
        lambda d: d["contract"]["api"]["nav.go_to"]["args"]["place"]["aliases"].update(kitchen=["the Lounge"]),
        "contract.api.nav.go_to.args.place.aliases.kitchen", "also names 'living_room'"),
    "an alias of a value the enum lacks": (
        lambda d: d["contract"]["api"]["nav.go_to"]["args"]["place"]["aliases"].update(attic=["loft"]),
        "contract.api.nav.go_to.args.place.aliases.attic", "is not one of the values"),
    "open-vocabulary name into a narrower string": (
        lambda d: _expansion(d, "find")["args"].update(name={"type": "str", "max_len": 60}),
        "contract.expansions.find.to[0]", "a str argument may only fill a str argument that admits all its values"),
}


@pytest.mark.parametrize("case", sorted(BAD_TASKS))
def test_a_bad_task_yaml_fails_naming_the_file_and_the_field(tmp_path, case):
    change, field_path, problem = BAD_TASKS[case]
    path = tmp_path / "bad_task.yaml"
    path.write_text(yaml.safe_dump(_edit(change), sort_keys=False))
    with pytest.raises(ConfigError) as caught:
        load_task(path)
    error = caught.value
    assert error.source == str(path)
    assert error.field == field_path
    assert problem in error.problem
    assert str(error).startswith(f"{path}: {field_path}: ")


@pytest.mark.parametrize(
    ("text", "problem"),
    [("name: [unclosed\n", "not valid YAML"), ("- a list\n", "must be a YAML mapping"), (None, "file not found")],
)
def test_unreadable_task_files_name_the_file(tmp_path, text, problem):
    path = tmp_path / "task.yaml"
    if text is not None:
        path.write_text(text)
    with pytest.raises(ConfigError, match=problem) as caught:
        load_task(path)
    assert str(path) in str(caught.value)


def test_an_unknown_task_name_lists_the_available_ones():
    with pytest.raises(ConfigError, match=f"no such task; available: {', '.join(available_tasks())}"):
        load_task("robot_sdkk")


# ------------------------------------------------------------------------------------------------ typed configs
@dataclass
class Lora:
    r: int = 8  #: rank
    alpha: float = 16.0
    targets: list[str] = field(default_factory=lambda: ["q_proj"])


@dataclass
class StageConfig:
    lr: float = 2e-4
    epochs: int = 1
    run: str = "default"
    precision: Literal["fp32", "bf16"] = "fp32"
    output: Path | None = None
    packing: bool = False
    lora: Lora = field(default_factory=Lora)


def test_config_loads_from_yaml_with_overrides_winning(tmp_path):
    path = tmp_path / "stage.yaml"
    path.write_text("lr: 1e-4\nepochs: 3\nlora:\n  r: 4\n  targets: [q_proj, v_proj]\n")
    config = load(StageConfig, path, ["epochs=5", "lora.alpha=8", "output=out/x", "packing=yes", "precision=bf16"])
    assert config == StageConfig(
        lr=1e-4, epochs=5, precision="bf16", output=Path("out/x"), packing=True,
        lora=Lora(r=4, alpha=8.0, targets=["q_proj", "v_proj"]),
    )
    assert to_dict(config)["output"] == "out/x"
    assert from_dict(StageConfig, to_dict(config)) == config


def test_config_without_a_file_uses_defaults_and_overrides():
    assert load(StageConfig) == StageConfig()
    assert load(StageConfig, None, ["lora.r=32"]).lora.r == 32


@pytest.mark.parametrize(
    ("override", "field_path", "problem"),
    [
        ("lora.r=sixteen", "lora.r", "must be an integer"),
        ("lr=fast", "lr", "must be a number"),
        ("epochs=1.5", "epochs", "must be an integer"),
        ("packing=maybe", "packing", "must be true or false"),
        ("precision=fp8", "precision", "must be one of ['fp32', 'bf16']"),
        ("lora=4", "lora", "must be a mapping"),
        ("lora.targets=q_proj", "lora.targets", "must be a list"),
    ],
)
def test_a_wrong_typed_override_names_the_field_and_the_command_line(tmp_path, override, field_path, problem):
    path = tmp_path / "stage.yaml"
    path.write_text("epochs: 2\n")
    with pytest.raises(ConfigError) as caught:
        load(StageConfig, path, [override])
    assert caught.value.field == field_path
    assert problem in caught.value.problem
    assert caught.value.source == f"command line (over {path})"


def test_a_wrong_typed_file_value_names_the_file(tmp_path):
    path = tmp_path / "stage.yaml"
    path.write_text("lora:\n  r: big\n")
    with pytest.raises(ConfigError, match=f"^{path}: lora.r: must be an integer"):
        load(StageConfig, path, ["epochs=2"])


def test_an_unknown_override_suggests_the_field():
    with pytest.raises(ConfigError, match=r"lora\.rr: unknown field \(did you mean 'r'\?\)"):
        load(StageConfig, None, ["lora.rr=4"])


@pytest.mark.parametrize(
    ("pairs", "problem"),
    [(["epochs"], "key=value"), (["lora=1", "lora.r=2"], "also set to a value"), (["lr=[1"], "not valid YAML")],
)
def test_malformed_overrides_are_config_errors(pairs, problem):
    with pytest.raises(ConfigError, match=problem):
        parse_overrides(pairs)


def test_overrides_parse_yaml_scalars():
    assert parse_overrides(["a.b=1", "a.c=[1, 2]", "d=", "e=x=y", "f=true"]) == {
        "a": {"b": 1, "c": [1, 2]}, "d": "", "e": "x=y", "f": True,
    }


def test_task_spec_is_a_typed_config_too():
    with pytest.raises(ConfigError, match="^<config>: contract: missing required field"):
        from_dict(TaskSpec, {"name": "x", "prompt": "p", "system": "s"})


def test_a_string_for_a_list_says_how_to_write_the_list_with_its_dotted_name():
    with pytest.raises(ConfigError) as caught:
        load(StageConfig, None, ["lora.targets=q_proj"])
    assert "lora.targets=[q_proj]" in caught.value.problem
