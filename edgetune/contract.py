"""The output contract: what a valid answer is, declared once, with validator, grammar and scorer derived from it.

This module holds the declaration (``ContractSpec`` and its argument, call and expansion specs, checked when a task
loads) and the verdict types. What derives from it lives beside it, one job a module: the validator
(edgetune/contract_validator.py), the GBNF grammar (edgetune/contract_grammar.py) and the scorer
(edgetune/contract_scorer.py); ``ContractSpec.validate``, ``.grammar`` and ``.score`` call them.

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

import dataclasses
import functools
import keyword
import math
import re
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Iterator, Literal, Sequence

from edgetune.expansions import Expander, ExpansionError, compile_template
from edgetune.spelling import MIN_LETTERS, Speller

if TYPE_CHECKING:
    from edgetune.contract_scorer import Score

#: Default characters of free-text string arguments (a character class body): safe inside both a JSON string and a
#: Python literal. An argument's ``chars`` may narrow it (e.g. lower-case object names).
TEXT_CHARS = "a-zA-Z0-9 ,.!?-"
_CLASS_META = "'\"\\[]^"  # never inside a class: quotes and backslash break literals, the rest is class syntax
_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_MAX_GRID = 1000


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
    #: ``enum`` only: other names people use for a value (``storage_room: [storeroom, storage]``); a compact call's
    #: argument that ``names`` this enum takes a value as said and ``resolve`` reads it (edgetune/expansions.py)
    aliases: dict[str, list[str]] = field(default_factory=dict)
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
        if self.aliases and self.type != "enum":
            yield "aliases", f"'aliases' are only for enum arguments, not {self.type}"
        seen: dict[str, str] = {_said_key(v): v for v in self.values}
        for value, names in self.aliases.items():
            if value not in self.values:
                yield f"aliases.{value}", f"is not one of the values: {self.values}"
            for name in names:
                key = _said_key(name)
                if not key:
                    yield f"aliases.{value}", f"alias {name!r} is empty once articles and spacing are dropped"
                elif seen.setdefault(key, value) != value:
                    yield f"aliases.{value}", f"alias {name!r} also names {seen[key]!r}; a name means one value"
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

    def resolve(self, said: str) -> str | None:
        """The enum value a name as said means, or None when it names none of them.

        The value itself or one of its aliases, read without case, a leading article or possessive ('the', 'my'),
        '_' or '-' for a space; else the one name a typing slip away (edit distance 1, or 2 for names of 10+
        letters; never for names under 5 letters, where a slip makes another word: 'hall' is not 'mall').
        """
        key = _said_key(said)
        names = self._names
        if key in names:
            return names[key]
        if len(key) < 5:
            return None
        limit = 2 if len(key) >= 10 else 1
        close = {names[name] for name in names if _within_edits(key, name, limit)}
        if len(close) != 1:
            return None
        return close.pop()

    @functools.cached_property
    def _names(self) -> dict[str, str]:
        names = {_said_key(alias): value for value, aliases in self.aliases.items() for alias in aliases}
        return {**names, **{_said_key(value): value for value in self.values}}

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
    #: the call ends its answer and alone runs: the items before it (what the model read before the part it refuses)
    #: are void, so a refusal never runs with actions
    exclusive: bool = False


@dataclass
class ExpansionArg(ArgSpec):
    """An argument of a compact call: a full ArgSpec, ``like: callee.arg`` to reuse an API argument's spec, or
    ``names: callee.arg``: a value of that enum as said (a ``str`` of ``chars``, at most ``max_len``), resolved by
    the enum's ``aliases`` and spelling; a name that resolves to nothing turns the answer into the expansion's
    ``unresolved`` refusal."""

    type: Literal["str", "int", "float", "bool", "enum"] | None = None
    like: str = ""
    names: str = ""

    def check(self) -> Iterator[tuple[str, str]]:
        if self.names:
            if self.like or self.type is not None:
                yield "names", "'names' takes a value of an enum as said (a str); give no 'like' or 'type' with it"
            else:
                yield from ArgSpec(**{**_arg_fields(self), "type": "str"}).check()
        elif self.like:
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
    #: with a ``names`` argument: the exclusive API call the answer becomes when a name as said is none of the
    #: enum's (``robot.reject(reason='unknown_place')``); the model copies the name, code decides it is unknown
    unresolved: str = ""

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


def format_value(value: object) -> str:
    """Canonical Python literal of an argument value (what normalisation compares)."""
    if isinstance(value, bool):
        return repr(value)
    if isinstance(value, float):
        return repr(round(value, 6) + 0.0)
    return repr(value)


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
    #: the words commands are made of, the most common first: a misspelt word of a command is read as one of them
    #: before the model sees it (edgetune/spelling.py); empty: commands are read as typed
    spelling: list[str] = field(default_factory=list)

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
        for i, word in enumerate(self.spelling):
            if not (isinstance(word, str) and word.isascii() and word.isalpha() and word.islower()
                    and len(word) >= MIN_LETTERS):
                yield f"spelling[{i}]", f"{word!r}: write each word in lower-case ASCII letters, {MIN_LETTERS} or more"

    def _check_expansions(self) -> Iterator[tuple[str, str]]:
        from edgetune.contract_validator import refusal

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
            if expander.said and not spec.unresolved:
                yield f"{where}.unresolved", "a 'names' argument needs 'unresolved': the refusal for a name not known"
            if spec.unresolved:
                callee = spec.unresolved.split("(", 1)[0]
                problem = refusal(self, spec.unresolved)
                if problem or not self.api[callee].exclusive:
                    yield f"{where}.unresolved", (f"{spec.unresolved!r} must be one exclusive API call, canonically "
                                                  f"spelled{': ' + problem if problem else ''}")
                if not expander.said:
                    yield f"{where}.unresolved", "is only for expansions with a 'names' argument"
            for sub, problem in expander.check(self.api, functools.partial(refusal, self)):
                yield f"{where}.{sub}", problem
        if self.max_calls // self.longest_expansion() < self.min_calls:
            yield "max_calls", (f"must hold min_calls ({self.min_calls}) compact calls of the longest expansion "
                                f"({self.longest_expansion()} API calls each)")

    def _expander(self, name: str, spec: ExpansionSpec) -> Expander:
        """Resolve ``like`` references and compile the templates; ExpansionError names the field."""
        args: dict[str, ArgSpec] = {}
        said: dict[str, ArgSpec] = {}
        for arg_name, arg in spec.args.items():
            if arg.names:
                callee, _, target = arg.names.rpartition(".")
                enum = self.api.get(callee, CallSpec()).args.get(target)
                if enum is None or enum.type != "enum":
                    raise ExpansionError(f"args.{arg_name}.names",
                                         f"'{arg.names}' is not an enum API argument (write it as callee.argument)")
                args[arg_name] = ArgSpec(**{**_arg_fields(arg), "type": "str"})
                said[arg_name] = enum
            elif arg.like:
                callee, _, target = arg.like.rpartition(".")
                if target not in self.api.get(callee, CallSpec()).args:
                    raise ExpansionError(f"args.{arg_name}.like",
                                         f"'{arg.like}' is not an API argument (write it as callee.argument)")
                args[arg_name] = self.api[callee].args[target]
            else:
                args[arg_name] = ArgSpec(**_arg_fields(arg))
        templates = [compile_template(text, f"to[{i}]", args, spec.let, self.api) for i, text in enumerate(spec.to)]
        return Expander(name, args, spec.let, templates, said)

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

    def expander(self, name: str) -> Expander:
        """The compiled expansion of the compact call ``name``."""
        return self._expanders[name]

    @functools.cached_property
    def _speller(self) -> Speller:
        return Speller(self.spelling)

    def read_command(self, text: str) -> str:
        """A command as the model reads it: its misspelt words corrected into ``spelling`` (training, evaluation,
        export, serving and the bench all read commands through here)."""
        return self._speller(text)

    # The derived parts live in their own modules, which import these types, so they are imported where used.
    def validate(self, text: str) -> Verdict:
        """Judge one answer (edgetune/contract_validator.py). Never executes anything."""
        from edgetune.contract_validator import validate

        return validate(self, text)

    def grammar(self) -> str | None:
        """The GBNF grammar admitting only valid answers (edgetune/contract_grammar.py); None for a text contract."""
        from edgetune.contract_grammar import grammar

        return grammar(self)

    def score(self, predictions: Sequence[str], references: Sequence[str]) -> Score:
        """Exact match, valid rate, per-call precision/recall/F1 and refusal metrics (edgetune/contract_scorer.py)."""
        from edgetune.contract_scorer import score

        return score(self, predictions, references)

    def describe(self) -> str:
        """A compact, human-readable list of the allowlist and the compact calls (for teacher prompts and docs)."""
        ends = " Ends the answer, and alone runs: the calls before it are void."
        lines = [_describe_call(callee, spec) + (ends if spec.exclusive else "") for callee, spec in self.api.items()]
        if self.expansions:
            lines.append("Compact calls (the contract expands each into the API calls after '->'):")
            vocab = self.vocabulary()
            for name, spec in self.expansions.items():
                targets = ", ".join(template.split("(", 1)[0].strip() for template in spec.to)
                said = "".join(f"; {arg} names one of {', '.join(enum.values)} as said (aliases and slips are "
                               f"read), any other name answers {spec.unresolved}"
                               for arg, enum in self.expander(name).said.items())
                lines.append(f"{_describe_call(name, vocab[name])} -> {targets}{said}")
        return "\n".join(lines)


def _arg_fields(arg: ArgSpec) -> dict:
    """The ArgSpec fields of an argument (an ExpansionArg's own fields left out)."""
    return {f.name: getattr(arg, f.name) for f in dataclasses.fields(ArgSpec)}


_ARTICLE = re.compile(r"^(?:the|my|our|your|a|an)\s+")


def _said_key(name: str) -> str:
    """How a name as said is compared: lower case, '_' and '-' as spaces, single spaces, no leading article."""
    return _ARTICLE.sub("", " ".join(name.lower().replace("_", " ").replace("-", " ").split()))


def _within_edits(a: str, b: str, limit: int) -> bool:
    """Whether ``a`` is at most ``limit`` typing slips from ``b`` (insert, drop, replace, swap of neighbours)."""
    if abs(len(a) - len(b)) > limit:
        return False
    previous2: list[int] = []
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        row = [i] + [0] * len(b)
        for j, cb in enumerate(b, 1):
            row[j] = min(previous[j] + 1, row[j - 1] + 1, previous[j - 1] + (ca != cb))
            if i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                row[j] = min(row[j], previous2[j - 2] + 1)
        if min(row) > limit:
            return False
        previous2, previous = previous, row
    return previous[-1] <= limit


def _is_name(text: str) -> bool:
    """An ASCII identifier Python parses as a name (keywords such as ``from`` or ``True`` would not parse)."""
    return bool(_NAME_RE.fullmatch(text)) and not keyword.iskeyword(text)


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
