"""Properties of the selectors on random distance matrices (P=4 of N=16, as DED selects)."""

import itertools
import random

import numpy as np
import pytest

from ded.curation.selectors import exact, greedy_maxmin, greedy_maxsum, min_pairwise, sum_pairwise

N, P, TRIALS = 16, 4, 200


def random_metric(n: int, seed: int) -> np.ndarray:
    """A random metric: shortest paths over random edge weights (Floyd-Warshall), so the
    triangle inequality holds, which greedy max-min's factor-2 guarantee needs. Half the
    matrices are made of clusters, where greedy choices matter most."""
    rng = np.random.default_rng(seed)
    w = rng.uniform(0.1, 1.0, size=(n, n))
    if seed % 2:
        labels = rng.integers(0, 4, size=n)
        w = np.where(labels[:, None] == labels[None], w * 0.05, w)
    d = np.minimum(w, w.T)
    np.fill_diagonal(d, 0.0)
    for k in range(n):
        d = np.minimum(d, d[:, k : k + 1] + d[k : k + 1, :])
    return d


def brute_force(dist, p, objective):
    """The optimum by plain enumeration, independent of the vectorised `exact`."""
    f = min_pairwise if objective == "maxmin" else sum_pairwise
    return max(f(dist, c) for c in itertools.combinations(range(len(dist)), p))


@pytest.mark.parametrize("objective", ["maxmin", "maxsum"])
def test_exact_equals_brute_force(objective):
    f = min_pairwise if objective == "maxmin" else sum_pairwise
    for seed in range(TRIALS // 3):
        dist = random_metric(N, seed)
        chosen = exact(dist, P, objective)
        assert len(set(chosen)) == P
        assert f(dist, chosen) == pytest.approx(brute_force(dist, P, objective))


def test_greedy_maxmin_is_within_half_of_exact_and_report_mean_ratio():
    ratios_mm, ratios_ms = [], []
    for seed in range(TRIALS):
        dist = random_metric(N, seed)
        start = random.Random(seed).randrange(N)
        opt = min_pairwise(dist, exact(dist, P, "maxmin"))
        got = min_pairwise(dist, greedy_maxmin(dist, P, start))
        assert got >= 0.5 * opt - 1e-12  # Gonzalez' guarantee in a metric space
        ratios_mm.append(got / opt)
        ratios_ms.append(sum_pairwise(dist, greedy_maxsum(dist, P, start)) / sum_pairwise(dist, exact(dist, P, "maxsum")))
    mean_mm, mean_ms = float(np.mean(ratios_mm)), float(np.mean(ratios_ms))
    print(f"\ngreedy/exact over {TRIALS} random metrics (P={P} of N={N}): max-min mean {mean_mm:.3f} (min {min(ratios_mm):.3f}); max-sum mean {mean_ms:.3f}")
    assert 0.5 <= mean_mm <= 1.0 and mean_ms >= 0.5


def test_exact_refuses_too_many_subsets_and_handles_small_n():
    dist = random_metric(40, 0)
    with pytest.raises(ValueError, match=r"C\(40, 10\) = .* exceeds .* use selector=maxmin"):
        exact(dist, 10)
    assert exact(dist[:3, :3], 4) == [0, 1, 2]
