"""Client grammars at the boundary: cheap static limits checked before anything compiles.

A custom GBNF grammar or JSON schema is compiled and applied in a grammar worker process with a time and memory
bound (edgetune.grammar_worker); these checks refuse, in microseconds on the event loop, what is sure to be too
expensive, with a message that names the problem: GBNF nesting deeper than llama.cpp's recursive parser should
go, too many rules, repetition bounds that expand into huge rule sets; JSON-schema lower bounds (``minLength``,
``minItems``) no answer could reach. JSON-schema upper bounds are clamped instead: ``maxLength: 25000`` becomes
``SCHEMA_BOUND``, a stricter schema whose answers still satisfy the client's (llama.cpp's converter spells a
bound of N as N nested groups, which is what overflowed its parser's stack).
"""

from __future__ import annotations

import json
import re
from typing import Any

from edgetune.sampling import GrammarError

MAX_NESTING = 64  #: GBNF parentheses inside each other
MAX_RULES = 1024  #: GBNF rule definitions
MAX_REPEAT = 1024  #: each bound of a GBNF repetition x{m,n}
MAX_EXPANDED = 65536  #: grammar elements once every repetition is spelled out (x{m,n} copies x n times)
SCHEMA_BOUND = 512  #: JSON-schema maxLength/maxItems above it are clamped to it, minLength/minItems above it refused
#: (llama.cpp itself refuses a string of maxLength 1024 from its converter: "exceeds sane defaults")
SCHEMA_DEPTH = 64  #: JSON-schema nesting

_GBNF_TOKENS = re.compile(r"""
    (?P<literal>"(?:\\.|[^"\\])*")
  | (?P<cls>\[(?:\\.|[^\]\\])*\])
  | (?P<comment>\#[^\n]*)
  | (?P<repeat>\{\s*(?P<min>\d+)\s*(?P<comma>,\s*(?P<max>\d*)\s*)?\})
  | (?P<rule>[A-Za-z0-9_-]+\s*::=)
  | (?P<open>\()
  | (?P<close>\))
  | (?P<name>[A-Za-z0-9_-]+)
""", re.VERBOSE)
_PATTERN_REPEAT = re.compile(r"(?<!\\)\{\s*(\d+)\s*(?:,\s*(\d*)\s*)?\}")
_LOWER = ("minLength", "minItems")
_UPPER = ("maxLength", "maxItems")


def check_gbnf(gbnf: str) -> None:
    """GrammarError when ``gbnf`` is sure to be too expensive to compile (nesting, rules, repetitions)."""
    depth = rules = 0
    expanded = 0
    last = 1  # grammar elements of the item a repetition repeats
    for m in _GBNF_TOKENS.finditer(gbnf):
        kind = m.lastgroup
        if kind == "literal":
            last = max(1, len(m.group()) - 2)
        elif kind == "open":
            depth += 1
            if depth > MAX_NESTING:
                raise GrammarError(f"nests parentheses more than {MAX_NESTING} deep (at character {m.start()}); "
                                   "use named rules instead")
        elif kind == "close":
            depth = max(0, depth - 1)
            last = 1  # a group becomes one rule reference
        elif kind == "rule":
            rules += 1
            if rules > MAX_RULES:
                raise GrammarError(f"has more than {MAX_RULES} rules")
        elif kind == "repeat":
            low, high = int(m.group("min")), m.group("max")
            bound = max(low, int(high)) if high else low
            if bound > MAX_REPEAT:
                raise GrammarError(f"repeats up to {bound} times at character {m.start()} ({m.group().strip()}); "
                                   f"at most {MAX_REPEAT}")
            expanded += bound * last
            if expanded > MAX_EXPANDED:
                raise GrammarError(f"expands to more than {MAX_EXPANDED} elements once its repetitions are spelled "
                                   f"out (x{{m,n}} copies x n times); use * or + where the count does not matter")
        elif kind in ("cls", "name"):
            last = 1


def bound_json_schema(schema: str) -> str:
    """``schema`` with its upper bounds clamped to SCHEMA_BOUND; GrammarError (naming the schema path) for JSON
    that is not a schema, a lower bound above SCHEMA_BOUND, a remote ``$ref``, a pattern with a huge repetition."""
    try:
        parsed = json.loads(schema)
    except json.JSONDecodeError as exc:
        raise GrammarError(f"not valid JSON: {exc.msg} at position {exc.pos}") from None
    except RecursionError:
        raise GrammarError(f"not valid JSON: nested more than {SCHEMA_DEPTH} deep") from None
    if not isinstance(parsed, dict):
        raise GrammarError(f"a JSON schema is an object, got {type(parsed).__name__}")
    _bound(parsed, "$", 0)
    return json.dumps(parsed)


def _bound(node: Any, path: str, depth: int) -> None:
    if depth > SCHEMA_DEPTH:
        raise GrammarError(f"nests more than {SCHEMA_DEPTH} deep at {path}")
    if isinstance(node, list):
        for i, item in enumerate(node):
            _bound(item, f"{path}[{i}]", depth + 1)
        return
    if not isinstance(node, dict):
        return
    for key in _LOWER:
        value = node.get(key)
        if _number(value) and value > SCHEMA_BOUND:
            raise GrammarError(f"{path}.{key} is {value:g}; at most {SCHEMA_BOUND} (an answer is at most "
                               "--max-tokens-limit tokens)")
    for key in _UPPER:
        if _number(node.get(key)) and node[key] > SCHEMA_BOUND:
            node[key] = SCHEMA_BOUND
    ref = node.get("$ref")
    if isinstance(ref, str) and not ref.startswith("#"):
        raise GrammarError(f"{path}.$ref is {ref[:80]!r}; only references inside the schema (#/...) are allowed, "
                           "the server fetches nothing")
    pattern = node.get("pattern")
    if isinstance(pattern, str):
        for m in _PATTERN_REPEAT.finditer(pattern):
            bound = max(int(m.group(1)), int(m.group(2) or 0))
            if bound > SCHEMA_BOUND:
                raise GrammarError(f"{path}.pattern repeats up to {bound} times ({m.group()}); at most "
                                   f"{SCHEMA_BOUND}")
    for key, value in node.items():
        if isinstance(value, (dict, list)):
            _bound(value, f"{path}.{key}", depth + 1)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
