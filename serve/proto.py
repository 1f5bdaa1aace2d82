"""The generated ``edgetune.v1`` stubs (``make proto``), with a clear message when they have not been generated."""

from __future__ import annotations

try:
    from edgetune.v1 import inference_pb2 as pb
    from edgetune.v1 import inference_pb2_grpc as pb_grpc
except ModuleNotFoundError as exc:  # pragma: no cover - depends on the checkout
    raise ModuleNotFoundError(
        "the gRPC stubs edgetune/v1/*_pb2*.py are missing: run `make proto` (they are generated, not committed)"
    ) from exc

BACKENDS = {"local": pb.BACKEND_LOCAL, "remote": pb.BACKEND_REMOTE, "auto": pb.BACKEND_AUTO,
            "compare": pb.BACKEND_COMPARE}
BACKEND_NAMES = {v: k for k, v in BACKENDS.items()}
FINISH = {"stop": pb.FINISH_REASON_STOP, "length": pb.FINISH_REASON_LENGTH, "cancelled": pb.FINISH_REASON_CANCELLED,
          "deadline_exceeded": pb.FINISH_REASON_DEADLINE_EXCEEDED, "error": pb.FINISH_REASON_ERROR}
FINISH_NAMES = {v: k for k, v in FINISH.items()}
CONSTRAINTS = {"default": pb.CONSTRAINT_KIND_UNSPECIFIED, "none": pb.CONSTRAINT_KIND_NONE,
               "contract": pb.CONSTRAINT_KIND_CONTRACT, "gbnf": pb.CONSTRAINT_KIND_GBNF,
               "json_schema": pb.CONSTRAINT_KIND_JSON_SCHEMA}

__all__ = ["pb", "pb_grpc", "BACKENDS", "BACKEND_NAMES", "FINISH", "FINISH_NAMES", "CONSTRAINTS"]
