"""Importers: existing datasets -> the same chat-format examples (work in progress)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ImportConfig:
    """Where and how to import."""

    path: str = ""  #: the input file
    format: str = "auto"  #: openai | alpaca | dialogue | table | auto


def import_examples(config: ImportConfig, task, seed: int):
    raise NotImplementedError("importers land in a later commit")
