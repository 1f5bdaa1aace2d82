"""The contract's GBNF grammar for llama.cpp: it admits exactly the canonical valid answers of a call_list contract,
so constrained decoding cannot produce a call the robot must refuse (tests/edgetune/test_contract_properties.py
proves grammar and validator agree)."""

from __future__ import annotations

import json
import re

from edgetune.contract import ArgSpec, ContractSpec, format_value


def grammar(contract: ContractSpec) -> str | None:
    """A GBNF grammar for llama.cpp admitting only valid answers (None: text tasks are unconstrained).

    An exclusive call ends its answer (its own root alternative, after up to as many void items as an answer may
    hold), and the items are bounded by ``max_calls`` over the longest expansion, so that every answer the grammar
    admits is valid.
    """
    if contract.kind == "text":
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
    for callee, spec in contract.vocabulary().items():
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
    more = contract.max_calls // contract.longest_expansion() - 1
    roots, head = [], ['ws ::= [ \\n]{0,2}']
    if exclusive_rules:
        before = f'(item "," ws){{0,{more}}} ' if call_rules else ""
        roots.append(f'"[" ws {before}exclusive-item ws "]"')
        head += ['exclusive-item ::= "\\"" exclusive-call "\\""', "exclusive-call ::= " + " | ".join(exclusive_rules)]
    if call_rules:
        roots.append(f'"[" ws item ("," ws item){{{contract.min_calls - 1},{more}}} ws "]"')
        head += ['item ::= "\\"" call "\\""', "call ::= " + " | ".join(call_rules)]
    head.insert(0, "root ::= " + " | ".join(roots))
    return "\n".join(head + [f"{name} ::= {body}" for name, body in rules.items()]) + "\n"


def _rule_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-")


def _gbnf_literal(text: str) -> str:
    # JSON string escapes for quote, backslash and newline are GBNF's too; other characters go in as UTF-8
    # (a \\u escape of a character outside the BMP would be a surrogate pair, which GBNF does not decode)
    return json.dumps(text, ensure_ascii=False)


def _gbnf_value(arg: ArgSpec) -> str:
    if arg.type == "enum":
        return " | ".join(_gbnf_literal(format_value(v)) for v in arg.values)
    if arg.type == "bool":
        return '"True" | "False"'
    if arg.type == "str":
        return f"\"'\" [{arg.chars}]{{1,{arg.max_len}}} \"'\""
    return " | ".join(_gbnf_literal(format_value(v)) for v in arg.grid())
