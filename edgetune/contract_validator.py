"""The contract's validator: judges one answer against a ContractSpec, never executing anything.

Call answers are parsed with ``ast`` only, every violation is reported with its item and column, compact calls are
expanded into the API calls the robot runs (``Verdict.calls``; an answer that refuses, with an exclusive call last or
a name as said that the contract does not know, runs the refusal alone), and an item is valid only in its one canonical
spelling (edgetune/contract.py says why). ``judge`` also returns the per-call keys the scorer compares.
"""

from __future__ import annotations

import ast
import difflib
import json
import math

from edgetune.contract import ArgSpec, CallSpec, ContractSpec, Verdict, Violation, format_value
from edgetune.expansions import ExpansionError, UnknownName, dotted_name

_FORBIDDEN_BUILTINS = {"__import__", "eval", "exec", "compile", "getattr", "setattr", "open", "globals", "vars"}


def validate(contract: ContractSpec, text: str) -> Verdict:
    """Judge one answer. Never executes anything: call answers are parsed with ``ast`` only."""
    return judge(contract, text)[0]


def judge(contract: ContractSpec, text: str) -> tuple[Verdict, list[str]]:
    """The verdict and, per expanded call, the text the scorer compares (loose arguments loosened)."""
    if contract.kind == "text":
        verdict = _validate_text(contract, text)
        return verdict, verdict.normalized.split()
    violations: list[Violation] = []
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        v = Violation("not_json", f"the answer is not a JSON list of strings: {exc.msg}", None, exc.pos)
        return Verdict(False, [v], [], _collapse(text)), []
    except RecursionError:
        v = Violation("not_json", "the answer is not a JSON list of strings: nested too deeply", None, 0)
        return Verdict(False, [v], [], _collapse(text)), []
    if not isinstance(data, list):
        v = Violation("not_list", f"the answer must be a JSON list of strings, got {type(data).__name__}", None, 0)
        return Verdict(False, [v], [], _collapse(text)), []
    vocab = contract.vocabulary()
    compact: list[str] = []
    calls: list[str] = []
    keys: list[str] = []
    ends: list[int] = []  # expanded calls so far, after each item
    exclusive: list[tuple[int, str]] = []
    refused: list[int] = []  # items that stand for a refusal: a name resolved to nothing, an exclusive call last
    max_chars = max_item_chars(contract)
    for index, item in enumerate(data):
        if not isinstance(item, str):
            violations.append(Violation("not_string", f"each item must be a string, got {item!r}", index, 0))
            normal = _collapse(json.dumps(item))
            expanded = [(normal, normal)]
        elif len(item) > max_chars:
            msg = f"{len(item)} characters; no allowlisted call is longer than {max_chars}"
            violations.append(Violation("too_long", msg, index, max_chars))
            normal = _collapse(item)
            expanded = [(normal, normal)]
        else:
            normal, callee, values = _parse_call(item, index, violations, vocab)
            if callee is not None and vocab[callee].exclusive:
                exclusive.append((index, callee))
            expanded = [(normal, normal)]
            if values is not None and callee in contract.expansions:
                expanded = _expand(contract, callee, values, index, violations, refused) or expanded
            elif values is not None:
                expanded = [(normal, _canonical(callee, vocab[callee], values, loose=True))]
        compact.append(normal)
        calls += [call for call, _ in expanded]
        keys += [key for _, key in expanded]
        ends.append(len(calls))
    for index, callee in exclusive:
        if index != len(data) - 1:
            msg = f"'{callee}' ends its answer: it must be the last item, got it at item {index} of {len(data)}"
            violations.append(Violation("exclusive", msg, index, 0))
    if "\\" in text and all(v.code == "not_canonical" for v in violations):
        # no canonical item holds a backslash or a quote, so none needs a JSON escape (said only when nothing
        # worse is wrong: an answer with a bad call is refused anyway)
        col = text.index("\\")
        msg = f"the answer uses a JSON escape ({text[col:col + 6]}); write each item's characters as they are"
        violations.append(Violation("not_canonical", msg, None, col))
    if not contract.min_calls <= len(data) or len(calls) > contract.max_calls:
        first_extra = next((i for i, end in enumerate(ends) if end > contract.max_calls), None)
        once = " once expanded" if len(calls) != len(data) else ""
        msg = f"{len(calls)} calls{once}; between {contract.min_calls} and {contract.max_calls} allowed"
        violations.insert(0, Violation("call_count", msg, first_extra))
    if exclusive and exclusive[-1][0] == len(data) - 1:
        refused.append(len(data) - 1)
    if refused:  # the first refusal is the answer: the items around it are void, only it ever runs
        first = min(refused)
        start = ends[first - 1] if first else 0
        calls, keys = calls[start:ends[first]], keys[start:ends[first]]
    verdict = Verdict(not violations, violations, calls, json.dumps(compact), compact)
    return verdict, keys


