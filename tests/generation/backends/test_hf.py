"""The in-process hf backend's two engines, and flat memory while generation streams to the cache.

The continuous-batching engine (transformers' paged KV cache) is what the GPU default uses; it
runs on CPU too, only slower, so its correctness is tested here on the real SmolLM2 model.
"""

import gc
import tracemalloc

import pytest
import torch

from ded.config import ConfigError
from ded.plugins import validate
from ded.data import Question
from ded.generation import Request, generate_cached
from ded.generation.backends.hf import HFBackend
from ded.core.models import load_model

from conftest import compose


@pytest.fixture(scope="module")
def smollm(smollm_path):
    return load_model(smollm_path, "")


def _requests(k):
    return [Request(f"q{i}", 0, [{"role": "user", "content": f"What is {i} + {2 * i + 3}?"}], seed=1000 + i) for i in range(k)]


def _run(model_tok, engine, reqs, sampling, batch_size=3):
    b = HFBackend(lambda: model_tok, {"model": "smollm2-test"}, batch_size, engine=engine)
    batches = list(b.generate(reqs, sampling))
    assert all(len(x) <= batch_size for x in batches)  # handed to the cache a batch at a time
    return {c.request.qhash: c for x in batches for c in x}


def test_continuous_greedy_matches_generate(smollm):
    """Same model, same prompts, greedy: the paged engine must produce generate()'s tokens."""
    reqs = _requests(6)
    greedy = {"temperature": 0.0, "max_new_tokens": 20}
    plain = _run(smollm, "generate", reqs, greedy)
    paged = _run(smollm, "continuous", reqs, greedy)
    assert set(paged) == {r.qhash for r in reqs}
    for k in plain:
        assert (paged[k].text, paged[k].n_tokens, paged[k].finish) == (plain[k].text, plain[k].n_tokens, plain[k].finish)
    finishes = {c.finish for c in plain.values()}
    assert finishes <= {"stop", "length"} and all(c.n_tokens <= 20 for c in paged.values())
    assert all(c.n_tokens == 20 for c in paged.values() if c.finish == "length")


@pytest.mark.slow  # 40 s; the engine runs only on GPUs by default (engine=auto), its greedy match stays in the default run
def test_continuous_sampling_reproduces_and_has_its_own_cache_key(smollm, cache_dir):
    reqs = _requests(6)
    sampling = {"temperature": 0.8, "top_p": 0.95, "max_new_tokens": 16}
    a = _run(smollm, "continuous", reqs, sampling)
    b = _run(smollm, "continuous", reqs, sampling)
    assert {k: c.text for k, c in a.items()} == {k: c.text for k, c in b.items()}  # rerun = same samples
    greedy = _run(smollm, "continuous", reqs, {"temperature": 0.0, "max_new_tokens": 16})
    assert any(a[k].text != greedy[k].text for k in a)  # and it did sample

    qs = [Question(f"q{i}", f"What is {i} + 1?", str(i + 1)) for i in range(2)]
    kw = dict(prefix=[], sampling=sampling, seed=0, desc="t")
    _, st = generate_cached(HFBackend(lambda: smollm, {"model": "m"}, 4, engine="continuous"), cache_dir, qs, 2, **kw)
    assert st.new_samples == 4
    # generate's samples differ for the same seed: they must not be served from the paged engine's key
    _, st = generate_cached(HFBackend(lambda: smollm, {"model": "m"}, 4, engine="generate"), cache_dir, qs, 2, **kw)
    assert st.new_samples == 4


def test_continuous_stops_at_once_when_the_consumer_leaves(smollm):
    """Closing the generator after the first batch fails the queued requests instead of generating
    the rest of the chunk, and leaves the model usable by plain generate."""
    import time

    model, tok = smollm
    impl = model.config._attn_implementation
    reqs = _requests(24)
    b = HFBackend(lambda: smollm, {"model": "smollm2-test"}, 2, engine="continuous")
    gen = b.generate(reqs, {"temperature": 0.0, "max_new_tokens": 48})
    first = next(gen)
    t = time.perf_counter()
    gen.close()
    assert len(first) == 2 and time.perf_counter() - t < 5  # the other 22 x 48 tokens take far longer here
    assert model.config._attn_implementation == impl  # the paged attention is switched back
    again = _run(smollm, "generate", reqs[:2], {"temperature": 0.0, "max_new_tokens": 4})
    assert len(again) == 2


