"""The openai backend against an endpoint that misbehaves (tests/faults/fault_server.py, on
127.0.0.1, bounded in requests and lifetime).

Every scenario asserts the outcome (clean samples after the right number of requests, or a
short error within ``endpoint.max_retries``), that nothing unusable reached the sample cache
(the cache file is read back) and that it took bounded time.
"""

from __future__ import annotations

import json
import time
import traceback
from pathlib import Path

import pytest

from ded.data import arithmetic
from ded.generation import generate_cached, question_hash
from ded.generation.backends.endpoint import EndpointConfig, EndpointError, OpenAIModelConfig
from ded.generation.factory import make_backend
from faults.fault_server import FaultServer

pytestmark = [pytest.mark.faults, pytest.mark.timeout(60)]

KEY = "sk-fault-test-0123456789abcdef"
SAMPLING = {"temperature": 0.7, "top_p": 0.95, "max_new_tokens": 12}
TIMEOUT = 0.5  # the backend's per-request timeout; a hang lasts longer

# Every way a reply can fail, with a word the error must name.
RECOVERABLE = {
    "429": "429",
    "500": "500",
    "hang": "Timeout",
    "malformed": "not JSON",
    "html": "not JSON",
    "zero_choices": "no choices",
    "null_content": "no content",
    "no_message": "message",
    "wrong_shape": "'choices'",
    "list_body": "JSON list",
    "bad_finish": "content_filter",
}


@pytest.fixture(autouse=True)
def _key(monkeypatch):
    monkeypatch.setenv("FAULT_TEST_KEY", KEY)


def _backend(url: str, cache: str, **endpoint):
    kw = dict(base_url=url, model="faulty", api_key_env="FAULT_TEST_KEY", concurrency=1, timeout=TIMEOUT, max_retries=2, backoff=0.01)
    m = OpenAIModelConfig(name="faulty", path="faulty", endpoint=EndpointConfig(**{**kw, **endpoint}))
    return make_backend(m, cache)


def _gen(b, cache: str, pool, n: int = 1):
    return generate_cached(b, cache, pool, n, prefix=[], sampling=SAMPLING, seed=0, desc="faults")


def _records(cache: str) -> list[dict]:
    """Every sample line in the cache, read back from disk."""
    return [json.loads(x) for f in Path(cache, "samples").glob("*/samples.jsonl") for x in f.read_text().splitlines() if x.strip()]


def _clean(rec: dict) -> bool:
    return isinstance(rec["text"], str) and rec["text"].strip() != "" and rec["finish"] in ("stop", "length")


def _no_key_in(cache: str) -> None:
    for f in Path(cache).rglob("*"):
        if f.is_file():
            assert KEY not in f.read_text(errors="replace"), f


def _pool(n: int = 1):
    return arithmetic.build(n, 1, [1], seed=0)[0]


@pytest.mark.parametrize("fault", list(RECOVERABLE))
def test_fault_then_recovers_with_clean_samples(fault, tmp_path):
    """Two faulty replies, then a good one: three requests, one clean sample cached."""
    cache, pool = str(tmp_path), _pool()
    t0 = time.monotonic()
    with FaultServer([fault, fault], hang_s=3 * TIMEOUT, max_requests=20, lifetime_s=30) as s:
        out, st = _gen(_backend(s.base_url, cache), cache, pool)
    assert time.monotonic() - t0 < 10
    assert s.posts == 3 and len({c["seed"] for c in s.calls}) == 1  # the same request, retried
    rec = out[pool[0].id][0]
    assert rec["text"] == "The answer is 0." and rec["finish"] == "stop" and (rec["n_tokens"], rec["prompt_tokens"]) == (10, 7)
    assert st.new_samples == 1 and _records(cache) == [rec]
    assert all(a == f"Bearer {KEY}" for a in s.auth)
    _no_key_in(cache)


@pytest.mark.parametrize("fault", list(RECOVERABLE))
def test_fault_forever_fails_within_the_retry_limit(fault, tmp_path):
    """Only faulty replies: max_retries + 1 requests, then a short error naming the endpoint,
    the question and sample and the last reason; the cache holds nothing."""
    cache, pool = str(tmp_path), _pool()
    t0 = time.monotonic()
    with FaultServer(then=fault, hang_s=3 * TIMEOUT, max_requests=20, lifetime_s=30) as s:
        with pytest.raises(EndpointError) as ei:
            _gen(_backend(s.base_url, cache, max_retries=2), cache, pool)
    assert time.monotonic() - t0 < 3 * TIMEOUT + 5
    assert s.posts == 3
    msg = str(ei.value)
    assert len(msg) < 600, msg
    assert s.base_url in msg and f"question {question_hash(pool[0].text)} sample 0" in msg and "max_retries=2" in msg
    assert RECOVERABLE[fault] in msg.split("last:", 1)[1], msg
    assert KEY not in msg
    assert _records(cache) == []


