"""Where an OpenAI-compatible API is and the key it takes: one resolver for the teacher, openai-ft, the server's
remote backend, the bench and compare.

The base URL is the one given, else the first set ``*_BASE_URL`` variable, else OpenAI's; the key is the first set
key variable. Variables come from the environment, then from a git-ignored ``.env`` file (the environment wins).
The key is never printed or recorded: ``Endpoint``'s repr leaves it out and errors name the variable, not the value.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

from edgetune.config import ConfigError

DEFAULT_BASE_URL = "https://api.openai.com/v1"
KEY_VARIABLES = ("OPENAI_API_KEY",)
BASE_URL_VARIABLES = ("OPENAI_BASE_URL",)
ENV_FILE = ".env"


def read_env_file(path: str | Path) -> dict[str, str]:
    """``KEY=value`` lines of a .env file (comments, blank lines, ``export`` and quotes allowed); {} without one."""
    path = Path(path)
    if not path.is_file():
        return {}
    out = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip().removeprefix("export ").strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            out[key.strip()] = value.strip().strip("'\"")
    return out


def settings(env_file: str | Path | None = ENV_FILE, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The variables an endpoint is read from: ``env_file``'s, overridden by the (non-empty) environment's."""
    values = read_env_file(env_file) if env_file else {}
    values.update({k: v for k, v in (os.environ if environ is None else environ).items() if v})
    return values


@dataclass(frozen=True)
class Endpoint:
    """An OpenAI-compatible API: base URL, key (never shown) and per-request timeout."""

    base_url: str
    api_key: str = field(default="", repr=False)
    key_variable: str = ""  #: the variable the key came from ("" when there is none)
    timeout_s: float = 60.0


def resolve(base_url: str | None = "", *, key_variables: Sequence[str] = KEY_VARIABLES,
            base_url_variables: Sequence[str] = BASE_URL_VARIABLES, require_key: bool = True,
            timeout_s: float = 60.0, env_file: str | Path | None = ENV_FILE,
            environ: Mapping[str, str] | None = None) -> Endpoint:
    """The endpoint from ``base_url``, else the variables, else OpenAI's; a missing key is bad input naming the
    variables (ConfigError) when ``require_key``; a local server takes any key, so none needed there."""
    values = settings(env_file, environ)
    url = base_url or next((values[v] for v in base_url_variables if values.get(v)), "") or DEFAULT_BASE_URL
    key_variable = next((v for v in key_variables if values.get(v)), "")
    if require_key and not key_variable:
        names = " or ".join(key_variables)
        where = f"the environment or in {env_file} (git-ignored)" if env_file else "the environment"
        raise ConfigError("environment", key_variables[0],
                          f"no API key for {url}: set {names} in {where}; a local server accepts any value, "
                          f"e.g. {key_variables[0]}=local")
    return Endpoint(url.rstrip("/"), values.get(key_variable, ""), key_variable, timeout_s)
