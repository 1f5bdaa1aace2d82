"""The output contract: what a valid answer is, declared once, with validator, grammar and scorer derived from it.

For the robot task a valid answer is a safety property: a JSON list of strings, each one Python call expression
to an allowlisted robot API with arguments of the declared type and range. Answers are parsed with ``ast`` and
checked; they are never executed. The GBNF grammar admits only answers the validator accepts, so llama.cpp's
constrained decoding cannot produce a call the robot must refuse.
"""

from __future__ import annotations

import ast
import difflib
import json
import keyword
import math
import re
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Iterator, Literal, Sequence

#: Characters allowed inside free-text string arguments: safe inside both a JSON string and a Python literal.
TEXT_CHARS = "a-zA-Z0-9 ,.!?-"
_TEXT_RE = re.compile(f"[{TEXT_CHARS}]*")
_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_MAX_GRID = 1000
_FORBIDDEN_BUILTINS = {"__import__", "eval", "exec", "compile", "getattr", "setattr", "open", "globals", "vars"}


@dataclass
class ArgSpec:
    """One argument of an allowlisted call."""

    type: Literal["str", "int", "float", "bool", "enum"]
    values: list[str] = field(default_factory=list)  #: allowed values of an ``enum`` argument
    min: float | None = None  #: inclusive lower bound of an ``int``/``float`` argument
    max: float | None = None  #: inclusive upper bound of an ``int``/``float`` argument
    step: float | None = None  #: grid the grammar enumerates for numbers (default 1 for int, 0.1 for float)
    max_len: int = 120  #: longest ``str`` value
    doc: str = ""

    def check(self) -> Iterator[tuple[str, str]]:
        if self.type == "enum":
            if not self.values:
                yield "values", "an enum argument needs a non-empty 'values' list"
            for i, v in enumerate(self.values):
                if not v or not v.isprintable() or set(v) & set("'\"\\"):
                    yield f"values[{i}]", f"enum value {v!r} must be non-empty, printable, without quotes or backslashes"
        elif self.values:
            yield "values", f"'values' is only for enum arguments, not {self.type}"
        if self.step is not None and self.step <= 0:
            yield "step", "must be positive"
        elif self.type in ("int", "float"):
            if self.min is None or self.max is None:
                yield "min", f"a {self.type} argument needs both 'min' and 'max' (robot arguments are bounded)"
            elif self.min > self.max:
                yield "min", f"min ({self.min}) is greater than max ({self.max})"
            elif (self.max - self.min) / self._step() >= _MAX_GRID:
                yield "step", f"the range holds more than {_MAX_GRID} grammar values; set a larger 'step'"
            elif not self.grid():
                yield "step", f"no multiple of the step lies in [{self.min}, {self.max}]; widen the range or change 'step'"
        if self.type not in ("int", "float") and (self.min is not None or self.max is not None):
            yield "min", f"'min'/'max' are only for int and float arguments, not {self.type}"
        if self.max_len < 1:
            yield "max_len", "must be at least 1"

    def _step(self) -> float:
        if self.type == "int":
            return max(1, int(self.step or 1))
        return self.step or 0.1

    def grid(self) -> list[int | float]:
        """The numeric values the grammar admits: multiples of ``step`` inside [min, max]."""
        assert self.min is not None and self.max is not None
        step = self._step()
        if self.type == "int":
            return list(range(math.ceil(self.min), math.floor(self.max) + 1, int(step)))
        start = math.ceil(round(self.min / step, 9))
        stop = math.floor(round(self.max / step, 9))
        # rounding to the canonical 6 decimals may step outside the range or merge neighbours: keep what is valid
        values = (round(k * step, 6) + 0.0 for k in range(start, stop + 1))
        return sorted({v for v in values if self.min <= v <= self.max})


@dataclass
class CallSpec:
    """One allowlisted call; ``args`` are in positional order."""

    doc: str = ""
    args: dict[str, ArgSpec] = field(default_factory=dict)


