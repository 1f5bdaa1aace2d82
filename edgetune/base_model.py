"""Load any BASE_MODEL (the embedded default, a GGUF file, or a Hugging Face model directory) as a transformers
model + tokenizer. A GGUF is dequantized once and cached as a plain HF checkpoint under ``models/hf/`` so later
loads (training, merging) are fast and serializable. Heavy imports stay inside functions.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgetune.embedded import MODELS_DIR, embedded_gguf
from edgetune.rundir import _UMASK, sha256_file

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class BaseModelRef:
    """Where a base model comes from: ``source`` as given, and the HF directory it loads from."""

    source: str
    kind: str  #: "gguf" or "hf"
    path: Path  #: the GGUF file or the HF model directory
    sha256: str | None = None  #: of the GGUF file

    @property
    def hf_dir(self) -> Path:
        """The HF checkpoint directory (for a GGUF, its dequantized cache)."""
        if self.kind == "hf":
            return self.path
        return MODELS_DIR / "hf" / f"{self.path.stem}-{(self.sha256 or '')[:12]}"


def resolve_base_model(source: str | Path | None = None) -> BaseModelRef:
    """Turn BASE_MODEL into a reference; empty or ``embedded`` means the embedded SmolLM2-135M-Instruct."""
    if not source or str(source) == "embedded":
        path = embedded_gguf()
        return BaseModelRef("embedded", "gguf", path, sha256_file(path))
    path = Path(source).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        return BaseModelRef(str(source), "gguf", path.resolve(), sha256_file(path))
    if path.is_dir() and (path / "config.json").is_file():
        return BaseModelRef(str(source), "hf", path.resolve())
    if not path.exists():
        raise FileNotFoundError(
            f"BASE_MODEL={source!s}: no such file or directory; give a .gguf file, a Hugging Face model "
            "directory (with config.json), or leave it empty for the embedded SmolLM2-135M-Instruct"
        )
    raise ValueError(f"BASE_MODEL={source!s}: expected a .gguf file or a directory holding config.json")


def ensure_hf_checkpoint(ref: BaseModelRef) -> Path:
    """The HF directory to load from; for a GGUF, dequantize once into the cache (atomically, via a temp dir)."""
    target = ref.hf_dir
    if ref.kind == "hf" or (target / "config.json").is_file():
        return target
    import shutil
    import tempfile

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = str(ref.path.parent), ref.path.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    # transformers refuses save_pretrained on a GGUF-loaded model (it is flagged as quantized even though the
    # weights are already dequantized); rebuild a plain model from its config and copy the weights over.
    config = loaded.config
    for attr in ("quantization_config", "gguf_file"):
        if hasattr(config, attr):
            delattr(config, attr)
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(loaded.state_dict())
    plain.generation_config = loaded.generation_config
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        plain.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        for item in (tmp, *tmp.iterdir()):  # mkdtemp (and safetensors) make owner-only files; share like a plain save
            item.chmod((0o777 if item.is_dir() else 0o666) & ~_UMASK)
        try:
            tmp.rename(target)
        except OSError:
            # another process finished the same cache first; its checkpoint is as good as ours
            if not (target / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def load_base_model(
    source: str | Path | None = None, dtype: "torch.dtype | None" = None, **kwargs: Any
) -> tuple[Any, Any]:
    """(model, tokenizer) for BASE_MODEL through transformers, in full precision unless ``dtype`` says otherwise."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    directory = ensure_hf_checkpoint(resolve_base_model(source))
    tokenizer = AutoTokenizer.from_pretrained(directory)
    model = AutoModelForCausalLM.from_pretrained(directory, dtype=dtype or torch.float32, **kwargs)
    return model, tokenizer
