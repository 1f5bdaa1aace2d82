"""Just enough of the Dockerfile and .dockerignore formats to check the images without a Docker engine: stages,
ARGs with their defaults, COPY sources, RUN commands, base images resolved through ARGs and stage names."""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCKER_DIR = ROOT / "docker"
DOCKERFILES = sorted(DOCKER_DIR.glob("*.Dockerfile"))

#: Stage names that may hold a toolchain; every other stage is part of what runs.
BUILD_STAGE = re.compile(r"^build(-|$)")


@dataclass(frozen=True)
class Instruction:
    keyword: str  #: upper-cased: FROM, RUN, COPY, ...
    args: str  #: the rest of the (continuation-joined) line
    line: int  #: 1-based line where it starts


@dataclass
class Stage:
    name: str
    base: str  #: FROM's image or stage reference, unexpanded
    line: int
    instructions: list[Instruction] = field(default_factory=list)

    @property
    def is_build(self) -> bool:
        return bool(BUILD_STAGE.match(self.name))

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]


@dataclass
class Dockerfile:
    path: Path
    global_args: dict[str, str | None]  #: ARGs before the first FROM (the only ones FROM can use)
    stages: list[Stage]

    @property
    def instructions(self) -> list[Instruction]:
        return [i for s in self.stages for i in s.instructions]

    def stage(self, name: str) -> Stage:
        for stage in self.stages:
            if stage.name == name:
                return stage
        raise KeyError(f"{self.path.name}: no stage {name!r} (stages: {[s.name for s in self.stages]})")

    def expand(self, text: str) -> str:
        """``text`` with ``${ARG}``/``$ARG`` replaced by the global ARG defaults."""
        def value(match: re.Match[str]) -> str:
            name = match.group(1) or match.group(2)
            default = self.global_args.get(name)
            if default is None:
                raise KeyError(f"{self.path.name}: {match.group(0)} has no global ARG default")
            return self.expand(default)

        return re.sub(r"\$\{(\w+)\}|\$(\w+)", value, text)

    def base_image(self, stage: Stage) -> str:
        """The registry image a stage finally builds on, following ``FROM <stage>`` references."""
        base = self.expand(stage.base)
        names = {s.name: s for s in self.stages}
        return self.base_image(names[base]) if base in names else base


def instructions(path: Path) -> list[Instruction]:
    """The instructions of a Dockerfile: comments dropped, backslash continuations joined."""
    result: list[Instruction] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue  # comment lines inside a continuation are dropped by Docker too
        if not pending:
            start = number
        pending.append(stripped[:-1] if stripped.endswith("\\") else stripped)
        if not stripped.endswith("\\"):
            keyword, _, args = " ".join(pending).partition(" ")
            result.append(Instruction(keyword.upper(), args.strip(), start))
            pending = []
    if pending:
        raise ValueError(f"{path}: the file ends inside a line continuation")
    return result


def parse(path: Path) -> Dockerfile:
    global_args: dict[str, str | None] = {}
    stages: list[Stage] = []
    for inst in instructions(path):
        if inst.keyword == "FROM":
            words = [w for w in inst.args.split() if not w.startswith("--platform")]
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else str(len(stages))
            stages.append(Stage(name=name, base=words[0], line=inst.line))
        elif stages:
            stages[-1].instructions.append(inst)
        elif inst.keyword == "ARG":
            name, default = parse_arg(inst.args)
            global_args[name] = default
        else:
            raise ValueError(f"{path}:{inst.line}: only ARG may come before the first FROM, not {inst.keyword}")
    return Dockerfile(path, global_args, stages)


def parse_arg(args: str) -> tuple[str, str | None]:
    """``NAME=default`` (quotes removed) -> (NAME, default); ``NAME`` -> (NAME, None)."""
    name, eq, default = args.partition("=")
    return name.strip(), (shlex.split(default)[0] if default.strip() else "") if eq else None


def copy_sources(inst: Instruction) -> list[str]:
    """The build-context sources of a COPY/ADD (none for ``COPY --from=``, which copies from a stage)."""
    words = shlex.split(inst.args)
    if any(w.startswith("--from") for w in words):
        return []
    words = [w for w in words if not w.startswith("--")]
    if words and words[0].startswith("["):  # JSON form
        words = json.loads(inst.args[inst.args.index("["):])
    return words[:-1]


def dockerignore_patterns(root: Path = ROOT) -> list[str]:
    path = root / ".dockerignore"
    lines = path.read_text().splitlines() if path.is_file() else []
    return [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]


def is_ignored(relative: str, patterns: list[str]) -> bool:
    """Whether .dockerignore keeps ``relative`` (or a folder above it) out of the build context. Patterns apply in
    order, ``!`` re-includes, and ``**/`` also matches at the top, as Docker's matcher does."""
    parts = Path(relative).parts
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        body = pattern.lstrip("!").strip("/")
        variants = {body, body[3:]} if body.startswith("**/") else {body}
        if any(fnmatch.fnmatchcase(c, v) for c in candidates for v in variants):
            ignored = not negate
    return ignored
