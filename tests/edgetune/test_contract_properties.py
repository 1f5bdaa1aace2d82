"""Property tests of the contract: the grammar admits only what the validator accepts (for the robot task and for
random allowlists with exclusive calls and expansions), an answer is valid only in its canonical spelling (any other
form Python reads as the same call is refused, naming the canonical text), an accepted item re-serializes to itself,
and mutated answers are rejected with the right violation at the right item. The GBNF side is read
by tests/edgetune/gbnf.py, written independently of edgetune.contract_grammar."""

from __future__ import annotations

import json
import math
import random
import functools
import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgetune.contract import TEXT_CHARS, ArgSpec
from edgetune.task import load_task
from tests.edgetune import gbnf
from tests.edgetune.strategies import contracts

ROBOT = load_task("robot_sdk").contract
ROBOT_RULES = gbnf.parse(ROBOT.grammar())
VOCAB = ROBOT.vocabulary()
ACTIONS = sorted(name for name, spec in VOCAB.items() if not spec.exclusive)  #: calls that may share an answer
EXCLUSIVE = sorted(name for name, spec in VOCAB.items() if spec.exclusive)
MAX_ITEMS = ROBOT.max_calls // ROBOT.longest_expansion()  #: items the grammar admits, whatever they expand to
TEXT_ALPHABET = string.ascii_letters + string.digits + " ,.!?-"
PROPERTY = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
#: compact arguments that name an enum value as said: names on the map (values and aliases) besides random text
SAID = {(callee, name): sorted(set(enum.values) | {a for names in enum.aliases.values() for a in names})
        for callee in ROBOT.expansions for name, enum in ROBOT.expander(callee).said.items()}


def runs(items: list[str]) -> list[str]:
    """What the robot runs, from each item alone (an oracle apart from the validator's loop): every item's calls in
    order, or the first refusal alone (an exclusive call, or a place the map lacks, voids the others)."""
    per_item = [ROBOT.validate(json.dumps([item])).calls for item in items]
    refusals = [calls for calls in per_item if len(calls) == 1 and calls[0].split("(")[0] in EXCLUSIVE]
    return refusals[0] if refusals else [call for calls in per_item for call in calls]


def test_text_alphabet_matches_the_contract():
    # spelled out independently above; the grammar's character class must admit exactly it
    char_class = gbnf.parse(f"root ::= [{TEXT_CHARS}]")["root"]
    assert {c for c in map(chr, range(0x110)) if char_class.admits(c)} == set(TEXT_ALPHABET)


@functools.cache
def alphabet(chars: str) -> str:
    """The characters a ``chars`` class admits, as the GBNF reader (not the contract) reads the class."""
    char_class = gbnf.parse(f"root ::= [{chars}]")["root"]
    return "".join(c for c in map(chr, range(0x110)) if char_class.admits(c))


def test_the_robot_object_names_are_lower_case_words_digits_spaces_and_hyphens():
    for callee, arg_name in [("perception.find_object", "name"), ("arm.pick", "name"), ("arm.place", "surface")]:
        arg = ROBOT.api[callee].args[arg_name]
        assert alphabet(arg.chars) == " -0123456789" + string.ascii_lowercase
        assert arg.charset() == set(alphabet(arg.chars))


def test_gbnf_reader_itself_expands_and_matches_a_small_grammar():
    rules = gbnf.parse('root ::= "x" [a-b]{1,2} ("\\"" | "\\\\n" | y)?\ny ::= [^!-}]\n')
    rng = random.Random(0)
    seen = {gbnf.expand(rules, rng.randint) for _ in range(3000)}
    tails = ["", '"', "\\n", " ", "~"]  # the negated class admits only these printable characters
    expected = {"x" + mid + tail for mid in ["a", "b", "aa", "ab", "ba", "bb"] for tail in tails}
    assert seen == expected
    assert all(gbnf.matches(rules, s) for s in expected)
    assert not any(gbnf.matches(rules, s) for s in ["x", "xabc", "xc", "xa\\", "xaaa"])
    with pytest.raises(gbnf.GrammarSyntaxError, match="undefined"):
        gbnf.parse("root ::= missing\n")


