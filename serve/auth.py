"""Optional bearer-token auth and TLS/mTLS credentials for the gRPC server."""

from __future__ import annotations

import hmac
from pathlib import Path
from typing import TYPE_CHECKING

import grpc

from edgetune.config import ConfigError

if TYPE_CHECKING:
    from serve.config import ServeConfig

#: Methods answered without a token: load balancers and orchestrators probe health without secrets.
OPEN_PREFIXES = ("/grpc.health.v1.Health/",)


class BearerTokenInterceptor(grpc.aio.ServerInterceptor):
    """Rejects calls without ``authorization: Bearer <token>`` metadata with UNAUTHENTICATED."""

    def __init__(self, token: str):
        self._expected = f"Bearer {token}".encode()

        async def deny(_request, context: grpc.aio.ServicerContext) -> None:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED,
                                "missing or wrong bearer token: send metadata 'authorization: Bearer <token>'")

        self._deny = grpc.unary_unary_rpc_method_handler(deny)

    async def intercept_service(self, continuation, handler_call_details: grpc.HandlerCallDetails):
        if handler_call_details.method.startswith(OPEN_PREFIXES):
            return await continuation(handler_call_details)
        metadata = dict(handler_call_details.invocation_metadata or ())
        given = metadata.get("authorization", "")
        given = given.encode() if isinstance(given, str) else given
        if hmac.compare_digest(given, self._expected):
            return await continuation(handler_call_details)
        return self._deny


def read_token(config: "ServeConfig") -> str:
    """The bearer token: ``token`` (flag, YAML or $EDGETUNE_TOKEN) or the first line of ``token_file``, which keeps
    it out of ``ps`` and shell history; empty for no auth."""
    if not config.token_file:
        return config.token
    try:
        token = Path(config.token_file).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(None, "token_file", f"cannot read {config.token_file} ({exc}); give a readable file "
                                              "holding the token") from None
    if not token or "\n" in token:
        raise ConfigError(None, "token_file", f"{config.token_file} must hold the token on one line (it is "
                                              f"{'empty' if not token else 'several lines'})")
    return token


def server_credentials(cert: str, key: str, client_ca: str = "") -> grpc.ServerCredentials:
    """TLS with ``cert``/``key``; with ``client_ca`` clients must present a certificate it signed (mTLS)."""
    root = Path(client_ca).read_bytes() if client_ca else None
    return grpc.ssl_server_credentials(
        [(Path(key).read_bytes(), Path(cert).read_bytes())], root_certificates=root, require_client_auth=root is not None
    )
