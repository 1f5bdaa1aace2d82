"""The output contract: what a valid answer is, declared once, with validator, grammar and scorer derived from it.

For the robot task a valid answer is a safety property: a JSON list of strings, each one Python call expression
to an allowlisted robot API with arguments of the declared type and range. Answers are parsed with ``ast`` and
checked; they are never executed. The GBNF grammar admits only answers the validator accepts, so llama.cpp's
constrained decoding cannot produce a call the robot must refuse.

A contract may also declare *expansions* (edgetune/expansions.py): compact calls the model emits, which the contract
expands into API calls. The answer language is then API calls plus compact calls; ``Verdict.calls`` is always the
expanded list of API calls (what the robot runs) and the scorer compares those.

An item is valid only in its one canonical spelling (every argument by keyword, in declared order, values as
``format_value`` writes them, no spaces, comments, escapes or parentheses beyond those), and the answer's JSON has
no escapes. Python's parser forgives much more (comments, NFKC-folded identifiers such as fullwidth letters,
``\\x63`` escapes, ``'a' 'b'`` concatenation, line continuations, ``(nav).go_to``), so any looser rule would let
the text a client sees differ from the calls the validator derived. The grammar emits exactly this spelling.
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import functools
import json
import keyword
import math
import re
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Iterator, Literal, Sequence

from edgetune.expansions import Expander, ExpansionError, compile_template, dotted_name

#: Default characters of free-text string arguments (a character class body): safe inside both a JSON string and a
#: Python literal. An argument's ``chars`` may narrow it (e.g. lower-case object names).
TEXT_CHARS = "a-zA-Z0-9 ,.!?-"
_CLASS_META = "'\"\\[]^"  # never inside a class: quotes and backslash break literals, the rest is class syntax
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
    chars: str = TEXT_CHARS  #: characters of a ``str`` value: a class body of characters and ranges like a-z
    match: Literal["exact", "loose"] = "exact"  #: scoring only: ``loose`` compares str values case-folded, unpunctuated
    doc: str = ""

    def check(self) -> Iterator[tuple[str, str]]:
        if self.type != "str":
            if self.chars != TEXT_CHARS:
                yield "chars", f"'chars' is only for str arguments, not {self.type}"
            if self.match != "exact":
                yield "match", f"'match: loose' is only for str arguments, not {self.type}"
        else:
            try:
                self.charset()
            except ValueError as exc:
                yield "chars", str(exc)
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

    def charset(self) -> frozenset[str]:
        """The characters ``chars`` admits (ValueError says what is wrong with it)."""
        return _charset(self.chars)

    def admits_text(self, value: str) -> bool:
        """Whether ``value`` is a valid ``str`` value: 1 to ``max_len`` characters of ``chars``."""
        return 0 < len(value) <= self.max_len and set(value) <= self.charset()

    def snap(self, value: float) -> int | float:
        """The nearest point of the grid's lattice (halves away from its origin): where an expansion's arithmetic
        lands. Floats: multiples of the step; ints: ``ceil(min)`` plus multiples of the step, as in ``grid()``."""
        step = self._step()
        origin = math.ceil(self.min or 0) if self.type == "int" else 0
        offset = round((value - origin) / step, 9)
        k = math.copysign(math.floor(abs(offset) + 0.5), offset)
        return origin + int(k) * int(step) if self.type == "int" else round(k * step, 6) + 0.0

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
    exclusive: bool = False  #: the call is alone in any answer that holds it (a refusal never mixes with actions)


@dataclass
class ExpansionArg(ArgSpec):
    """An argument of a compact call: a full ArgSpec, or ``like: callee.arg`` to reuse an API argument's spec."""

    type: Literal["str", "int", "float", "bool", "enum"] | None = None
    like: str = ""

    def check(self) -> Iterator[tuple[str, str]]:
        if self.like:
            if self != ExpansionArg(like=self.like, doc=self.doc):
                yield "like", "'like' copies an API argument's spec; give 'like' or the spec's fields, not both"
        elif self.type is None:
            yield "type", "give the argument's 'type' (or 'like: callee.arg' to reuse an API argument's spec)"
        else:
            yield from super().check()