# ---------------------------------------------------------------------------------------------- random contracts
@PROPERTY
@given(rng=st.randoms(use_true_random=False))
def test_every_expansion_of_the_robot_grammar_is_valid(rng):
    text = gbnf.expand(ROBOT_RULES, rng.randint)
    verdict = ROBOT.validate(text)
    assert verdict.valid, (text, verdict.violations)
    assert verdict.compact == json.loads(text)  # the grammar writes the canonical spelling only


@PROPERTY
@given(contract=contracts(), rng=st.randoms(use_true_random=False))
def test_every_answer_a_random_contract_grammar_admits_is_valid(contract, rng):
    rules = gbnf.parse(contract.grammar())
    for _ in range(5):
        text = gbnf.expand(rules, rng.randint)
        verdict = contract.validate(text)
        assert verdict.valid, (contract.grammar(), text, verdict.violations)
        assert verdict.compact == json.loads(text)


# ------------------------------------------------------------------------------------------ valid robot answers
def _float_text(value: float) -> str:
    return repr(value + 0.0)


def _string_forms(value: str) -> list[str]:
    """Python literals of ``value``: the canonical one first, then spellings the parser reads as the same string."""
    forms = [f"'{value}'", f'"{value}"', f"u'{value}'", f"'''{value}'''", f"'\\x{ord(value[0]):02x}{value[1:]}'"]
    return forms + ([f"'{value[:1]}' '{value[1:]}'"] if len(value) > 1 else [])


def _number_forms(value: int | float, canonical: str) -> list[str]:
    forms = [canonical, repr(value), f"({canonical})"] + ([f"+{canonical}"] if value >= 0 else [])
    if isinstance(value, int):
        digits = str(abs(value))
        forms += [hex(value)] + ([("-" if value < 0 else "") + digits[0] + "_" + digits[1:]] if len(digits) > 1 else [])
    else:
        forms += [canonical + "0", f"{value:e}"] + ([str(int(value))] if value.is_integer() else [])
        forms += [canonical.replace("0.", ".", 1)] if canonical.lstrip("-").startswith("0.") else []
    return forms


@st.composite
def argument(draw, arg: ArgSpec, on_grid: bool, loose: bool, names: list[str] = ()) -> tuple[str, str]:
    """(how the value is written: canonically, or with ``loose`` perhaps as Python also reads it; its canonical
    text). ``names``: the known names of an argument said by name, drawn besides random text."""
    if arg.type in ("enum", "str"):
        text = st.text(alphabet(arg.chars), min_size=1, max_size=arg.max_len)
        value = draw(st.sampled_from(arg.values) if arg.type == "enum"
                     else st.one_of(text, st.sampled_from(names)) if names else text)
        forms = _string_forms(value)
    elif arg.type == "bool":
        forms = [draw(st.sampled_from(["True", "False"]))]
        forms.append(f"({forms[0]})")
    else:
        if on_grid:
            value = draw(st.sampled_from(arg.grid()))
        elif arg.type == "int":
            value = draw(st.integers(math.ceil(arg.min), math.floor(arg.max)))
        else:
            value = round(draw(st.floats(arg.min, arg.max)), 3)
        forms = _number_forms(value, str(value) if arg.type == "int" else _float_text(value))
    return draw(st.sampled_from(forms)) if loose else forms[0], forms[0]


