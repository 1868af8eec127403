"""Decontamination of a question pool against evaluation benchmarks, and deduplication.

N-gram overlap, as s1 and open-r1 do: texts are lowercased and split on whitespace (open-r1's
normalisation), and a pool question is contaminated by a benchmark item when they share word
n-grams (n=8 by default, both projects' choice). Sharing one n-gram is too loose for math:
boilerplate such as "Enter your answer in the form $(r,\\theta),$ where $r > 0$ and ..." is
shared by different problems, and on the MATH test set against MATH-500 any shared 8-gram
flags 359 clean problems besides the 500 contaminated ones. So the criterion is the *share* of
n-grams in common, |A & B| / min(|A|, |B|) >= ``min_overlap`` (default 0.5): a benchmark item
copied inside a longer question still scores 1.0, and a few reworded words still leave most
n-grams intact. ``min_overlap=0`` is the any-shared-n-gram rule of s1/open-r1. A text shorter
than n words is one n-gram (itself), so short questions match only when equal.

Optional fuzzy match (rapidfuzz ``fuzz.ratio`` on the normalised texts, 0-100) catches
rewordings that break n-grams. Deduplication drops exact repeats (normalised text) and,
optionally, near-identical questions (fuzzy ratio >= threshold) that use the same numbers:
"... the word NINE" and "... the word TEPEE" are different problems, so are two templates with
different numbers.

Every drop is counted by reason ("ngram:<benchmark>", "fuzzy:<benchmark>", "duplicate",
"near_duplicate") and kept, with what it matched, for inspection.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field

import numpy as np
from rapidfuzz import fuzz, process

from ded.config import DEDUP_MODES  # corpus.decontam.dedup
from ded.data import Question
from ded.grading.answers import ANSWER_KINDS

_NUM = re.compile(r"\d+(?:\.\d+)?")


def content(text: str) -> str:
    """`text` without the answer kinds' instructions: every code question ends with the same
    sentence, which is no evidence that two questions are the same."""
    for _, kind in ANSWER_KINDS.items():
        if kind.instruction:
            text = text.replace(kind.instruction.strip(), " ")
    return text


def normalize(text: str) -> str:
    return " ".join(content(text).lower().split())


def word_ngrams(text: str, n: int) -> set[int]:
    """Hashes of the lowercased whitespace-word n-grams of `text` without the answer kinds'
    instructions (the whole text if shorter)."""
    words = content(text).lower().split()
    if len(words) < n:
        return {hash(tuple(words))} if words else set()
    return {hash(tuple(words[i : i + n])) for i in range(len(words) - n + 1)}


@dataclass
class Match:
    benchmark: str
    index: int  # position of the matched item in its benchmark list
    overlap: float  # share of n-grams in common, or fuzzy ratio / 100


class NgramIndex:
    """Benchmark texts indexed by their n-grams; `match` finds the item sharing the most."""
    def __init__(self, benchmarks: dict[str, list[str]], n: int = 8):
        self.n = n
        self.items: list[tuple[str, int]] = []  # (benchmark, index)
        self.sizes: list[int] = []
        self.postings: dict[int, list[int]] = defaultdict(list)
        for name, texts in benchmarks.items():
            for i, t in enumerate(texts):
                grams = word_ngrams(t, n)
                item = len(self.items)
                self.items.append((name, i))
                self.sizes.append(len(grams))
                for g in grams:
                    self.postings[g].append(item)

    def match(self, text: str, min_overlap: float) -> Match | None:
        grams = word_ngrams(text, self.n)
        shared: Counter = Counter()
        for g in grams:
            for item in self.postings.get(g, ()):
                shared[item] += 1
        best = None
        for item, k in shared.items():
            overlap = k / min(len(grams), self.sizes[item])
            if overlap >= min_overlap and overlap > 0 and (best is None or overlap > best.overlap):
                best = Match(*self.items[item], overlap)
        return best


@dataclass
class CurationResult:
    kept: list[Question]
    counts: Counter = field(default_factory=Counter)  # reason -> questions dropped
    rejects: list[dict] = field(default_factory=list)  # each dropped question, its reason and what it matched

    def drop(self, q: Question, reason: str, **detail) -> None:
        self.counts[reason] += 1
        self.rejects.append({"id": q.id, "question": q.text, "reason": reason, **detail})


def _texts(items) -> list[str]:
    return [x.text if isinstance(x, Question) else str(x) for x in items]


def decontaminate(
    questions: list[Question],
    benchmarks: dict[str, list],
    n: int = 8,
    min_overlap: float = 0.5,
    fuzzy_threshold: float | None = None,
    dedup: str = "exact",
    dedup_threshold: float = 95.0,
) -> CurationResult:
    """Drop pool questions that overlap any benchmark (texts or Questions, by benchmark name),
    then deduplicate what is left (dedup: none | exact | fuzzy)."""
    bench = {name: _texts(items) for name, items in benchmarks.items()}
    index = NgramIndex(bench, n)
    result = CurationResult(kept=[])
    survivors = []
    for q in questions:
        m = index.match(q.text, min_overlap)
        if m:
            result.drop(q, f"ngram:{m.benchmark}", benchmark_index=m.index, benchmark_text=bench[m.benchmark][m.index], overlap=round(m.overlap, 3))
        else:
            survivors.append(q)
    if fuzzy_threshold is not None:
        survivors = _fuzzy_decontaminate(survivors, bench, fuzzy_threshold, result)
    deduped = deduplicate(survivors, dedup, dedup_threshold, n=min(n, 5))
    result.kept = deduped.kept
    result.counts.update(deduped.counts)
    result.rejects += deduped.rejects
    return result


def _fuzzy_decontaminate(questions, bench: dict[str, list[str]], threshold: float, result: CurationResult, chunk: int = 512):
    """Drop questions whose normalised text is within `threshold` fuzz.ratio of a benchmark item.
    All pairs are scored by rapidfuzz on every core, a block of `chunk` questions at a time so
    the score matrix stays small."""
    names = [(name, i) for name, texts in bench.items() for i in range(len(texts))]
    choices = [normalize(t) for texts in bench.values() for t in texts]
    kept = []
    for s in range(0, len(questions), chunk):
        block = questions[s : s + chunk]
        scores = process.cdist([normalize(q.text) for q in block], choices, scorer=fuzz.ratio, score_cutoff=threshold, workers=-1, dtype=np.float32)
        for q, row in zip(block, scores):
            j = int(np.argmax(row))
            if row[j] >= threshold:
                name, i = names[j]
                result.drop(q, f"fuzzy:{name}", benchmark_index=i, benchmark_text=bench[name][i], overlap=round(float(row[j]) / 100, 3))
            else:
                kept.append(q)
    return kept


def deduplicate(questions: list[Question], mode: str = "exact", threshold: float = 95.0, n: int = 5, max_posting: int = 64) -> CurationResult:
    """Keep the first of each group of repeated questions.
    exact: equal normalised text. fuzzy: also fuzz.ratio >= threshold with an earlier kept
    question that has the same numbers. Candidates come from shared word n-grams (so the cost
    grows with the pool, not its square); an n-gram held by more than `max_posting` questions
    is boilerplate and does not make candidates.
    """
    if mode not in DEDUP_MODES:
        raise ValueError(f"dedup: unknown mode {mode!r}; allowed: {list(DEDUP_MODES)}")
    result = CurationResult(kept=[])
    if mode == "none":
        result.kept = list(questions)
        return result
    first: dict[str, str] = {}
    postings: dict[int, list[int]] = defaultdict(list)
    norms: list[str] = []
    for q in questions:
        key = normalize(q.text)
        if key in first:
            result.drop(q, "duplicate", duplicate_of=first[key])
            continue
        if mode == "fuzzy":
            grams = word_ngrams(key, n)
            cands = {k for g in grams if len(postings.get(g, ())) <= max_posting for k in postings.get(g, ())}
            nums = _NUM.findall(key)
            best = process.extractOne(key, {k: norms[k] for k in cands}, scorer=fuzz.ratio, score_cutoff=threshold) if cands else None
            if best and _NUM.findall(best[0]) == nums:
                result.drop(q, "near_duplicate", duplicate_of=result.kept[best[2]].id, ratio=round(best[1], 1))
                continue
            for g in grams:
                postings[g].append(len(result.kept))
        first[key] = q.id
        norms.append(key)
        result.kept.append(q)
    return result