def refusal(contract: ContractSpec, call: str) -> str | None:
    """Why the API validator refuses one call text, or None (checks expansion declarations)."""
    refused: list[Violation] = []
    _parse_call(call, 0, refused, contract.api)
    return "; ".join(v.message for v in refused) or None


def max_item_chars(contract: ContractSpec) -> int:
    """Longest call text worth parsing: twice the longest canonical call plus slack, so that a loosely spelt
    call still gets a message naming its canonical text (only the canonical spelling is valid).

    Bounding items keeps a hostile answer (deeply nested brackets or operators) from exhausting the parser.
    """
    longest = max(
        (len(callee) + 2 + sum(len(name) + 3 + _value_width(arg) for name, arg in spec.args.items())
         for callee, spec in contract.vocabulary().items()),
        default=0,
    )
    return 2 * longest + 64


def _expand(contract: ContractSpec, callee: str, values: dict, index: int, out: list[Violation],
            refused: list[int]) -> list[tuple[str, str]] | None:
    """(API call, scoring key) per call ``callee(**values)`` expands to; None (and a violation) if it cannot. A name
    as said that the contract does not know makes the item the expansion's refusal (its index goes to ``refused``)."""
    try:
        texts = contract.expander(callee).expand(values, contract.api)
    except UnknownName:
        refused.append(index)
        return [(contract.expansions[callee].unresolved,) * 2]
    except ExpansionError as exc:
        out.append(Violation("expansion", f"{callee}: {exc.problem}", index))
        return None
    expanded = []
    for text in texts:
        refused: list[Violation] = []
        normal, api_callee, api_values = _parse_call(text, index, refused, contract.api)
        if refused:
            msg = f"{callee} expands to {text}, which the API refuses: {refused[0].message}"
            out.append(Violation("expansion", msg, index))
            return None
        assert api_callee is not None and api_values is not None
        expanded.append((normal, _canonical(api_callee, contract.api[api_callee], api_values, loose=True)))
    return expanded


