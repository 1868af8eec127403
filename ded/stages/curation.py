"""Stage 4, curation: keep the complete, correct trajectories (``corpus.filters``), choose the P
most diverse per question (``diversity``), and allocate ``corpus.size`` examples over questions."""

from __future__ import annotations

import json
import logging
import random
from dataclasses import dataclass

from ded.core.cache import short_hash
from ded.core.errors import UserError
from ded.curation.diversity import diversity_report
from ded.curation.filters import FilterLog, build_trajectory_filters, run_filters
from ded.curation.selection import allocate, select_groups
from ded.grading.answers import check_answers
from ded.reporting.artifacts import save_corpus
from ded.stages import Run, stage
from ded.stages.passrate import PassRateResult
from ded.stages.trajectories import TeacherSamples

log = logging.getLogger("ded")


@dataclass
class Corpus:
    examples: list[dict]  # {id, level, question, answer, pass_rate, response}, grouped by question
    groups: list[list[str]]  # the selected responses of each question that contributed


@stage("curation")
def run(ctx: Run, passrate: PassRateResult, trajectories: TeacherSamples) -> Corpus:
    candidates, flog = keep_correct(ctx, passrate, trajectories)
    corpus = select_corpus(ctx, passrate, candidates)
    if not corpus.examples:
        why = ", ".join(f"{n} {r}" for r, n in flog.dropped.most_common()) or "none generated"
        raise UserError(  # a run's outcome the user changes by a setting: one line, exit 2
            f"the corpus is empty: no kept question has a correct teacher trajectory (teacher trajectories "
            f"dropped: {why}; each one is in the run's filter/rejects table). Raise corpus.trajectories.n, "
            f"corpus.pool_size or teacher.sampling.max_new_tokens, loosen corpus.pass_rate, or use a stronger teacher."
        )
    log_corpus(ctx, corpus)
    return corpus


def keep_correct(ctx: Run, passrate: PassRateResult, trajectories: TeacherSamples) -> tuple[dict[str, list[str]], FilterLog]:
    """Question id -> its teacher responses that pass every trajectory filter."""
    flog = FilterLog()
    filters = build_trajectory_filters(ctx.cfg.corpus.filters, ctx.grading)
    candidates = {}
    code = [(s["text"], q.answer, q.kind) for q in passrate.kept if q.kind == "code" for s in trajectories.samples[q.id]]
    if code:  # graded in parallel sandboxes now; the chain's `correct` filter then finds each verdict remembered
        check_answers(code, progress=True, settings=ctx.grading)
    for q in passrate.kept:
        items, _ = run_filters([(q, s) for s in trajectories.samples[q.id]], filters, lambda it: {"id": it[0].id, "response": it[1]["text"]}, flog)
        candidates[q.id] = [s["text"] for _, s in items]
    judged = flog.kept + sum(flog.dropped.values())
    ctx.tracker.log({
        "filter/teacher/kept": flog.kept,
        "filter/teacher/kept_share": flog.kept / judged if judged else float("nan"),  # the teacher's accuracy on kept questions
        **{f"filter/teacher/dropped_{r}": n for r, n in flog.dropped.items()},
    })  # fmt: skip
    ctx.tracker.table("filter/rejects", flog.rejects + passrate.rejects)
    return candidates, flog


def select_corpus(ctx: Run, passrate: PassRateResult, candidates: dict[str, list[str]]) -> Corpus:
    cfg = ctx.cfg
    p = cfg.corpus.trajectories.p
    order = [q for q in passrate.kept if candidates[q.id]]
    rngs = (random.Random(short_hash(ctx.corpus_seed, q.id, "select")) for q in order)  # one stream per question: order-independent
    chosen = select_groups((candidates[q.id] for q in order), rngs, p, cfg.diversity)  # diversity.workers > 1: in parallel
    # most valuable first: a smaller take is a prefix
    picks = {q.id: [candidates[q.id][i] for i in idx] for q, idx in zip(order, chosen)}
    available = [len(picks[q.id]) for q in order]
    size = sum(available) if cfg.corpus.size is None else cfg.corpus.size  # null: no cap
    counts = allocate(available, size, cfg.corpus.allocation, per_question=p) if order else []
    examples, groups = [], []
    for q, c in zip(order, counts):
        if chosen := picks[q.id][:c]:
            groups.append(chosen)
            examples += [{"id": q.id, "level": q.level, "question": q.text, "answer": q.answer, "pass_rate": passrate.rates[q.id], "response": t}
                         for t in chosen]  # fmt: skip
    return Corpus(examples, groups)


def log_corpus(ctx: Run, corpus: Corpus) -> None:
    n = len(corpus.examples)
    size = n if ctx.cfg.corpus.size is None else ctx.cfg.corpus.size
    if n < size:
        log.warning("corpus holds %d examples, fewer than corpus.size=%d: the pool yields no more. Raise corpus.pool_size "
                    "or corpus.trajectories.n to reach it.", n, size)  # fmt: skip
    questions = len(corpus.groups)
    ctx.tracker.log({
        "corpus/examples": n,
        "corpus/questions": questions,
        "corpus/shortfall": max(0, size - n),
        "corpus/duplicate_share": sum(len(g) - len(set(g)) for g in corpus.groups) / n,
        # the selected set's diversity under every metric, whichever one selected it
        **{f"corpus/diversity/{k}": v for k, v in diversity_report(corpus.groups).items()},
    })  # fmt: skip
    ctx.tracker.write("corpus.jsonl", "".join(json.dumps(e, ensure_ascii=False) + "\n" for e in corpus.examples))
    ctx.tracker.table("corpus", corpus.examples, local=False)  # browsable in W&B; locally corpus.jsonl and corpus/ hold it
    save_corpus(ctx, corpus)  # <run>/corpus/: a `datasets` dataset + card, and the W&B dataset artifact
    log.info("corpus: %d examples from %d questions", n, questions)
