"""Choosing P of N trajectories: the ``SELECTORS`` plug-ins, named by ``diversity.selector``.

A selector is a function ``(texts, p, rng, distance) -> indices`` (most valuable first, so a
corpus that needs fewer takes a prefix), called only when there are more than p texts. One that
never reads the distance sets ``reads_distances = False``: ded.curation.selection.select_groups then keeps it
out of worker processes.

Objectives over a chosen set: ``maxmin`` (the smallest pairwise distance, DED's choice: no two
kept trajectories are near-copies) and ``maxsum`` (the sum of pairwise distances: spread on
average, but two close ones may survive). Selectors:
- ``maxmin`` / ``maxsum``: greedy from a start drawn with ``rng.randrange(len(texts))``, adding
  the candidate that improves the objective most. Greedy max-min (Gonzalez' farthest-point) is
  within half of the optimum in a metric space.
- ``exact``: enumerates every P-subset for max-min (C(16, 4) = 1820); refuses when there are too
  many. Draws nothing from rng.
- ``random``: ``sorted(rng.sample(range(len(texts)), p))``, the baseline; ignores the distance.
- ``first``: the first p in sample order, no selection; ignores the distance.

The greedy selectors need only the distances from each newly chosen item to the remaining
candidates: about (P-1)*N of them instead of the N*N a full matrix costs, and for long
trajectories each Levenshtein distance is milliseconds. ``lazy_greedy`` computes just those,
and for max-min passes each candidate's current nearest distance as rapidfuzz's cutoff: a
distance above it cannot change the candidate's score, so rapidfuzz may stop early. The result
is identical to greedy on the full matrix.
"""

from __future__ import annotations

import itertools
import random
from math import comb
from typing import Callable

import numpy as np

from ded.core.registry import Registry
from ded.curation.diversity import LEVENSHTEIN, Distance

Selector = Callable[[list[str], int, random.Random, Distance], list[int]]
SELECTORS: Registry[Selector] = Registry("diversity.selector")
MAX_SUBSETS = 200_000  # exact selection enumerates at most this many subsets (~0.1 s)


def min_pairwise(dist: np.ndarray, idx) -> float:
    idx = list(idx)
    if len(idx) < 2:
        return float("inf")
    return float(min(dist[a, b] for a, b in itertools.combinations(idx, 2)))


def sum_pairwise(dist: np.ndarray, idx) -> float:
    return float(sum(dist[a, b] for a, b in itertools.combinations(list(idx), 2)))


OBJECTIVES = {"maxmin": min_pairwise, "maxsum": sum_pairwise}


# --- on a full distance matrix ----------------------------------------------------------------


def _greedy(dist: np.ndarray, p: int, start: int, merge) -> list[int]:
    """Greedy selection from `start`: each step takes the argmax of a per-candidate score that
    `merge(score, dist[new])` updates after every pick (ties: lowest index)."""
    p = min(p, dist.shape[0])
    chosen = [start]
    score = dist[start].astype(float).copy()
    score[start] = -np.inf
    while len(chosen) < p:
        nxt = int(np.argmax(score))
        chosen.append(nxt)
        score = merge(score, dist[nxt])
        score[chosen] = -np.inf
    return chosen


def greedy_maxmin(dist: np.ndarray, p: int, start: int) -> list[int]:
    """Greedy max-min (farthest-point) selection of p indices from a seeded start.

    Each step adds the candidate whose nearest selected item is farthest (ties: lowest index).
    In a metric space its minimum pairwise distance is at least half the optimum.
    """
    return _greedy(dist, p, start, np.minimum)


def greedy_maxsum(dist: np.ndarray, p: int, start: int) -> list[int]:
    """Greedy max-sum: each step adds the candidate farthest from the chosen set in total."""
    return _greedy(dist, p, start, np.add)


def exact(dist: np.ndarray, p: int, objective: str = "maxmin", max_subsets: int = MAX_SUBSETS) -> list[int]:
    """The p-subset maximising `objective`, by enumeration (ties: the lexicographically first)."""
    n = dist.shape[0]
    if p >= n:
        return list(range(n))
    if objective not in OBJECTIVES:
        raise ValueError(f"unknown objective {objective!r}; allowed: {list(OBJECTIVES)}")
    if comb(n, p) > max_subsets:
        raise ValueError(
            f"diversity.selector=exact: C({n}, {p}) = {comb(n, p)} subsets exceeds {max_subsets}; use selector=maxmin for this size"
        )
    if p < 2:
        return list(range(p))
    subsets = np.array(list(itertools.combinations(range(n), p)), dtype=np.intp)
    pairs = [dist[subsets[:, a], subsets[:, b]] for a, b in itertools.combinations(range(p), 2)]
    values = np.min(pairs, axis=0) if objective == "maxmin" else np.sum(pairs, axis=0)
    return subsets[int(np.argmax(values))].tolist()


# --- lazy greedy: only the distances the greedy step reads ----------------------------------


def lazy_greedy(texts: list[str], p: int, start: int, distance: Distance = LEVENSHTEIN, objective: str = "maxmin") -> list[int]:
    """Greedy selection computing distances row by row, only from each newly chosen item to the
    candidates still open; the same indices as greedy_maxmin/greedy_maxsum on the full matrix."""
    n = len(texts)
    p = min(p, n)
    seqs = distance.prepare(texts)
    by_min = objective == "maxmin"
    score = np.full(n, np.inf if by_min else 0.0)  # nearest chosen distance (max-min) or total (max-sum)
    open_ = np.ones(n, dtype=bool)
    open_[start] = False
    chosen, last = [start], start
    while len(chosen) < p:
        for c in np.flatnonzero(open_):
            if by_min:
                cutoff = None if np.isinf(score[c]) else float(score[c])
                score[c] = min(score[c], distance.pair(seqs[last], seqs[c], cutoff))
            else:
                score[c] += distance.pair(seqs[last], seqs[c])
        last = int(np.argmax(np.where(open_, score, -np.inf)))
        chosen.append(last)
        open_[last] = False
    return chosen


def greedy(texts: list[str], p: int, start: int, distance: Distance = LEVENSHTEIN, objective: str = "maxmin") -> list[int]:
    """Greedy selection from `start`: row by row where the distance computes single pairs, else
    on the full matrix (embedding distances are one matrix product once embedded)."""
    if distance.lazy:
        return lazy_greedy(texts, p, start, distance, objective)
    return (greedy_maxmin if objective == "maxmin" else greedy_maxsum)(distance.matrix(texts), p, start)


@SELECTORS.register("maxmin")
def maxmin(texts: list[str], p: int, rng: random.Random, distance: Distance) -> list[int]:
    return greedy(texts, p, rng.randrange(len(texts)), distance, "maxmin")


@SELECTORS.register("maxsum")
def maxsum(texts: list[str], p: int, rng: random.Random, distance: Distance) -> list[int]:
    return greedy(texts, p, rng.randrange(len(texts)), distance, "maxsum")


@SELECTORS.register("exact")
def exact_subset(texts: list[str], p: int, rng: random.Random, distance: Distance) -> list[int]:
    return exact(distance.matrix(texts), p, "maxmin")


@SELECTORS.register("random")
def random_subset(texts: list[str], p: int, rng: random.Random, distance: Distance) -> list[int]:
    return sorted(rng.sample(range(len(texts)), p))


@SELECTORS.register("first")
def first(texts: list[str], p: int, rng: random.Random, distance: Distance) -> list[int]:
    return list(range(p))


random_subset.reads_distances = first.reads_distances = False  # no worker process would help them
