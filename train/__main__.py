"""edgetune's training stage.

    python -m train data       --run default --task robot_sdk --teacher synth    build the dataset
    python -m train finetune   --run default                                     QLoRA-tune the base model
    python -m train openai-ft  --run default                                     fine-tune an OpenAI model
    python -m train prompt-opt --run default                                     DSPy few-shot prompt, base model

Each command has its own --help.
"""

from __future__ import annotations

import importlib
import sys

#: command -> module whose ``main(argv) -> int`` runs it (imported lazily: each pulls in different heavy deps)
COMMANDS = {
    "data": ("train.data", "generate, validate, deduplicate and split the dataset"),
    "finetune": ("train.finetune", "QLoRA fine-tune the base model on the dataset"),
    "openai-ft": ("train.openai_ft", "fine-tune an OpenAI model on the same dataset"),
    "prompt-opt": ("train.prompt_opt", "optimize a few-shot prompt for the untuned base model with DSPy"),
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        print(__doc__)
        for name, (_, help_text) in COMMANDS.items():
            print(f"  {name:10s} {help_text}")
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    module = importlib.import_module(COMMANDS[argv[0]][0])
    return module.main(argv[1:])


if __name__ == "__main__":
    raise SystemExit(main())