@dataclass
class ExpansionSpec:
    """A compact call the model may emit; the contract expands it into the templated API calls of ``to``."""

    doc: str = ""
    args: dict[str, ExpansionArg] = field(default_factory=dict)  #: in positional order, like an API call's
    let: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)  #: enum arg -> value -> named numbers
    to: list[str] = field(default_factory=list)  #: API call templates with {...} holes, e.g. robot.wait(seconds={s})

    def check(self) -> Iterator[tuple[str, str]]:
        if not self.to:
            yield "to", "an expansion needs at least one templated API call"


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
    """The contract's judgement of one answer.

    ``calls``: the normalised API calls, compact calls expanded (what the robot runs, and only when ``valid``; empty
    for text tasks). ``compact``: the normalised items as emitted; a valid answer's items are exactly these.
    ``normalized``: the answer's canonical text, the JSON list of ``compact`` (what a model is trained to emit).
    An item that means a valid call but is not spelled canonically (``not_canonical``) has its canonical text here.
    """

    valid: bool
    violations: list[Violation] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)
    normalized: str = ""
    compact: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def respellable(self) -> bool:
        """Valid once respelled: every violation, if any, is ``not_canonical``, and ``normalized`` is the answer
        canonically spelled, which a data pipeline may keep in place of a teacher's text. A robot runs only
        ``valid`` answers."""
        return all(v.code == "not_canonical" for v in self.violations)


@dataclass
class Score:
    """Task metrics over a set of answers."""

    n: int
    exact_match: float
    valid_rate: float
    precision: float
    recall: float
    f1: float
    #: references answered by an exclusive call (a refusal), and what the answers did with them: the share of
    #: them answered with valid calls the robot would run (the worst outcome: it acts on what it must refuse), and
    #: the share of the other references answered with a refusal (it refuses what it could do)
    refusals: int = 0
    acted_on_refusal: float = 0.0
    refused_action: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


def format_value(value: object) -> str:
    """Canonical Python literal of an argument value (what normalisation compares)."""
    if isinstance(value, bool):
        return repr(value)
    if isinstance(value, float):
        return repr(round(value, 6) + 0.0)
    return repr(value)


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


def _loosen(text: str) -> str:
    """How ``match: loose`` text is compared: case-folded, without surrounding space or trailing .!?, marks."""
    return text.casefold().strip().rstrip(".!?,").strip()


def _canonical(callee: str, spec: CallSpec, values: dict, loose: bool = False) -> str:
    """The canonical call text; ``loose``: with ``match: loose`` arguments loosened (the scorer's comparison)."""
    def shown(name: str) -> str:
        value = values[name]
        return format_value(_loosen(value) if loose and spec.args[name].match == "loose" else value)

    return f"{callee}({', '.join(f'{name}={shown(name)}' for name in spec.args)})"


@functools.lru_cache(maxsize=256)
def _charset(chars: str) -> frozenset[str]:
    """The characters of a class body such as ``a-z0-9 -``; read the same way by Python and llama.cpp's GBNF.

    Only printable ASCII, single characters and ``x-y`` ranges, ``-`` itself only last; never quotes, a backslash
    or class syntax, so a value is safe in a JSON string and a Python literal and the class means the same in both.
    """
    out: set[str] = set()
    i = 0
    while i < len(chars):
        lo = chars[i]
        if not " " <= lo <= "~" or lo in _CLASS_META:
            raise ValueError(f"{lo!r} is not allowed in 'chars' (printable ASCII without quotes, backslash, [ ] ^)")
        if lo == "-" and i != len(chars) - 1:
            raise ValueError("a '-' in 'chars' joins a range like a-z, or comes last to mean itself")
        if i + 2 < len(chars) and chars[i + 1] == "-":
            hi = chars[i + 2]
            if not " " <= hi <= "~" or hi in _CLASS_META + "-" or hi < lo:
                raise ValueError(f"'{lo}-{hi}' in 'chars' is not a range of printable ASCII from low to high")
            out.update(map(chr, range(ord(lo), ord(hi) + 1)))
            i += 3
        else:
            out.add(lo)
            i += 1
    if out & set(_CLASS_META):
        raise ValueError(f"'chars' must not admit any of {_CLASS_META} (a range such as A-z covers them)")
    if not out:
        raise ValueError("'chars' must admit at least one character")
    return frozenset(out)


