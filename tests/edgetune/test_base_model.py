"""BASE_MODEL resolution, the once-only GGUF -> HF checkpoint cache, and the embedded model through transformers."""

from __future__ import annotations

import pytest

from edgetune.base_model import BaseModelRef, ensure_hf_checkpoint, load_base_model, resolve_base_model
from edgetune.embedded import DEFAULT


@pytest.mark.parametrize("source", [None, "", "embedded"])
def test_empty_or_embedded_means_the_embedded_gguf(source, embedded_gguf_path):
    ref = resolve_base_model(source)
    assert (ref.source, ref.kind, ref.path, ref.sha256) == ("embedded", "gguf", embedded_gguf_path, DEFAULT.sha256)
    assert ref.hf_dir.name == f"{embedded_gguf_path.stem}-{DEFAULT.sha256[:12]}"


def test_a_gguf_path_is_cached_by_content(tmp_path, embedded_gguf_path):
    link = tmp_path / "copy.gguf"
    link.symlink_to(embedded_gguf_path)
    ref = resolve_base_model(link)
    assert (ref.kind, ref.source, ref.sha256) == ("gguf", str(link), DEFAULT.sha256)
    assert ref.hf_dir == resolve_base_model().hf_dir


def test_an_hf_directory_is_used_as_is(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    ref = resolve_base_model(tmp_path)
    assert ref == BaseModelRef(str(tmp_path), "hf", tmp_path.resolve())
    assert ensure_hf_checkpoint(ref) == ref.hf_dir == tmp_path.resolve()


def test_a_missing_base_model_names_base_model_and_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError) as caught:
        resolve_base_model(tmp_path / "nope.gguf")
    message = str(caught.value)
    assert f"BASE_MODEL={tmp_path / 'nope.gguf'}" in message
    assert ".gguf file" in message and "config.json" in message and "leave it empty" in message


@pytest.mark.parametrize("make", ["directory without config", "file of another kind"])
def test_a_base_model_of_the_wrong_kind_says_what_is_expected(tmp_path, make):
    if make == "directory without config":
        source = tmp_path
    else:
        source = tmp_path / "weights.bin"
        source.write_bytes(b"x")
    with pytest.raises(ValueError, match=f"BASE_MODEL={source}: expected a .gguf file or a directory holding config.json"):
        resolve_base_model(source)


def test_the_hf_cache_of_a_gguf_is_built_once(monkeypatch):
    # the first call ever builds models/hf/... (about 30-60 s here); every later call must only reuse it
    ref = resolve_base_model()
    first = ensure_hf_checkpoint(ref)
    assert (first / "config.json").is_file() and (first / "model.safetensors").is_file()
    stamp = (first / "model.safetensors").stat().st_mtime_ns

    import transformers

    def no_rebuild(*args, **kwargs):
        raise AssertionError("the cached HF checkpoint was rebuilt")

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", no_rebuild)
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", no_rebuild)
    assert ensure_hf_checkpoint(ref) == first
    assert (first / "model.safetensors").stat().st_mtime_ns == stamp
    assert not list(first.parent.glob(f".{first.name}.*")), "a temp build folder was left behind"


@pytest.mark.slow
def test_the_embedded_model_answers_through_transformers():
    import torch

    model, tokenizer = load_base_model()
    assert model.dtype == torch.float32 and not getattr(model.config, "quantization_config", None)
    messages = [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "What is the capital of France?"},
    ]
    inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.no_grad():
        output = model.generate(**inputs, max_new_tokens=16, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    answer = tokenizer.decode(output[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
    assert "Paris" in answer
