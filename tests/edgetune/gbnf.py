"""A small GBNF reader, written independently of edgetune.contract, to check the grammar it emits.

It covers the subset llama.cpp grammars of edgetune use: rules, string literals with escapes, character classes
(ranges, negation, escapes), alternation, grouping, sequences, ``*`` ``+`` ``?`` and ``{m}`` ``{m,}`` ``{m,n}``
repetition, and ``#`` comments. ``expand`` draws one string the grammar admits; ``matches`` decides whether the
grammar admits a string. Both assume the grammar is not left-recursive (edgetune's grammars are not recursive).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Union

#: draw(lo, hi) -> an int in [lo, hi]; random.Random.randint or a hypothesis draw
Draw = Callable[[int, int], int]
UNBOUNDED_EXTRA = 3  #: how many repetitions past the minimum ``*``/``+``/``{m,}`` may expand to

_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", "\\": "\\", '"': '"', "[": "[", "]": "]", "-": "-", "/": "/"}
_NAME = re.compile(r"[A-Za-z0-9-]+")


@dataclass(frozen=True)
class Lit:
    text: str


@dataclass(frozen=True)
class Cls:
    ranges: tuple[tuple[str, str], ...]
    negated: bool

    def admits(self, ch: str) -> bool:
        return any(lo <= ch <= hi for lo, hi in self.ranges) != self.negated


@dataclass(frozen=True)
class Ref:
    name: str


@dataclass(frozen=True)
class Seq:
    items: tuple["Node", ...]


@dataclass(frozen=True)
class Alt:
    options: tuple["Node", ...]


@dataclass(frozen=True)
class Rep:
    node: "Node"
    lo: int
    hi: int | None


Node = Union[Lit, Cls, Ref, Seq, Alt, Rep]


class GrammarSyntaxError(ValueError):
    pass


class _Parser:
    def __init__(self, text: str):
        self.text = text
        self.pos = 0

    def error(self, what: str) -> GrammarSyntaxError:
        line = self.text.count("\n", 0, self.pos) + 1
        return GrammarSyntaxError(f"line {line}: {what} at {self.text[self.pos:self.pos + 30]!r}")

    def skip(self, newlines: bool) -> None:
        while self.pos < len(self.text):
            ch = self.text[self.pos]
            if ch == "#":
                while self.pos < len(self.text) and self.text[self.pos] != "\n":
                    self.pos += 1
            elif ch in " \t" or (newlines and ch in "\r\n"):
                self.pos += 1
            else:
                return

    def grammar(self) -> dict[str, Node]:
        rules: dict[str, Node] = {}
        self.skip(newlines=True)
        while self.pos < len(self.text):
            m = _NAME.match(self.text, self.pos)
            if not m:
                raise self.error("expected a rule name")
            self.pos = m.end()
            self.skip(newlines=False)
            if not self.text.startswith("::=", self.pos):
                raise self.error("expected '::='")
            self.pos += 3
            if m.group() in rules:
                raise self.error(f"rule {m.group()!r} defined twice")
            rules[m.group()] = self.alternation(nested=False)
            self.skip(newlines=True)
        undefined = {ref for node in rules.values() for ref in _refs(node)} - set(rules)
        if undefined:
            raise GrammarSyntaxError(f"undefined rules: {sorted(undefined)}")
        if "root" not in rules:
            raise GrammarSyntaxError("no root rule")
        return rules

    def alternation(self, nested: bool) -> Node:
        # as in llama.cpp: a newline ends a top-level rule, inside parentheses it is blank space; '|' may be
        # followed by a line break
        options = [self.sequence(nested)]
        while self.text.startswith("|", self.pos):
            self.pos += 1
            self.skip(newlines=True)
            options.append(self.sequence(nested))
        return options[0] if len(options) == 1 else Alt(tuple(options))

    def sequence(self, nested: bool) -> Node:
        items: list[Node] = []
        while True:
            self.skip(newlines=nested)
            if self.pos >= len(self.text) or self.text[self.pos] in "|)\r\n":
                break
            items.append(self.postfix(self.atom()))
        return items[0] if len(items) == 1 else Seq(tuple(items))

    def atom(self) -> Node:
        ch = self.text[self.pos]
        if ch == '"':
            self.pos += 1
            out = []
            while self.text[self.pos] != '"':
                out.append(self.char())
            self.pos += 1
            return Lit("".join(out))
        if ch == "[":
            self.pos += 1
            negated = self.text.startswith("^", self.pos)
            self.pos += negated
            ranges = []
            while self.text[self.pos] != "]":
                lo = self.char()
                if self.text[self.pos] == "-" and self.text[self.pos + 1] != "]":
                    self.pos += 1
                    ranges.append((lo, self.char()))
                else:
                    ranges.append((lo, lo))
            self.pos += 1
            return Cls(tuple(ranges), negated)
        if ch == "(":
            self.pos += 1
            node = self.alternation(nested=True)
            self.skip(newlines=True)
            if not self.text.startswith(")", self.pos):
                raise self.error("expected ')'")
            self.pos += 1
            return node
        m = _NAME.match(self.text, self.pos)
        if m:
            self.pos = m.end()
            return Ref(m.group())
        raise self.error("unexpected character")

    def char(self) -> str:
        ch = self.text[self.pos]
        if ch != "\\":
            self.pos += 1
            return ch
        code = self.text[self.pos + 1]
        if code in "xuU":
            width = {"x": 2, "u": 4, "U": 8}[code]
            digits = self.text[self.pos + 2:self.pos + 2 + width]
            self.pos += 2 + width
            return chr(int(digits, 16))
        if code not in _ESCAPES:
            raise self.error("unknown escape")
        self.pos += 2
        return _ESCAPES[code]

    def postfix(self, node: Node) -> Node:
        while self.pos < len(self.text):
            ch = self.text[self.pos]
            if ch in "*+?":
                self.pos += 1
                node = Rep(node, 1 if ch == "+" else 0, 1 if ch == "?" else None)
            elif ch == "{":
                m = re.compile(r"\{\s*(\d+)\s*(?:(,)\s*(\d*)\s*)?\}").match(self.text, self.pos)
                if not m:
                    raise self.error("bad repetition")
                self.pos = m.end()
                lo = int(m.group(1))
                hi = lo if not m.group(2) else (int(m.group(3)) if m.group(3) else None)
                if hi is not None and hi < lo:
                    raise self.error("repetition max below min")
                node = Rep(node, lo, hi)
            else:
                return node
        return node


def _refs(node: Node):
    if isinstance(node, Ref):
        yield node.name
    elif isinstance(node, (Seq, Alt)):
        for child in node.items if isinstance(node, Seq) else node.options:
            yield from _refs(child)
    elif isinstance(node, Rep):
        yield from _refs(node.node)


def parse(text: str) -> dict[str, Node]:
    """Rules of a GBNF grammar; GrammarSyntaxError when it is malformed or refers to undefined rules."""
    return _Parser(text).grammar()


_PRINTABLE = [chr(c) for c in range(32, 127)]


def expand(rules: dict[str, Node], draw: Draw, start: str = "root") -> str:
    """One string the grammar admits; every choice (alternative, repetition count, character) comes from draw."""
    out: list[str] = []

    def walk(node: Node) -> None:
        if isinstance(node, Lit):
            out.append(node.text)
        elif isinstance(node, Cls):
            if node.negated:
                choices = [c for c in _PRINTABLE if node.admits(c)]
                out.append(choices[draw(0, len(choices) - 1)])
            else:
                lo, hi = node.ranges[draw(0, len(node.ranges) - 1)]
                out.append(chr(draw(ord(lo), ord(hi))))
        elif isinstance(node, Ref):
            walk(rules[node.name])
        elif isinstance(node, Seq):
            for item in node.items:
                walk(item)
        elif isinstance(node, Alt):
            walk(node.options[draw(0, len(node.options) - 1)])
        else:
            hi = node.hi if node.hi is not None else node.lo + UNBOUNDED_EXTRA
            for _ in range(draw(node.lo, hi)):
                walk(node.node)

    walk(rules[start])
    return "".join(out)


def matches(rules: dict[str, Node], text: str, start: str = "root") -> bool:
    """Whether the grammar admits exactly ``text`` (sets of reachable positions; no left recursion)."""

    def step(node: Node, positions: frozenset[int]) -> frozenset[int]:
        if not positions:
            return positions
        if isinstance(node, Lit):
            return frozenset(p + len(node.text) for p in positions if text.startswith(node.text, p))
        if isinstance(node, Cls):
            return frozenset(p + 1 for p in positions if p < len(text) and node.admits(text[p]))
        if isinstance(node, Ref):
            return step(rules[node.name], positions)
        if isinstance(node, Seq):
            for item in node.items:
                positions = step(item, positions)
            return positions
        if isinstance(node, Alt):
            return frozenset().union(*(step(option, positions) for option in node.options))
        reached = positions if node.lo == 0 else frozenset()
        current = positions
        count = 0
        while current and (node.hi is None or count < node.hi):
            current = step(node.node, current)
            count += 1
            if count >= node.lo:
                new = current - reached
                reached |= current
                if node.hi is None and not new:
                    break
        return reached

    return len(text) in step(rules[start], frozenset({0}))


def max_length(rules: dict[str, Node], start: str = "root") -> float:
    """Longest string (in UTF-8 bytes) the grammar admits; inf when a repetition is unbounded."""

    def longest(node: Node) -> float:
        if isinstance(node, Lit):
            return len(node.text.encode("utf-8"))
        if isinstance(node, Cls):
            return 1 if not node.negated and all(hi < "\x80" for _, hi in node.ranges) else 4
        if isinstance(node, Ref):
            return longest(rules[node.name])
        if isinstance(node, Seq):
            return sum(longest(item) for item in node.items)
        if isinstance(node, Alt):
            return max(longest(option) for option in node.options)
        return float("inf") if node.hi is None else node.hi * longest(node.node)

    return longest(rules[start])
