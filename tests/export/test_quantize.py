"""Quantization: llama.cpp writes the tensor types each quant promises; corrupt files are refused clearly."""

from __future__ import annotations

from collections import Counter

import pytest

from export import ExportError
from export.quantize import quantize
from export.verify import load_llama, read_gguf

NORMS = {"attn_norm", "ffn_norm", "output_norm"}


def _types(path) -> dict[str, str]:
    return {t.name: t.tensor_type.name for t in read_gguf(path).tensors}


def _kind(name: str) -> str:
    return name.split(".")[-2]


def test_f16_has_f16_weights_and_f32_norms(tiny_f16):
    types = _types(tiny_f16)
    assert len(types) == 2 * 9 + 2  # 2 layers x (4 attn + 3 ffn + 2 norms) + token_embd + output_norm (tied)
    for name, kind in types.items():
        assert kind == ("F32" if _kind(name) in NORMS else "F16"), name


@pytest.mark.parametrize("quant, main_type", [("Q8_0", "Q8_0"), ("Q6_K", "Q6_K"), ("Q4_K_M", "Q4_K")])
def test_quantized_tensor_types(tmp_path, tiny_f16, quant, main_type):
    out = quantize(tiny_f16, tmp_path / f"tiny-{quant}.gguf", quant, threads=2)
    types = _types(out)
    assert not list(tmp_path.glob("*.tmp"))
    for name, kind in types.items():
        if _kind(name) in NORMS:
            assert kind == "F32", name
        elif quant == "Q4_K_M" and (_kind(name) in ("attn_v", "ffn_down") or name == "token_embd.weight"):
            # Q4_K_M's "M": llama.cpp gives attn_v/ffn_down of some layers and the (tied) output matrix Q6_K
            assert kind in ("Q4_K", "Q6_K"), name
        else:
            assert kind == main_type, name
    if quant == "Q4_K_M":
        assert types["token_embd.weight"] == "Q6_K"
        assert Counter(types.values())["Q6_K"] >= 2
    assert out.stat().st_size < tiny_f16.stat().st_size


def test_corrupt_gguf_is_refused_clearly(tmp_path, tiny_f16):
    corrupt = tmp_path / "corrupt.gguf"
    corrupt.write_bytes(tiny_f16.read_bytes()[: 4096])
    with pytest.raises(ExportError, match="not a readable GGUF"):
        read_gguf(corrupt)
    with pytest.raises(ExportError, match="not a readable GGUF"):
        load_llama(corrupt)
    with pytest.raises(ExportError, match="llama_model_quantize.*failed"):
        quantize(corrupt, tmp_path / "out.gguf", "Q8_0", threads=2)
    assert not (tmp_path / "out.gguf").exists() and not list(tmp_path.glob("*.tmp"))
