"""Structured logs: one JSON object per line on stderr, with the request_id and the request's facts.

Log lines carry client-controlled text (request ids, error details, llama.cpp's messages about a request's grammar):
JSON escapes every control character, so no value can start a line of its own, and each string value is cut to
``MAX_VALUE_CHARS`` so that one request cannot write megabytes of log. llama.cpp's own log (which prints a rejected
grammar back) goes through the same formatter instead of straight to stderr (:func:`route_llama_cpp`).
"""

from __future__ import annotations

import ctypes
import json
import logging
import sys
import time
from typing import Any

MAX_VALUE_CHARS = 512  #: longest string value in a log line (tracebacks: MAX_TRACEBACK_CHARS)
MAX_TRACEBACK_CHARS = 8192
#: ggml_log_level (NONE 0, DEBUG 1, INFO 2, WARN 3, ERROR 4, CONT 5; llama-cpp-python's comment has an older order)
#: -> Python level: llama.cpp's INFO is its context-building chatter, so it becomes DEBUG here
_GGML_LEVELS = {0: logging.DEBUG, 1: logging.DEBUG, 2: logging.DEBUG, 3: logging.WARNING, 4: logging.ERROR}
_GGML_CONT = 5
_llama_callback: Any = None  #: the ctypes callback llama.cpp holds (kept alive here)


def clip(value: Any, limit: int = MAX_VALUE_CHARS) -> Any:
    """``value`` with a string cut to ``limit`` characters (and how many were cut); other values as they are."""
    if isinstance(value, str) and len(value) > limit:
        return f"{value[:limit]}...[{len(value) - limit} more characters]"
    return value


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if getattr(record, "request_id", None):
            out["request_id"] = record.request_id
        out.update(getattr(record, "fields", None) or {})
        out = {key: clip(value) for key, value in out.items()}
        if record.exc_info:
            out["exc"] = clip(self.formatException(record.exc_info), MAX_TRACEBACK_CHARS)
        return json.dumps(out, default=lambda value: clip(str(value)))


def setup(level: str = "info") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("httpx", "openai", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def route_llama_cpp() -> None:
    """Send llama.cpp's (and ggml's) log to the ``llama.cpp`` logger, replacing llama-cpp-python's callback, which
    prints every message verbatim to stderr. Continuation fragments keep their message's level."""
    global _llama_callback
    import llama_cpp

    logger = logging.getLogger("llama.cpp")
    last = [logging.DEBUG]

    @llama_cpp.llama_log_callback
    def callback(level: int, text: bytes, _user_data: ctypes.c_void_p) -> None:
        last[0] = last[0] if level == _GGML_CONT else _GGML_LEVELS.get(level, logging.DEBUG)
        if logger.isEnabledFor(last[0]):
            message = text[: MAX_VALUE_CHARS * 4].decode("utf-8", errors="replace").strip()
            if message:
                logger.log(last[0], "%s", message)

    _llama_callback = callback
    llama_cpp.llama_log_set(callback, ctypes.c_void_p(0))
