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

Sharding (``generation.shard=i/n``): one generation key filled by n jobs at the same time. A
question belongs to shard ``int(question hash, 16) % n``, so every job agrees on the split
without talking to the others; a sharded job generates only its share, into its own file under
its own lock (``<key>/shards/<i>of<n>.jsonl``, see ``sample_cache``), and notes its generation
interval (start, end, samples) in ``<i>of<n>.json`` beside it: progress while it runs, proof
afterwards that no shard waited for another. Every reader sees the union of samples.jsonl and
the shard files, so an unsharded job skips what the shards hold. A shard holds part of the
corpus, so a sharded run must stop before curation (``stop_after=trajectories``; ded.config
refuses more). The cluster recipe, n parallel generation jobs, then one job that trains::

    python run.py -m generation.shard=0/4,1/4,2/4,3/4 stop_after=trajectories hydra/launcher=slurm_gpu
    # or a job array: python run.py generation.shard=$SLURM_ARRAY_TASK_ID/4 stop_after=trajectories
    python run.py          # unsharded: finds every shard's samples, generates none, curates and trains

(Hydra's default launcher runs a ``-m`` sweep one job after another; ``hydra/launcher=joblib``
runs the shards in parallel on one machine.) The student's pass-rate samples are sharded the
same way: a shard keeps the pool questions of its share, so the questions it asks the teacher
about are exactly the full run's kept questions of that share.
"""

from __future__ import annotations

import itertools
import logging
import os
import socket
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator

from tqdm.auto import tqdm

from ded.core.cache import short_hash
from ded.data import Question
from ded.generation.sample_cache import SampleCache

log = logging.getLogger(__name__)


@dataclass
class Request:
    qhash: str  # hash of the question text: the cache key inside a generation key
    index: int  # sample index, 0..n-1
    messages: list[dict]
    seed: int
    reference: str = ""  # the question's reference solution (Question.reference), for the solver teacher; in no cache key


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
        """Raise ded.core.models.ModelNotAvailable, naming what is missing, if this backend cannot
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


def shard_of(qhash: str, n: int) -> int:
    """The shard (of n) a question belongs to, from its hash alone: every job computes the same split."""
    return int(qhash, 16) % n


def shard_questions(questions: list[Question], shard: tuple[int, int] | None) -> list[Question]:
    """The questions of shard (i, n), in their order; all of them when shard is None."""
    if shard is None:
        return list(questions)
    i, n = shard
    return [q for q in questions if shard_of(question_hash(q.text), n) == i]


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
                   stats: GenerationStats, desc: str, progress: Callable[[], None] | None = None) -> None:
    """Generate `requests` chunk by chunk, appending every finished batch to the cache at once
    (then calling `progress`, if given)."""
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
                if progress is not None:
                    progress()
                bar.set_postfix(tok_s=f"{stats.new_tokens / max(time.perf_counter() - t0, 1e-9):.0f}")
    finally:
        bar.close()
        stats.seconds = time.perf_counter() - t0
    if stats.missing:
        log.warning("%s: %d of %d requested samples are missing from the replayed dataset (finish='missing')", desc, stats.missing, todo)


NOTE_EVERY_S = 30.0  # how often a running shard rewrites its interval note (a cluster user's progress view)


@contextmanager
def _shard_interval(cache: SampleCache, stats: GenerationStats) -> Iterator[Callable[[], None] | None]:
    """A sharded cache's generation interval, noted in <i>of<n>.json when it starts, every
    NOTE_EVERY_S while it generates, and when it ends (status done or failed); yields the progress
    callback for _generate_into. An unsharded cache notes nothing (yields None)."""
    if cache.shard is None:
        yield None
        return
    t0 = time.time()
    entry = {"host": socket.gethostname(), "pid": os.getpid(), "start": _iso(t0), "start_unix": t0, "end": None, "end_unix": None,
             "status": "running", "requested": stats.requested, "cached": stats.cached, "new_samples": 0, "new_tokens": 0}  # fmt: skip
    cache.record_interval(entry, new=True)
    last = time.monotonic()

    def note(**done) -> None:
        entry.update(new_samples=stats.new_samples, new_tokens=stats.new_tokens, **done)
        cache.record_interval(entry)

    def progress() -> None:
        nonlocal last
        if time.monotonic() - last >= NOTE_EVERY_S:
            last = time.monotonic()
            note()

    status = "failed"
    try:
        yield progress
        status = "done"
    finally:
        t1 = time.time()
        note(end=_iso(t1), end_unix=t1, status=status)


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(t))


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
    shard: tuple[int, int] | None = None,
) -> tuple[dict[str, list[dict]], GenerationStats]:
    """Return ({question id: [sample record] * n}, stats), generating only missing samples.

    ``collect=False`` only fills the cache and returns ({}, stats): memory then stays flat in the
    number of questions (tests/generation/backends/test_hf.py measures it), for warming a cache at scale.

    Parallel jobs that need the same key serialise on its lock: the second waits, then finds
    the first job's samples and generates only what is still missing (nothing twice).

    ``shard=(i, n)``: only the questions of shard i of n are generated and returned, into the
    shard's own file under its own lock, so the n shards of a key run at the same time (see the
    module docstring).
    """
    key = generation_key(backend, prefix, sampling, seed)
    meta = {"backend": backend.identity, "prefix": prefix, "sampling": sampling, "seed": seed}
    cache = SampleCache(cache_root, key, meta, shard=shard)
    questions = shard_questions(questions, shard)  # the other shards' questions are theirs to generate
    desc = desc if shard is None else f"{desc} (shard {shard[0]}/{shard[1]})"
    stats = GenerationStats(requested=n * len(questions))
    wanted = {question_hash(q.text): q for q in questions}  # one entry per distinct text

    with cache:  # one job generates a key (or a shard of it) at a time; others wait, then reuse
        # One parse of the cached lines (every file of the key): what a collecting call returns is also what it has.
        got = cache.read(wanted.keys()) if collect else None
        have = {qh: set(recs) for qh, recs in got.items()} if collect else cache.index()

        def missing() -> Iterator[Request]:
            for qh, q in wanted.items():
                done = have.get(qh, ())
                for i in range(n):
                    if i not in done:
                        yield Request(qh, i, build_messages(q, prefix), seed=int(short_hash(seed, qh, i), 16) % 2**31,
                                      reference=q.reference)

        todo = sum(1 for _ in missing())
        stats.cached = stats.requested - todo  # counted per question, duplicates of a text included
        with _shard_interval(cache, stats) as progress:
            if todo:
                _generate_into(cache, backend, missing(), todo, sampling, stats, desc, progress)
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