def test_engine_config():
    from ded.generation.factory import make_backend

    cfg = compose(["student.engine=continuous"])
    assert make_backend(cfg.student, "/nonexistent").engine == "continuous"
    auto = make_backend(compose([]).student, "/nonexistent")
    assert auto.engine == ("continuous" if torch.cuda.is_available() else "generate")
    assert "engine" not in auto.identity or auto.engine == "continuous"  # generate is the engine a key without one means
    with pytest.raises(ConfigError, match=r"^teacher\.engine: unknown value 'paged'; allowed: \['auto', 'generate', 'continuous'\]"):
        validate(compose(["teacher.engine=paged"]))


# ---------------------------------------------------------------- memory at scale


def test_generation_memory_does_not_grow_with_questions(tmp_path):
    """Peak Python heap of generate_cached(collect=False) for 300 vs 3,000 questions.

    The backend is replay (trajectories from a local OpenR1-schema file), because it produces
    research-length texts (2 KB each here) at disk speed; the loop under test, generate_cached,
    is the same for every backend. Holding the samples would cost ~12 MB more at 3,000
    questions; streaming must cost only per-question bookkeeping (hashes in an index).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ded.generation.factory import make_backend

    n, n_large, n_small = 2, 3000, 300
    qs = [Question(f"q{i}", f"Question {i}: compute {i} * {i + 7}.", str(i * (i + 7))) for i in range(n_large)]
    body = "Let me think step by step about this product. " * 40  # ~1.9 KB of reasoning per trajectory
    t = pa.table({"problem": [q.text for q in qs], "answer": [q.answer for q in qs],
                  "generations": [[f"<think>\n{body}{k}\n</think>\n\\boxed{{{q.answer}}}" for k in range(n)] for q in qs],
                  "correctness_math_verify": [[True] * n for _ in qs], "correctness_llama": [[None] * n for _ in qs],
                  "finish_reasons": [["stop"] * n for _ in qs]})  # fmt: skip
    data = tmp_path / "openr1.parquet"
    pq.write_table(t, data)
    cfg = compose(["teacher=replay_openr1_r1", f"teacher.replay.dataset={data}"]).teacher
    sampling = {"temperature": 0.6, "top_p": 0.95, "max_new_tokens": 32768}

    def peak(cache, questions, collect, expect_new):
        gc.collect()
        tracemalloc.start()
        try:
            out, st = generate_cached(backend, str(tmp_path / cache), questions, n, prefix=[], sampling=sampling, seed=0, desc="mem",
                                      collect=collect)  # fmt: skip
            top = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert st.new_samples == expect_new and st.missing == 0
        return top, out

    backend = make_backend(cfg, str(tmp_path / "c0"))
    peak("c0", qs[:1], False, n)  # opens the dataset and builds its index (sized by the dataset, not the ask)
    p_small, _ = peak("c1", qs[:n_small], False, n * n_small)
    p_large, _ = peak("c2", qs, False, n * n_large)
    p_held, held = peak("c2", qs, True, 0)  # the same questions, now cached, returned this time
    text = sum(len(r["text"].encode()) for recs in held.values() for r in recs)
    growth = p_large - p_small
    print(f"peak heap: {p_small / 1e6:.2f} MB at {n_small} questions, {p_large / 1e6:.2f} MB at {n_large} (streamed);"
          f" {p_held / 1e6:.2f} MB returning the samples; their text {text / 1e6:.2f} MB")  # fmt: skip
    assert p_held > text  # the measurement sees held samples...
    # ...and 10x the questions adds under 10% of the text they produce (the bookkeeping).
    assert growth < 0.1 * text * (n_large - n_small) / n_large, (p_small, p_large, text)
