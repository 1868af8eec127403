"""Question compression by pass rate, trajectory filters, and diversity selection.

Filters follow datatrove's convention: a filter returns True to keep an item or
``(False, reason)`` to drop it; dropped items are counted by reason and kept for inspection.
"""

from __future__ import annotations

import itertools
import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ded.diversity import distance_matrix
from ded.verify import check



@dataclass
class FilterLog:
    kept: int = 0
    dropped: Counter = field(default_factory=Counter)
    rejects: list[dict] = field(default_factory=list)  # the dropped items, with their reason

    def apply(self, items: list, fn: Callable, describe: Callable = lambda x: x) -> list:
        out = []
        for it in items:
            res = fn(it)
            if res is True:
                out.append(it)
                self.kept += 1
            else:
                reason = res[1]
                self.dropped[reason] += 1
                self.rejects.append({"reason": reason, **describe(it)})
        return out


# --- pass-rate compression ------------------------------------------------------------------


class PassRateFilter:
    """Drop questions the student already solves (rate >= max_rate) or never approaches (< min_rate)."""

    def __init__(self, rates: dict[str, float], min_rate: float, max_rate: float):
        self.rates, self.min_rate, self.max_rate = rates, min_rate, max_rate

    def __call__(self, q):
        r = self.rates[q.id]
        if r >= self.max_rate:
            return False, "too_easy"
        if r < self.min_rate:
            return False, "too_hard"
        return True


def pass_rates(questions, samples: dict[str, list[dict]]) -> dict[str, float]:
    return {q.id: float(np.mean([check(s["text"], q.answer).correct for s in samples[q.id]])) for q in questions}


# --- trajectory filters ---------------------------------------------------------------------


class TrajectoryFilter:
    """Keep complete, correct trajectories. Reasons: truncated, no_answer, wrong, bad_gold."""

    def __call__(self, item):
        q, s = item
        if s["finish"] == "length":
            return False, "truncated"
        v = check(s["text"], q.answer)
        return True if v.correct else (False, v.reason)


# --- diversity selection --------------------------------------------------------------------


def min_pairwise(dist: np.ndarray, idx) -> float:
    idx = list(idx)
    if len(idx) < 2:
        return float("inf")
    return float(min(dist[a, b] for a, b in itertools.combinations(idx, 2)))


def greedy_maxmin(dist: np.ndarray, p: int, start: int) -> list[int]:
    """Greedy max-min (farthest-point) selection of p indices from a seeded start.

    Each step adds the candidate whose nearest selected item is farthest (ties: lowest index).
    In a metric space its minimum pairwise distance is at least half the optimum.
    """
    n = dist.shape[0]
    p = min(p, n)
    chosen = [start]
    nearest = dist[start].astype(float).copy()
    nearest[start] = -np.inf
    while len(chosen) < p:
        nxt = int(np.argmax(nearest))
        chosen.append(nxt)
        nearest = np.minimum(nearest, dist[nxt])
        nearest[chosen] = -np.inf
    return chosen


def exact_maxmin(dist: np.ndarray, p: int) -> list[int]:
    """The p-subset maximising the minimum pairwise distance, by enumeration (small n only)."""
    n = dist.shape[0]
    best, best_val = list(range(min(p, n))), -1.0
    for comb in itertools.combinations(range(n), min(p, n)):
        v = min_pairwise(dist, comb)
        if v > best_val:
            best, best_val = list(comb), v
    return best


def select(texts: list[str], p: int, metric: str, rng: random.Random, normalized: bool = True) -> list[int]:
    """Indices of the p trajectories to keep among `texts` (all already correct)."""
    if len(texts) <= p:
        return list(range(len(texts)))
    if metric == "none":
        return list(range(p))
    if metric == "random":
        return sorted(rng.sample(range(len(texts)), p))
    if metric == "levenshtein":
        return greedy_maxmin(distance_matrix(texts, normalized), p, start=rng.randrange(len(texts)))
    raise ValueError(f"diversity.metric: unknown metric {metric!r}; allowed: ['levenshtein', 'random', 'none']")
