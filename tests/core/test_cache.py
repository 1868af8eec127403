import json

import pytest

from ded.data import arithmetic
from ded.generation import generate_cached
from ded.generation.sample_cache import SampleCache
from ded.generation.backends.hf import HFBackend
from ded.core.models import load_model

SAMPLING = {"temperature": 0.7, "top_p": 0.95, "max_new_tokens": 4}


@pytest.fixture(scope="module")
def backend(smollm_path):
    model = load_model(smollm_path, "")
    return HFBackend(lambda: model, {"model": "smollm2-test"}, batch_size=4)


def _gen(backend, cache_dir, qs, n, seed=0):
    return generate_cached(backend, cache_dir, qs, n, prefix=[], sampling=SAMPLING, seed=seed, desc="test")


def test_hit_miss_and_growth(backend, cache_dir):
    pool, _ = arithmetic.build(4, 2, [1, 2], seed=0)
    out, st = _gen(backend, cache_dir, pool[:3], 2)
    assert (st.new_samples, st.cached) == (6, 0)
    again, st = _gen(backend, cache_dir, pool[:3], 2)
    assert (st.new_samples, st.cached) == (0, 6) and again == out
    more, st = _gen(backend, cache_dir, pool[:3], 3)  # raising n: only index 2 is new
    assert st.new_samples == 3 and all(more[q.id][:2] == out[q.id] for q in pool[:3])
    _, st = _gen(backend, cache_dir, pool, 2)  # a new question: only its samples
    assert st.new_samples == 2
    _, st = _gen(backend, cache_dir, pool[:1], 2, seed=1)  # another seed is another key
    assert st.new_samples == 2


def test_torn_last_line_is_ignored_then_repaired(backend, cache_dir):
    pool, _ = arithmetic.build(3, 2, [1], seed=0)
    out, _ = _gen(backend, cache_dir, pool[:2], 1)
    files = list((__import__("pathlib").Path(cache_dir) / "samples").glob("*/samples.jsonl"))
    assert len(files) == 1
    with open(files[0], "a") as f:
        f.write('{"q": "torn", "i": 0, "te')  # a crash mid-append
    key_dir = files[0].parent
    assert sum(len(v) for v in SampleCache(cache_dir, key_dir.name).read().values()) == 2
    _, st = _gen(backend, cache_dir, pool, 1)
    assert st.new_samples == 1
    lines = files[0].read_text().splitlines()
    assert len(lines) == 3 and all(json.loads(x) for x in lines)  # torn tail cut, new line intact


def test_stage_manifest_lists_every_file(tmp_path, monkeypatch):
    """Published artifacts record each file's size, and a sha256 up to HASH_MAX_BYTES (model
    shards above it are checked by size only); an intact artifact is found, a concurrent build
    is told it exists."""
    from ded.core.cache import StageCache

    monkeypatch.setattr("ded.core.cache.HASH_MAX_BYTES", 100)
    cache = StageCache(tmp_path)
    with cache.build("train", "k", {"student": "s"}) as tmp:
        (tmp / "big.bin").write_bytes(b"x" * 101)
        (tmp / "d").mkdir()
        (tmp / "d" / "small.json").write_text("{}")
    p = cache.get("train", "k")
    files = cache.manifest("train", "k")["files"]
    assert p == cache.path("train", "k") and set(files) == {"big.bin", "d/small.json"}
    assert files["big.bin"] == {"size": 101}
    assert files["d/small.json"]["size"] == 2 and len(files["d/small.json"]["sha256"]) == 64
    with cache.build("train", "k", {}) as tmp:
        assert tmp is None