@st.composite
def robot_call(draw, on_grid: bool = False, callee: str | None = None, loose: bool = False) -> tuple[str, str]:
    """(a call as written, its canonical form). Written canonically, or with ``loose`` perhaps in any form Python's
    parser reads as the same call: positionals, keyword order, spacing, comments, look-alike letters and more."""
    callee = callee or draw(st.sampled_from(ACTIONS))
    spec = VOCAB[callee]
    values = [(name, *draw(argument(arg, on_grid, loose, SAID.get((callee, name), [])))) for name, arg in spec.args.items()]
    canonical = f"{callee}({', '.join(f'{name}={canon}' for name, _, canon in values)})"
    if not loose:
        return canonical, canonical
    n_positional = draw(st.integers(0, len(values)))
    keywords = values[n_positional:]
    keywords = draw(st.permutations(keywords)) if keywords else []
    space = draw(st.sampled_from(["", " "]))
    comma = draw(st.sampled_from([", ", ",", " , ", ",\\\n"]))
    written = [text for _, text, _ in values[:n_positional]] + [f"{name}{space}={space}{text}" for name, text, _ in keywords]
    head, dot, rest = callee.partition(".")
    name = draw(st.sampled_from([callee, f"({head}){dot}{rest}", f"{head} {dot} {rest}" if dot else f"({callee})",
                                 chr(ord(callee[0]) + 0xFEE0) + callee[1:]]))  # a fullwidth first letter
    inside = comma.join(written) + draw(st.sampled_from(["", ","] if written else [""]))
    call = f"{name}({draw(st.sampled_from(['', ' ', chr(92) + chr(10)]))}{inside})"
    return draw(st.sampled_from(["", " "])) + call + draw(st.sampled_from(["", " ", "  # ok", "\t"])), canonical


@PROPERTY
@given(calls=st.one_of(st.lists(robot_call(), min_size=1, max_size=MAX_ITEMS),
                       st.lists(robot_call(callee=EXCLUSIVE[0]), min_size=1, max_size=1)))
def test_canonical_answers_are_valid_and_are_their_own_normal_form(calls):
    items = [canonical for _, canonical in calls]
    verdict = ROBOT.validate(json.dumps(items))
    assert verdict.valid, verdict.violations
    assert verdict.compact == items
    assert verdict.normalized == json.dumps(verdict.compact)
    # the robot gets API calls only: each item's expansion, in order (test_contract_validator.py checks the tables)
    assert verdict.calls == runs(items)
    assert all(call.split("(")[0] in ROBOT.api for call in verdict.calls)


@PROPERTY
@given(calls=st.one_of(st.lists(robot_call(loose=True), min_size=1, max_size=MAX_ITEMS),
                       st.lists(robot_call(callee=EXCLUSIVE[0], loose=True), min_size=1, max_size=1)),
       ascii_json=st.booleans())
def test_an_answer_is_valid_exactly_when_every_item_is_its_canonical_spelling(calls, ascii_json):
    text = json.dumps([written for written, _ in calls], ensure_ascii=ascii_json)
    verdict = ROBOT.validate(text)
    misspelt = {i for i, (written, canonical) in enumerate(calls) if written != canonical}
    assert verdict.valid == (not misspelt and "\\" not in text), (text, verdict.violations)
    # each misspelt item is refused at its index, naming its canonical text; the meaning is kept for respelling
    assert {v.index for v in verdict.violations} - {None} == misspelt
    assert verdict.respellable and verdict.compact == [canonical for _, canonical in calls]
    for v in verdict.violations:
        if v.index is not None:
            assert v.message.endswith(f"write exactly {calls[v.index][1]}"), v


@st.composite
def hostile_item(draw) -> str:
    """An item text of any sort: a loosely written call, a mutated one, a grammar item, or random text."""
    kind = draw(st.sampled_from(["loose", "mutated", "grammar", "text"]))
    if kind == "loose":
        return draw(robot_call(loose=True))[0]
    if kind == "mutated":
        return draw(mutation(draw(robot_call())[0]))[0]
    if kind == "grammar":
        return json.loads(gbnf.expand(ROBOT_RULES, draw(st.randoms(use_true_random=False)).randint))[0]
    return draw(st.text(st.sampled_from("nav.dock()go_to(place='kitchen') #\\\"\n\uff4e+0.5,"), max_size=40))


@PROPERTY
@given(items=st.lists(hostile_item(), min_size=1, max_size=4), ascii_json=st.booleans())
def test_any_item_the_validator_accepts_re_serializes_to_itself(items, ascii_json):
    # so the answer's text and the calls the robot runs cannot differ
    text = json.dumps(items, ensure_ascii=ascii_json)
    verdict = ROBOT.validate(text)
    if verdict.valid:
        assert verdict.compact == items and "\\" not in text
        assert verdict.calls == runs(items)


