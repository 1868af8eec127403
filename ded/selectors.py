"""Choosing P of N trajectories: objectives, greedy and exact selectors, and a lazy, parallel greedy.

Objectives over a chosen set: ``maxmin`` (the smallest pairwise distance, DED's choice: no two
kept trajectories are near-copies) and ``maxsum`` (the sum of pairwise distances: spread on
average, but two close ones may survive). Selectors:
- ``maxmin`` / ``maxsum``: greedy from a seeded start, adding the candidate that improves the
  objective most. Greedy max-min (Gonzalez' farthest-point) is within half of the optimum in
  a metric space.
- ``exact``: enumerates every P-subset (C(16, 4) = 1820); refuses when there are too many.

The greedy selectors need only the distances from each newly chosen item to the remaining
candidates: about (P-1)*N of them instead of the N*N a full matrix costs, and for long
trajectories each Levenshtein distance is milliseconds. ``lazy_greedy`` computes just those,
and for max-min passes each candidate's current nearest distance as rapidfuzz's cutoff: a
distance above it cannot change the candidate's score, so rapidfuzz may stop early. The result
is identical to greedy on the full matrix. ``select_many`` runs questions in parallel
processes with a bounded window, so memory does not grow with the number of questions.

Imports stay light (numpy, rapidfuzz via ded.diversity): worker processes start in ~0.2 s.
"""

from __future__ import annotations

import itertools
import multiprocessing as mp
import os
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from math import comb
from typing import Iterable, Iterator

import numpy as np

from ded.diversity import LEVENSHTEIN, Metric

SELECTORS = ("maxmin", "maxsum", "exact")
MAX_SUBSETS = 200_000  # exact selection enumerates at most this many subsets (~0.1 s)


def min_pairwise(dist: np.ndarray, idx) -> float:
    idx = list(idx)
    if len(idx) < 2:
        return float("inf")
    return float(min(dist[a, b] for a, b in itertools.combinations(idx, 2)))


def sum_pairwise(dist: np.ndarray, idx) -> float:
    return float(sum(dist[a, b] for a, b in itertools.combinations(list(idx), 2)))


OBJECTIVES = {"maxmin": min_pairwise, "maxsum": sum_pairwise}


# --- selectors on a full distance matrix ----------------------------------------------------


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
        raise ValueError(f"diversity.objective: unknown objective {objective!r}; allowed: {list(OBJECTIVES)}")
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


def exact_maxmin(dist: np.ndarray, p: int) -> list[int]:
    """The p-subset maximising the minimum pairwise distance, by enumeration (small n only)."""
    return exact(dist, p, "maxmin")


# --- lazy greedy: only the distances the greedy step reads ----------------------------------


def lazy_greedy(texts: list[str], p: int, start: int, metric: Metric = LEVENSHTEIN, objective: str = "maxmin") -> list[int]:
    """Greedy selection computing distances row by row, only from each newly chosen item to the
    candidates still open; the same indices as greedy_maxmin/greedy_maxsum on the full matrix."""
    n = len(texts)
    p = min(p, n)
    seqs = metric.prepare(texts)
    maxmin = objective == "maxmin"
    score = np.full(n, np.inf if maxmin else 0.0)  # nearest chosen distance (max-min) or total (max-sum)
    open_ = np.ones(n, dtype=bool)
    open_[start] = False
    chosen, last = [start], start
    while len(chosen) < p:
        for c in np.flatnonzero(open_):
            if maxmin:
                cutoff = None if np.isinf(score[c]) else float(score[c])
                score[c] = min(score[c], metric.pair(seqs[last], seqs[c], cutoff))
            else:
                score[c] += metric.pair(seqs[last], seqs[c])
        last = int(np.argmax(np.where(open_, score, -np.inf)))
        chosen.append(last)
        open_[last] = False
    return chosen


def select_one(texts: list[str], p: int, start: int, metric: Metric = LEVENSHTEIN, selector: str = "maxmin") -> list[int]:
    """Indices of p of `texts` under `selector` (maxmin | maxsum | exact), greedy from `start`."""
    if selector not in SELECTORS:
        raise ValueError(f"diversity.selector: unknown selector {selector!r}; allowed: {list(SELECTORS)}")
    if selector == "exact":
        return exact(metric.matrix(texts), p, "maxmin")
    if metric.name == "levenshtein":
        return lazy_greedy(texts, p, start, metric, selector)
    # Embedding distances are one matrix product once embedded: nothing to save by laziness.
    greedy = greedy_maxmin if selector == "maxmin" else greedy_maxsum
    return greedy(metric.matrix(texts), p, start)


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _select_job(args) -> list[int]:
    texts, p, start, metric, selector = args
    return select_one(texts, p, start, metric, selector)


def select_many(
    jobs: Iterable[tuple[list[str], int]],
    p: int,
    metric: Metric = LEVENSHTEIN,
    selector: str = "maxmin",
    workers: int | None = None,
    window: int | None = None,
) -> Iterator[list[int]]:
    """select_one for each (texts, start) job, in order, across `workers` processes (default:
    every core). `jobs` is consumed lazily: at most `window` (default 2 x workers) jobs are in
    flight, so memory stays flat however many questions stream through.

    Workers are spawned (~0.3 s each, once per call), so a script that calls this needs the
    usual ``if __name__ == "__main__":`` guard; workers=1 runs in this process.
    """
    workers = workers or available_cores()
    if workers <= 1 or metric.name == "embedding":  # one embedding model per process would not pay
        for texts, start in jobs:
            yield select_one(texts, p, start, metric, selector)
        return
    window = window or 2 * workers
    # spawn, not fork: the parent may hold torch/tokenizer threads, which fork can deadlock.
    with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as pool:
        pending: deque = deque()
        for texts, start in jobs:
            pending.append(pool.submit(_select_job, (texts, p, start, metric, selector)))
            if len(pending) >= window:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
