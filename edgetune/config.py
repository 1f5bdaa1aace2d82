"""Typed configs from YAML with command-line overrides.

Every stage's config is a dataclass. This module turns nested dicts (from YAML, the command line, or a
run directory's manifest) into those dataclasses, and rejects anything it does not recognise with an error
that names the file, the field path and the fix. One mechanism serves the task spec and every stage.
"""

from __future__ import annotations

import dataclasses
import json
import difflib
import types
import typing
from pathlib import Path
from typing import Any, TypeVar, Union, get_args, get_origin, get_type_hints

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """A config or task file that cannot be used; the message names the source, the field and the fix."""

    def __init__(self, source: str | Path | None, field: str, problem: str):
        self.source = str(source) if source else "<config>"
        self.field = field
        self.problem = problem
        where = f"{self.source}: {field}" if field else self.source
        super().__init__(f"{where}: {problem}")


def _suggest(name: str, choices: typing.Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(choices), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def _convert(tp: Any, value: Any, source: str | Path | None, path: str) -> Any:
    """Coerce ``value`` to the annotated type ``tp`` or raise a ConfigError naming ``path``."""
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        options = get_args(tp)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _convert(option, value, source, path)
            except ConfigError as exc:
                errors.append(exc.problem)
        raise ConfigError(source, path, "; ".join(errors))
    if origin is typing.Literal:
        allowed = get_args(tp)
        if value not in allowed:
            raise ConfigError(source, path, f"must be one of {list(allowed)}, got {value!r}")
        return value
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(source, path, f"must be a mapping, got {type(value).__name__}")
        return from_dict(tp, value, source=source, path=path)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            hint = f" (a list: [{value}]; on the command line {path}=[{value}])" if isinstance(value, str) else ""
            raise ConfigError(source, path, f"must be a list, got {type(value).__name__}{hint}")
        (item_tp, *_) = get_args(tp) or (Any,)
        items = [_convert(item_tp, v, source, _join(path, i)) for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(source, path, f"must be a mapping, got {type(value).__name__}")
        key_tp, val_tp = get_args(tp) or (Any, Any)
        return {
            _convert(key_tp, k, source, path): _convert(val_tp, v, source, _join(path, str(k)))
            for k, v in value.items()
        }
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
            return value.lower() in ("true", "yes", "1")
        raise ConfigError(source, path, f"must be true or false, got {value!r}")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise ConfigError(source, path, f"must be an integer, got {value!r}")
        try:
            return int(value)
        except ValueError:
            raise ConfigError(source, path, f"must be an integer, got {value!r}") from None
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise ConfigError(source, path, f"must be a number, got {value!r}")
        try:
            return float(value)
        except ValueError:
            raise ConfigError(source, path, f"must be a number, got {value!r}") from None
    if tp is str:
        if isinstance(value, (dict, list)) or value is None:
            raise ConfigError(source, path, f"must be a string, got {type(value).__name__}")
        return str(value)
    if tp is Path:
        return Path(str(value))
    return value


def from_dict(cls: type[T], data: dict[str, Any], *, source: str | Path | None = None, path: str = "") -> T:
    """Build dataclass ``cls`` from ``data``; unknown, missing or mistyped fields raise ConfigError."""
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    for key in data:
        if key not in fields:
            raise ConfigError(
                source,
                _join(path, key),
                f"unknown field{_suggest(key, fields)}; known fields: {', '.join(fields)}",
            )
    kwargs = {}
    for name, f in fields.items():
        if name in data:
            kwargs[name] = _convert(hints[name], data[name], source, _join(path, name))
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(source, _join(path, name), "missing required field")
    try:
        obj = cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(source, path, str(exc)) from exc
    check = getattr(obj, "check", None)
    if callable(check):
        for field, problem in check():
            raise ConfigError(source, _join(path, field), problem)
    return obj


def to_dict(obj: Any) -> Any:
    """Plain data (for YAML/JSON) from a dataclass, with Paths as strings."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    if isinstance(obj, Path):
        return str(obj)
    return obj


def parse_overrides(pairs: typing.Sequence[str]) -> dict[str, Any]:
    """``["lora.r=16", "epochs=2"]`` -> nested dict; values are parsed as YAML scalars."""
    out: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            raise ConfigError("command line", pair, "overrides look like key=value (e.g. lora.r=16)")
        key, raw = pair.split("=", 1)
        node = out
        *parents, leaf = key.strip().split(".")
        for depth, part in enumerate(parents):
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                prefix = ".".join(parents[: depth + 1])
                raise ConfigError("command line", key.strip(), f"'{prefix}' is also set to a value by another override")
        try:
            node[leaf] = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError as exc:
            raise ConfigError("command line", key.strip(), f"the value is not valid YAML: {exc}") from exc
    return out


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge ``override`` into a copy of ``base``."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def read_json_object(path: Path, fix: str) -> dict[str, Any]:
    """Read a JSON object written by a stage; every error names the file and says ``fix``."""
    if not path.is_file():
        raise ConfigError(path, "", f"does not exist; {fix}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ConfigError(path, "", f"not valid JSON ({exc}); {fix}") from None
    if not isinstance(data, dict):
        raise ConfigError(path, "", f"must hold a JSON object; {fix}")
    return data


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping, with an error naming the file when it is not one."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(path, "", "file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(path, "", f"not valid YAML: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(path, "", f"must be a YAML mapping at the top level, got {type(data).__name__}")
    return data


def load(cls: type[T], path: str | Path | None = None, overrides: typing.Sequence[str] = (), *,
         defaults: dict[str, Any] | None = None, flags: dict[str, Any] | None = None) -> T:
    """Load ``cls`` from ``defaults``, an optional YAML file, ``flags`` (a nested dict of command-line values) and
    ``key=value`` overrides; later ones win, and an error in a field the command line set blames the command line."""
    data = merge(defaults or {}, read_yaml(path) if path else {})
    data = merge(merge(data, flags or {}), parse_overrides(overrides))
    try:
        return from_dict(cls, data, source=path or "command line")
    except ConfigError as exc:
        overridden = {pair.split("=", 1)[0].strip() for pair in overrides} | set(_paths(flags or {}))
        if path and exc.field in overridden:  # blame the override that set the field, not the file
            raise ConfigError(f"command line (over {path})", exc.field, exc.problem) from exc
        raise


def _paths(tree: dict[str, Any], prefix: str = "") -> typing.Iterator[str]:
    """The dotted paths of a nested dict's leaves."""
    for key, value in tree.items():
        if isinstance(value, dict):
            yield from _paths(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}"
