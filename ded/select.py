"""Question compression by pass rate, diversity selection per question, corpus allocation.

The filters (pass-rate band, trajectory checks, FilterLog) live in ded.filters and the
selectors (greedy max-min / max-sum, exact, lazy and parallel greedy) in ded.selectors; the
names used so far stay importable from here.
"""

from __future__ import annotations

import random

import numpy as np

from ded.diversity import Metric
from ded.filters import FilterLog, PassRateFilter, TrajectoryFilter, pass_rate_histogram  # re-exported
from ded.selectors import SELECTORS, exact, exact_maxmin, greedy_maxmin, greedy_maxsum, min_pairwise, select_one, sum_pairwise
from ded.verify import check_answer

__all__ = [
    "FilterLog", "PassRateFilter", "TrajectoryFilter", "pass_rate_histogram", "pass_rates",
    "SELECTORS", "METRICS", "exact", "exact_maxmin", "greedy_maxmin", "greedy_maxsum", "min_pairwise", "sum_pairwise",
    "select", "allocate", "ALLOCATIONS",
]  # fmt: skip


def pass_rates(questions, samples: dict[str, list[dict]]) -> dict[str, float]:
    return {q.id: float(np.mean([check_answer(s["text"], q.answer, q.kind).correct for s in samples[q.id]])) for q in questions}


# --- diversity selection --------------------------------------------------------------------


METRICS = ("levenshtein", "embedding", "random", "none")


def select(
    texts: list[str],
    p: int,
    metric: str,
    rng: random.Random,
    normalized: bool = True,
    *,
    selector: str = "maxmin",
    level: str = "char",
) -> list[int]:
    """Indices of the p trajectories to keep among `texts` (all already correct), most valuable
    first (the greedy order), so a corpus that needs fewer takes a prefix.

    metric: levenshtein | embedding | random | none; selector: maxmin | maxsum | exact;
    level (levenshtein): char | token. The greedy start is rng.randrange(len(texts)).
    """
    if metric not in METRICS:
        raise ValueError(f"diversity.metric: unknown metric {metric!r}; allowed: {list(METRICS)}")
    if len(texts) <= p:
        return list(range(len(texts)))
    if metric == "none":
        return list(range(p))
    if metric == "random":
        return sorted(rng.sample(range(len(texts)), p))
    return select_one(texts, p, rng.randrange(len(texts)), Metric(metric, level, normalized), selector)


# --- corpus-level allocation ----------------------------------------------------------------

ALLOCATIONS = ("fill", "spread")


def allocate(available: list[int], size: int, strategy: str = "fill", per_question: int | None = None, max_questions: int | None = None) -> list[int]:
    """How many selected trajectories to take from each question (in pool order) so the corpus
    holds `size` examples: the corpus is questions x trajectories per question.

    fill: up to `per_question` (default: all selected) from each question in order until full:
    few questions, several trajectories each (DED's P per question).
    spread: one from every question first, then a second from each, and so on: as many
    questions as possible. `max_questions` caps the questions used. A pool that holds fewer
    than `size` gives what it has (the caller reports the shortfall).
    """
    if strategy not in ALLOCATIONS:
        raise ValueError(f"corpus.allocation: unknown strategy {strategy!r}; allowed: {list(ALLOCATIONS)}")
    if size < 0:
        raise ValueError(f"corpus.size: must be >= 0, got {size}")
    cap = [min(a, per_question) if per_question is not None else a for a in available]
    usable = [i for i, c in enumerate(cap) if c > 0][: max_questions if max_questions is not None else None]
    take = [0] * len(available)
    left = size
    if strategy == "fill":
        for i in usable:
            take[i] = min(cap[i], left)
            left -= take[i]
        return take
    while left > 0:
        progressed = False
        for i in usable:
            if left and take[i] < cap[i]:
                take[i] += 1
                left -= 1
                progressed = True
        if not progressed:
            break
    return take
