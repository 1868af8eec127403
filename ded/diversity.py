"""Distances between trajectories, and the diversity of a set of them.

Levenshtein distance comes from rapidfuzz (C++, releases the GIL). ``normalized`` divides by
the longer string's length so distances of long and short trajectories are comparable.
"""

from __future__ import annotations

import itertools

import numpy as np
from rapidfuzz.distance import Levenshtein
from rapidfuzz.process import cdist


def levenshtein(a: str, b: str, normalized: bool = True) -> float:
    return Levenshtein.normalized_distance(a, b) if normalized else float(Levenshtein.distance(a, b))


def distance_matrix(texts: list[str], normalized: bool = True) -> np.ndarray:
    """Full pairwise Levenshtein matrix (n x n, float64)."""
    scorer = Levenshtein.normalized_distance if normalized else Levenshtein.distance
    return cdist(texts, texts, scorer=scorer, dtype=np.float64)


def mean_pairwise(texts: list[str], normalized: bool = True) -> float | None:
    """Mean distance over unordered pairs; None for fewer than two texts."""
    if len(texts) < 2:
        return None
    return float(np.mean([levenshtein(a, b, normalized) for a, b in itertools.combinations(texts, 2)]))
