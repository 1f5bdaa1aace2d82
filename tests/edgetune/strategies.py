"""Hypothesis strategies shared by the contract tests: random, valid allowlist declarations."""

from __future__ import annotations

import keyword

from hypothesis import strategies as st

from edgetune.config import from_dict
from edgetune.contract import ContractSpec

_IDENT = st.from_regex(r"[a-z_][a-zA-Z0-9_]{0,5}", fullmatch=True).filter(lambda s: not keyword.iskeyword(s))
_ENUM_VALUE = st.text(
    st.characters(blacklist_categories=("Cs", "Cc", "Cf", "Zl", "Zp"), blacklist_characters="'\"\\"),
    min_size=1,
    max_size=8,
).filter(str.isprintable)


@st.composite
def arg_specs(draw) -> dict:
    kind = draw(st.sampled_from(["str", "int", "float", "bool", "enum"]))
    if kind == "enum":
        return {"type": "enum", "values": draw(st.lists(_ENUM_VALUE, min_size=1, max_size=4))}
    if kind == "str":
        return {"type": "str", "max_len": draw(st.integers(1, 12))}
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
def contracts(draw) -> ContractSpec:
    callees = draw(st.lists(st.lists(_IDENT, min_size=1, max_size=3).map(".".join), min_size=1, max_size=5,
                            unique=True))
    api = {
        callee: {"args": draw(st.dictionaries(_IDENT, arg_specs(), max_size=3))}
        for callee in callees
    }
    min_calls = draw(st.integers(1, 3))
    spec = {"kind": "call_list", "api": api, "min_calls": min_calls, "max_calls": min_calls + draw(st.integers(0, 3))}
    return from_dict(ContractSpec, spec, source="hypothesis")
