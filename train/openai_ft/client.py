"""The authenticated API client, the endpoint check and file uploads."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from edgetune.config import ConfigError
from edgetune.endpoint import Endpoint
from train.openai_ft.config import OpenAIFineTuneConfig
from train.openai_ft.errors import OpenAIFineTuneError
from edgetune.artifacts import FineTuneRecord

if TYPE_CHECKING:
    from openai import OpenAI


def connect(credentials: Endpoint, config: OpenAIFineTuneConfig) -> "OpenAI":
    """An authenticated client, proven by one cheap call (models.list) so a bad key fails before any upload."""
    import openai

    if not credentials.api_key:
        raise ConfigError("environment", "OPENAI_API_KEY",
                          "no OpenAI API key: set OPENAI_API_KEY in the environment or put OPENAI_API_KEY=... in "
                          "./.env (git-ignored); nothing was uploaded")
    client = openai.OpenAI(api_key=credentials.api_key, base_url=credentials.base_url,
                           max_retries=config.max_retries, timeout=credentials.timeout_s)
    try:
        models = {m.id for m in client.models.list()}
    except openai.AuthenticationError as exc:
        raise OpenAIFineTuneError(
            f"{credentials.base_url} rejected the API key ({exc.status_code}): check OPENAI_API_KEY; "
            "nothing was uploaded") from None
    except openai.APIConnectionError as exc:
        raise OpenAIFineTuneError(f"cannot reach {credentials.base_url} ({exc}): check --base-url / "
                                  "OPENAI_BASE_URL and the network; nothing was uploaded") from None
    if models and config.model not in models:
        import difflib

        close = difflib.get_close_matches(config.model, sorted(models), n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise OpenAIFineTuneError(f"model {config.model!r} is not available to this key at "
                                  f"{credentials.base_url}{hint}; nothing was uploaded")
    return client



def check_endpoint(record: FineTuneRecord, credentials: Endpoint) -> None:
    """A job lives on the endpoint that created it; watching it elsewhere would only give a confusing 404."""
    if record.base_url != credentials.base_url:
        raise OpenAIFineTuneError(f"job {record.job_id} was created at {record.base_url}, not {credentials.base_url}: "
                                  f"pass --base-url {record.base_url}")


def upload(client: "OpenAI", path: Path, previous_id: str | None) -> str:
    """Upload ``path`` for fine-tuning, or reuse ``previous_id`` if the server still holds that exact file."""
    import openai

    size = path.stat().st_size
    if previous_id:
        try:
            if client.files.retrieve(previous_id).bytes == size:
                print(f"reusing uploaded {path.name} ({previous_id})")
                return previous_id
        except openai.NotFoundError:
            pass  # deleted server-side: upload again
    with open(path, "rb") as fh:
        uploaded = client.files.create(file=(path.name, fh), purpose="fine-tune")
    stored = client.files.retrieve(uploaded.id)
    if stored.bytes != size or stored.status == "error":
        raise OpenAIFineTuneError(f"upload of {path} is broken on the server ({stored.bytes} of {size} bytes, "
                                  f"status {stored.status}: {stored.status_details})")
    print(f"uploaded {path.name} -> {uploaded.id} ({size:,} bytes)")
    return uploaded.id

