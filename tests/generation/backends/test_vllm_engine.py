"""The in-process vLLM backend: runs where vLLM and a GPU are; skipped, with the reason, elsewhere."""

import importlib.util

import pytest

from conftest import SMOLLM, compose
from ded.data import arithmetic
from ded.generation import generate_cached
from ded.generation.backends.vllm_engine import VLLMConfig, VLLMModelConfig
from ded.generation.factory import make_backend

HAVE_VLLM = importlib.util.find_spec("vllm") is not None


def _gpus() -> int:
    import torch

    return torch.cuda.device_count()


@pytest.mark.skipif(not HAVE_VLLM, reason="vLLM is not installed (optional extra: pip install -e '.[vllm]' on a GPU machine)")
@pytest.mark.skipif(HAVE_VLLM and _gpus() == 0, reason="vLLM needs a GPU")
def test_vllm_generates_and_caches(cache_dir):
    t = VLLMModelConfig(name="smollm2", path=SMOLLM, dtype="bfloat16",
                        vllm=VLLMConfig(gpu_memory_utilization=0.3, max_model_len=2048, enforce_eager=True))  # fmt: skip
    b = make_backend(t, cache_dir)
    b.check()
    pool, _ = arithmetic.build(4, 2, [1, 2], seed=0)
    sampling = {"temperature": 0.7, "top_p": 0.95, "max_new_tokens": 16}
    try:
        out, st = generate_cached(b, cache_dir, pool, 2, prefix=[], sampling=sampling, seed=0, desc="vllm")
        assert st.new_samples == 8 and all(0 < r["n_tokens"] <= 16 and r["prompt_tokens"] > 0 for v in out.values() for r in v)
        again, st = generate_cached(b, cache_dir, pool, 2, prefix=[], sampling=sampling, seed=0, desc="vllm")
        assert st.new_samples == 0 and again == out
    finally:
        b.close()


def test_vllm_backend_imports_lazily():
    """Building the backend never imports vLLM: CPU installs do not need it."""
    import sys

    make_backend(compose(["teacher=qwq"]).teacher, "/nonexistent")
    assert HAVE_VLLM or "vllm" not in sys.modules
