"""The gRPC edge server.

    python -m serve --run default --port 50051                 # serves runs/default/bundle (embedded model if none)
    python -m serve --contexts 4 --queue 16 --threads 2        # 4 requests decode at once, 16 may wait
    python -m serve --remote-model ft:gpt-4o-mini:acme::x      # OpenAI fine-tuned fallback (OPENAI_API_KEY)
    python -m serve --remote-base-url http://127.0.0.1:8000/v1 --remote-model smol   # any OpenAI-compatible server
    python -m serve --token-file token.txt --tls-cert srv.pem --tls-key srv.key [--tls-client-ca ca.pem]
    python -m serve --config serve.yaml --set queue=4          # the same fields from YAML + key=value overrides
    python -m serve --custom-grammars                          # accept GBNF / JSON-schema constraints (workers)

Health (grpc.health.v1) is NOT_SERVING until the model is loaded; SIGTERM drains in-flight requests, then stops.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import typing

from edgetune.config import ConfigError, from_dict, merge, parse_overrides, read_yaml
from serve.config import ServeConfig
from serve.threads import prefer_passive_waits


def _field_help() -> dict[str, str]:
    """One-line help per field, from the ``#:`` comments in serve/config.py."""
    import inspect

    out = {}
    for line in inspect.getsource(ServeConfig).splitlines():
        name, _, doc = line.strip().partition("#:")
        if doc and ":" in name:
            out[name.split(":")[0].strip()] = doc.strip()
    return out


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m serve", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="YAML file with ServeConfig fields (flags and --set win)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a field")
    helps = _field_help()
    hints = typing.get_type_hints(ServeConfig)
    for f in dataclasses.fields(ServeConfig):
        flag = "--" + f.name.replace("_", "-")
        kind = hints[f.name]
        switch = {"nargs": "?", "const": "true"} if kind is bool else {}  # --custom-grammars alone: true
        kind = kind if kind in (int, float) else str
        parser.add_argument(flag, dest=f.name, type=kind, default=None, **switch,
                            help=f"{helps.get(f.name, '')} (default: {f.default!r})")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    flags = {f.name: getattr(args, f.name) for f in dataclasses.fields(ServeConfig)
             if getattr(args, f.name) is not None}
    if "token" in flags:
        print("warning: --token is visible to every user in ps; use --token-file or $EDGETUNE_TOKEN", file=sys.stderr)
    elif "token_file" not in flags and os.environ.get("EDGETUNE_TOKEN"):
        flags["token"] = os.environ["EDGETUNE_TOKEN"]
    try:
        data = merge(read_yaml(args.config) if args.config else {}, flags)
        config = from_dict(ServeConfig, merge(data, parse_overrides(args.set)), source=args.config or "command line")
        prefer_passive_waits()  # before serve.server loads llama.cpp (libgomp reads its environment once)
        from serve.server import serve

        return serve(config)
    except (ConfigError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
