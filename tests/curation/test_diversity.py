"""Distances (Levenshtein char/token, normalized/raw; embedding; a plug-in), the lazy and parallel
greedy, the select() entry point, corpus allocation and the diversity report."""

import random
from types import SimpleNamespace

import numpy as np
import pytest

from conftest import compose
from ded.config import ConfigError, DiversityConfig, to_dataclasses
from ded.curation.diversity import DISTANCES, Distance, diversity_report, embed, mean_pairwise
from ded.curation.selection import allocate, select, select_groups
from ded.curation.selectors import greedy_maxmin, greedy_maxsum, lazy_greedy
from ded.plugins import validate

WORDS = "we find that x equals two so the sum is four then check again wait".split()


def traces(seed, n=12, length=300):
    rng = random.Random(seed)
    base = [rng.choice(WORDS) for _ in range(length)]
    out = []
    for _ in range(n):
        rate = rng.choice([0.01, 0.05, 0.2, 0.5])
        out.append(" ".join(rng.choice(WORDS) if rng.random() < rate else w for w in base if rng.random() > rate / 4))
    return out


def dv(**kw) -> DiversityConfig:
    return DiversityConfig(**kw)


def levenshtein(a, b, normalized=True, level="char"):
    return Distance("levenshtein", level, normalized).matrix([a, b])[0, 1]


def test_levenshtein_levels_and_normalization():
    assert levenshtein("the cat sat", "the dog sat", normalized=False) == 3.0  # three characters
    assert levenshtein("the cat sat", "the dog sat", normalized=False, level="token") == 1.0  # one word
    assert levenshtein("the cat sat", "the dog sat", level="token") == pytest.approx(1 / 3)
    assert levenshtein("abc", "abc") == 0.0 and levenshtein("abc", "xyz") == 1.0
    assert Distance("levenshtein", "token", False).key == "levenshtein/token_raw"
    with pytest.raises(ValueError, match="allowed"):
        Distance("cosine")


class Counting(Distance):
    calls = 0

    def pair(self, a, b, cutoff=None):
        Counting.calls += 1
        return super().pair(a, b, cutoff)


@pytest.mark.parametrize("level,normalized", [("char", True), ("char", False), ("token", True), ("token", False)])
def test_lazy_greedy_equals_full_matrix_greedy_with_fewer_distances(level, normalized):
    for seed in range(6):
        texts = traces(seed)
        m = Distance("levenshtein", level, normalized)
        full = m.matrix(texts)
        for start in (0, seed % len(texts)):
            assert lazy_greedy(texts, 4, start, m, "maxmin") == greedy_maxmin(full, 4, start)
            assert lazy_greedy(texts, 4, start, m, "maxsum") == greedy_maxsum(full, 4, start)
    Counting.calls = 0
    lazy_greedy(traces(0, n=16), 4, 0, Counting("levenshtein", level, normalized))
    assert Counting.calls == 15 + 14 + 13  # (P-1) rows over the open candidates, not 16*16


@pytest.mark.parametrize("selector", ["maxmin", "exact"])
def test_select_groups_parallel_equals_serial_and_is_lazy(selector):
    groups = [traces(s) for s in range(8)]
    rngs = lambda: (random.Random(f"q{s}") for s in range(8))  # noqa: E731
    serial = [select(g, 4, dv(selector=selector), r) for g, r in zip(groups, rngs())]
    assert list(select_groups(groups, rngs(), 4, dv(selector=selector))) == serial
    consumed = []

    def stream():
        for g in groups:
            consumed.append(1)
            yield g

    results = select_groups(stream(), rngs(), 4, dv(selector=selector, workers=2), window=3)
    first = next(results)
    assert len(consumed) <= 4  # a bounded window, not the whole stream
    assert [first, *results] == serial


def test_select_entry_point_metrics_and_selectors():
    texts = traces(3)
    rng = lambda: random.Random(7)  # noqa: E731
    start = random.Random(7).randrange(len(texts))
    full = Distance().matrix(texts)
    assert select(texts, 4, dv(), rng()) == greedy_maxmin(full, 4, start)
    assert select(texts, 4, dv(selector="maxsum"), rng()) == greedy_maxsum(full, 4, start)
    ex = select(texts, 4, dv(selector="exact"), rng())
    assert min(full[a, b] for a in ex for b in ex if a != b) >= min(full[a, b] for a in greedy_maxmin(full, 4, start) for b in greedy_maxmin(full, 4, start) if a != b)
    assert len(select(texts, 4, dv(level="token"), rng())) == 4
    assert select(texts, 4, dv(selector="first"), rng()) == [0, 1, 2, 3]
    assert select(texts, 4, dv(selector="random"), rng()) == sorted(random.Random(7).sample(range(len(texts)), 4))
    with pytest.raises(ValueError, match="allowed"):
        select(texts, 4, SimpleNamespace(metric="levenshtein", level="char", normalized=True, selector="kmeans"), rng())  # unvalidated


