"""Every stage's command line, generated from its config dataclass.

A stage declares a ``Stage``: its program name, its config dataclass and the function that runs it. From the
dataclass come the flags (field ``n_ctx`` is ``--n-ctx``; nested fields are ``key=value`` only, unless the stage
names a flag for them), their help (the field's ``#:`` comment) and the parsing (``edgetune.config``: ``--config
x.yaml``, then flags, then ``key=value`` / ``--set key=value`` overrides, later winning). ``--run`` and
``--runs-dir`` mean the same in every stage: the run directory's name, and the folder holding run directories
(default: $EDGETUNE_RUNS, else runs/). One exit-code convention, one error format:

    0  the job succeeded
    1  the job ran and failed (the stage's ``failed`` errors), e.g. a verification that did not pass
    2  bad input: a config field, a flag, a missing run or artifact; one line ``error: FIELD: problem (fix)``

litgpt and trl build their commands the same way (one parser over a typed config, ``main(argv) -> int``).
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import functools
import inspect
import io
import sys
import textwrap
import tokenize
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal, Sequence, Union

from edgetune.config import ConfigError, load, read_yaml
from edgetune.rundir import RunDir

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130


@functools.cache
def field_docs(cls: type) -> dict[str, str]:
    """Field name -> its ``#:`` comment: on the field's own line, else the ``#:`` lines just above it."""
    source = textwrap.dedent(inspect.getsource(cls))
    inline: dict[int, str] = {}
    alone: dict[int, str] = {}  # comment lines of their own
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT and token.string.startswith("#:"):
            lines = alone if token.line.strip().startswith("#") else inline
            lines[token.start[0]] = token.string[2:].strip()
    [node] = ast.parse(source).body
    out = {}
    for statement in node.body:  # type: ignore[attr-defined]
        if not (isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name)):
            continue
        doc = inline.get(statement.end_lineno or statement.lineno)
        if doc is None:
            above, line = [], statement.lineno - 1
            while line in alone:
                above.insert(0, alone[line])
                line -= 1
            doc = " ".join(above)
        out[statement.target.id] = doc
    return out


def _options(tp: Any) -> tuple[Any, ...]:
    """The non-None members of an Optional/Union annotation (or the annotation itself)."""
    if typing.get_origin(tp) in (Union, types.UnionType):
        return tuple(t for t in typing.get_args(tp) if t is not type(None))
    return (tp,)


def _kind(tp: Any) -> str:
    """How a field is given as a flag: "bool", "list", "scalar", or "nested" (key=value only)."""
    options = _options(tp)
    if len(options) != 1:
        return "scalar"
    (tp,) = options
    if tp is bool:
        return "bool"
    if typing.get_origin(tp) in (list, tuple):
        return "list"
    if dataclasses.is_dataclass(tp) or typing.get_origin(tp) is dict:
        return "nested"
    return "scalar"


