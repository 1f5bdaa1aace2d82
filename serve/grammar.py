"""Request grammars: a JSON schema becomes GBNF with llama.cpp's own converter. Constrained decoding itself (the
llama.cpp grammar sampler, the likely-candidates-first check and the close reserve) lives in edgetune.engine, the
one decoder the server, the bench and export share."""

from __future__ import annotations

import json

from llama_cpp.llama_grammar import json_schema_to_gbnf

from edgetune.engine import GrammarError


def gbnf_from_json_schema(schema: str) -> str:
    """GBNF for a JSON schema (llama.cpp's converter); GrammarError when the schema is not usable."""
    try:
        parsed = json.loads(schema)
    except json.JSONDecodeError as exc:
        raise GrammarError(f"not valid JSON: {exc.msg} at position {exc.pos}") from None
    if not isinstance(parsed, dict):
        raise GrammarError(f"a JSON schema is an object, got {type(parsed).__name__}")
    try:
        return json_schema_to_gbnf(schema)
    except (ValueError, KeyError, TypeError, NotImplementedError, RecursionError) as exc:
        raise GrammarError(f"cannot be turned into a grammar: {exc}") from None
