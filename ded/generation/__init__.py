"""Generation backends behind one interface, and cached generation over them.

A backend turns requests (chat messages + a seed) into completions, yielding them in batches
as they finish so the cache can persist them immediately. ``generate_cached`` is what the
stages call: it asks the sample cache what is missing, generates only that, and returns every
sample of the requested questions.

Backends live in ``backends/``, one module each, registered by name with their config schema
(``backends.BACKENDS``); ``factory.make_backend`` builds the one a model config names.

Scale: the missing requests are produced lazily and handed to the backend in chunks, every
finished batch is appended to the cache at once, and what is already cached is known from an
index of (question, sample) pairs without its text, so memory during generation does not grow
with the number of questions; only the returned samples of the asked questions are held.
"""

from __future__ import annotations

import itertools
import logging
import time
from dataclasses import dataclass, field
from typing import Iterable, Iterator

from tqdm.auto import tqdm

from ded.cache import short_hash
from ded.data import Question
from ded.generation.sample_cache import SampleCache

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
    text: str  # reasoning included, as <think>...</think> before the answer (see text.py)
    n_tokens: int  # generated tokens (0 where unknown: replay without a token column)
    finish: str  # "stop" | "length" | "missing" (replay: the dataset has no such trajectory) | server-specific
    extra: dict = field(default_factory=dict)  # more fields for the cache record (prompt_tokens, correct, ...)


class Backend:
    """Interface. ``identity`` enters the cache key: everything that changes the output."""

    identity: dict
    chunk_size: int = 4096  # requests handed to one generate() call (bounds memory at scale)

    def check(self) -> None:
        """Raise ded.models.ModelNotAvailable, naming what is missing, if this backend cannot
        run here; called before any work so a run stops early rather than after hours."""

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
    prompt_tokens: int = 0  # where the backend reports them (openai usage)
    missing: int = 0  # replay: requested trajectories the dataset does not hold
    seconds: float = 0.0


def question_hash(text: str) -> str:
    return short_hash(text)


def prompt_prefix(system_prompt: str | None, fewshot: list[dict]) -> list[dict]:
    """The turns before the question: an optional system turn, then worked examples."""
    return ([{"role": "system", "content": system_prompt}] if system_prompt else []) + list(fewshot)


def build_messages(question: Question, prefix: list[dict]) -> list[dict]:
    return list(prefix) + [{"role": "user", "content": question.text}]


def generation_key(backend: Backend, prefix: list[dict], sampling: dict, seed: int) -> str:
    return short_hash(backend.identity, prefix, sampling, seed)


def _chunks(it: Iterable, size: int) -> Iterator[list]:
    it = iter(it)
    while chunk := list(itertools.islice(it, size)):
        yield chunk


def _record(c: Completion) -> dict:
    rec = {"q": c.request.qhash, "i": c.request.index, "text": c.text, "n_tokens": c.n_tokens, "finish": c.finish}
    rec.update(c.extra)
    return rec


def _generate_into(cache: SampleCache, backend: Backend, requests: Iterator[Request], todo: int, sampling: dict,
                   stats: GenerationStats, desc: str) -> None:
    """Generate `requests` chunk by chunk, appending every finished batch to the cache at once."""
    t0 = time.perf_counter()
    bar = tqdm(total=todo, desc=desc, unit="sample", dynamic_ncols=True)
    try:
        for chunk in _chunks(requests, max(1, int(getattr(backend, "chunk_size", 4096)))):
            for batch in backend.generate(chunk, sampling):
                records = [_record(c) for c in batch]
                cache.append(records)
                stats.new_samples += len(records)
                stats.new_tokens += sum(r["n_tokens"] for r in records)
                stats.prompt_tokens += sum(r.get("prompt_tokens") or 0 for r in records)
                stats.missing += sum(r["finish"] == "missing" for r in records)
                bar.update(len(records))
                bar.set_postfix(tok_s=f"{stats.new_tokens / max(time.perf_counter() - t0, 1e-9):.0f}")
    finally:
        bar.close()
        stats.seconds = time.perf_counter() - t0
    if stats.missing:
        log.warning("%s: %d of %d requested samples are missing from the replayed dataset (finish='missing')", desc, stats.missing, todo)


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
    collect: bool = True,
) -> tuple[dict[str, list[dict]], GenerationStats]:
    """Return ({question id: [sample record] * n}, stats), generating only missing samples.

    ``collect=False`` only fills the cache and returns ({}, stats): memory then stays flat in the
    number of questions (tests/test_gen_hf.py measures it), for warming a cache at scale.

    Parallel jobs that need the same key serialise on its lock: the second waits, then finds
    the first job's samples and generates only what is still missing (nothing twice).
    """
    key = generation_key(backend, prefix, sampling, seed)
    meta = {"backend": backend.identity, "prefix": prefix, "sampling": sampling, "seed": seed}
    cache = SampleCache(cache_root, key, meta)
    stats = GenerationStats(requested=n * len(questions))
    wanted = {question_hash(q.text): q for q in questions}  # one entry per distinct text

    with cache:  # one job generates a key at a time; others wait, then reuse
        # One parse of the cached lines: what a collecting call returns is also what it has.
        got = cache.read(wanted.keys()) if collect else None
        have = {qh: set(recs) for qh, recs in got.items()} if collect else cache.index()

        def missing() -> Iterator[Request]:
            for qh, q in wanted.items():
                done = have.get(qh, ())
                for i in range(n):
                    if i not in done:
                        yield Request(qh, i, build_messages(q, prefix), seed=int(short_hash(seed, qh, i), 16) % 2**31)

        todo = sum(1 for _ in missing())
        stats.cached = stats.requested - todo  # counted per question, duplicates of a text included
        if todo:
            _generate_into(cache, backend, missing(), todo, sampling, stats, desc)
        else:
            log.info("%s: all %d samples cached", desc, stats.requested)
        if not collect:
            if stats.new_samples != todo:  # the backend returned fewer completions than requests
                raise RuntimeError(f"{cache.file}: {type(backend).__name__} returned {stats.new_samples} of {todo} requested samples")
            return {}, stats
        if todo:
            got = cache.read(wanted.keys())
    out = {}
    for q in questions:
        recs = got.get(question_hash(q.text), {})
        lost = [i for i in range(n) if i not in recs]
        if lost:  # the backend returned fewer completions than requests: a backend bug, say where
            raise RuntimeError(f"{cache.file}: question {q.id!r} has no sample(s) {lost} after generation ({type(backend).__name__})")
        out[q.id] = [recs[i] for i in range(n)]
    return out, stats
