"""Importers: existing datasets -> the same examples the synthesizer and the teacher produce.

    python -m train data --teacher import --input chats.jsonl                       OpenAI chat JSONL ("messages")
    python -m train data --teacher import --input alpaca.json                       alpaca (instruction/input/output)
    python -m train data --teacher import --input dialogues.jsonl --task student_2nd_grade
                                                                                    {"dialogue": [{role, content}..]}
    python -m train data --teacher import --input titles.csv importer.user="Describe: {title}" \\
        importer.assistant=content importer.sample=100000                           a table with a column mapping

Every format is read as a stream. Cleaning drops rows whose mapped fields are missing, empty or placeholders
("nan", "null", "none") and collapses whitespace; `sample` keeps a seeded uniform random sample (reservoir
sampling, so a 1.3M-row CSV never sits in memory). The task's system message replaces any system message in the
input, and every example then goes through the same quality gate (contract, duplicates, leak-free split).
"""

from __future__ import annotations

import csv
import itertools
import json
import random
import string
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Literal

from edgetune.config import ConfigError
from train.dataset import Example

#: dialogue/ShareGPT role names -> chat role (override with importer.roles.NAME=user|assistant)
DEFAULT_ROLES = {"user": "user", "human": "user", "teacher": "user", "assistant": "assistant", "gpt": "assistant",
                 "bot": "assistant", "student": "assistant", "model": "assistant"}
_PLACEHOLDERS = {"", "nan", "null", "none", "n/a"}


@dataclass
class ImportConfig:
    """Where and how to import (--teacher import)."""

    path: str = ""  #: the input file: .jsonl, .json or .csv
    format: Literal["auto", "openai", "alpaca", "dialogue", "table"] = "auto"  #: auto: from the extension and keys
    user: str = ""  #: table: column name or template like "Describe: {title}" for the user message
    assistant: str = ""  #: table: column name or template for the answer
    roles: dict[str, str] = field(default_factory=dict)  #: dialogue: extra role name -> user|assistant
    sample: int | None = None  #: keep a seeded random sample of this many cleaned rows (None: all)
    max_chars: int = 4000  #: drop rows whose user or answer is longer
    delimiter: str = ","  #: CSV delimiter

    def check(self):
        for name, role in self.roles.items():
            if role not in ("user", "assistant"):
                yield f"roles.{name}", f"must be 'user' or 'assistant', got {role!r}"
        if self.sample is not None and self.sample < 1:
            yield "sample", "must be at least 1"


@dataclass
class ImportResult:
    examples: list[Example]
    stats: dict = field(default_factory=dict)  #: format, rows, dropped by reason, sampled


def _clean(text: object) -> str | None:
    if not isinstance(text, (str, int, float)) or isinstance(text, bool):
        return None
    text = " ".join(str(text).split()) if "\n" not in str(text) else str(text).strip()
    return None if text.casefold() in _PLACEHOLDERS else text


def _read_records(path: Path) -> Iterator[dict]:
    """Objects of a JSONL file or of a JSON list (or {"data": [...]})."""
    with open(path, encoding="utf-8") as fh:
        head = fh.read(1)
        while head and head.isspace():
            head = fh.read(1)
        fh.seek(0)
        if head == "[" or (head == "{" and path.suffix == ".json"):
            data = json.load(fh)
            if isinstance(data, dict):
                data = next((v for v in data.values() if isinstance(v, list)), [data])
            yield from (r for r in data if isinstance(r, dict))
            return
        for number, line in enumerate(fh, start=1):
            if line.strip():
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise ConfigError(path, f"line {number}", f"not valid JSON: {exc.msg}") from exc
                if isinstance(record, dict):
                    yield record


def detect_format(path: Path) -> str:
    if path.suffix.lower() in (".csv", ".tsv"):
        return "table"
    first = next(_read_records(path), {})
    if "messages" in first:
        return "openai"
    if "instruction" in first and "output" in first:
        return "alpaca"
    if "dialogue" in first or "conversations" in first:
        return "dialogue"
    return "table"


def _pairs(turns: list[dict], roles: dict[str, str]) -> Iterator[tuple[str | None, str | None]]:
    """(user, assistant) for each assistant turn that follows a user turn; system turns are skipped."""
    previous: tuple[str, str | None] | None = None
    for turn in turns:
        if not isinstance(turn, dict):
            continue
        role = str(turn.get("role", turn.get("from", ""))).lower()
        content = _clean(turn.get("content", turn.get("value")))
        mapped = roles.get(role)
        if mapped == "assistant" and previous and previous[0] == "user":
            yield previous[1], content
        previous = (mapped, content) if mapped else previous


