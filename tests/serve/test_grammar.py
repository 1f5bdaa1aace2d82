"""Client grammars at the boundary: off unless enabled, and the static limits that refuse (or clamp) what would be
too expensive before anything compiles."""

from __future__ import annotations

import json

import pytest

from serve.client import build_request
from serve.config import ServeConfig
from serve.grammar import MAX_NESTING, SCHEMA_BOUND, GrammarError, bound_json_schema, check_gbnf
from serve.requests import InvalidRequest, _grammar


@pytest.mark.parametrize("kwargs, kind", [(dict(grammar='root ::= "a"'), "CONSTRAINT_KIND_GBNF"),
                                          (dict(json_schema='{"type": "string"}'), "CONSTRAINT_KIND_JSON_SCHEMA")])
def test_custom_grammars_are_off_unless_the_operator_enables_them(kwargs, kind):
    with pytest.raises(InvalidRequest, match=f"^constraint.kind: {kind}: custom .* --custom-grammars"):
        _grammar(build_request("go", **kwargs), None, ServeConfig())
    trusted, custom = _grammar(build_request("go", **kwargs), None, ServeConfig(custom_grammars=True))
    assert trusted is None and custom is not None and custom.kind == kind.split("KIND_")[1].lower()


def test_gbnf_limits_count_outside_literals_and_classes():
    check_gbnf('root ::= "((((" [(((] ' + "(" * MAX_NESTING + '"a"' + ")" * MAX_NESTING + ' "{99999}" # ((((((')
    check_gbnf('root ::= ("ab"{0,100}){0,100}')  # a group repeats as one rule reference
    with pytest.raises(GrammarError, match="nests parentheses"):
        check_gbnf("root ::= " + "(" * (MAX_NESTING + 1) + '"a"' + ")" * (MAX_NESTING + 1))
    with pytest.raises(GrammarError, match="repeats up to 5000 times"):
        check_gbnf('root ::= [a-z]{2,5000}')
    with pytest.raises(GrammarError, match="expands to more than"):
        check_gbnf('root ::= "' + "x" * 100 + '"{1000}')
    with pytest.raises(GrammarError, match="more than 1024 rules"):
        check_gbnf("".join(f'r{i} ::= "a"\n' for i in range(1025)))


def test_json_schema_upper_bounds_are_clamped_lower_bounds_refused_with_the_path():
    clamped = json.loads(bound_json_schema('{"type": "array", "maxItems": 1e9, "items": {"maxLength": 25000}}'))
    assert clamped == {"type": "array", "maxItems": SCHEMA_BOUND, "items": {"maxLength": SCHEMA_BOUND}}
    assert json.loads(bound_json_schema('{"maxLength": 5, "minLength": 2}')) == {"maxLength": 5, "minLength": 2}
    with pytest.raises(GrammarError, match=r"^\$.properties.a.items.minItems is 1e\+08"):
        bound_json_schema('{"properties": {"a": {"items": {"minItems": 1e8}}}}')
    with pytest.raises(GrammarError, match=r"\$.anyOf\[1\].\$ref is 'http://x/s.json'; only references inside"):
        bound_json_schema('{"anyOf": [{"type": "string"}, {"$ref": "http://x/s.json"}]}')
    with pytest.raises(GrammarError, match=r"pattern repeats up to 100000 times"):
        bound_json_schema('{"type": "string", "pattern": "^a{0,100000}$"}')
    with pytest.raises(GrammarError, match="nests more than"):
        bound_json_schema('{"items": ' * 70 + "{}" + "}" * 70)
    with pytest.raises(GrammarError, match="not valid JSON"):
        bound_json_schema("{nope")
    with pytest.raises(GrammarError, match="object"):
        bound_json_schema("[1, 2]")
