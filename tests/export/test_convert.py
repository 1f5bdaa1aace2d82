"""Merging and conversion: the F16 GGUF computes what the merged HF model computes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time

import numpy as np
import pytest

from export import ExportError, convert
from export.verify import load_llama

PROMPT = "<|im_start|>user\nGo to the kitchen, find the red ball and bring it to me.<|im_end|>\n<|im_start|>assistant\n"
#: F16 rounding of the weights moves logits of this model (std ~1.6, max ~8) by ~0.02; 0.05 leaves margin while
#: the adapter itself moves them by several units, so a skipped or wrong merge cannot pass.
LOGITS_ATOL = 0.05


def _hf_logits(model_dir, ids):
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    with torch.inference_mode():
        return model(torch.tensor([ids])).logits[0].numpy()


def test_converter_is_the_installed_llama_cpp_python_sdist():
    from importlib import metadata

    directory = convert.converter_dir()
    assert directory.name == f"llama-cpp-python-{metadata.version('llama-cpp-python')}"
    assert (directory / "convert_hf_to_gguf.py").is_file()
    assert (directory / "gguf-py" / "gguf" / "gguf_writer.py").is_file()
    assert "LlamaForCausalLM" in convert.supported_architectures()


def test_f16_gguf_logits_match_the_merged_hf_model(tiny_base, tiny_merged, tiny_f16):
    from transformers import AutoTokenizer

    ids = AutoTokenizer.from_pretrained(tiny_merged).encode(PROMPT, add_special_tokens=False)
    merged = _hf_logits(tiny_merged, ids)
    base = _hf_logits(tiny_base, ids)
    llm = load_llama(tiny_f16, n_ctx=128, logits_all=True, n_threads=2)
    llm.eval(ids)
    gguf = np.array(llm.scores[: len(ids)])
    llm.close()
    np.testing.assert_allclose(gguf, merged, atol=LOGITS_ATOL, rtol=0)
    assert (gguf.argmax(-1) == merged.argmax(-1)).all()
    assert np.abs(merged - base).max() > 20 * LOGITS_ATOL, "the adapter did not change the model: nothing was merged"


def test_unsupported_architecture_is_refused(tmp_path, tiny_merged):
    odd = tmp_path / "odd"
    shutil.copytree(tiny_merged, odd)
    config = json.loads((odd / "config.json").read_text())
    config["architectures"] = ["TotallyNewForCausalLM"]
    (odd / "config.json").write_text(json.dumps(config))
    with pytest.raises(ExportError, match=r"TotallyNewForCausalLM.*not supported by llama.cpp's converter"):
        convert.convert_to_gguf(odd, tmp_path / "odd.gguf")
    assert not list(tmp_path.glob("*.gguf*"))


def test_failed_conversion_leaves_no_file(tmp_path, tiny_merged):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_merged, broken)
    (broken / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ExportError, match="converter failed"):
        convert.convert_to_gguf(broken, tmp_path / "out" / "broken-F16.gguf")
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["broken-F16.convert.log"]


def test_interrupted_conversion_leaves_no_file(tmp_path, tiny_merged, monkeypatch):
    """Ctrl-C while the converter is writing: the converter is killed and neither the GGUF nor its temp file stays."""
    real_popen = subprocess.Popen

    def interrupt_while_writing(cmd, **kwargs):
        process = real_popen(cmd, **kwargs)
        partial = cmd[cmd.index("--outfile") + 1]  # the temp file beside the target
        deadline = time.time() + 120
        while time.time() < deadline and process.poll() is None and os.path.getsize(partial) == 0:
            time.sleep(0.005)
        process.kill()
        process.wait()
        raise KeyboardInterrupt

    monkeypatch.setattr(convert.subprocess, "run", interrupt_while_writing)
    out_dir = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        convert.convert_to_gguf(tiny_merged, out_dir / "tiny-F16.gguf")
    assert not list(out_dir.glob("*.gguf")) and not list(out_dir.glob("*.tmp"))
