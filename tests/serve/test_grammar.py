"""JSON schemas become GBNF, or an error that says why."""

from __future__ import annotations

import pytest

from serve.grammar import GrammarError, gbnf_from_json_schema


def test_json_schema_errors():
    with pytest.raises(GrammarError, match="not valid JSON"):
        gbnf_from_json_schema("{nope")
    with pytest.raises(GrammarError, match="object"):
        gbnf_from_json_schema("[1, 2]")
    assert "root" in gbnf_from_json_schema('{"type": "object", "properties": {"a": {"type": "integer"}}}')