@dataclass
class Violation:
    """Why an answer is not valid, and where: item index in the list and column inside that item."""

    code: str
    message: str
    index: int | None = None
    col: int | None = None

    def __str__(self) -> str:
        parts = ([] if self.index is None else [f"item {self.index}"]) + ([] if self.col is None else [f"col {self.col}"])
        where = ", ".join(parts)
        return f"[{self.code}] {where + ': ' if where else ''}{self.message}"


@dataclass
class Verdict:
    """The contract's judgement of one answer; ``calls`` holds the normalised calls (empty for text tasks)."""

    valid: bool
    violations: list[Violation] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)
    normalized: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Score:
    """Task metrics over a set of answers."""

    n: int
    exact_match: float
    valid_rate: float
    precision: float
    recall: float
    f1: float

    def to_dict(self) -> dict:
        return asdict(self)


def format_value(value: object) -> str:
    """Canonical Python literal of an argument value (what normalisation compares)."""
    if isinstance(value, bool):
        return repr(value)
    if isinstance(value, float):
        return repr(round(value, 6) + 0.0)
    return repr(value)


def _dotted(node: ast.expr) -> str | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    parts.append(node.id)
    return ".".join(reversed(parts))


def _literal(node: ast.expr) -> tuple[bool, object]:
    if isinstance(node, ast.Constant) and isinstance(node.value, (str, int, float, bool)):
        return True, node.value
    if (
        isinstance(node, ast.UnaryOp)
        and isinstance(node.op, (ast.USub, ast.UAdd))
        and isinstance(node.operand, ast.Constant)
        and isinstance(node.operand.value, (int, float))
        and not isinstance(node.operand.value, bool)
    ):
        v = node.operand.value
        return True, -v if isinstance(node.op, ast.USub) else v
    return False, None


def _collapse(text: str) -> str:
    return " ".join(text.split())