@PROPERTY
@given(calls=st.one_of(st.lists(robot_call(on_grid=True), min_size=1, max_size=MAX_ITEMS),
                       st.lists(robot_call(on_grid=True, callee=EXCLUSIVE[0]), min_size=1, max_size=1)),
       sep=st.sampled_from([",", ", ", ",\n", ",\n\n"]))
def test_the_grammar_admits_every_canonical_answer(calls, sep):
    # constrained decoding must be able to produce every canonical answer, or the model is forced into other ones
    text = "[" + sep.join(json.dumps(canonical) for _, canonical in calls) + "]"
    assert gbnf.matches(ROBOT_RULES, text), text


@PROPERTY
@given(calls=st.lists(robot_call(on_grid=True), min_size=0, max_size=MAX_ITEMS - 1), data=st.data())
def test_the_grammar_admits_an_exclusive_call_only_last_and_only_it_runs(calls, data):
    refusal = data.draw(robot_call(on_grid=True, callee=EXCLUSIVE[0]))[1]
    items = [canonical for _, canonical in calls]
    at = data.draw(st.integers(0, len(items)))
    items.insert(at, refusal)
    text = json.dumps(items)
    last = at == len(items) - 1
    assert gbnf.matches(ROBOT_RULES, text) == last, text
    verdict = ROBOT.validate(text)
    assert verdict.valid == last
    if last:
        assert verdict.calls == runs(items) and verdict.compact == items
        assert verdict.calls == [refusal] or verdict.calls == ["robot.reject(reason='unknown_place')"]


# ------------------------------------------------------------------------------------------------------ mutations
_WITH_ARGS = sorted(name for name in ACTIONS if VOCAB[name].args)
_NUMERIC = sorted((name, arg_name) for name in ACTIONS for arg_name, arg in VOCAB[name].args.items()
                  if arg.type in ("int", "float"))
_ENUMS = sorted((name, arg_name) for name in ACTIONS for arg_name, arg in VOCAB[name].args.items()
                if arg.type == "enum")


def _canonical(callee: str, **override: str) -> str:
    """A valid call with some arguments replaced by the given source text."""
    args = []
    for name, arg in VOCAB[callee].args.items():
        if name in override:
            args.append(f"{name}={override[name]}")
        elif arg.type == "enum":
            args.append(f"{name}='{arg.values[0]}'")
        elif arg.type == "str":
            args.append(f"{name}='hi'")
        elif arg.type == "bool":
            args.append(f"{name}=True")
        else:
            args.append(f"{name}={arg.grid()[0]}")
    return f"{callee}({', '.join(args)})"