def _parse_call(item: str, index: int, out: list[Violation],
                vocab: dict[str, CallSpec]) -> tuple[str, str | None, dict | None]:
    """Check one call expression against ``vocab``; append violations (columns index ``item``).

    Returns the normalised text (the collapsed item when invalid), the callee when it is in ``vocab``, and the
    argument values when they are all valid.
    """
    raw = _collapse(item)
    indent = len(item) - len(item.lstrip())
    try:
        tree = ast.parse(item.strip(), mode="eval")
    except SyntaxError as exc:
        col = indent + (exc.offset or 1) - 1
        out.append(Violation("syntax", f"not a single Python expression: {exc.msg}", index, col))
        return raw, None, None
    except (ValueError, RecursionError, MemoryError) as exc:
        # NUL bytes (ValueError before Python 3.12) or nesting beyond the parser's limits
        out.append(Violation("syntax", f"not a single Python expression: {exc or 'nested too deeply'}", index, 0))
        return raw, None, None
    source = item.strip().encode("utf-8")

    def at(byte_col: int) -> int:  # ast columns count UTF-8 bytes; report characters of ``item``
        return indent + len(source[:byte_col].decode("utf-8", errors="ignore"))

    node = tree.body
    if not isinstance(node, ast.Call):
        what = type(node).__name__
        out.append(Violation("not_a_call", f"each item must be one call, got a {what} expression", index, indent))
        return raw, None, None
    callee = dotted_name(node.func)
    if callee is None:
        what = type(node.func).__name__
        msg = f"the callee must be an allowlisted name like nav.go_to, got a {what}"
        out.append(Violation("bad_callee", msg, index, at(node.func.col_offset)))
        return raw, None, None
    spec = vocab.get(callee)
    if spec is None:
        head = callee.split(".")[0]
        if callee in _FORBIDDEN_BUILTINS or head in _FORBIDDEN_BUILTINS:
            msg = f"'{callee}' is forbidden; only the allowlisted robot API may be called"
            out.append(Violation("forbidden", msg, index, at(node.func.col_offset)))
        elif any(name.split(".")[0] == head for name in vocab):
            msg = f"'{callee}' is an attribute outside the allowlist{_hint(callee, vocab)}"
            out.append(Violation("unknown_attribute", msg, index, at(node.func.col_offset)))
        else:
            msg = f"'{callee}' is not in the allowlist{_hint(callee, vocab)}"
            out.append(Violation("unknown_callee", msg, index, at(node.func.col_offset)))
        return raw, None, None
    names = list(spec.args)
    given: dict[str, object] = {}  # arguments with a valid value
    named: set[str] = set()  # arguments mentioned at all, valid or not
    unpacked = False  # after *args/**kwargs no argument can be called missing
    ok = True

    def bad(code: str, msg: str, col: int | None) -> None:
        nonlocal ok
        ok = False
        out.append(Violation(code, f"{callee}: {msg}", index, None if col is None else at(col)))

    for pos, arg in enumerate(node.args):
        if isinstance(arg, ast.Starred):
            bad("unpacking", "*args unpacking is not allowed", arg.col_offset)
            unpacked = True
            continue
        if pos >= len(names):
            bad("extra_argument", f"takes {len(names)} positional argument(s), got {len(node.args)}", arg.col_offset)
            continue
        named.add(names[pos])
        _check_value(names[pos], spec.args[names[pos]], arg, given, bad)
    for kw in node.keywords:
        if kw.arg is None:
            bad("unpacking", "**kwargs unpacking is not allowed", kw.col_offset)
            unpacked = True
        elif kw.arg not in spec.args:
            bad("unknown_argument", f"unknown argument '{kw.arg}'{_hint(kw.arg, spec.args)}", kw.col_offset)
        elif kw.arg in named:
            bad("duplicate_argument", f"argument '{kw.arg}' given twice", kw.col_offset)
        else:
            named.add(kw.arg)
            _check_value(kw.arg, spec.args[kw.arg], kw.value, given, bad)
    for name in names:
        if name not in named and not unpacked:
            bad("missing_argument", f"missing argument '{name}'", (node.end_col_offset or 1) - 1)
    if not ok:
        return raw, callee, None
    canonical = _canonical(callee, spec, given)
    if item != canonical:
        col = next((i for i, (a, b) in enumerate(zip(item, canonical)) if a != b), min(len(item), len(canonical)))
        msg = f"{callee}: {_misspelling(item, canonical, col, node, names)}; write exactly {canonical}"
        out.append(Violation("not_canonical", msg, index, col))
    return canonical, callee, given


