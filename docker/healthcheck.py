"""Container health probe for the edge server: asks the standard ``grpc.health.v1.Health`` service for a status.

Docker's HEALTHCHECK runs this inside the container. It exits 0 only when the server answers SERVING, and 1 on
anything else (NOT_SERVING while the model loads, no listener, a timeout), the two codes Docker understands. The
answer is printed, so `docker inspect --format '{{json .State.Health}}' CONTAINER` shows why a check failed.

    python docker/healthcheck.py                      # 127.0.0.1:$EDGETUNE_PORT (default 50051), overall status ""
    python docker/healthcheck.py --port 50052 --service edgetune.v1.Inference

It needs only grpcio and grpcio-health-checking (both in the serve extra), so the slim edge image can run it.
"""

from __future__ import annotations

import argparse
import os
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

DEFAULT_PORT = 50051


def check(target: str, service: str = "", timeout: float = 3.0) -> str:
    """The status name (``SERVING``, ``NOT_SERVING``, ...) that the health service at ``target`` reports."""
    with grpc.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout)
    return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1", help="server address (default: %(default)s)")
    parser.add_argument("--port", type=int, default=int(os.environ.get("EDGETUNE_PORT", DEFAULT_PORT)),
                        help="server port (default: $EDGETUNE_PORT or %d)" % DEFAULT_PORT)
    parser.add_argument("--service", default="", help='service to ask about; "" (default) is the whole server')
    parser.add_argument("--timeout", type=float, default=3.0, help="seconds to wait for the answer (default: 3)")
    args = parser.parse_args(argv)
    target = f"{args.host}:{args.port}"
    try:
        status = check(target, args.service, args.timeout)
    except grpc.RpcError as err:
        print(f"{target}: health check failed: {err.code().name}: {err.details()}")
        return 1
    print(f"{target} service {args.service!r}: {status}")
    return 0 if status == "SERVING" else 1


if __name__ == "__main__":
    sys.exit(main())
