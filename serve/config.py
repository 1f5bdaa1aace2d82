"""The server's typed config: every ``python -m serve`` flag is a field here (flag ``--n-ctx`` = field ``n_ctx``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Literal

BackendName = Literal["", "local", "remote", "auto", "compare"]


@dataclass
class ServeConfig:
    """What to serve and how. Defaults suit a Jetson-class device serving one small model."""

    run: str = "default"  #: run directory name; serves runs/RUN/bundle when it exists
    runs_dir: str = ""  #: folder holding the run directories (default: $EDGETUNE_RUNS, else runs/)
    host: str = "127.0.0.1"  #: address to listen on (0.0.0.0 to accept other machines)
    port: int = 50051  #: gRPC port (0 picks a free one)
    model: str = ""  #: GGUF to serve instead of the bundle's chosen one (or the embedded model)
    task: str = ""  #: task name or YAML when there is no bundle (default robot_sdk)
    contexts: int = 2  #: sequences of the one llama.cpp context: how many requests decode at once (batched)
    queue: int = 8  #: requests that may wait for a context; beyond it RESOURCE_EXHAUSTED at once
    n_gpu_layers: int = -1  #: layers offloaded to the GPU (-1: auto, all when llama.cpp was built with offload)
    threads: int = 0  #: CPU threads of the llama.cpp context (0: every usable core; waiting threads sleep)
    n_ctx: int = 2048  #: context window of each sequence, prompt plus answer
    n_batch: int = 512  #: prompt tokens evaluated per llama.cpp batch (also the cancel granularity of prompts)
    few_shot: Literal["auto", "on", "off", "dspy"] = "auto"  #: on|dspy (runs/RUN/prompt_opt)|off; auto: on w/o bundle
    grammar_candidates: int = 64  #: tokens the grammar checks first per step (0: whole vocabulary every step)
    close_reserve: int = 0  #: constrained answers prefer closing tokens once this few tokens remain (0: auto)
    backend: BackendName = ""  #: routing for requests that do not choose ("": auto with a remote backend, else local)
    local_timeout_ms: int = 5000  #: auto: local may take this long before remote answers instead
    remote_model: str = ""  #: remote model id (default: runs/RUN/openai_ft.json's model)
    remote_base_url: str = ""  #: OpenAI-compatible base URL (default: the fine-tune's, $OPENAI_BASE_URL, OpenAI's)
    remote_timeout_s: float = 30.0  #: longest a remote request may take
    token: str = ""  #: bearer token clients must send (empty: no auth); shows in ps: prefer token_file, $EDGETUNE_TOKEN
    token_file: str = ""  #: file holding the bearer token on one line (instead of token)
    tls_cert: str = ""  #: PEM certificate chain: serve TLS
    tls_key: str = ""  #: PEM private key for tls_cert
    tls_client_ca: str = ""  #: PEM CA bundle: require client certificates signed by it (mTLS)
    metrics_port: int = 0  #: Prometheus /metrics HTTP port (0: off)
    max_request_bytes: int = 262144  #: largest serialized request
    max_message_chars: int = 16384  #: longest command or chat message
    max_messages: int = 64  #: most chat messages in one request
    max_tokens_limit: int = 1024  #: largest max_tokens a request may ask for
    max_stop: int = 8  #: most stop strings in one request
    max_grammar_chars: int = 65536  #: longest custom GBNF grammar or JSON schema
    custom_grammars: bool = False  #: accept custom GBNF and JSON-schema constraints (a grammar worker per context)
    grammar_timeout_ms: int = 1000  #: longest one custom-grammar step (compile, token check) may take
    drain_s: float = 10.0  #: on SIGTERM, how long in-flight requests may finish before the server stops
    log_level: str = "info"  #: debug, info, warning or error

    def check(self) -> Iterator[tuple[str, str]]:
        if not 0 <= self.port <= 65535:
            yield "port", "must be in 0..65535"
        if self.contexts < 1:
            yield "contexts", "need at least 1 sequence"
        if self.n_gpu_layers < -1:
            yield "n_gpu_layers", "use -1 (auto: all when llama.cpp can offload), 0 (CPU only) or a layer count"
        if self.queue < 0:
            yield "queue", "must be >= 0 (0: no waiting, RESOURCE_EXHAUSTED when every context is busy)"
        if self.n_ctx < 64:
            yield "n_ctx", "must be at least 64 tokens"
        if not 0 < self.max_tokens_limit < self.n_ctx:
            yield "max_tokens_limit", f"must be between 1 and n_ctx ({self.n_ctx})"
        if bool(self.tls_cert) != bool(self.tls_key):
            yield "tls_cert", "TLS needs both --tls-cert and --tls-key"
        if self.token and self.token_file:
            yield "token_file", "give the token once: --token-file or --token ($EDGETUNE_TOKEN), not both"
        if self.tls_client_ca and not self.tls_cert:
            yield "tls_client_ca", "mTLS needs --tls-cert and --tls-key as well"
        if self.log_level not in ("debug", "info", "warning", "error"):
            yield "log_level", "one of debug, info, warning, error"
        for name in ("local_timeout_ms", "max_request_bytes", "max_message_chars", "max_messages", "max_stop",
                     "max_grammar_chars", "grammar_timeout_ms", "remote_timeout_s"):
            if getattr(self, name) <= 0:
                yield name, "must be positive"
