"""Build a task's dataset: generate (or import), validate, deduplicate, split leak-free, report.

    python -m train data --run default --task robot_sdk                    offline synthesizer (the default)
    python -m train data --run r1 --teacher openai --max-cost 2            an OpenAI-compatible teacher
    python -m train data --run r1 --teacher openai openai.paraphrase=true  teacher rephrases synthesized commands
    python -m train data --run r1 --teacher import --input titles.csv importer.user=title importer.assistant=content
    python -m train data --config data.yaml train=2000 seed=3              YAML config + key=value overrides
    python -m train data --run flat answers=expanded                       answers as the expanded SDK calls

Writes runs/RUN/data/{train,val,test}.jsonl (one {"messages": [system, user, assistant]} per line),
rejected.jsonl (each reject with its reason) and data_report.json, and records stage "data" in the run manifest.
Sizes default to the task's `data:` section. Teacher mode reads TEACHER_BASE_URL, TEACHER_MODEL and the key from
TEACHER_API_KEY or OPENAI_API_KEY (environment or a git-ignored .env).
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Sequence

from edgetune.artifacts import SPLITS, DataStage, record_stage, write_split
from edgetune.cli import Stage
from edgetune.config import ConfigError, to_dict
from edgetune.rundir import RunDir, atomic_write_json, sha256_file
from train.dataset import Example, GateResult, Rejected, gate, normalize_text, split, write_jsonl
from train.importers import ImportConfig
from train.teacher import TeacherConfig, TeacherError


@dataclass
class DataConfig:
    """How to build one run's dataset."""

    run: str = "default"  #: run directory name under runs/
    task: str = "robot_sdk"  #: task name or task YAML path
    teacher: Literal["synth", "openai", "import"] = "synth"  #: where examples come from
    train: int | None = None  #: train examples (default: the task's data.train)
    val: int | None = None  #: validation examples (default: the task's data.val)
    test: int | None = None  #: test examples (default: the task's data.test)
    seed: int | None = None  #: generation and split seed (default: the task's data.seed)
    similarity: float = 0.8  #: instructions at least this similar (0..1, normalised Indel ratio) are near-duplicates
    oversample: float = 1.5  #: candidates generated per requested example (the gate drops some)
    #: assistant answers as the model should emit them: the contract's compact calls, or ``expanded`` into the SDK
    #: calls the robot runs (the unexpanded-format comparison; same commands, same splits)
    answers: Literal["compact", "expanded"] = "compact"
    openai: TeacherConfig = field(default_factory=TeacherConfig)  #: teacher settings (--teacher openai)
    importer: ImportConfig = field(default_factory=ImportConfig)  #: importer settings (--teacher import)
    runs_dir: str = ""  #: where run directories live (default: runs/ or $EDGETUNE_RUNS)

    def check(self):
        for name in ("train", "val", "test"):
            value = getattr(self, name)
            if value is not None and value < (1 if name == "train" else 0):
                yield name, "must be a positive number of examples"
        if not 0.5 <= self.similarity <= 1.0:
            yield "similarity", "must be between 0.5 and 1.0 (0.8 is a good default)"
        if self.oversample < 1.0:
            yield "oversample", "must be at least 1.0"


def _sizes(config: DataConfig, task) -> dict[str, int]:
    return {"train": config.train if config.train is not None else task.data.train,
            "val": config.val if config.val is not None else task.data.val,
            "test": config.test if config.test is not None else task.data.test}


def synth_draw(total: int, oversample: float) -> int:
    """How many synthesizer commands the data stage draws first for ``total`` examples (more only if the gate drops
    too many): the holdout check covers this many."""
    return int(total * oversample) + 10


def _synth_candidates(task, n: int, seed: int) -> list[Example]:
    from train.synth import synthesize

    if task.name != "robot_sdk":
        raise ConfigError("command line", "teacher",
                          f"the offline synthesizer knows only robot_sdk, not {task.name!r}; "
                          "use --teacher openai or --teacher import")
    return [Example(c.user, c.assistant, "synth") for c in synthesize(n, seed, task.contract)]


