"""Expansions: compact calls a model emits that the contract expands, deterministically, into allowlisted SDK calls.

A small model learns "direction + speed word + seconds" far more easily than the table of velocity numbers those
words stand for; code does that arithmetic exactly. Each template of an expansion is one API call whose ``{...}``
holes are whole argument values, computed from the compact call's arguments and its ``let`` tables by the tiny
evaluator below (names, ``a.b``, numbers, ``+ - * /``, parentheses and ``min(...)`` / ``max(...)``, which clamp a
said speed to an axis's bound; it never calls ``eval``). A number is snapped to the target argument's grid; the
call is then judged by the contract's ordinary API validator, so an expansion can never produce a call the robot
must refuse.
"""

from __future__ import annotations

import ast
import itertools
import math
import operator
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Iterator, Mapping

if TYPE_CHECKING:
    from edgetune.contract import ArgSpec, CallSpec

#: per enum argument, per value, named numbers: ``let[direction][forward][x] == 1.0``
Let = Mapping[str, Mapping[str, Mapping[str, float]]]

_HOLE = re.compile(r"\{([^{}]*)\}")
_SLOT = "__hole{}__"
_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}
_FUNCTIONS = {"min": min, "max": max}
_MAX_COMBINATIONS = 100_000  #: argument combinations ``check`` expands to prove every grammar answer expands


class ExpansionError(ValueError):
    """An expansion that cannot be built or applied; ``field`` is where in the declaration (e.g. ``to[1]``)."""

    def __init__(self, field: str, problem: str):
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}" if field else problem)


class UnknownName(ExpansionError):
    """A name as said that is none of its enum's values: the answer is then the expansion's ``unresolved`` refusal."""


@dataclass(frozen=True)
class Hole:
    """One ``{...}`` of a template: its expression and the API argument it fills."""

    text: str
    tree: ast.expr
    callee: str
    arg: str


@dataclass(frozen=True)
class Template:
    """One templated API call: literal text around the holes (``len(parts) == len(holes) + 1``)."""

    callee: str
    parts: tuple[str, ...]
    holes: tuple[Hole, ...]