@dataclass
class ContractSpec:
    """What a valid answer is. ``call_list``: a JSON list of allowlisted calls. ``text``: bounded plain text."""

    kind: Literal["call_list", "text"]
    api: dict[str, CallSpec] = field(default_factory=dict)  #: allowlist, dotted callee -> its arguments
    min_calls: int = 1
    max_calls: int = 12
    min_chars: int = 1  #: text answers: shortest length
    max_chars: int = 2000  #: text answers: longest length
    forbidden: list[str] = field(default_factory=list)  #: text answers: substrings that make them invalid

    def check(self) -> Iterator[tuple[str, str]]:
        if self.kind == "call_list":
            if not self.api:
                yield "api", "a call_list contract needs a non-empty 'api' allowlist"
            for name, call in self.api.items():
                if not all(_is_name(part) for part in name.split(".")):
                    yield f"api.{name}", "callee names are dotted ASCII Python identifiers (not keywords), e.g. nav.go_to"
                for arg_name, arg in call.args.items():
                    if not _is_name(arg_name):
                        yield f"api.{name}.args.{arg_name}", "argument names must be ASCII Python identifiers, not keywords"
                    for sub, problem in arg.check():
                        yield f"api.{name}.args.{arg_name}.{sub}", problem
            if not 1 <= self.min_calls <= self.max_calls:
                yield "min_calls", "need 1 <= min_calls <= max_calls"
        elif self.api:
            yield "api", "'api' is only for call_list contracts"
        if not 0 <= self.min_chars <= self.max_chars:
            yield "min_chars", "need 0 <= min_chars <= max_chars"

    # ----------------------------------------------------------------------------------------------- validator
    def validate(self, text: str) -> Verdict:
        """Judge one answer. Never executes anything: call answers are parsed with ``ast`` only."""
        if self.kind == "text":
            return self._validate_text(text)
        violations: list[Violation] = []
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            v = Violation("not_json", f"the answer is not a JSON list of strings: {exc.msg}", None, exc.pos)
            return Verdict(False, [v], [], _collapse(text))
        except RecursionError:
            v = Violation("not_json", "the answer is not a JSON list of strings: nested too deeply", None, 0)
            return Verdict(False, [v], [], _collapse(text))
        if not isinstance(data, list):
            v = Violation("not_list", f"the answer must be a JSON list of strings, got {type(data).__name__}", None, 0)
            return Verdict(False, [v], [], _collapse(text))
        if not self.min_calls <= len(data) <= self.max_calls:
            first_extra = self.max_calls if len(data) > self.max_calls else None
            msg = f"{len(data)} calls; between {self.min_calls} and {self.max_calls} allowed"
            violations.append(Violation("call_count", msg, first_extra))
        calls = []
        max_chars = self.max_item_chars()
        for index, item in enumerate(data):
            if not isinstance(item, str):
                violations.append(Violation("not_string", f"each item must be a string, got {item!r}", index, 0))
                calls.append(_collapse(json.dumps(item)))
            elif len(item) > max_chars:
                msg = f"{len(item)} characters; no allowlisted call is longer than {max_chars}"
                violations.append(Violation("too_long", msg, index, max_chars))
                calls.append(_collapse(item))
            else:
                calls.append(self._check_call(item, index, violations))
        return Verdict(not violations, violations, calls, json.dumps(calls))

    def max_item_chars(self) -> int:
        """Longest call text worth parsing: twice the longest canonical call plus slack for spacing.

        Bounding items keeps a hostile answer (deeply nested brackets or operators) from exhausting the parser.
        """
        longest = max(
            (len(callee) + 2 + sum(len(name) + 3 + _value_width(arg) for name, arg in spec.args.items())
             for callee, spec in self.api.items()),
            default=0,
        )
        return 2 * longest + 64

    def _check_call(self, item: str, index: int, out: list[Violation]) -> str:
        """Check one call expression; append violations; return its normalised form (columns index ``item``)."""
        raw = _collapse(item)
        indent = len(item) - len(item.lstrip())
        try:
            tree = ast.parse(item.strip(), mode="eval")
        except SyntaxError as exc:
            col = indent + (exc.offset or 1) - 1
            out.append(Violation("syntax", f"not a single Python expression: {exc.msg}", index, col))
            return raw
        except (ValueError, RecursionError, MemoryError) as exc:
            # NUL bytes (ValueError before Python 3.12) or nesting beyond the parser's limits
            out.append(Violation("syntax", f"not a single Python expression: {exc or 'nested too deeply'}", index, 0))
            return raw
        source = item.strip().encode("utf-8")

        def at(byte_col: int) -> int:  # ast columns count UTF-8 bytes; report characters of ``item``
            return indent + len(source[:byte_col].decode("utf-8", errors="ignore"))

        node = tree.body
        if not isinstance(node, ast.Call):
            what = type(node).__name__
            out.append(Violation("not_a_call", f"each item must be one call, got a {what} expression", index, indent))
            return raw
        callee = _dotted(node.func)
        if callee is None:
            what = type(node.func).__name__
            msg = f"the callee must be an allowlisted name like nav.go_to, got a {what}"
            out.append(Violation("bad_callee", msg, index, at(node.func.col_offset)))
            return raw
        spec = self.api.get(callee)
        if spec is None:
            head = callee.split(".")[0]
            if callee in _FORBIDDEN_BUILTINS or head in _FORBIDDEN_BUILTINS:
                msg = f"'{callee}' is forbidden; only the allowlisted robot API may be called"
                out.append(Violation("forbidden", msg, index, at(node.func.col_offset)))
            elif any(name.split(".")[0] == head for name in self.api):
                msg = f"'{callee}' is an attribute outside the allowlist{_hint(callee, self.api)}"
                out.append(Violation("unknown_attribute", msg, index, at(node.func.col_offset)))
            else:
                msg = f"'{callee}' is not in the allowlist{_hint(callee, self.api)}"
                out.append(Violation("unknown_callee", msg, index, at(node.func.col_offset)))
            return raw
        names = list(spec.args)
        given: dict[str, object] = {}  # arguments with a valid value
        named: set[str] = set()  # arguments mentioned at all, valid or not
        unpacked = False  # after *args/**kwargs no argument can be called missing
        ok = True

        def bad(code: str, msg: str, col: int | None) -> None:
            nonlocal ok
            ok = False
            out.append(Violation(code, f"{callee}: {msg}", index, None if col is None else at(col)))

        for pos, arg in enumerate(node.args):
            if isinstance(arg, ast.Starred):
                bad("unpacking", "*args unpacking is not allowed", arg.col_offset)
                unpacked = True
                continue
            if pos >= len(names):
                bad("extra_argument", f"takes {len(names)} positional argument(s), got {len(node.args)}", arg.col_offset)
                continue
            named.add(names[pos])
            self._check_value(callee, names[pos], spec.args[names[pos]], arg, given, bad)
        for kw in node.keywords:
            if kw.arg is None:
                bad("unpacking", "**kwargs unpacking is not allowed", kw.col_offset)
                unpacked = True
            elif kw.arg not in spec.args:
                bad("unknown_argument", f"unknown argument '{kw.arg}'{_hint(kw.arg, spec.args)}", kw.col_offset)
            elif kw.arg in named:
                bad("duplicate_argument", f"argument '{kw.arg}' given twice", kw.col_offset)
            else:
                named.add(kw.arg)
                self._check_value(callee, kw.arg, spec.args[kw.arg], kw.value, given, bad)
        for name in names:
            if name not in named and not unpacked:
                bad("missing_argument", f"missing argument '{name}'", (node.end_col_offset or 1) - 1)
        if not ok:
            return raw
        return f"{callee}({', '.join(f'{n}={format_value(given[n])}' for n in names)})"

    @staticmethod
    def _check_value(callee: str, name: str, arg: ArgSpec, node: ast.expr, given: dict, bad) -> None:
        is_literal, value = _literal(node)
        col = node.col_offset
        if not is_literal:
            bad("not_literal", f"argument '{name}' must be a literal value, got a {type(node).__name__}", col)
            return
        if arg.type in ("str", "enum"):
            if not isinstance(value, str):
                bad("wrong_type", f"argument '{name}' must be a string, got {value!r}", col)
            elif arg.type == "enum" and value not in arg.values:
                bad("not_in_enum", f"argument '{name}'={value!r} is not one of {arg.values}", col)
            elif arg.type == "str" and (len(value) > arg.max_len or not _TEXT_RE.fullmatch(value) or not value):
                bad("bad_value", f"argument '{name}' must be 1-{arg.max_len} characters of [{TEXT_CHARS}]", col)
            else:
                given[name] = value
            return
        if arg.type == "bool":
            if not isinstance(value, bool):
                bad("wrong_type", f"argument '{name}' must be True or False, got {value!r}", col)
            else:
                given[name] = value
            return
        numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not numeric or (arg.type == "int" and not isinstance(value, int)) or not math.isfinite(value):
            bad("wrong_type", f"argument '{name}' must be {'an int' if arg.type == 'int' else 'a number'}, got {value!r}", col)
            return
        assert arg.min is not None and arg.max is not None
        if not arg.min <= value <= arg.max:
            bad("out_of_range", f"argument '{name}'={value!r} is outside [{arg.min}, {arg.max}]", col)
            return
        given[name] = float(value) if arg.type == "float" else value

    def _validate_text(self, text: str) -> Verdict:
        violations = []
        stripped = text.strip()
        if not self.min_chars <= len(stripped) <= self.max_chars:
            violations.append(
                Violation("length", f"{len(stripped)} characters; between {self.min_chars} and {self.max_chars} allowed")
            )
        lowered = stripped.casefold()
        for word in self.forbidden:
            if word.casefold() in lowered:
                violations.append(Violation("forbidden", f"contains the forbidden text {word!r}", None, lowered.index(word.casefold())))
        return Verdict(not violations, violations, [], _collapse(stripped).casefold())

    # ------------------------------------------------------------------------------------------------- grammar
    def grammar(self) -> str | None:
        """A GBNF grammar for llama.cpp admitting only valid answers (None: text tasks are unconstrained)."""
        if self.kind == "text":
            return None
        rules: dict[str, str] = {}

        def claim(name: str) -> str:  # distinct callees/arguments can map to one rule name (a.b_c vs a.b.c)
            unique, n = name, 1
            while unique in rules:
                n += 1
                unique = f"{name}-{n}"
            rules[unique] = ""
            return unique

        call_rules = []
        for callee, spec in self.api.items():
            rule = claim("call-" + _rule_name(callee))
            parts = [_gbnf_literal(f"{callee}(")]
            for i, (arg_name, arg) in enumerate(spec.args.items()):
                value_rule = claim(f"{rule}-{_rule_name(arg_name)}")
                rules[value_rule] = _gbnf_value(arg)
                parts.append(_gbnf_literal(f"{', ' if i else ''}{arg_name}="))
                parts.append(value_rule)
            parts.append(_gbnf_literal(")"))
            rules[rule] = " ".join(parts)
            call_rules.append(rule)
        more = self.max_calls - 1
        head = [
            f'root ::= "[" ws item ("," ws item){{{self.min_calls - 1},{more}}} ws "]"',
            'ws ::= [ \\n]{0,2}',
            'item ::= "\\"" call "\\""',
            "call ::= " + " | ".join(call_rules),
        ]
        return "\n".join(head + [f"{name} ::= {body}" for name, body in rules.items()]) + "\n"

    # ------------------------------------------------------------------------------------------------- scoring
    def score(self, predictions: Sequence[str], references: Sequence[str]) -> Score:
        """Exact match after normalisation, micro precision/recall/F1 over calls (tokens for text), valid rate."""
        if len(predictions) != len(references):
            raise ValueError(f"Expected as many predictions as references, got {len(predictions)} and {len(references)}")
        n = len(predictions)
        exact = valid = hit = n_pred = n_ref = 0
        for pred, ref in zip(predictions, references):
            verdict, expected = self.validate(pred), self.validate(ref)
            valid += verdict.valid
            if self.kind == "text":
                got, want = verdict.normalized.split(), expected.normalized.split()
            else:
                got, want = verdict.calls, expected.calls
            exact += verdict.valid and got == want
            hit += sum((Counter(got) & Counter(want)).values())
            n_pred += len(got)
            n_ref += len(want)
        precision = hit / n_pred if n_pred else 0.0
        recall = hit / n_ref if n_ref else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        return Score(n, exact / n if n else 0.0, valid / n if n else 0.0, precision, recall, f1)

    def describe(self) -> str:
        """A compact, human-readable list of the allowlist (for teacher prompts and docs)."""
        lines = []
        for callee, spec in self.api.items():
            args = []
            for name, arg in spec.args.items():
                if arg.type == "enum":
                    args.append(f"{name}: one of {', '.join(arg.values)}")
                elif arg.type in ("int", "float"):
                    args.append(f"{name}: {arg.type} in [{arg.min}, {arg.max}]")
                else:
                    args.append(f"{name}: {arg.type}")
            lines.append(f"- {callee}({'; '.join(args)})" + (f"  # {spec.doc}" if spec.doc else ""))
        return "\n".join(lines)