def _check_value(name: str, arg: ArgSpec, node: ast.expr, given: dict, bad) -> None:
    is_literal, value = _literal(node)
    col = node.col_offset
    if not is_literal:
        bad("not_literal", f"argument '{name}' must be a literal value, got a {type(node).__name__}", col)
        return
    if arg.type in ("str", "enum"):
        if not isinstance(value, str):
            bad("wrong_type", f"argument '{name}' must be a string, got {value!r}", col)
        elif arg.type == "enum" and value not in arg.values:
            bad("not_in_enum", f"argument '{name}'={value!r} is not one of {arg.values}", col)
        elif arg.type == "str" and not arg.admits_text(value):
            bad("bad_value", f"argument '{name}' must be 1-{arg.max_len} characters of [{arg.chars}]", col)
        else:
            given[name] = value
        return
    if arg.type == "bool":
        if not isinstance(value, bool):
            bad("wrong_type", f"argument '{name}' must be True or False, got {value!r}", col)
        else:
            given[name] = value
        return
    numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not numeric or (arg.type == "int" and not isinstance(value, int)) or not math.isfinite(value):
        bad("wrong_type", f"argument '{name}' must be {'an int' if arg.type == 'int' else 'a number'}, got {value!r}", col)
        return
    assert arg.min is not None and arg.max is not None
    if not arg.min <= value <= arg.max:
        bad("out_of_range", f"argument '{name}'={value!r} is outside [{arg.min}, {arg.max}]", col)
        return
    given[name] = float(value) if arg.type == "float" else value


def _validate_text(contract: ContractSpec, text: str) -> Verdict:
    violations = []
    stripped = text.strip()
    if not contract.min_chars <= len(stripped) <= contract.max_chars:
        violations.append(
            Violation("length", f"{len(stripped)} characters; between {contract.min_chars} and {contract.max_chars} allowed")
        )
    lowered = stripped.casefold()
    for word in contract.forbidden:
        if word.casefold() in lowered:
            violations.append(Violation("forbidden", f"contains the forbidden text {word!r}", None, lowered.index(word.casefold())))
    return Verdict(not violations, violations, [], _collapse(stripped).casefold())


def _literal(node: ast.expr) -> tuple[bool, object]:
    if isinstance(node, ast.Constant) and isinstance(node.value, (str, int, float, bool)):
        return True, node.value
    if (
        isinstance(node, ast.UnaryOp)
        and isinstance(node.op, (ast.USub, ast.UAdd))
        and isinstance(node.operand, ast.Constant)
        and isinstance(node.operand.value, (int, float))
        and not isinstance(node.operand.value, bool)
    ):
        v = node.operand.value
        return True, -v if isinstance(node.op, ast.USub) else v
    return False, None


def _collapse(text: str) -> str:
    return " ".join(text.split())


def _loosen(text: str) -> str:
    """How ``match: loose`` text is compared: case-folded, without surrounding space or trailing .!?, marks."""
    return text.casefold().strip().rstrip(".!?,").strip()


def _canonical(callee: str, spec: CallSpec, values: dict, loose: bool = False) -> str:
    """The canonical call text; ``loose``: with ``match: loose`` arguments loosened (the scorer's comparison)."""
    def shown(name: str) -> str:
        value = values[name]
        return format_value(_loosen(value) if loose and spec.args[name].match == "loose" else value)

    return f"{callee}({', '.join(f'{name}={shown(name)}' for name in spec.args)})"


def _misspelling(item: str, canonical: str, col: int, node: ast.Call, names: list[str]) -> str:
    """What makes a parsed, valid call not its canonical spelling (``col``: where the two texts part)."""
    if node.args:
        return "every argument must be given by keyword (name=value)"
    if [kw.arg for kw in node.keywords] != names:
        return f"arguments must be in the declared order ({', '.join(names)})"
    got, want = item[col:col + 12], canonical[col:col + 12]
    if not want:
        return f"not the canonical spelling: {got!r} follows where the canonical text ends"
    if not got:
        return f"not the canonical spelling: it ends where the canonical text goes on with {want!r}"
    return f"not the canonical spelling: it has {got!r} where the canonical text has {want!r}"


def _hint(name: str, choices) -> str:
    close = difflib.get_close_matches(name, list(choices), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _value_width(arg: ArgSpec) -> int:
    """Longest canonical text of one argument value."""
    if arg.type == "enum":
        return max((len(format_value(v)) for v in arg.values), default=2)
    if arg.type == "str":
        return arg.max_len + 2
    if arg.type == "bool":
        return len("False")
    return 24  # the longest repr of a float