def _check_expression(text: str, field: str, args: Mapping[str, "ArgSpec"], let: Let) -> ast.expr:
    try:
        tree = ast.parse(text.strip(), mode="eval").body
    except SyntaxError as exc:
        raise ExpansionError(field, f"hole {{{text}}} is not an expression: {exc.msg}") from None
    functions = _function_names(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            continue
        if isinstance(node, ast.Call):
            if not (isinstance(node.func, ast.Name) and node.func.id in _FUNCTIONS and len(node.args) >= 2
                    and not node.keywords):
                raise ExpansionError(field, f"hole {{{text}}}: the only calls are min(a, b, ...) and max(a, b, ...)")
            continue
        if id(node) in functions:  # the name of min or max
            continue
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            continue
        if isinstance(node, ast.Constant) and type(node.value) in (int, float):
            continue
        if isinstance(node, (ast.operator, ast.unaryop, ast.Load)):
            continue
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            if node.value.id not in let:
                raise ExpansionError(field, f"hole {{{text}}}: '{node.value.id}' has no 'let' table")
            continue
        if isinstance(node, ast.Name):
            if node.id not in args:
                raise ExpansionError(field, f"hole {{{text}}}: '{node.id}' is not an argument of this expansion")
            continue
        raise ExpansionError(
            field, f"hole {{{text}}}: only argument names, let.attribute, numbers, + - * /, parentheses, min and "
                   "max are allowed"
        )
    return tree


def compile_template(text: str, field: str, args: Mapping[str, "ArgSpec"], let: Let,
                     api: Mapping[str, "CallSpec"]) -> Template:
    """Parse ``"robot.wait(seconds={meters / direction.speed})"`` once; ExpansionError names what is wrong."""
    holes_text = _HOLE.findall(text)
    parts = tuple(_HOLE.split(text)[::2])
    if any("{" in part or "}" in part for part in parts):
        raise ExpansionError(field, f"{text!r}: unbalanced '{{' or '}}'; holes look like {{name}} or {{a.b * 2}}")
    slotted = "".join(part + (_SLOT.format(i) if i < len(holes_text) else "") for i, part in enumerate(parts))
    try:
        call = ast.parse(slotted.strip(), mode="eval").body
    except SyntaxError as exc:
        raise ExpansionError(field, f"{text!r} is not one call expression: {exc.msg}") from None
    callee = dotted_name(call.func) if isinstance(call, ast.Call) else None
    if callee is None:
        raise ExpansionError(field, f"{text!r} must be one call of the API, like nav.go_to(place={{place}})")
    spec = api.get(callee)
    if spec is None:
        raise ExpansionError(field, f"'{callee}' is not in the API allowlist (templates expand to API calls only)")
    if spec.exclusive:
        raise ExpansionError(field, f"'{callee}' is exclusive (alone in its answer); an expansion cannot produce it")
    names = list(spec.args)
    filled: dict[str, str] = {}  # slot -> API argument it is the whole value of
    for pos, value in enumerate(call.args):
        if isinstance(value, ast.Name) and pos < len(names):
            filled[value.id] = names[pos]
    for kw in call.keywords:
        if isinstance(kw.value, ast.Name) and kw.arg is not None:
            filled[kw.value.id] = kw.arg
    holes = []
    for i, hole_text in enumerate(holes_text):
        target = filled.get(_SLOT.format(i))
        if target is None or target not in spec.args:
            raise ExpansionError(field, f"hole {{{hole_text}}} must be the whole value of an argument of {callee}")
        holes.append(Hole(hole_text, _check_expression(hole_text, field, args, let), callee, target))
    return Template(callee, parts, tuple(holes))


def evaluate(node: ast.expr, values: Mapping[str, object], let: Let) -> object:
    """The value of a checked hole expression: arithmetic on numbers, or an argument's value as it is."""
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        return values[node.id]
    if isinstance(node, ast.Attribute):
        assert isinstance(node.value, ast.Name)
        table = let[node.value.id].get(str(values[node.value.id]), {})
        if node.attr not in table:
            raise ExpansionError("let", f"{node.value.id}={values[node.value.id]!r} has no '{node.attr}'")
        return table[node.attr]
    if isinstance(node, ast.Call):
        assert isinstance(node.func, ast.Name)
        return _FUNCTIONS[node.func.id](*(_number(evaluate(arg, values, let)) for arg in node.args))
    if isinstance(node, ast.UnaryOp):
        return -_number(evaluate(node.operand, values, let)) if isinstance(node.op, ast.USub) else \
            _number(evaluate(node.operand, values, let))
    assert isinstance(node, ast.BinOp)
    left, right = _number(evaluate(node.left, values, let)), _number(evaluate(node.right, values, let))
    if isinstance(node.op, ast.Div) and right == 0:
        raise ExpansionError("", "division by zero")
    return _OPS[type(node.op)](left, right)


def _number(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ExpansionError("", f"arithmetic needs numbers, got {value!r}")
    return value


@dataclass
class Expander:
    """One declared expansion with its argument specs resolved and its templates compiled.

    ``said``: the arguments that name an enum value as said (``names: nav.go_to.place``), with that enum: the model
    copies the name from the command and ``ArgSpec.resolve`` maps it to the value (aliases, spelling).
    """

    name: str
    args: dict[str, "ArgSpec"]
    let: Let
    templates: list[Template]
    said: dict[str, "ArgSpec"] = field(default_factory=dict)

    def expand(self, values: Mapping[str, object], api: Mapping[str, "CallSpec"]) -> list[str]:
        """The API call texts for one compact call's argument values (numbers snapped, not yet validated); names
        as said are resolved first (UnknownName when one names none of its enum's values)."""
        resolved = dict(values)
        for name, enum in self.said.items():
            value = enum.resolve(str(values[name]))
            if value is None:
                raise UnknownName(f"args.{name}", f"{values[name]!r} is none of {enum.values}")
            resolved[name] = value
        return [self._render(template, resolved, api) for template in self.templates]

    def _render(self, template: Template, values: Mapping[str, object], api: Mapping[str, "CallSpec"]) -> str:
        from edgetune.contract import format_value

        out = [template.parts[0]]
        for hole, part in zip(template.holes, template.parts[1:]):
            value = evaluate(hole.tree, values, self.let)
            target = api[hole.callee].args[hole.arg]
            numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
            if numeric and not math.isfinite(value):
                raise ExpansionError("", f"hole {{{hole.text}}} gives {value!r}")
            if numeric != (target.type in ("int", "float")):
                raise ExpansionError("", f"hole {{{hole.text}}} gives {value!r}, but {hole.callee}.{hole.arg} "
                                         f"is {target.type}")
            out += [format_value(target.snap(value) if numeric else value), part]
        return "".join(out).strip()

    def check(self, api: Mapping[str, "CallSpec"], refuse: Callable[[str], str | None]) -> Iterator[tuple[str, str]]:
        """Problems with this expansion. Every combination of the enum values and grid numbers a template uses must
        render to a call ``refuse`` accepts (``refuse(call)`` says why the API refuses it, or returns None): then
        every compact call the grammar admits expands to valid API calls."""
        used = [{name for h in t.holes for name in argument_names(h.tree)} for t in self.templates]
        for name in self.args:
            if not any(name in names for names in used):
                yield f"args.{name}", "is not used by any template in 'to'"
        for name, table in self.let.items():
            arg = self.args.get(name)
            if arg is None or arg.type != "enum":
                yield f"let.{name}", "'let' tables are keyed by an enum argument of this expansion"
                continue
            for value in table:
                if value not in arg.values:
                    yield f"let.{name}.{value}", f"is not one of the values of '{name}': {arg.values}"
            for value in arg.values:
                if value not in table:
                    yield f"let.{name}", f"has no entry for {name}={value!r}"
        choices = {name: list(self.said[name].values) if name in self.said else _choices(arg)
                   for name, arg in self.args.items()}
        first = {name: options[0] for name, options in choices.items()}
        for i, template in enumerate(self.templates):
            for hole in template.holes:
                if isinstance(hole.tree, ast.Name) and hole.tree.id in self.said:
                    if api[hole.callee].args[hole.arg] is not self.said[hole.tree.id]:
                        yield f"to[{i}]", (f"hole {{{hole.text}}}: a name as said fills only the enum it names "
                                           f"({hole.callee}.{hole.arg} is another argument)")
                elif isinstance(hole.tree, ast.Name) and self.args[hole.tree.id].type == "str":
                    source, target = self.args[hole.tree.id], api[hole.callee].args[hole.arg]
                    if target.type != "str" or not source.charset() <= target.charset() \
                            or source.max_len > target.max_len:
                        yield f"to[{i}]", (f"hole {{{hole.text}}}: a str argument may only fill a str argument that "
                                           f"admits all its values ({hole.callee}.{hole.arg} does not)")
            names = [name for name in self.args if name in used[i]]
            total = 1
            for name in names:
                total *= len(choices[name])
            if total > _MAX_COMBINATIONS:
                yield f"to[{i}]", f"{total} argument combinations to check (at most {_MAX_COMBINATIONS}); use coarser grids"
                continue
            refused: dict[str, str | None] = {}
            for combination in itertools.product(*(choices[name] for name in names)):
                values = {**first, **dict(zip(names, combination))}
                try:
                    call = self._render(template, values, api)
                except ExpansionError as exc:
                    yield f"to[{i}]", f"cannot expand {_show(self.name, values)}: {exc.problem}"
                    break
                if call not in refused:
                    refused[call] = refuse(call)
                if refused[call]:
                    yield f"to[{i}]", f"{_show(self.name, values)} expands to {call}, which the API refuses: " \
                                      f"{refused[call]}"
                    break


def argument_names(tree: ast.expr) -> set[str]:
    """The argument names a hole expression reads (``let`` table keys included; not min or max)."""
    functions = _function_names(tree)
    return {node.id for node in ast.walk(tree) if isinstance(node, ast.Name) and id(node) not in functions}


def _function_names(tree: ast.expr) -> set[int]:
    """``id()`` of the nodes that name a called function (min, max), which are not argument names."""
    return {id(node.func) for node in ast.walk(tree) if isinstance(node, ast.Call)}


def _choices(arg: "ArgSpec") -> list[object]:
    if arg.type == "enum":
        return list(arg.values)
    if arg.type == "bool":
        return [True, False]
    if arg.type == "str":
        return [min(arg.charset())]
    return list(arg.grid())


def _show(name: str, values: Mapping[str, object]) -> str:
    return f"{name}({', '.join(f'{k}={v!r}' for k, v in values.items())})"


def dotted_name(node: ast.expr) -> str | None:
    """``a.b.c`` of a Name/Attribute chain, None for anything else."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    parts.append(node.id)
    return ".".join(reversed(parts))
