import itertools
import random

import numpy as np
import pytest

from ded.data import Question
from ded.config import DiversityConfig
from ded.curation.diversity import Distance, mean_pairwise
from ded.curation.filters import Complete, Correct, FilterLog, PassRateFilter, run_filters
from ded.curation.selection import select
from ded.curation.selectors import exact, greedy_maxmin, min_pairwise


def _euclid(n, seed):
    pts = np.random.default_rng(seed).normal(size=(n, 3))
    return np.linalg.norm(pts[:, None] - pts[None], axis=-1)


def _brute_force_opt(dist, p):
    return max(min_pairwise(dist, c) for c in itertools.combinations(range(len(dist)), p))


@pytest.mark.parametrize("seed", range(20))
def test_greedy_steps_are_farthest_points_and_within_half_of_optimum(seed):
    dist = _euclid(8, seed)
    p, start = 4, seed % 8
    chosen = greedy_maxmin(dist, p, start)
    assert chosen[0] == start and len(set(chosen)) == p
    for j in range(1, p):  # each step: the candidate whose nearest chosen point is farthest (brute force)
        rest = [i for i in range(8) if i not in chosen[:j]]
        best = max(rest, key=lambda i: (min(dist[i, c] for c in chosen[:j]), -i))
        assert chosen[j] == best
    assert min_pairwise(dist, chosen) >= 0.5 * _brute_force_opt(dist, p) - 1e-12  # Gonzalez' guarantee


@pytest.mark.parametrize("seed", range(10))
def test_exact_is_the_brute_force_optimum(seed):
    dist = _euclid(7, seed)
    assert min_pairwise(dist, exact(dist, 3)) == pytest.approx(_brute_force_opt(dist, 3))


def test_pair_selection_on_text_is_the_max_min_pair_from_the_start():
    texts = ["aaaa bbbb", "aaaa bbbc", "zzzz yyyy xxxx", "aaab bbbb"]
    dist = Distance().matrix(texts)
    for start in range(4):
        got = greedy_maxmin(dist, 2, start)
        assert got[1] == int(np.argmax(dist[start]))
    # With a start inside the near-duplicate cluster the outlier is always taken.
    assert 2 in greedy_maxmin(dist, 2, 0)
    # and the levenshtein selection keeps more diverse pairs than the first-two baseline
    sel = select(texts, 2, DiversityConfig(), random.Random(0))
    assert mean_pairwise([texts[i] for i in sel]) > mean_pairwise(texts[:2])


def test_random_and_first_baselines():
    texts = [f"t{i}" for i in range(10)]
    assert select(texts, 3, DiversityConfig(selector="first"), random.Random(0)) == [0, 1, 2]
    a = select(texts, 3, DiversityConfig(selector="random"), random.Random(5))
    assert a == select(texts, 3, DiversityConfig(selector="random"), random.Random(5)) and len(set(a)) == 3
    assert select(texts[:2], 3, DiversityConfig(), random.Random(0)) == [0, 1]


def test_pass_rate_filter_counts_and_keeps_rejects():
    qs = [Question(str(i), f"q{i}", "1") for i in range(5)]
    rates = {"0": 0.0, "1": 0.25, "2": 0.5, "3": 0.75, "4": 1.0}
    log = FilterLog()
    kept = log.apply(qs, PassRateFilter(rates, min_rate=0.2, max_rate=0.75), lambda q: {"id": q.id})
    assert [q.id for q in kept] == ["1", "2"]
    assert log.dropped == {"too_easy": 2, "too_hard": 1}
    assert sorted(r["id"] for r in log.rejects) == ["0", "3", "4"]
    off = FilterLog().apply(qs, PassRateFilter(rates, min_rate=0.0, max_rate=1.0), lambda q: {"id": q.id})
    assert len(off) == 5  # max_rate 1.0: compression off, the questions solved k of k times included


def test_complete_then_correct_reasons():
    q = Question("a", "What is $2+2$?", "4")
    items = [(q, {"text": "\\boxed{4}", "finish": "stop"}), (q, {"text": "\\boxed{5}", "finish": "stop"}),
             (q, {"text": "four", "finish": "stop"}), (q, {"text": "\\boxed{4", "finish": "length"})]
    kept, log = run_filters(items, [Complete(), Correct()], lambda it: {"text": it[1]["text"]})
    assert len(kept) == 1 and log.dropped == {"wrong": 1, "no_answer": 1, "truncated": 1}