@st.composite
def mutation(draw, item: str) -> tuple[str, str]:
    """(a mutated item, the violation code it must raise)."""
    callee = item.split("(", 1)[0]
    kind = draw(st.sampled_from([
        "unknown_callee", "chained", "out_of_range", "import", "__import__", "getattr", "bare", "fstring",
        "lambda", "subscript", "wrong_type", "not_in_enum", "missing", "extra", "duplicate", "starargs", "kwargs",
    ]))
    if kind == "unknown_callee":
        return draw(st.sampled_from(["os.system('ls')", "subprocess.run('ls')", f"x{callee}()"])), "unknown_callee"
    if kind == "chained":
        attr = draw(st.sampled_from(["__class__", "__globals__", "__self__", "func_code", "x"]))
        return item.replace("(", f".{attr}(", 1), "unknown_attribute"
    if kind == "out_of_range":
        name, arg_name = draw(st.sampled_from(_NUMERIC))
        arg = VOCAB[name].args[arg_name]
        offsets = [1, 10**6] if arg.type == "int" else [0.01, 1, 1e6]
        bad = draw(st.sampled_from([arg.max + draw(st.sampled_from(offsets)),
                                    arg.min - draw(st.sampled_from(offsets))]))
        bad = int(bad) if arg.type == "int" else bad
        return _canonical(name, **{arg_name: repr(bad)}), "out_of_range"
    if kind == "import":
        return draw(st.sampled_from(["import os", "from os import system", "import os; os.system('ls')"])), "syntax"
    if kind == "__import__":
        return draw(st.sampled_from(["__import__('os')", "__import__('os', globals())"])), "forbidden"
    if kind == "getattr":
        head, _, rest = callee.rpartition(".")
        return f"getattr({head or 'robot'}, '{rest}')()", "bad_callee"
    if kind == "bare":
        return draw(st.sampled_from([callee, f"{item} + 1", f"{item} and {item}", f"not {item}", f"({item},)"])), \
            "not_a_call"
    if kind == "fstring":
        return f"f'{{{callee}()}}'", "not_a_call"
    if kind == "lambda":
        return draw(st.sampled_from([(f"(lambda: {item})()", "bad_callee"), (f"lambda: {item}", "not_a_call")]))
    if kind == "subscript":
        return draw(st.sampled_from([(f"{item}[0]", "not_a_call"), (f"[{callee}][0]()", "bad_callee")]))
    if kind == "wrong_type":
        name, arg_name = draw(st.sampled_from(_NUMERIC + _ENUMS))
        typ = VOCAB[name].args[arg_name].type
        bad = draw(st.sampled_from(["'1'", "True"] if typ != "enum" else ["1", "1.5", "True"]))
        return _canonical(name, **{arg_name: bad}), "wrong_type"
    if kind == "not_in_enum":
        name, arg_name = draw(st.sampled_from(_ENUMS))
        return _canonical(name, **{arg_name: draw(st.sampled_from(["'mars'", "'KITCHEN'", "''"]))}), "not_in_enum"
    if kind == "missing":
        name = draw(st.sampled_from(_WITH_ARGS))
        return f"{name}()", "missing_argument"
    if kind == "extra":
        name = draw(st.sampled_from(ACTIONS))
        return _canonical(name, **{}).replace(")", ", surprise=1)" if VOCAB[name].args else "surprise=1)"), \
            "unknown_argument"
    if kind == "duplicate":
        name = draw(st.sampled_from(_WITH_ARGS))
        valid = _canonical(name)
        first = valid[valid.index("(") + 1:].split(",")[0].rstrip(")")
        return valid[:-1] + f", {first})", "duplicate_argument"
    if kind == "starargs":
        return f"{callee}(*[])", "unpacking"
    return f"{callee}(**{{}})", "unpacking"


@PROPERTY
@given(data=st.data(), calls=st.lists(robot_call(), min_size=1, max_size=MAX_ITEMS))
def test_a_mutated_item_is_rejected_at_its_index(data, calls):
    items = [written for written, _ in calls]
    index = data.draw(st.integers(0, len(items) - 1))
    mutated, code = data.draw(mutation(items[index]))
    items[index] = mutated
    verdict = ROBOT.validate(json.dumps(items))
    assert not verdict.valid, mutated
    assert {(v.index, v.code) for v in verdict.violations} == {(index, code)}, (mutated, verdict.violations)


@PROPERTY
@given(calls=st.lists(robot_call(), min_size=1, max_size=MAX_ITEMS), data=st.data())
def test_a_mutated_list_is_rejected(calls, data):
    text = json.dumps([written for written, _ in calls])
    mutated, code = data.draw(st.sampled_from([
        (json.dumps(calls[0][0]), "not_list"),
        (json.dumps({"calls": [written for written, _ in calls]}), "not_list"),
        (text + data.draw(st.sampled_from([" x", "]", ",", "\n[]", " # done"])), "not_json"),
        (text.replace('"', "'"), "not_json"),
        (text[:-1], "not_json"),
        (json.dumps([written for written, _ in calls] * (ROBOT.max_calls + 1)), "call_count"),
    ]))
    verdict = ROBOT.validate(mutated)
    assert not verdict.valid
    assert {v.code for v in verdict.violations} == {code}, (mutated, verdict.violations)