def _table_fields(spec: str, name: str, columns: list[str], path: Path) -> list[str]:
    """Columns a mapping uses; an unknown one is an error naming it and listing those available."""
    if not spec:
        raise ConfigError(path, f"importer.{name}",
                          f"a table needs importer.{name}=COLUMN (or a template like 'Q: {{col}}'); "
                          f"available columns: {', '.join(columns)}")
    used = [f for _, f, _, _ in string.Formatter().parse(spec) if f] if "{" in spec else [spec]
    for column in used:
        if column not in columns:
            raise ConfigError(path, f"importer.{name}",
                              f"column {column!r} not found; available columns: {', '.join(columns)}")
    return used


def _render(spec: str, row: dict) -> str | None:
    if "{" not in spec:
        return _clean(row.get(spec))
    values = {}
    for _, column, _, _ in string.Formatter().parse(spec):
        if column:
            value = _clean(row.get(column))
            if value is None:
                return None
            values[column] = value
    return spec.format(**values)


def _table_rows(config: ImportConfig, path: Path) -> Iterator[tuple[str | None, str | None]]:
    if path.suffix.lower() in (".csv", ".tsv"):
        with open(path, encoding="utf-8", newline="") as fh:
            reader = csv.DictReader(fh, delimiter="\t" if path.suffix.lower() == ".tsv" else config.delimiter)
            columns = list(reader.fieldnames or [])
            _table_fields(config.user, "user", columns, path)
            _table_fields(config.assistant, "assistant", columns, path)
            for row in reader:
                yield _render(config.user, row), _render(config.assistant, row)
        return
    records = _read_records(path)
    first = next(records, None)
    if first is None:
        return
    columns = list(first)
    _table_fields(config.user, "user", columns, path)
    _table_fields(config.assistant, "assistant", columns, path)
    for row in itertools.chain([first], records):
        yield _render(config.user, row), _render(config.assistant, row)


def _raw_pairs(config: ImportConfig, path: Path, fmt: str) -> Iterator[tuple[str | None, str | None]]:
    roles = {**DEFAULT_ROLES, **{k.lower(): v for k, v in config.roles.items()}}
    if fmt == "table":
        yield from _table_rows(config, path)
        return
    for record in _read_records(path):
        if fmt == "openai":
            yield from _pairs(record.get("messages") or [], roles)
        elif fmt == "alpaca":
            instruction, extra = _clean(record.get("instruction")), _clean(record.get("input"))
            user = f"{instruction}\n\n{extra}" if instruction and extra else instruction
            yield user, _clean(record.get("output"))
        else:
            yield from _pairs(record.get("dialogue") or record.get("conversations") or [], roles)


def import_examples(config: ImportConfig, task, seed: int) -> ImportResult:
    """Read, clean and (optionally) sample ``config.path`` into examples tagged ``import:<format>``."""
    if not config.path:
        raise ConfigError("command line", "importer.path", "--teacher import needs --input FILE")
    path = Path(config.path)
    if not path.is_file():
        raise ConfigError("command line", "importer.path", f"{path} does not exist")
    fmt = detect_format(path) if config.format == "auto" else config.format
    rng = random.Random(seed)
    dropped: Counter[str] = Counter()
    kept: list[Example] = []
    rows = 0
    for user, answer in _raw_pairs(config, path, fmt):
        rows += 1
        if not user or not answer:
            dropped["empty_or_missing"] += 1
            continue
        if len(user) > config.max_chars or len(answer) > config.max_chars:
            dropped["too_long"] += 1
            continue
        example = Example(user, answer, f"import:{fmt}")
        clean_rows = rows - sum(dropped.values())
        if config.sample is None or len(kept) < config.sample:
            kept.append(example)
        else:  # reservoir sampling: every clean row ends up kept with probability sample/clean_rows
            j = rng.randrange(clean_rows)
            if j < config.sample:
                kept[j] = example
    if rows == 0:
        raise ConfigError(path, "", f"no records found for format {fmt!r}")
    stats = {"format": fmt, "path": str(path), "rows": rows, "dropped": dict(dropped), "kept": len(kept)}
    return ImportResult(kept, stats)