def _resolve(cls: type, path: str) -> tuple[Any, Any, str]:
    """(annotation, default, doc) of the dotted field ``path`` of ``cls``."""
    *parents, leaf = path.split(".")
    for part in parents:
        cls = _options(typing.get_type_hints(cls)[part])[0]
    f = {f.name: f for f in dataclasses.fields(cls)}[leaf]
    default = f.default if f.default is not dataclasses.MISSING else (
        f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
    return typing.get_type_hints(cls)[leaf], default, field_docs(cls).get(leaf, "")


def _field_lines(cls: type, prefix: str = "") -> list[str]:
    """``key=default  doc`` for every field, nested ones dotted (lora.r=16), for the help's epilog."""
    lines = []
    docs = field_docs(cls)
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        inner = _options(hints[f.name])[0]
        if dataclasses.is_dataclass(inner):
            lines += _field_lines(inner, f"{prefix}{f.name}.")
            continue
        _, default, _ = _resolve(cls, f.name)
        lines.append(f"  {prefix}{f.name}={default!r}  {docs.get(f.name, '')}".rstrip())
    return lines


@dataclass(frozen=True)
class Stage:
    """One stage's command: ``run(config, run_dir, args)`` does the job and returns an exit code (None = 0)."""

    prog: str  #: the command as typed, e.g. "python -m export"
    config: type  #: the stage's config dataclass
    run: Callable[[Any, RunDir, argparse.Namespace], int | None]
    doc: str = ""  #: the description at the top of --help (the stage module's docstring)
    flags: dict[str, str] = field(default_factory=dict)  #: extra flag -> dotted field, e.g. "--input": "importer.path"
    reads_run: bool = False  #: --run must name an existing run directory (the stage reads its artifacts)
    bad_input: tuple[type[BaseException], ...] = ()  #: errors that mean the input is unusable: exit 2
    failed: tuple[type[BaseException], ...] = ()  #: errors that mean the job ran and failed: exit 1
    defaults: Path | None = None  #: YAML of the shipped defaults, read before --config
    interrupted: str = "interrupted"  #: what Ctrl-C leaves behind, said on exit 130
    extra: Callable[[argparse.ArgumentParser], None] | None = None  #: adds the stage's non-config flags

    def parser(self) -> argparse.ArgumentParser:
        """The stage's argparse parser: one flag per top-level scalar field, ``flags``, ``extra``, overrides."""
        parser = argparse.ArgumentParser(
            prog=self.prog, description=self.doc, formatter_class=argparse.RawDescriptionHelpFormatter,
            epilog="config fields (key=value or --set key=value; --config YAML with the same keys):\n"
                   + "\n".join(_field_lines(self.config)))
        parser.add_argument("--config", metavar="YAML", help="YAML file of config fields (flags and key=value win)")
        parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                            help="override a config field, e.g. --set n_ctx=4096 (repeatable; same as KEY=VALUE)")
        names = [f.name for f in dataclasses.fields(self.config)]
        if "run" not in names:
            parser.add_argument("--run", dest="cfg:run", metavar="NAME", default=None,
                                help="run directory name under --runs-dir (default: 'default')")
        if "runs_dir" not in names:
            parser.add_argument("--runs-dir", dest="cfg:runs_dir", metavar="DIR", default=None,
                                help="folder holding the run directories (default: $EDGETUNE_RUNS, else runs/)")
        hints = typing.get_type_hints(self.config)
        paths = {"--" + name.replace("_", "-"): name for name in names if _kind(hints[name]) != "nested"}
        for flag, path in {**paths, **self.flags}.items():
            self._add_flag(parser, flag, path)
        if self.extra is not None:
            self.extra(parser)
        parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                            help="config overrides, e.g. seed=3 (nested fields dotted: lora.r=32)")
        return parser

    def _add_flag(self, parser: argparse.ArgumentParser, flag: str, path: str) -> None:
        tp, default, doc = _resolve(self.config, path)
        kind = _kind(tp)
        literal = [a for t in _options(tp) if typing.get_origin(t) is Literal for a in typing.get_args(t)]
        shown = f"(default: {default!r})" + (f"; one of {', '.join(map(str, literal))}" if literal else "")
        options: dict[str, Any] = {"dest": f"cfg:{path}", "default": None, "help": f"{doc} {shown}".strip()}
        if kind == "bool":
            options.update(action=argparse.BooleanOptionalAction)
        elif kind == "list":
            options.update(nargs="+", metavar="ITEM", help=f"{doc} (comma- or space-separated) {shown}".strip())
        else:
            options.update(metavar=path.rsplit(".", 1)[-1].upper())
        parser.add_argument(flag, **options)

    def load(self, args: argparse.Namespace) -> tuple[Any, RunDir]:
        """The config (defaults, --config, flags, then overrides) and the run directory; ConfigError when unusable."""
        names = {f.name for f in dataclasses.fields(self.config)}
        given = {key[4:]: value for key, value in vars(args).items() if key.startswith("cfg:") and value is not None}
        overrides = [*args.sets, *args.overrides]
        flags: dict[str, Any] = {}
        location = {"run": "default", "runs_dir": ""}
        for path, value in given.items():
            if path in location and path not in names:
                location[path] = value
                continue
            if isinstance(value, list):  # list flags: items may be comma-separated; KEY=VALUE after them is an override
                overrides += [item for item in value if "=" in item]
                value = [piece.strip() for item in value if "=" not in item
                         for piece in item.split(",") if piece.strip()]
            node = flags
            *parents, leaf = path.split(".")
            for part in parents:
                node = node.setdefault(part, {})
            node[leaf] = value
        config = load(self.config, args.config, overrides, flags=flags,
                      defaults=read_yaml(self.defaults) if self.defaults else None)
        run = getattr(config, "run", location["run"])
        runs_dir = getattr(config, "runs_dir", location["runs_dir"])
        try:
            run_dir = RunDir.named(run, runs_dir or None)
        except ValueError as exc:
            raise ConfigError("command line", "run", str(exc)) from None
        if self.reads_run and not run_dir.root.is_dir():
            parent = run_dir.root.parent
            known = sorted(p.name for p in parent.iterdir() if p.is_dir()) if parent.is_dir() else []
            raise ConfigError("command line", "run", f"no run directory {run_dir.root} (runs there: "
                              f"{', '.join(known) or 'none'}); build it first, e.g. `make data RUN={run}`, "
                              f"or pass --runs-dir")
        return config, run_dir

    def main(self, argv: Sequence[str] | None = None) -> int:
        """Parse ``argv``, run the stage, map what went wrong to the exit code; never a traceback for bad input."""
        args = self.parser().parse_intermixed_args(None if argv is None else list(argv))
        try:
            config, run_dir = self.load(args)
            code = self.run(config, run_dir, args)
        except KeyboardInterrupt:
            print(f"\n{self.interrupted}", file=sys.stderr)
            return EXIT_INTERRUPTED
        except (ConfigError, *self.bad_input) as exc:
            return _error(exc, EXIT_BAD_INPUT)
        except self.failed as exc:
            return _error(exc, EXIT_FAILED)
        return EXIT_OK if code is None else code


def _error(exc: BaseException, code: int) -> int:
    print(f"error: {exc}", file=sys.stderr)
    return code


def given(args: argparse.Namespace, path: str) -> bool:
    """Whether the flag of config field ``path`` was given on the command line."""
    return getattr(args, f"cfg:{path}", None) is not None
