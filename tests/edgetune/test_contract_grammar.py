"""The contract's GBNF grammar (edgetune/contract_grammar.py): exclusive calls, rule names, none for a text
contract. That it admits exactly the valid answers is tests/edgetune/test_contract_properties.py."""

from __future__ import annotations

from edgetune.config import from_dict
from edgetune.contract import ContractSpec


def test_the_grammar_puts_exclusive_calls_in_their_own_root_alternative(contract):
    grammar = contract.grammar()
    root, *_ = grammar.splitlines()
    assert root == ('root ::= "[" ws (item "," ws){0,7} exclusive-item ws "]" | '
                    '"[" ws item ("," ws item){0,7} ws "]"')
    calls = next(line for line in grammar.splitlines() if line.startswith("call ::= "))
    assert "call-robot-reject" not in calls and "call-go " in calls + " " and "call-turn" in calls


def test_grammar_rule_names_stay_distinct_when_names_collide():
    spec = from_dict(ContractSpec, {
        "kind": "call_list",
        "api": {
            "a.b": {"args": {"c_d": {"type": "enum", "values": ["x"]}}},
            "a.b_c": {"args": {"d": {"type": "int", "min": 0, "max": 3}}},
            "a.b.c": {},
        },
    })
    grammar = spec.grammar()
    names = [line.split(" ::= ")[0] for line in grammar.splitlines()]
    assert len(names) == len(set(names)), grammar
    assert "\"'x'\"" in grammar and '"3"' in grammar
