"""Which trajectories a corpus keeps: P per question under ``diversity`` (``select``, or
``select_groups`` for many questions), then how many of each question's P fill a corpus of
``corpus.size`` (``allocate``, the ``ALLOCATIONS`` plug-ins named by ``corpus.allocation``).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import random
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from typing import TYPE_CHECKING, Callable, Iterable, Iterator

from ded.core.registry import Registry
from ded.curation.diversity import Distance
from ded.curation.selectors import SELECTORS

if TYPE_CHECKING:
    from ded.config import DiversityConfig


def _distance(dcfg: DiversityConfig) -> Distance:
    return Distance(dcfg.metric, dcfg.level, dcfg.normalized)


def _select(texts: list[str], p: int, rng: random.Random, distance: Distance, selector: str) -> list[int]:
    choose = SELECTORS[selector]
    if len(texts) <= p:
        return list(range(len(texts)))
    return choose(texts, p, rng, distance)


def select(texts: list[str], p: int, dcfg: DiversityConfig, rng: random.Random) -> list[int]:
    """Indices of the p trajectories to keep among `texts` (all already correct), most valuable
    first, so a corpus that needs fewer takes a prefix: ``dcfg.selector`` under the distance
    ``dcfg.metric`` (with ``dcfg.level``, ``dcfg.normalized``). All of them when there are no more
    than p (no draw from rng)."""
    return _select(texts, p, rng, _distance(dcfg), dcfg.selector)


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def select_groups(
    groups: Iterable[list[str]], rngs: Iterable[random.Random], p: int, dcfg: DiversityConfig, *, window: int | None = None
) -> Iterator[list[int]]:
    """``select(texts, p, dcfg, rng)`` for each group (one question's texts) with its own rng, in
    order: the same indices as the serial loop.

    With ``dcfg.workers`` > 1 (0: every core), a distance computed pair by pair (Levenshtein) and
    a selector that reads distances, groups run in worker processes, each given a copy of its
    rng (the caller's rngs are then not advanced). That pays on long trajectories (thousands of
    characters), where each distance takes milliseconds; a worker costs ~0.3 s to start. Groups
    are consumed lazily, at most `window` (default 2 x workers) in flight, so memory stays flat
    however many questions stream through. Workers are spawned, so a script that calls this
    needs the usual ``if __name__ == "__main__":`` guard.
    """
    distance = _distance(dcfg)
    workers = dcfg.workers or available_cores()
    if workers <= 1 or not distance.lazy or not getattr(SELECTORS[dcfg.selector], "reads_distances", True):
        for texts, rng in zip(groups, rngs):
            yield _select(texts, p, rng, distance, dcfg.selector)
        return
    window = window or 2 * workers
    # spawn, not fork: the parent may hold torch/tokenizer threads, which fork can deadlock.
    with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as pool:
        pending: deque = deque()
        for texts, rng in zip(groups, rngs):
            pending.append(pool.submit(_select, texts, p, rng, distance, dcfg.selector))
            if len(pending) >= window:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


# --- corpus-level allocation ----------------------------------------------------------------

# An allocation takes each question's cap (0: not used) and the corpus size, and returns how
# many trajectories to take from each question.
ALLOCATIONS: Registry[Callable[[list[int], int], list[int]]] = Registry("corpus.allocation")


@ALLOCATIONS.register("fill")
def fill(cap: list[int], size: int) -> list[int]:
    """Up to the cap from each question in order until full: few questions, several
    trajectories each (DED's P per question)."""
    take, left = [], size
    for c in cap:
        take.append(min(c, left))
        left -= take[-1]
    return take


@ALLOCATIONS.register("spread")
def spread(cap: list[int], size: int) -> list[int]:
    """One from every question first, then a second from each, and so on: as many questions as possible."""
    take, left = [0] * len(cap), size
    while left > 0:
        progressed = False
        for i, c in enumerate(cap):
            if left and take[i] < c:
                take[i] += 1
                left -= 1
                progressed = True
        if not progressed:
            break
    return take


def allocate(available: list[int], size: int, strategy: str = "fill", per_question: int | None = None) -> list[int]:
    """How many selected trajectories to take from each question (in pool order) so the corpus
    holds `size` examples, by the ``ALLOCATIONS`` plug-in `strategy`. Each question gives at most
    `per_question` (default: all it has). A pool that
    holds fewer than `size` gives what it has (the caller reports the shortfall).
    """
    plan = ALLOCATIONS[strategy]
    if size < 0:
        raise ValueError(f"corpus.size: must be >= 0, got {size}")
    cap = [min(a, per_question) if per_question is not None else a for a in available]
    return plan(cap, size)