def run(config: DataConfig) -> Path:
    """Build the dataset for ``config`` and return the data directory."""
    from edgetune.task import load_task, read_holdout

    started = time.perf_counter()
    task = load_task(config.task)
    held_out = [e.user for e in read_holdout(task)]  # read only to keep its commands (and ones near them) out
    sizes = _sizes(config, task)
    seed = config.seed if config.seed is not None else task.data.seed
    total = sum(sizes.values())
    rundir = RunDir.named(config.run, config.runs_dir or None)
    rundir.data.mkdir(parents=True, exist_ok=True)
    usage: dict = {}
    system, stopped_by = task.system, "target"
    inputs: dict = {"teacher": config.teacher, "seed": seed}
    import_stats = None
    if config.teacher == "synth":
        want = synth_draw(total, config.oversample)
        held_out_draw = synth_draw(total - sizes["train"], config.oversample)
        while True:  # the synthesizer is prefix-stable under a seed: asking for more only appends
            candidates = _synth_candidates(task, want, seed)
            result = gate(task, candidates, config.similarity, held_out)
            # val and test come from the stream's first commands, so they do not change with the train size
            first = {normalize_text(c.user) for c in candidates[:held_out_draw]}
            splits = split(result, sizes, seed, reserved=sum(normalize_text(e.user) in first for e in result.kept))
            if all(len(splits[s]) == sizes[s] for s in SPLITS) or want > 20 * total:
                break
            want, held_out_draw = want * 2, held_out_draw * 2
    elif config.teacher == "openai":
        from train.teacher import generate

        commands = _synth_candidates(task, 20 * total, seed) if config.openai.paraphrase else None
        target = int(total * config.oversample)
        for _ in range(6):  # the pool resumes, so asking for more only adds what the gate still lacks
            generated = generate(task, config.openai, rundir.data / "teacher", target, seed, commands=commands)
            candidates, usage, stopped_by = generated.examples, generated.usage, generated.stopped_by
            system = generated.system or task.system
            inputs["endpoint"] = generated.endpoint
            result = gate(task, candidates, config.similarity, held_out)
            result.rejected += [Rejected(Example("", r.get("content", ""), "teacher"), "teacher:malformed_response",
                                         r.get("error", "")) for r in generated.malformed]
            splits = split(result, sizes, seed)
            missing = sum(sizes.values()) - sum(len(v) for v in splits.values())
            if not missing or stopped_by != "target":
                break
            target += int(missing * config.oversample) + 1
    else:
        from train.importers import import_examples

        imported = import_examples(config.importer, task, seed)
        candidates, import_stats = imported.examples, imported.stats
        inputs["import"] = {"path": imported.stats["path"], "sha256": sha256_file(imported.stats["path"])}
        result = gate(task, candidates, config.similarity, held_out)
        splits = split(result, sizes, seed)

    if config.answers == "expanded":
        if task.contract.kind != "call_list":
            raise ConfigError("command line", "answers",
                              f"'expanded' needs a call_list contract; {task.name!r} answers in text (use compact)")
        splits = {name: [expanded(task, e) for e in examples] for name, examples in splits.items()}
    outputs, hashes, respelled = {}, {}, {}
    for name in SPLITS:
        conversations = [e.conversation(system, task.contract) for e in splits[name]]
        path = write_split(rundir, name, conversations)
        outputs[name], hashes[name] = str(path), sha256_file(path)
        respelled[name] = sum(c.messages[1]["content"] != e.user for c, e in zip(conversations, splits[name]))
    write_jsonl(rundir.data / "rejected.jsonl", (r.record() for r in result.rejected))
    seconds = time.perf_counter() - started
    report = _report(config, task.name, sizes, candidates, result, splits, usage, seconds)
    report["respelled"] = respelled  # commands with a misspelt word corrected (the splits hold them corrected)
    report.update(stopped_by=stopped_by, system=system)
    if import_stats:
        report["import"] = import_stats
    if "endpoint" in inputs:
        report["endpoint"] = inputs["endpoint"]
    atomic_write_json(rundir.data / "data_report.json", report)
    record_stage(rundir, DataStage(task=task.name, counts=report["counts"], sha256=hashes, config=to_dict(config),
                                   inputs=inputs, outputs=outputs, timings={"seconds": seconds},
                                   report=str(rundir.data / "data_report.json")))
    _print_summary(report, rundir.data)
    short = {s: sizes[s] - len(splits[s]) for s in SPLITS if len(splits[s]) < sizes[s]}
    if short:
        print(f"warning: fewer examples than requested (missing {short}); see rejects and duplicates above",
              file=sys.stderr)
    return rundir.data