def test_zero_choices_is_retried_within_the_limit_then_fails_short(tmp_path):
    """Issue 10: a 200 reply with zero choices made the backend request again hundreds of times,
    outside its retry limit, then fail with a 48 KB nested error."""
    cache, pool = str(tmp_path), _pool()
    t0 = time.monotonic()
    with FaultServer(then="zero_choices", max_requests=50, lifetime_s=30) as s:
        with pytest.raises(Exception) as ei:
            _gen(_backend(s.base_url, cache, max_retries=3), cache, pool)
    assert s.posts == 4  # 1 + max_retries
    assert isinstance(ei.value, EndpointError) and len(str(ei.value)) < 400 and "no choices" in str(ei.value)
    assert len("".join(traceback.format_exception(ei.value))) < 10_000  # no chain of nested errors
    assert time.monotonic() - t0 < 5
    assert _records(cache) == []


def test_null_content_is_never_cached(tmp_path):
    """Issue 10: ``content: null`` was cached as an empty sample with finish=stop, so later runs
    never asked for it again. Now it fails the run, caches nothing, and a rerun asks again."""
    cache, pool = str(tmp_path), _pool(2)
    with FaultServer(then="null_content", max_requests=20, lifetime_s=30) as s:
        with pytest.raises(EndpointError, match="no content"):
            _gen(_backend(s.base_url, cache), cache, pool)
    assert s.posts == 3 and _records(cache) == []
    with FaultServer(max_requests=20, lifetime_s=30) as s2:  # the endpoint is fixed: the rerun asks for both
        out, st = _gen(_backend(s2.base_url, cache), cache, pool)
    assert s2.posts == 2 and st.new_samples == 2
    recs = _records(cache)
    assert len(recs) == 2 and all(_clean(r) for r in recs)


def test_reasoning_without_content_is_a_sample(tmp_path):
    """content: null *with* reasoning_content (a trace cut off while thinking) is kept as <think>."""
    cache, pool = str(tmp_path), _pool()
    with FaultServer(then="reasoning_only", max_requests=5, lifetime_s=30) as s:
        out, _ = _gen(_backend(s.base_url, cache), cache, pool)
    assert s.posts == 1
    rec = out[pool[0].id][0]
    assert rec["text"].startswith("<think>\nLet me think.\n</think>") and rec["finish"] == "length"
    assert _records(cache) == [rec]


def test_reasoning_content_kept_with_the_answer(tmp_path):
    cache, pool = str(tmp_path), _pool()
    with FaultServer(["500"], reasoning="Let me think.", max_requests=5, lifetime_s=30) as s:
        out, _ = _gen(_backend(s.base_url, cache), cache, pool)
    assert s.posts == 2 and out[pool[0].id][0]["text"] == "<think>\nLet me think.\n</think>\n\nThe answer is 0."


def test_unauthorized_fails_at_once_without_the_key(tmp_path):
    """A 401 is not retried; the server echoes the key in its error, the raised error masks it."""
    cache, pool = str(tmp_path), _pool()
    with FaultServer(then="401", max_requests=5, lifetime_s=30) as s:
        with pytest.raises(EndpointError) as ei:
            _gen(_backend(s.base_url, cache), cache, pool)
    assert s.posts == 1 and "401" in str(ei.value) and "***" in str(ei.value) and KEY not in str(ei.value)
    assert _records(cache) == []
    _no_key_in(cache)


def test_n_per_request_falls_back_when_n_is_ignored(tmp_path):
    """A server that answers one choice whatever n asks: the rest are requested one by one with
    their own seeds, and later questions go one by one from the start."""
    cache, pool = str(tmp_path), _pool(2)
    with FaultServer(then="one_choice", max_requests=20, lifetime_s=30) as s:
        b = _backend(s.base_url, cache, n_per_request=True)
        out, st = _gen(b, cache, pool, n=3)
    assert [c.get("n") for c in s.calls] == [3, None, None, None, None, None]
    assert len({c["seed"] for c in s.calls}) == 6 and b._n_supported is False
    assert st.new_samples == 6 and all(_clean(r) for r in _records(cache)) and len(_records(cache)) == 6


def test_n_per_request_unusable_reply_is_retried_whole(tmp_path):
    cache, pool = str(tmp_path), _pool()
    with FaultServer(["zero_choices", "null_content"], max_requests=20, lifetime_s=30) as s:
        b = _backend(s.base_url, cache, n_per_request=True)
        out, st = _gen(b, cache, pool, n=3)
    assert [c.get("n") for c in s.calls] == [3, 3, 3] and b._n_supported is True
    assert [r["text"] for r in out[pool[0].id]] == [f"The answer is {k}." for k in range(3)]
    assert st.new_tokens == 30 and st.prompt_tokens == 7 and len(_records(cache)) == 3


def test_completions_api_null_text_is_retried(tmp_path):
    """api=completions: a null ``text`` is unusable too."""

    class Tok:
        def apply_chat_template(self, messages, tokenize, add_generation_prompt):
            return messages[-1]["content"] + "\nassistant\n"

    cache, pool = str(tmp_path), _pool()
    with FaultServer(["null_content"], max_requests=5, lifetime_s=30) as s:
        b = _backend(s.base_url, cache, api="completions")
        b._tok = Tok()
        out, _ = _gen(b, cache, pool)
    assert s.posts == 2 and "prompt" in s.calls[0] and out[pool[0].id][0]["text"] == "The answer is 0."
    assert len(_records(cache)) == 1
