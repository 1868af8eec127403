"""Stage 1, questions: the train pool, the held-out split and every evaluation benchmark.

Benchmarks are read here, before any generation, so a missing file stops the run at once; the
pool is then decontaminated against them (n-gram overlap, optional fuzzy match) and deduplicated.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from ded.data import Question, load_task
from ded.data.evalsets import load_eval_set
from ded.stages import Run, stage

log = logging.getLogger("ded")


@dataclass
class Questions:
    pool: list[Question]  # decontaminated train pool
    splits: dict[str, list[Question]]  # evaluation splits: "heldout" first, then eval.benchmarks

    @property
    def held_out(self) -> list[Question]:
        return self.splits["heldout"]


@stage("questions")
def run(ctx: Run) -> Questions:
    cfg = ctx.cfg
    pool, held_out = load_task(cfg.corpus, cfg.eval.size)
    splits = {"heldout": held_out} | {b: load_eval_set(b, cfg.eval.data_dir, cfg.eval.limit) for b in cfg.eval.benchmarks}
    if cfg.corpus.decontam.enabled:
        pool = decontaminate(ctx, pool, splits)
    ctx.tracker.log({f"data/{name}/questions": len(qs) for name, qs in [("pool", pool), *splits.items()]})
    log.info("questions: pool %d, held-out %d", len(pool), len(held_out))
    return Questions(pool, splits)


def decontaminate(ctx: Run, pool: list[Question], splits: dict[str, list[Question]]) -> list[Question]:
    from ded.data.decontam import decontaminate as drop_overlaps

    dc = ctx.cfg.corpus.decontam
    bench = {name: [q.text for q in qs] for name, qs in splits.items() if name != "heldout"}
    res = drop_overlaps(pool, bench, n=dc.n, min_overlap=dc.min_overlap, fuzzy_threshold=dc.fuzzy_threshold, dedup=dc.dedup)
    ctx.tracker.log({f"data/decontam/{reason.replace(':', '_')}": c for reason, c in res.counts.items()} | {"data/decontam/kept": len(res.kept)})
    ctx.tracker.table("data/decontam_rejects", res.rejects)
    if len(res.kept) < len(pool):
        log.info("decontamination: %d of %d pool questions dropped (%s)", len(pool) - len(res.kept), len(pool), dict(res.counts))
    return res.kept