def expanded(task, example: Example) -> Example:
    """``example`` with its answer written as the SDK calls its compact calls expand to."""
    return Example(example.user, json.dumps(task.contract.validate(example.assistant).calls), example.source)


def _report(config: DataConfig, task: str, sizes: dict[str, int], candidates: list[Example], result: GateResult,
            splits: dict[str, list[Example]], usage: dict, seconds: float) -> dict:
    return {
        "task": task,
        "teacher": config.teacher,
        "answers": config.answers,
        "requested": {**sizes, "total": sum(sizes.values())},
        "received": len(candidates),
        "valid": len(result.kept) + result.exact_duplicates + result.near_duplicates,
        "rejects": result.rejects_by_reason(),
        "duplicates": {"exact": result.exact_duplicates, "near": result.near_duplicates},
        "similar_groups": {"count": len(result.groups), "largest": max(map(len, result.groups), default=0)},
        "unused": len(result.kept) - sum(len(v) for v in splits.values()),
        "counts": {name: len(splits[name]) for name in SPLITS},
        "similarity": {"measure": "rapidfuzz.fuzz.ratio on normalised instruction", "threshold": config.similarity},
        "tokens": {k: usage.get(k, 0) for k in ("prompt_tokens", "completion_tokens", "total_tokens")},
        "requests": usage.get("requests", 0),
        "retries": usage.get("retries", 0),
        "cost_usd": round(usage.get("cost_usd", 0.0), 6),
        "seconds": round(seconds, 2),
    }


def _print_summary(report: dict, where: Path) -> None:
    counts = report["counts"]
    rejects = ", ".join(f"{k}={v}" for k, v in report["rejects"].items()) or "none"
    print(f"data: {report['task']} via {report['teacher']} -> {where}")
    print(f"  received {report['received']}  valid {report['valid']}  rejected {sum(report['rejects'].values())}"
          f" ({rejects})")
    print(f"  misspelt words corrected in {sum(report['respelled'].values())} commands "
          f"({', '.join(f'{k} {v}' for k, v in report['respelled'].items())})")
    print(f"  duplicates exact {report['duplicates']['exact']}  near {report['duplicates']['near']}  "
          f"similar groups {report['similar_groups']['count']} (largest {report['similar_groups']['largest']})")
    print(f"  train {counts['train']}  val {counts['val']}  test {counts['test']}  "
          f"(requested {report['requested']['train']}/{report['requested']['val']}/{report['requested']['test']})")
    if report["requests"]:
        print(f"  teacher: {report['requests']} requests ({report['retries']} retries), "
              f"{report['tokens']['total_tokens']} tokens, ${report['cost_usd']:.4f}, stopped by {report['stopped_by']}")
    print(f"  {report['seconds']:.1f} s")


def _run(config: DataConfig, run_dir: RunDir, args) -> None:
    run(config)


STAGE = Stage(
    prog="python -m train data", config=DataConfig, run=_run, doc=__doc__,
    flags={"--max-cost": "openai.max_cost", "--max-requests": "openai.max_requests",
           "--concurrency": "openai.concurrency", "--input": "importer.path", "--format": "importer.format"},
    bad_input=(OSError,), failed=(TeacherError,),
    interrupted="interrupted: the teacher pool keeps every answer received; rerun to continue",
)


def main(argv: Sequence[str] | None = None) -> int:
    return STAGE.main(argv)


if __name__ == "__main__":
    raise SystemExit(main())
