"""Hypothesis strategies shared by the contract tests: random, valid allowlist declarations, some with exclusive
calls and expansions (compact calls forwarding their arguments, or picking numbers from a ``let`` table)."""

from __future__ import annotations

import keyword

from hypothesis import strategies as st

from edgetune.config import from_dict
from edgetune.contract import ArgSpec, ContractSpec

_IDENT = st.from_regex(r"[a-z_][a-zA-Z0-9_]{0,5}", fullmatch=True).filter(lambda s: not keyword.iskeyword(s))
_ENUM_VALUE = st.text(
    st.characters(blacklist_categories=("Cs", "Cc", "Cf", "Zl", "Zp"), blacklist_characters="'\"\\"),
    min_size=1,
    max_size=8,
).filter(str.isprintable)
_CHARS = [None, "a-z0-9 -", "a-c", "x-z0-9", "A-Z_ ", "#-&(-Z", "-"]  # None: the default class


@st.composite
def arg_specs(draw) -> dict:
    kind = draw(st.sampled_from(["str", "int", "float", "bool", "enum"]))
    if kind == "enum":
        return {"type": "enum", "values": draw(st.lists(_ENUM_VALUE, min_size=1, max_size=4))}
    if kind == "str":
        chars = draw(st.sampled_from(_CHARS))
        return {"type": "str", "max_len": draw(st.integers(1, 12)), **({"chars": chars} if chars else {}),
                "match": draw(st.sampled_from(["exact", "loose"]))}
    if kind == "int":
        lo = draw(st.integers(-50, 50))
        return {"type": "int", "min": lo, "max": lo + draw(st.integers(0, 40)), "step": draw(st.integers(1, 5))}
    if kind == "float":
        # bounds a little off the step grid, around at least one grid value
        step = draw(st.sampled_from([0.05, 0.1, 0.25, 0.5, 1.0, 0.3]))
        first = draw(st.integers(-10, 10)) * step
        lo = round(first - draw(st.sampled_from([0.0, 0.01, 0.04])), 2)
        hi = round(first + step * draw(st.integers(0, 20)) + draw(st.sampled_from([0.0, 0.02])), 2)
        return {"type": "float", "min": lo, "max": hi, "step": step}
    return {"type": "bool"}


@st.composite
def expansion(draw, api: dict) -> dict:
    """A compact call expanding to 1-3 API calls: the first fills its arguments from ``like`` arguments or, for
    numbers, from a ``let`` table of grid values picked by an enum argument (so every combination is valid)."""
    callees = [c for c, spec in api.items() if not spec.get("exclusive")]
    target = draw(st.sampled_from(callees))
    args, let, holes = {}, {}, []
    for i, (name, arg) in enumerate(api[target]["args"].items()):
        own = f"a{i}"
        if arg["type"] in ("int", "float") and draw(st.booleans()):
            grid = ArgSpec(**arg).grid()
            picks = draw(st.lists(st.sampled_from(grid), min_size=1, max_size=3, unique=True))
            words = [f"w{k}" for k in range(len(picks))]
            args[own] = {"type": "enum", "values": words}
            let[own] = {word: {"v": float(value)} for word, value in zip(words, picks)}
            holes.append(f"{name}={{{own}.v * 1}}")
        else:
            args[own] = {"like": f"{target}.{name}"}
            holes.append(f"{name}={{{own}}}")
    without_args = [c for c in callees if not api[c]["args"]]
    more = draw(st.lists(st.sampled_from(without_args), max_size=2)) if without_args else []
    to = [f"{target}({', '.join(holes)})"] + [f"{c}()" for c in more]
    return {"doc": "compact", "args": args, "let": let, "to": to}


@st.composite
def contracts(draw) -> ContractSpec:
    callees = draw(st.lists(st.lists(_IDENT, min_size=1, max_size=3).map(".".join), min_size=1, max_size=5,
                            unique=True))
    api = {
        callee: {"args": draw(st.dictionaries(_IDENT, arg_specs(), max_size=3))}
        for callee in callees
    }
    min_calls = draw(st.integers(1, 3))
    if min_calls == 1 and len(api) > 1 and draw(st.booleans()):
        api[callees[0]]["exclusive"] = True
    names = draw(st.lists(_IDENT.map(lambda s: "x_" + s), max_size=2, unique=True))
    expansions = {name: draw(expansion(api)) for name in names}
    longest = max((len(e["to"]) for e in expansions.values()), default=1)
    max_calls = max(min_calls + draw(st.integers(0, 3)), min_calls * longest)
    spec = {"kind": "call_list", "api": api, "min_calls": min_calls, "max_calls": max_calls, "expansions": expansions}
    return from_dict(ContractSpec, spec, source="hypothesis")