@dataclass
class ContractSpec:
    """What a valid answer is. ``call_list``: a JSON list of allowlisted calls. ``text``: bounded plain text."""

    kind: Literal["call_list", "text"]
    api: dict[str, CallSpec] = field(default_factory=dict)  #: allowlist, dotted callee -> its arguments
    min_calls: int = 1
    max_calls: int = 12  #: most API calls in an answer, compact calls expanded
    min_chars: int = 1  #: text answers: shortest length
    max_chars: int = 2000  #: text answers: longest length
    forbidden: list[str] = field(default_factory=list)  #: text answers: substrings that make them invalid
    expansions: dict[str, ExpansionSpec] = field(default_factory=dict)  #: compact call name -> how it expands

    def check(self) -> Iterator[tuple[str, str]]:
        if self.kind == "call_list":
            if not self.api:
                yield "api", "a call_list contract needs a non-empty 'api' allowlist"
            if not 1 <= self.min_calls <= self.max_calls:
                yield "min_calls", "need 1 <= min_calls <= max_calls"
            for name, call in self.api.items():
                if not all(_is_name(part) for part in name.split(".")):
                    yield f"api.{name}", "callee names are dotted ASCII Python identifiers (not keywords), e.g. nav.go_to"
                for arg_name, arg in call.args.items():
                    if not _is_name(arg_name):
                        yield f"api.{name}.args.{arg_name}", "argument names must be ASCII Python identifiers, not keywords"
                    for sub, problem in arg.check():
                        yield f"api.{name}.args.{arg_name}.{sub}", problem
                if call.exclusive and self.min_calls != 1:
                    yield f"api.{name}.exclusive", "an exclusive call is alone in its answer, so min_calls must be 1"
            yield from self._check_expansions()
        elif self.api or self.expansions:
            yield "api" if self.api else "expansions", "'api' and 'expansions' are only for call_list contracts"
        if not 0 <= self.min_chars <= self.max_chars:
            yield "min_chars", "need 0 <= min_chars <= max_chars"

    def _check_expansions(self) -> Iterator[tuple[str, str]]:
        for name, spec in self.expansions.items():
            where = f"expansions.{name}"
            if not all(_is_name(part) for part in name.split(".")):
                yield where, "compact call names are dotted ASCII Python identifiers (not keywords), e.g. go"
                continue
            if name in self.api:
                yield where, "has the name of an API call; a compact call needs a name of its own"
                continue
            for arg_name in spec.args:
                if not _is_name(arg_name):
                    yield f"{where}.args.{arg_name}", "argument names must be ASCII Python identifiers, not keywords"
            try:
                expander = self._expander(name, spec)
            except ExpansionError as exc:
                yield f"{where}.{exc.field}", exc.problem
                continue
            for sub, problem in expander.check(self.api, self._refusal):
                yield f"{where}.{sub}", problem
        if self.max_calls // self.longest_expansion() < self.min_calls:
            yield "max_calls", (f"must hold min_calls ({self.min_calls}) compact calls of the longest expansion "
                                f"({self.longest_expansion()} API calls each)")

    def _expander(self, name: str, spec: ExpansionSpec) -> Expander:
        """Resolve ``like`` references and compile the templates; ExpansionError names the field."""
        args: dict[str, ArgSpec] = {}
        for arg_name, arg in spec.args.items():
            if arg.like:
                callee, _, target = arg.like.rpartition(".")
                if target not in self.api.get(callee, CallSpec()).args:
                    raise ExpansionError(f"args.{arg_name}.like",
                                         f"'{arg.like}' is not an API argument (write it as callee.argument)")
                args[arg_name] = self.api[callee].args[target]
            else:
                plain = {f.name: getattr(arg, f.name) for f in dataclasses.fields(ArgSpec)}
                args[arg_name] = ArgSpec(**plain)
        templates = [compile_template(text, f"to[{i}]", args, spec.let, self.api) for i, text in enumerate(spec.to)]
        return Expander(name, args, spec.let, templates)

    @functools.cached_property
    def _expanders(self) -> dict[str, Expander]:
        return {name: self._expander(name, spec) for name, spec in self.expansions.items()}

    def vocabulary(self) -> dict[str, CallSpec]:
        """Every call an answer may hold: the API and the compact calls (whose args are resolved specs)."""
        compact = {name: CallSpec(spec.doc, e.args) for (name, spec), e in zip(self.expansions.items(),
                                                                               self._expanders.values())}
        return {**self.api, **compact}

    def longest_expansion(self) -> int:
        """API calls in the longest compact call (1 without expansions): bounds the items the grammar admits."""
        return max((len(spec.to) for spec in self.expansions.values()), default=1)

    # ----------------------------------------------------------------------------------------------- validator
    def validate(self, text: str) -> Verdict:
        """Judge one answer. Never executes anything: call answers are parsed with ``ast`` only."""
        return self._judge(text)[0]

    def _judge(self, text: str) -> tuple[Verdict, list[str]]:
        """The verdict and, per expanded call, the text the scorer compares (loose arguments loosened)."""
        if self.kind == "text":
            verdict = self._validate_text(text)
            return verdict, verdict.normalized.split()
        violations: list[Violation] = []
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            v = Violation("not_json", f"the answer is not a JSON list of strings: {exc.msg}", None, exc.pos)
            return Verdict(False, [v], [], _collapse(text)), []
        except RecursionError:
            v = Violation("not_json", "the answer is not a JSON list of strings: nested too deeply", None, 0)
            return Verdict(False, [v], [], _collapse(text)), []
        if not isinstance(data, list):
            v = Violation("not_list", f"the answer must be a JSON list of strings, got {type(data).__name__}", None, 0)
            return Verdict(False, [v], [], _collapse(text)), []
        vocab = self.vocabulary()
        compact: list[str] = []
        calls: list[str] = []
        keys: list[str] = []
        ends: list[int] = []  # expanded calls so far, after each item
        exclusive: list[tuple[int, str]] = []
        max_chars = self.max_item_chars()
        for index, item in enumerate(data):
            if not isinstance(item, str):
                violations.append(Violation("not_string", f"each item must be a string, got {item!r}", index, 0))
                normal = _collapse(json.dumps(item))
                expanded = [(normal, normal)]
            elif len(item) > max_chars:
                msg = f"{len(item)} characters; no allowlisted call is longer than {max_chars}"
                violations.append(Violation("too_long", msg, index, max_chars))
                normal = _collapse(item)
                expanded = [(normal, normal)]
            else:
                normal, callee, values = self._parse_call(item, index, violations, vocab)
                if callee is not None and vocab[callee].exclusive:
                    exclusive.append((index, callee))
                expanded = [(normal, normal)]
                if values is not None and callee in self.expansions:
                    expanded = self._expand(callee, values, index, violations) or expanded
                elif values is not None:
                    expanded = [(normal, _canonical(callee, vocab[callee], values, loose=True))]
            compact.append(normal)
            calls += [call for call, _ in expanded]
            keys += [key for _, key in expanded]
            ends.append(len(calls))
        if len(data) > 1:
            for index, callee in exclusive:
                msg = f"'{callee}' must be the only call in its answer, got {len(data)} items"
                violations.append(Violation("exclusive", msg, index, 0))
        if "\\" in text and all(v.code == "not_canonical" for v in violations):
            # no canonical item holds a backslash or a quote, so none needs a JSON escape (said only when nothing
            # worse is wrong: an answer with a bad call is refused anyway)
            col = text.index("\\")
            msg = f"the answer uses a JSON escape ({text[col:col + 6]}); write each item's characters as they are"
            violations.append(Violation("not_canonical", msg, None, col))
        if not self.min_calls <= len(data) or len(calls) > self.max_calls:
            first_extra = next((i for i, end in enumerate(ends) if end > self.max_calls), None)
            once = " once expanded" if len(calls) != len(data) else ""
            msg = f"{len(calls)} calls{once}; between {self.min_calls} and {self.max_calls} allowed"
            violations.insert(0, Violation("call_count", msg, first_extra))
        verdict = Verdict(not violations, violations, calls, json.dumps(compact), compact)
        return verdict, keys

    def _expand(self, callee: str, values: dict, index: int, out: list[Violation]) -> list[tuple[str, str]] | None:
        """(API call, scoring key) per call ``callee(**values)`` expands to; None (and a violation) if it cannot."""
        try:
            texts = self._expanders[callee].expand(values, self.api)
        except ExpansionError as exc:
            out.append(Violation("expansion", f"{callee}: {exc.problem}", index))
            return None
        expanded = []
        for text in texts:
            refused: list[Violation] = []
            normal, api_callee, api_values = self._parse_call(text, index, refused, self.api)
            if refused:
                msg = f"{callee} expands to {text}, which the API refuses: {refused[0].message}"
                out.append(Violation("expansion", msg, index))
                return None
            assert api_callee is not None and api_values is not None
            expanded.append((normal, _canonical(api_callee, self.api[api_callee], api_values, loose=True)))
        return expanded

    def _refusal(self, call: str) -> str | None:
        """Why the API validator refuses one call text, or None (checks expansion declarations)."""
        refused: list[Violation] = []
        self._parse_call(call, 0, refused, self.api)
        return "; ".join(v.message for v in refused) or None

    def max_item_chars(self) -> int:
        """Longest call text worth parsing: twice the longest canonical call plus slack, so that a loosely spelt
        call still gets a message naming its canonical text (only the canonical spelling is valid).

        Bounding items keeps a hostile answer (deeply nested brackets or operators) from exhausting the parser.
        """
        longest = max(
            (len(callee) + 2 + sum(len(name) + 3 + _value_width(arg) for name, arg in spec.args.items())
             for callee, spec in self.vocabulary().items()),
            default=0,
        )
        return 2 * longest + 64

    def _parse_call(
        self, item: str, index: int, out: list[Violation], vocab: dict[str, CallSpec]
    ) -> tuple[str, str | None, dict | None]:
        """Check one call expression against ``vocab``; append violations (columns index ``item``).

        Returns the normalised text (the collapsed item when invalid), the callee when it is in ``vocab``, and the
        argument values when they are all valid.
        """
        raw = _collapse(item)
        indent = len(item) - len(item.lstrip())
        try:
            tree = ast.parse(item.strip(), mode="eval")
        except SyntaxError as exc:
            col = indent + (exc.offset or 1) - 1
            out.append(Violation("syntax", f"not a single Python expression: {exc.msg}", index, col))
            return raw, None, None
        except (ValueError, RecursionError, MemoryError) as exc:
            # NUL bytes (ValueError before Python 3.12) or nesting beyond the parser's limits
            out.append(Violation("syntax", f"not a single Python expression: {exc or 'nested too deeply'}", index, 0))
            return raw, None, None
        source = item.strip().encode("utf-8")

        def at(byte_col: int) -> int:  # ast columns count UTF-8 bytes; report characters of ``item``
            return indent + len(source[:byte_col].decode("utf-8", errors="ignore"))

        node = tree.body
        if not isinstance(node, ast.Call):
            what = type(node).__name__
            out.append(Violation("not_a_call", f"each item must be one call, got a {what} expression", index, indent))
            return raw, None, None
        callee = dotted_name(node.func)
        if callee is None:
            what = type(node.func).__name__
            msg = f"the callee must be an allowlisted name like nav.go_to, got a {what}"
            out.append(Violation("bad_callee", msg, index, at(node.func.col_offset)))
            return raw, None, None
        spec = vocab.get(callee)
        if spec is None:
            head = callee.split(".")[0]
            if callee in _FORBIDDEN_BUILTINS or head in _FORBIDDEN_BUILTINS:
                msg = f"'{callee}' is forbidden; only the allowlisted robot API may be called"
                out.append(Violation("forbidden", msg, index, at(node.func.col_offset)))
            elif any(name.split(".")[0] == head for name in vocab):
                msg = f"'{callee}' is an attribute outside the allowlist{_hint(callee, vocab)}"
                out.append(Violation("unknown_attribute", msg, index, at(node.func.col_offset)))
            else:
                msg = f"'{callee}' is not in the allowlist{_hint(callee, vocab)}"
                out.append(Violation("unknown_callee", msg, index, at(node.func.col_offset)))
            return raw, None, None
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
            self._check_value(names[pos], spec.args[names[pos]], arg, given, bad)
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
                self._check_value(kw.arg, spec.args[kw.arg], kw.value, given, bad)
        for name in names:
            if name not in named and not unpacked:
                bad("missing_argument", f"missing argument '{name}'", (node.end_col_offset or 1) - 1)
        if not ok:
            return raw, callee, None
        canonical = _canonical(callee, spec, given)
        if item != canonical:
            col = next((i for i, (a, b) in enumerate(zip(item, canonical)) if a != b), min(len(item), len(canonical)))
            msg = f"{callee}: {_misspelling(item, canonical, col, node, names)}; write exactly {canonical}"
            out.append(Violation("not_canonical", msg, index, col))
        return canonical, callee, given

    @staticmethod
    def _check_value(name: str, arg: ArgSpec, node: ast.expr, given: dict, bad) -> None:
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
            elif arg.type == "str" and not arg.admits_text(value):
                bad("bad_value", f"argument '{name}' must be 1-{arg.max_len} characters of [{arg.chars}]", col)
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
        """A GBNF grammar for llama.cpp admitting only valid answers (None: text tasks are unconstrained).

        An exclusive call is its own root alternative, and the items are bounded by ``max_calls`` over the longest
        expansion, so that every answer the grammar admits is valid.
        """
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

        call_rules, exclusive_rules = [], []
        for callee, spec in self.vocabulary().items():
            rule = claim("call-" + _rule_name(callee))
            parts = [_gbnf_literal(f"{callee}(")]
            for i, (arg_name, arg) in enumerate(spec.args.items()):
                value_rule = claim(f"{rule}-{_rule_name(arg_name)}")
                rules[value_rule] = _gbnf_value(arg)
                parts.append(_gbnf_literal(f"{', ' if i else ''}{arg_name}="))
                parts.append(value_rule)
            parts.append(_gbnf_literal(")"))
            rules[rule] = " ".join(parts)
            (exclusive_rules if spec.exclusive else call_rules).append(rule)
        more = self.max_calls // self.longest_expansion() - 1
        roots, head = [], ['ws ::= [ \\n]{0,2}']
        if exclusive_rules:
            roots.append('"[" ws exclusive-item ws "]"')
            head += ['exclusive-item ::= "\\"" exclusive-call "\\""', "exclusive-call ::= " + " | ".join(exclusive_rules)]
        if call_rules:
            roots.append(f'"[" ws item ("," ws item){{{self.min_calls - 1},{more}}} ws "]"')
            head += ['item ::= "\\"" call "\\""', "call ::= " + " | ".join(call_rules)]
        head.insert(0, "root ::= " + " | ".join(roots))
        return "\n".join(head + [f"{name} ::= {body}" for name, body in rules.items()]) + "\n"

    # ------------------------------------------------------------------------------------------------- scoring
    def score(self, predictions: Sequence[str], references: Sequence[str]) -> Score:
        """Exact match after normalisation, micro precision/recall/F1 over calls (tokens for text), valid rate.

        Call answers are compared expanded (the API calls the robot would run), ``loose`` arguments loosened.
        """
        if len(predictions) != len(references):
            raise ValueError(f"Expected as many predictions as references, got {len(predictions)} and {len(references)}")
        n = len(predictions)
        exact = valid = hit = n_pred = n_ref = refusals = acted = refused = 0
        for pred, ref in zip(predictions, references):
            (verdict, got), (ref_verdict, want) = self._judge(pred), self._judge(ref)
            valid += verdict.valid
            exact += verdict.valid and got == want
            hit += sum((Counter(got) & Counter(want)).values())
            n_pred += len(got)
            n_ref += len(want)
            if self._refuses(ref_verdict):
                refusals += 1
                acted += verdict.valid and not self._refuses(verdict)
            else:
                refused += self._refuses(verdict)
        precision = hit / n_pred if n_pred else 0.0
        recall = hit / n_ref if n_ref else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        return Score(n, exact / n if n else 0.0, valid / n if n else 0.0, precision, recall, f1, refusals,
                     acted / refusals if refusals else 0.0, refused / (n - refusals) if n > refusals else 0.0)

    def _refuses(self, verdict: Verdict) -> bool:
        """A valid answer made of an exclusive call (a refusal: nothing runs)."""
        callees = (call.split("(", 1)[0] for call in verdict.calls)
        return verdict.valid and any(callee in self.api and self.api[callee].exclusive for callee in callees)

    def describe(self) -> str:
        """A compact, human-readable list of the allowlist and the compact calls (for teacher prompts and docs)."""
        lines = [_describe_call(callee, spec) + (" Must be the only call in its answer." if spec.exclusive else "")
                 for callee, spec in self.api.items()]
        if self.expansions:
            lines.append("Compact calls (the contract expands each into the API calls after '->'):")
            vocab = self.vocabulary()
            for name, spec in self.expansions.items():
                targets = ", ".join(template.split("(", 1)[0].strip() for template in spec.to)
                lines.append(f"{_describe_call(name, vocab[name])} -> {targets}")
        return "\n".join(lines)