def test_config_names_come_from_the_registries():
    """The schema alone takes any name; the loader's check reads the registries (ded.plugins)."""
    bad = [("diversity.metric=cosine", "diversity.metric"), ("diversity.selector=kmeans", "diversity.selector"), ("diversity.level=word", "diversity.level")]
    for override, key in bad:
        cfg = compose([override, "paths.output_dir=/tmp/x"])
        to_dataclasses(cfg)
        with pytest.raises(ConfigError, match=rf"{key}: unknown value .*; allowed: \["):
            validate(cfg)
    with pytest.raises(ConfigError, match=r"corpus.allocation: unknown value 'greedy'; allowed: \['fill', 'spread'\]"):
        validate(compose(["corpus.allocation=greedy", "paths.output_dir=/tmp/x"]))


def test_a_new_distance_is_one_registered_function():
    @DISTANCES.register("toy")
    def length_gap(texts, d):
        n = np.array([len(t) for t in texts], dtype=float)
        return np.abs(n[:, None] - n[None, :])

    try:
        texts = ["a" * n for n in (5, 6, 1, 9, 5, 3)]
        assert validate(compose(["diversity.metric=toy", "paths.output_dir=/tmp/x"])).diversity.metric == "toy"  # the config's vocabulary is the registry's
        cfg = DiversityConfig(metric="toy")
        assert select(texts, 2, cfg, random.Random(0)) == greedy_maxmin(length_gap(texts, None), 2, random.Random(0).randrange(6))
        assert sorted(select(texts, 2, DiversityConfig(metric="toy", selector="exact"), random.Random(0))) == [2, 3]  # 1 and 9 chars
        assert Distance("toy").key == "toy" and mean_pairwise(texts[:2], Distance("toy")) == 1.0
    finally:
        DISTANCES.unregister("toy")
    with pytest.raises(ConfigError, match="diversity.metric"):
        validate(compose(["diversity.metric=toy", "paths.output_dir=/tmp/x"]))


def test_embedding_distance_and_report():
    texts = [
        "To solve the equation, subtract three from both sides and divide by two, so x equals four.",
        "Subtracting 3 from both sides and then dividing by 2 gives x = 4 as the solution of the equation.",
        "The chef seasoned the soup with basil and garlic before serving it to the guests.",
    ]
    e = embed(texts)
    assert e.shape == (3, 384) and np.allclose(np.linalg.norm(e, axis=1), 1.0)
    d = Distance("embedding").matrix(texts)
    assert d[0, 1] < d[0, 2] and d[0, 1] < d[1, 2]  # the paraphrase is nearer than the soup
    long = [" ".join([t] * 40) for t in texts]  # ~600 words: beyond MiniLM's window, embedded by chunks
    assert Distance("embedding").matrix(long)[0, 2] > Distance("embedding").matrix(long)[0, 1]
    assert select(texts, 2, dv(metric="embedding"), random.Random(0)) in ([0, 2], [1, 2], [2, 0], [2, 1])
    rep = diversity_report([texts[:2], texts, texts[:1]])
    assert set(rep) == {"levenshtein/char", "levenshtein/token", "embedding/cosine"}
    assert rep["levenshtein/char"] == pytest.approx(np.mean([mean_pairwise(texts[:2]), mean_pairwise(texts)]))


def test_allocate_fill_and_spread():
    avail = [4, 4, 2, 0, 4]
    assert allocate(avail, 10, "fill") == [4, 4, 2, 0, 0]
    assert allocate(avail, 10, "fill", per_question=2) == [2, 2, 2, 0, 2]
    assert allocate(avail, 5, "spread") == [2, 1, 1, 0, 1]
    assert allocate(avail, 100, "fill") == avail  # a short pool gives what it has
    with pytest.raises(ValueError, match="allowed"):
        allocate(avail, 4, "greedy")
