"""Generation backends behind one interface, and cached generation over them.

A backend turns requests (chat messages + a seed) into completions, yielding them in batches
as they finish so the cache can persist them immediately. ``generate_cached`` is what the
stages call: it asks the sample cache what is missing, generates only that, and returns every
sample of the requested questions.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Iterator

from tqdm.auto import tqdm

from ded.cache import short_hash
from ded.data import Question
from ded.generation.cache import SampleCache

log = logging.getLogger(__name__)


@dataclass
class Request:
    qhash: str  # hash of the question text: the cache key inside a generation key
    index: int  # sample index, 0..n-1
    messages: list[dict]
    seed: int


@dataclass
class Completion:
    request: Request
    text: str
    n_tokens: int
    finish: str  # "stop" | "length"


class Backend:
    """Interface. ``identity`` enters the cache key: everything that changes the output."""

    identity: dict

    def generate(self, requests: list[Request], sampling: dict) -> Iterator[list[Completion]]:  # pragma: no cover
        raise NotImplementedError

    def close(self) -> None:
        pass


@dataclass
class GenerationStats:
    requested: int = 0
    cached: int = 0
    new_samples: int = 0
    new_tokens: int = 0
    seconds: float = 0.0
    by_key: dict = field(default_factory=dict)

    def add(self, other: "GenerationStats") -> None:
        self.requested += other.requested
        self.cached += other.cached
        self.new_samples += other.new_samples
        self.new_tokens += other.new_tokens
        self.seconds += other.seconds


def question_hash(text: str) -> str:
    return short_hash(text)


def prompt_prefix(system_prompt: str | None, fewshot: list[dict]) -> list[dict]:
    """The turns before the question: an optional system turn, then worked examples."""
    return ([{"role": "system", "content": system_prompt}] if system_prompt else []) + list(fewshot)


def build_messages(question: Question, prefix: list[dict]) -> list[dict]:
    return list(prefix) + [{"role": "user", "content": question.text}]


def generation_key(backend: Backend, prefix: list[dict], sampling: dict, seed: int) -> str:
    return short_hash(backend.identity, prefix, sampling, seed)


def generate_cached(
    backend: Backend,
    cache_root: str,
    questions: list[Question],
    n: int,
    *,
    prefix: list[dict],
    sampling: dict,
    seed: int,
    desc: str,
) -> tuple[dict[str, list[dict]], GenerationStats]:
    """Return ({question id: [sample record] * n}, stats), generating only missing samples."""
    key = generation_key(backend, prefix, sampling, seed)
    meta = {"backend": backend.identity, "prefix": prefix, "sampling": sampling, "seed": seed}
    cache = SampleCache(cache_root, key, meta)
    stats = GenerationStats(requested=n * len(questions))
    with cache:  # one job generates a key at a time; others wait, then reuse
        have = cache.read()
        todo: list[Request] = []
        for q in questions:
            qh = question_hash(q.text)
            got = have.get(qh, {})
            for i in range(n):
                if i not in got:
                    todo.append(Request(qh, i, build_messages(q, prefix), seed=int(short_hash(seed, qh, i), 16) % 2**31))
        stats.cached = stats.requested - len(todo)
        if todo:
            t0 = time.perf_counter()
            bar = tqdm(total=len(todo), desc=desc, unit="sample", dynamic_ncols=True)
            try:
                for batch in backend.generate(todo, sampling):
                    records = [
                        {"q": c.request.qhash, "i": c.request.index, "text": c.text, "n_tokens": c.n_tokens, "finish": c.finish}
                        for c in batch
                    ]
                    cache.append(records)
                    for r in records:
                        have.setdefault(r["q"], {})[r["i"]] = r
                    stats.new_samples += len(records)
                    stats.new_tokens += sum(r["n_tokens"] for r in records)
                    bar.update(len(records))
                    bar.set_postfix(tok_s=f"{stats.new_tokens / max(time.perf_counter() - t0, 1e-9):.0f}")
            finally:
                bar.close()
                stats.seconds = time.perf_counter() - t0
        else:
            log.info("%s: all %d samples cached", desc, stats.requested)
    out = {q.id: [have[question_hash(q.text)][i] for i in range(n)] for q in questions}
    stats.by_key[key] = stats.new_samples
    return out, stats