def _is_name(text: str) -> bool:
    """An ASCII identifier Python parses as a name (keywords such as ``from`` or ``True`` would not parse)."""
    return bool(_NAME_RE.fullmatch(text)) and not keyword.iskeyword(text)


def _hint(name: str, choices) -> str:
    close = difflib.get_close_matches(name, list(choices), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _rule_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-")


def _gbnf_literal(text: str) -> str:
    # JSON string escapes for quote, backslash and newline are GBNF's too; other characters go in as UTF-8
    # (a \\u escape of a character outside the BMP would be a surrogate pair, which GBNF does not decode)
    return json.dumps(text, ensure_ascii=False)


def _value_width(arg: ArgSpec) -> int:
    """Longest canonical text of one argument value."""
    if arg.type == "enum":
        return max((len(format_value(v)) for v in arg.values), default=2)
    if arg.type == "str":
        return arg.max_len + 2
    if arg.type == "bool":
        return len("False")
    return 24  # the longest repr of a float


def _gbnf_value(arg: ArgSpec) -> str:
    if arg.type == "enum":
        return " | ".join(_gbnf_literal(format_value(v)) for v in arg.values)
    if arg.type == "bool":
        return '"True" | "False"'
    if arg.type == "str":
        return f"\"'\" [{TEXT_CHARS}]{{1,{arg.max_len}}} \"'\""
    return " | ".join(_gbnf_literal(format_value(v)) for v in arg.grid())