def _is_name(text: str) -> bool:
    """An ASCII identifier Python parses as a name (keywords such as ``from`` or ``True`` would not parse)."""
    return bool(_NAME_RE.fullmatch(text)) and not keyword.iskeyword(text)


def _misspelling(item: str, canonical: str, col: int, node: ast.Call, names: list[str]) -> str:
    """What makes a parsed, valid call not its canonical spelling (``col``: where the two texts part)."""
    if node.args:
        return "every argument must be given by keyword (name=value)"
    if [kw.arg for kw in node.keywords] != names:
        return f"arguments must be in the declared order ({', '.join(names)})"
    got, want = item[col:col + 12], canonical[col:col + 12]
    if not want:
        return f"not the canonical spelling: {got!r} follows where the canonical text ends"
    if not got:
        return f"not the canonical spelling: it ends where the canonical text goes on with {want!r}"
    return f"not the canonical spelling: it has {got!r} where the canonical text has {want!r}"


def _hint(name: str, choices) -> str:
    close = difflib.get_close_matches(name, list(choices), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _rule_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-")


def _gbnf_literal(text: str) -> str:
    # JSON string escapes for quote, backslash and newline are GBNF's too; other characters go in as UTF-8
    # (a \\u escape of a character outside the BMP would be a surrogate pair, which GBNF does not decode)
    return json.dumps(text, ensure_ascii=False)


def _describe_call(callee: str, spec: CallSpec) -> str:
    args = []
    for name, arg in spec.args.items():
        if arg.type == "enum":
            args.append(f"{name}: one of {', '.join(arg.values)}")
        elif arg.type in ("int", "float"):
            low, high = (arg.min, arg.max) if arg.type == "float" else (int(arg.min or 0), int(arg.max or 0))
            args.append(f"{name}: {arg.type} in [{low}, {high}]")
        elif arg.type == "str" and arg.chars != TEXT_CHARS:
            args.append(f"{name}: str of [{arg.chars}], at most {arg.max_len}")
        else:
            args.append(f"{name}: {arg.type}")
    return f"- {callee}({'; '.join(args)})" + (f"  # {spec.doc}" if spec.doc else "")


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
        return f"\"'\" [{arg.chars}]{{1,{arg.max_len}}} \"'\""
    return " | ".join(_gbnf_literal(format_value(v)) for v in arg.grid())
