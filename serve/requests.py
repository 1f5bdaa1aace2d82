"""Request validation at the boundary: a GenerateRequest becomes a backend :class:`Job`, or an
:class:`InvalidRequest` that names the field and the fix (the server returns it as INVALID_ARGUMENT)."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from edgetune.deployed import Deployed
from edgetune.grammar_worker import CustomGrammar
from serve.backends import Job
from serve.config import ServeConfig
from serve.grammar import GrammarError, bound_json_schema, check_gbnf

if TYPE_CHECKING:
    from edgetune.v1 import inference_pb2 as pb
    from serve.backends import LocalBackend

ROLES = ("system", "user", "assistant")
MAX_REQUEST_ID = 128
MAX_STOP_CHARS = 64


class InvalidRequest(ValueError):
    def __init__(self, field: str, problem: str):
        self.field = field
        super().__init__(f"{field}: {problem}")


def _messages(request: "pb.GenerateRequest", served: Deployed,
              config: ServeConfig) -> tuple[str, list[dict[str, str]], list[dict[str, str]]]:
    """(field the prompt came from, the local chat, the remote chat: without the few-shot turns)."""
    if request.command and request.messages:
        raise InvalidRequest("command", "give either command or messages, not both")
    if request.command:
        if len(request.command) > config.max_message_chars:
            raise InvalidRequest("command", f"{len(request.command)} characters; at most {config.max_message_chars} "
                                            "(--max-message-chars)")
        if not request.command.strip():
            raise InvalidRequest("command", "is blank; say what the robot should do")
        return "command", served.chat(request.command), served.chat(request.command, few_shot=False)
    if not request.messages:
        raise InvalidRequest("command", "empty; give a command (\"go to the kitchen\") or chat messages")
    if len(request.messages) > config.max_messages:
        raise InvalidRequest("messages", f"{len(request.messages)} messages; at most {config.max_messages} "
                                         "(--max-messages)")
    chat = []
    for i, message in enumerate(request.messages):
        if message.role not in ROLES:
            raise InvalidRequest(f"messages[{i}].role", f"{message.role!r}; use one of {', '.join(ROLES)}")
        if len(message.content) > config.max_message_chars:
            raise InvalidRequest(f"messages[{i}].content", f"{len(message.content)} characters; at most "
                                                           f"{config.max_message_chars} (--max-message-chars)")
        chat.append({"role": message.role, "content": message.content})
    if chat[0]["role"] != "system":
        chat.insert(0, {"role": "system", "content": served.system_prompt})
    return "messages", chat, chat


def _grammar(request: "pb.GenerateRequest", served: Deployed,
             config: ServeConfig) -> tuple[str | None, CustomGrammar | None]:
    """(the trusted contract grammar, a client's grammar): at most one of them. A client's grammar only passes the
    static limits here; the grammar worker converts and compiles it, off the event loop."""
    from edgetune.v1 import inference_pb2 as pb

    kind, value = request.constraint.kind, request.constraint.value
    if kind in (pb.CONSTRAINT_KIND_UNSPECIFIED, pb.CONSTRAINT_KIND_NONE, pb.CONSTRAINT_KIND_CONTRACT) and value:
        raise InvalidRequest("constraint.value", "is only for the GBNF and JSON_SCHEMA kinds")
    if kind == pb.CONSTRAINT_KIND_UNSPECIFIED:
        return served.grammar, None
    if kind == pb.CONSTRAINT_KIND_NONE:
        return None, None
    if kind == pb.CONSTRAINT_KIND_CONTRACT:
        if served.grammar is None:
            raise InvalidRequest("constraint.kind", f"task {served.task.name!r} has a text contract without a "
                                                    "grammar; use CONSTRAINT_KIND_NONE")
        return served.grammar, None
    if kind not in (pb.CONSTRAINT_KIND_GBNF, pb.CONSTRAINT_KIND_JSON_SCHEMA):
        raise InvalidRequest("constraint.kind", f"unknown kind {kind}")
    grammar = CustomGrammar("gbnf" if kind == pb.CONSTRAINT_KIND_GBNF else "json_schema", value)
    if not config.custom_grammars:
        raise InvalidRequest("constraint.kind", f"{pb.ConstraintKind.Name(kind)}: custom {grammar.what}s "
                                                "are off on this server (the operator enables them with "
                                                "--custom-grammars); use CONSTRAINT_KIND_CONTRACT or NONE")
    if not value.strip():
        raise InvalidRequest("constraint.value", "empty; give the GBNF grammar or JSON schema")
    if len(value) > config.max_grammar_chars:
        raise InvalidRequest("constraint.value", f"{len(value)} characters; at most {config.max_grammar_chars} "
                                                 "(--max-grammar-chars)")
    try:
        if grammar.kind == "gbnf":
            check_gbnf(value)
        else:
            grammar = CustomGrammar("json_schema", bound_json_schema(value))
    except GrammarError as exc:
        raise InvalidRequest("constraint.value", f"the {grammar.what} {exc}") from None
    return None, grammar


def prepare(request: "pb.GenerateRequest", served: Deployed, config: ServeConfig, local: "LocalBackend",
            uses_local: bool, received: float, deadline: float | None) -> Job:
    """Validate ``request`` and resolve every default; ``uses_local`` adds the prompt-length check."""
    size = request.ByteSize()
    if size > config.max_request_bytes:
        raise InvalidRequest("request", f"{size} bytes; at most {config.max_request_bytes} (--max-request-bytes)")
    request_id = request.request_id or uuid.uuid4().hex[:16]
    if len(request_id) > MAX_REQUEST_ID or not request_id.isprintable():
        raise InvalidRequest("request_id", f"must be printable and at most {MAX_REQUEST_ID} characters")
    prompt_field, messages, remote_messages = _messages(request, served, config)

    s, d = request.sampling, served.sampling
    temperature = s.temperature if s.HasField("temperature") else d.temperature
    top_p = s.top_p if s.HasField("top_p") else d.top_p
    top_k = s.top_k if s.HasField("top_k") else d.top_k
    max_tokens = s.max_tokens if s.HasField("max_tokens") else d.max_tokens
    repeat_penalty = s.repeat_penalty if s.HasField("repeat_penalty") else d.repeat_penalty
    stop = list(s.stop) or list(d.stop)
    if not 0.0 <= temperature <= 2.0:
        raise InvalidRequest("sampling.temperature", f"{temperature:g}; use 0 (greedy) to 2")
    if not 0.0 < top_p <= 1.0:
        raise InvalidRequest("sampling.top_p", f"{top_p:g}; use a value in (0, 1]")
    if top_k < 0:
        raise InvalidRequest("sampling.top_k", f"{top_k}; use 0 (off) or a positive number")
    if not 0.0 < repeat_penalty <= 2.0:
        raise InvalidRequest("sampling.repeat_penalty", f"{repeat_penalty:g}; use a value in (0, 2] (1: off)")
    if not 1 <= max_tokens <= config.max_tokens_limit:
        raise InvalidRequest("sampling.max_tokens", f"{max_tokens}; use 1 to {config.max_tokens_limit} "
                                                    "(--max-tokens-limit)")
    if len(s.stop) > config.max_stop:
        raise InvalidRequest("sampling.stop", f"{len(s.stop)} stop strings; at most {config.max_stop} (--max-stop)")
    for i, text in enumerate(stop):
        if not text or len(text) > MAX_STOP_CHARS:
            raise InvalidRequest(f"sampling.stop[{i}]", f"stop strings are 1 to {MAX_STOP_CHARS} characters")

    grammar, custom_grammar = _grammar(request, served, config)
    prompt_tokens: list[int] = []
    if uses_local:
        prompt_tokens = local.tokenize_chat(messages)
        reserve = local.reserve(temperature)
        if grammar is not None and max_tokens < reserve:
            raise InvalidRequest("sampling.max_tokens", f"{max_tokens}; a contract-constrained answer needs at least "
                                                        f"{reserve} at temperature {temperature:g} to always close "
                                                        "(the close reserve); raise it or use CONSTRAINT_KIND_NONE")
        if len(prompt_tokens) + max_tokens > local.n_ctx:
            raise InvalidRequest(prompt_field, f"the prompt is {len(prompt_tokens)} tokens; with sampling.max_tokens="
                                               f"{max_tokens} it needs n_ctx >= {len(prompt_tokens) + max_tokens}, "
                                               f"the server has {local.n_ctx} (--n-ctx); shorten it")
    return Job(
        request_id=request_id, messages=messages, remote_messages=remote_messages, max_tokens=max_tokens, temperature=temperature, top_p=top_p,
        top_k=top_k, repeat_penalty=repeat_penalty, stop=stop, seed=s.seed if s.HasField("seed") else None,
        grammar=grammar, custom_grammar=custom_grammar, prompt_tokens=prompt_tokens, received=received, deadline=deadline,
    )
